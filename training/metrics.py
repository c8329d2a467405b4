"""Evaluation metrics for the churn, stage, CLV and offer-uplift models (numpy / scikit-learn).

Every function takes plain arrays (or a class-probability frame) and returns floats or small
frames; nothing is logged here. Ranking-based figures (lift, gains, Qini) are tie-aware: rows
with equal scores form one block, and a cut inside a block counts the block's share pro rata
(the expectation under random tie-breaking), so results never depend on row order.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, roc_auc_score

NAN = float("nan")
LOG_LOSS_EPS = 1e-15


def _binary(values, field: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{field} must be one-dimensional; got shape {arr.shape}")
    bad = ~np.isin(arr, (0, 1))
    if bad.any():
        first = arr[bad].tolist()[0]
        raise ValueError(f"{field} must hold 0/1 or booleans; got {first!r} in {bad.sum()} rows")
    return arr.astype(float)


def _finite(values, field: str, n: int, lo: float = -np.inf, hi: float = np.inf) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.shape != (n,):
        raise ValueError(f"{field} must have {n} values like y; got shape {arr.shape}")
    bad = ~np.isfinite(arr) | (arr < lo) | (arr > hi)
    if bad.any():
        first = float(arr[bad][0])
        raise ValueError(f"{field} must be finite and within [{lo}, {hi}]; got {first}")
    return arr


def _labels_and_probs(y_true, p, ranking: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """0/1 labels and probabilities in [0, 1] (any finite score when only ranking matters)."""
    y = _binary(y_true, "y_true")
    return y, _finite(p, "p", y.size, *((-np.inf, np.inf) if ranking else (0.0, 1.0)))


def _tie_blocks(score: np.ndarray, *values: np.ndarray) -> tuple[np.ndarray, ...]:
    """Rows ranked by descending score, cumulated at the end of each block of tied scores.

    Returns ``k`` (rows ranked so far) and the cumulative sum of each of ``values``, all with
    a leading 0 for the empty cut.
    """
    if score.size == 0:
        return (np.zeros(1),) * (len(values) + 1)
    order = np.argsort(-score, kind="stable")
    ranked = score[order]
    ends = np.r_[np.flatnonzero(np.diff(ranked) != 0), ranked.size - 1]
    k = np.r_[0, ends + 1].astype(float)
    return (k, *(np.r_[0.0, np.cumsum(v[order])[ends]] for v in values))


def _positives_in_top(y: np.ndarray, p: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Expected positives among the ``k`` highest-scored rows (``k`` may be fractional)."""
    cut, positives = _tie_blocks(p, y)
    return np.interp(k, cut, positives)


# --- churn (binary) -------------------------------------------------------------------------


def reliability_table(
    y_true, p, bins: int = 10, strategy: Literal["quantile", "uniform"] = "quantile"
) -> pd.DataFrame:
    """Calibration by bin of predicted probability.

    Parameters
    ----------
    y_true : array of 0/1, shape (n,)
    p : array of predicted probabilities in [0, 1], shape (n,)
    bins : number of bins requested.
    strategy : ``"quantile"`` (edges at quantiles of ``p``: equal-frequency bins, tied scores
        stay together so duplicate edges merge bins) or ``"uniform"`` (equal-width on [0, 1]).

    Returns
    -------
    DataFrame with one row per non-empty bin: ``bin`` (0-based bin index), ``mean_p`` (mean
    predicted probability), ``observed_rate`` (share of positives), ``count`` (rows).
    """
    y, p = _labels_and_probs(y_true, p)
    if strategy not in ("quantile", "uniform"):
        raise ValueError(f"strategy must be 'quantile' or 'uniform'; got {strategy!r}")
    if y.size == 0:
        return pd.DataFrame({"bin": [], "mean_p": [], "observed_rate": [], "count": []})
    grid = np.linspace(0.0, 1.0, bins + 1)
    edges = np.unique(np.quantile(p, grid)) if strategy == "quantile" else grid
    ids = np.searchsorted(edges[1:-1], p)
    frame = pd.DataFrame({"bin": ids, "p": p, "y": y}).groupby("bin", sort=True)
    table = frame.agg(mean_p=("p", "mean"), observed_rate=("y", "mean"), count=("y", "size"))
    return table.reset_index()


def expected_calibration_error(y_true, p, bins: int = 10, strategy: str = "quantile") -> float:
    """ECE: the count-weighted mean of ``|mean(p) - mean(y)|`` over bins (NaN when empty)."""
    table = reliability_table(y_true, p, bins=bins, strategy=strategy)
    if table.empty:
        return NAN
    gaps = (table["mean_p"] - table["observed_rate"]).abs()
    return float(np.average(gaps, weights=table["count"]))


def gains_table(y_true, p, steps: int = 100) -> pd.DataFrame:
    """Cumulative gains when targeting the highest-scored rows first (``p``: any finite score).

    Returns
    -------
    DataFrame with ``steps + 1`` rows: ``share_targeted`` (0 to 1), ``share_of_positives_captured``
    (positives in the targeted share / all positives; NaN without positives) and ``lift``
    (captured / targeted; NaN at 0 targeted). Cuts may fall between rows or inside ties: those
    rows count pro rata.
    """
    y, p = _labels_and_probs(y_true, p, ranking=True)
    share = np.linspace(0.0, 1.0, steps + 1)
    total = y.sum()
    captured = _positives_in_top(y, p, share * y.size) / total if total > 0 else share * NAN
    with np.errstate(divide="ignore", invalid="ignore"):
        lift = np.where(share > 0, captured / share, NAN)
    return pd.DataFrame(
        {"share_targeted": share, "share_of_positives_captured": captured, "lift": lift}
    )


def lift_at(y_true, p, share: float = 0.1) -> float:
    """Positive rate in the top ``share`` of rows by ``p`` / overall positive rate."""
    y, p = _labels_and_probs(y_true, p, ranking=True)
    if y.sum() == 0:
        return NAN
    k = share * y.size
    return float(_positives_in_top(y, p, np.array([k]))[0] / k / y.mean())


def _auc_or_nan(metric, y: np.ndarray, p: np.ndarray) -> float:
    return float(metric(y, p)) if 0 < y.sum() < y.size else NAN


def churn_metrics(y_true, p, bins: int = 10) -> dict[str, float]:
    """Binary-classifier report for the churn model.

    Parameters
    ----------
    y_true : array of 0/1 (1 = churned), shape (n,)
    p : predicted churn probabilities, shape (n,)
    bins : equal-frequency bins for the calibration error.

    Returns
    -------
    ``roc_auc``, ``pr_auc`` (average precision; both NaN when y has one class), ``brier``,
    ``ece`` (see :func:`expected_calibration_error`), ``lift_top_decile`` (see :func:`lift_at`),
    ``base_rate`` and ``n``. Everything but ``n`` is NaN on empty input.
    """
    y, p = _labels_and_probs(y_true, p)
    if y.size == 0:
        keys = ("roc_auc", "pr_auc", "brier", "ece", "lift_top_decile", "base_rate")
        return {**dict.fromkeys(keys, NAN), "n": 0.0}
    return {
        "roc_auc": _auc_or_nan(roc_auc_score, y, p),
        "pr_auc": _auc_or_nan(average_precision_score, y, p),
        "brier": float(np.mean((p - y) ** 2)),
        "ece": expected_calibration_error(y, p, bins=bins),
        "lift_top_decile": lift_at(y, p, 0.1),
        "base_rate": float(y.mean()),
        "n": float(y.size),
    }


# --- customer lifetime value (regression of realised value) -------------------------------


def value_curve(y_true, score) -> tuple[np.ndarray, np.ndarray]:
    """Tie-aware gains curve of value: (share of customers, share of the total true value)
    taken in descending ``score`` order, with ties counted pro rata."""
    y = _finite(y_true, "y_true", np.size(y_true), 0.0)
    k, captured = _tie_blocks(_finite(score, "score", y.size), y)
    return k / max(y.size, 1), captured / (y.sum() or 1.0)


def _gini(y: np.ndarray, score: np.ndarray) -> float:
    share, captured = value_curve(y, score)
    return 2.0 * float(np.trapezoid(captured, share)) - 1.0


def value_metrics(y_true, pred) -> dict[str, float]:
    """How well predicted values (CLV) rank and match the realised values.

    Returns ``normalized_gini`` (the Gini of the true values ordered by ``pred`` over the Gini
    of the perfect order: 1 = perfect ranking, 0 = random), ``top_decile_capture`` (share of
    the total true value held by the 10 % with the highest ``pred``), ``spearman``, ``mae``,
    ``mean_true``, ``mean_pred`` and ``n``. NaN where undefined (no true value at all).
    """
    from scipy.stats import spearmanr

    y = _finite(y_true, "y_true", np.size(y_true), 0.0)
    pred = _finite(pred, "pred", y.size)
    if y.size == 0 or y.sum() <= 0:
        keys = ("normalized_gini", "top_decile_capture", "spearman")
        mae = float(np.mean(np.abs(pred - y))) if y.size else NAN
        return {**dict.fromkeys(keys, NAN), "mae": mae, "mean_true": NAN, "mean_pred": NAN,
                "n": float(y.size)}  # fmt: skip
    share, captured = value_curve(y, pred)
    best = _gini(y, y)
    return {
        "normalized_gini": _gini(y, pred) / best if best > 0 else NAN,
        "top_decile_capture": float(np.interp(0.1, share, captured)),
        "spearman": float(spearmanr(y, pred).statistic),
        "mae": float(np.mean(np.abs(pred - y))),
        "mean_true": float(y.mean()),
        "mean_pred": float(pred.mean()),
        "n": float(y.size),
    }


# --- stage (multiclass) ---------------------------------------------------------------------


def _class_codes(labels, classes: list, field: str = "y_true") -> np.ndarray:
    y = np.asarray(labels, dtype=object)
    codes = pd.Index(classes, dtype=object).get_indexer(y)
    if (codes < 0).any():
        bad = y[codes < 0]
        raise ValueError(f"{field} must be one of {classes}; got {bad[0]!r} in {bad.size} rows")
    return codes


def stage_metrics(y_true, proba: pd.DataFrame, y_pred=None) -> dict[str, float]:
    """Multiclass report for the stage model.

    Parameters
    ----------
    y_true : true class labels, shape (n,); each must be a column of ``proba``.
    proba : DataFrame (n, classes), one column of probabilities per class.
    y_pred : the decided labels (e.g. ``StageModel.predict``); default: the argmax of
        ``proba``.

    Returns
    -------
    ``macro_f1`` (of the decision, over the classes present in truth or decision),
    ``accuracy``, ``log_loss`` (probabilities clipped to [1e-15, 1] and renormalised per row;
    labels = ``proba.columns``), ``n``. NaN on empty input.
    """
    classes = list(proba.columns)
    codes = _class_codes(y_true, classes)
    if codes.size == 0:
        return {"macro_f1": NAN, "accuracy": NAN, "log_loss": NAN, "n": 0.0}
    probs = np.clip(proba.to_numpy(dtype=float), LOG_LOSS_EPS, 1.0)
    probs /= probs.sum(axis=1, keepdims=True)
    pred = probs.argmax(axis=1) if y_pred is None else _class_codes(y_pred, classes, "y_pred")
    return {
        "macro_f1": float(f1_score(codes, pred, average="macro", zero_division=0.0)),
        "accuracy": float(accuracy_score(codes, pred)),
        "log_loss": float(-np.mean(np.log(probs[np.arange(codes.size), codes]))),
        "n": float(codes.size),
    }


def confusion(y_true, y_pred, classes) -> pd.DataFrame:
    """Counts of (true, predicted) pairs: rows ``true``, columns ``predicted``, in ``classes``
    order (absent classes kept as zero rows / columns)."""
    classes = list(classes)
    truth = _class_codes(y_true, classes)
    pred = _class_codes(y_pred, classes, "y_pred")
    counts = np.zeros((len(classes), len(classes)), dtype=int)
    np.add.at(counts, (truth, pred), 1)
    index = pd.Index(classes, name="true")
    return pd.DataFrame(counts, index=index, columns=pd.Index(classes, name="predicted"))


# --- offer uplift ---------------------------------------------------------------------------


def offer_experiment(arm, offer: str, control: str = "control") -> tuple[np.ndarray, np.ndarray]:
    """Rows of one offer's experiment: ``(rows, treated)``.

    ``rows`` is a boolean mask over exposures (arm is the offer or control); ``treated`` is a
    boolean per selected row (arm is the offer). Pass ``y[rows], treated, score[rows]`` on.
    """
    arm = np.asarray(arm, dtype=object)
    rows = (arm == offer) | (arm == control)
    return rows, arm[rows] == offer


def _uplift_inputs(y, treated, score, weights) -> tuple[np.ndarray, ...]:
    y = _binary(y, "y")
    t = _binary(treated, "treated")
    if t.size != y.size:
        raise ValueError(f"treated must have {y.size} values like y; got {t.size}")
    s = _finite(score, "score", y.size)
    w = np.ones(y.size) if weights is None else _finite(weights, "weights", y.size, 0.0).copy()
    for arm in (t == 1, t == 0):  # relative weights within an arm: rescale to its row count
        total = w[arm].sum()
        w[arm] = w[arm] * arm.sum() / total if total > 0 else 0.0
    return y, t, s, w


def qini_curve(y, treated, score, weights=None) -> pd.DataFrame:
    """Qini curve of an uplift score on an experiment.

    Rows are ranked by descending ``score``; at each cut (the end of each block of tied
    scores) the incremental conversions are ``Y_t(k) - Y_c(k) * N_t(k) / N_c(k)`` with
    ``Y_t, N_t`` the conversions and units among treated rows in the top ``k`` (likewise
    ``_c`` for control; the second term is 0 while ``N_c(k) = 0``).

    Parameters
    ----------
    y : 0/1 outcome (converted), shape (n,)
    treated : 0/1 or bool, shape (n,); 0 = control.
    score : predicted uplift (higher = target first), shape (n,)
    weights : optional inverse propensities ``1 / P(arm received | x)`` for non-uniform
        assignment. Only relative weights within an arm matter: each arm's weights are
        rescaled to sum to its row count, so constant weights give the unweighted curve.

    Returns
    -------
    DataFrame ``share_targeted`` (k / n, from 0 to 1), ``incremental_conversions`` (in units of
    treated rows; all NaN when either arm is empty). Between points the curve is linear.
    """
    y, t, s, w = _uplift_inputs(y, treated, score, weights)
    k, n_t, y_t, n_c, y_c = _tie_blocks(s, w * t, w * t * y, w * (1 - t), w * (1 - t) * y)
    ratio = np.divide(n_t, n_c, out=np.zeros_like(n_t), where=n_c > 0)
    gain = y_t - y_c * ratio
    if n_t[-1] == 0 or n_c[-1] == 0:
        gain = gain * NAN
    share = k / y.size if y.size else k
    return pd.DataFrame({"share_targeted": share, "incremental_conversions": gain})


def _area_over_random(curve: pd.DataFrame) -> float:
    x = curve["share_targeted"].to_numpy()
    q = curve["incremental_conversions"].to_numpy()
    if x.size < 2:
        return NAN
    return float(np.trapezoid(q - x * q[-1], x))


def auuc(y, treated, score, weights=None, normalize: bool = True) -> float:
    """Area between the Qini curve and the random-targeting line.

    ``AUUC = integral over s in [0, 1] of (Q(s) - s * Q(1)) ds`` with ``Q`` the
    :func:`qini_curve` against ``s``, the share targeted; the random line joins (0, 0) to
    (1, Q(1)). With ``normalize`` it is divided by the number of units ``n``, giving
    incremental conversions per unit: comparable across data sets of different sizes. Positive
    = better than random, 0 for a constant score, negative = worse than random. NaN on empty
    input or when either arm is empty.
    """
    area = _area_over_random(qini_curve(y, treated, score, weights))
    n = np.asarray(y).size
    return area / n if normalize and n else area


def qini_coefficient(y, treated, score, weights=None) -> float:
    """AUUC of ``score`` / AUUC of the best ordering of the observed outcomes.

    The best ordering ranks treated converters first and control converters last
    (score ``y * (2 * treated - 1)``). 1 = as good as hindsight; NaN when that area is <= 0.
    """
    y_arr, t_arr = _binary(y, "y"), _binary(treated, "treated")
    best = _area_over_random(qini_curve(y_arr, t_arr, y_arr * (2 * t_arr - 1), weights))
    model = _area_over_random(qini_curve(y_arr, t_arr, score, weights))
    return model / best if best > 0 else NAN
