"""The churn and stage models fitted with ``lightgbm.dask`` on customer partitions.

The result is a plain :class:`ChurnModel` / :class:`StageModel` (a ``lightgbm.Booster``,
the training categories, the calibrator, ``prior_power_``): saved, registered and served
exactly like one fitted in a single process. The steps are the models' own, in the same
order and with the same parameters: the latest whole snapshots held out (``holdout_mask``),
a booster on the earlier rows with early stopping on the held-out rows, the calibrator (churn)
or ``prior_power`` (stage) from its held-out predictions, then the booster refitted on every
row with the rounds scaled as ``fit`` does. What differs:

- **early stopping** is the same rule (stop ``early_stopping_rounds`` rounds after the best
  held-out log loss, keep the best round), but evaluated here on the held-out loss summed
  over the partitions, while the booster grows in chunks of rounds continued from the
  previous chunk (``init_model``): ``lightgbm.dask`` has no early stopping of its own (each
  worker would stop on its own rows);
- **the trees** come from LightGBM's data-parallel learner: histograms are merged across
  workers, bagging draws per worker, so the boosters are close to, not equal to, the
  single-process ones (the quality tolerance is in tests/training/test_dask_training.py).

Each partition's rows are encoded on its worker (``training.models._lgbm.encode``) with
categories learned from every partition, so nothing but summaries and the held-out scores
(one float per held-out row, ``num_class`` for the stage model) come back to this process.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import lightgbm as lgb
import numpy as np
import pandas as pd

from training.models._lgbm import booster_params, encode, holdout_mask, is_categorical
from training.models.churn import ChurnModel, fit_calibrator
from training.models.stage import StageModel, best_prior_power, stage_classes
from training.scale.cluster import each

if TYPE_CHECKING:
    from distributed import Client, Future

EPS = 1e-15  # LightGBM's clip of probabilities in its log losses


def fit_churn_on_cluster(client: Client, parts: list[Future], model: ChurnModel) -> ChurnModel:
    """``model.fit(X, y["churned"], time=X["as_of"])`` over partition frames ``parts`` (the
    churn rows: feature columns, ``churned``, ``as_of``); returns ``model``, fitted.
    ``parts`` is emptied once the frames are encoded, so the workers can free them."""
    model._check_params()
    hold = model.calibration is not None or bool(model.early_stopping_rounds)
    data = _prepare(client, parts, model, "churned", np.array([0.0, 1.0]), hold)
    model.classes_ = data.classes
    params = booster_params(model, "binary")
    booster = _fold_booster(client, data, params, model, hold)
    model.calibrator_ = None
    if model.calibration is not None:
        scores, y = _held_scores(client, data, booster, raw=True)
        model.calibrator_ = fit_calibrator(scores, y, model.calibration)
    if model.refit and data.n_hold:
        rounds = model.n_estimators
        if model.early_stopping_rounds:
            rounds = max(1, int(round(booster.num_trees() / (1 - data.n_hold / data.n))))
        booster = _boost(client, data, params, rounds, rows="all")
    model.booster_ = booster
    model.n_iter_ = booster.num_trees()
    return model


def fit_stage_on_cluster(client: Client, parts: list[Future], model: StageModel) -> StageModel:
    """``model.fit(X, y["stage_next"], time=X["as_of"])`` over partition frames ``parts``
    (emptied once encoded)."""
    model._check_prior_power()
    hold = bool(model.early_stopping_rounds) or model.prior_power == "auto"
    data = _prepare(client, parts, model, "stage_next", None, hold)
    model.classes_ = data.classes
    k = len(data.classes)
    params = booster_params(model, "multiclass", num_class=k)
    model.class_prior_ = data.class_counts / data.n
    fold = _fold_booster(client, data, params, model, hold) if hold else None
    rounds = model.n_estimators
    if model.early_stopping_rounds:
        rounds = fold.num_trees() // k
    if model.prior_power == "auto":
        proba, y = _held_scores(client, data, fold, raw=False)
        model.prior_power_ = best_prior_power(proba, y.astype(np.intp), model.class_prior_)
    else:
        model.prior_power_ = float(model.prior_power)
    model.booster_ = _boost(client, data, params, rounds, rows="all")
    model.n_iter_ = rounds
    return model


@dataclass
class _Data:
    """The encoded partitions on the cluster (futures) and what this process knows of them:
    input names, categorical positions, classes and their counts, rows (all, held out) in
    all and per partition (and the arrays' dtype)."""

    encoded: list
    names: list[str]
    categorical: list[int]
    classes: np.ndarray
    class_counts: np.ndarray
    n: int
    n_hold: int
    sizes: list[tuple[int, int, str]]


def _prepare(client, parts, model, label: str, classes: np.ndarray | None, hold: bool) -> _Data:
    """Describe the partitions, learn categories, classes and the held-out dates as the
    model's ``fit`` would on their concatenation, then encode every partition on its worker."""
    info = client.gather(each(client, describe_part, parts, label=label))
    names = [c for c in info[0]["columns"] if c not in (label, "as_of")]
    categories = merge_categories([i["categories"] for i in info])
    labels = set().union(*(i["labels"] for i in info))
    if classes is None:
        classes = stage_classes(np.asarray(sorted(labels, key=str), dtype=object))
        if len(classes) < 2:
            raise ValueError(f"y needs at least 2 stages; y has 1 class: {classes.tolist()}")
    elif len(labels) != 2:
        raise ValueError(f"y needs 2 classes; y has {len(labels)}: {sorted(labels)[:5]}")
    dates = pd.concat([i["dates"] for i in info]).groupby(level=0).sum().sort_index()
    held = _held_dates(dates, model) if hold else []
    model.feature_names_in_, model.n_features_in_ = np.asarray(names, dtype=object), len(names)
    model.categories_ = categories
    encoded = each(client, encode_part, parts, names=names, categories=categories, label=label,
                         classes=classes, held=held)  # fmt: skip
    sizes = client.gather(each(client, _sizes, encoded))
    parts.clear()  # the frames are encoded: the workers may free them
    counts = sum(client.gather(each(client, _class_counts, encoded, k=len(classes))))
    categorical = [i for i, c in enumerate(names) if c in categories]
    n, n_hold = sum(s[0] for s in sizes), sum(s[1] for s in sizes)
    return _Data(encoded, names, categorical, classes, counts, n, n_hold, sizes)


def _held_dates(dates: pd.Series, model) -> list:
    """The as-of dates ``holdout_mask`` holds out of rows with these date counts."""
    fraction = getattr(model, "calibration_fraction", None) or model.validation_fraction
    time = np.repeat(dates.index.to_numpy(), dates.to_numpy())
    return sorted(set(time[holdout_mask(len(time), time, fraction)].tolist()))


def describe_part(frame: pd.DataFrame, label: str) -> dict:
    """One partition's columns, categories (a category dtype's, else distinct values), label
    values and rows per as-of date."""
    cats = {}
    for name in frame.columns.drop([label, "as_of"]):
        column = frame[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            cats[name] = ("dtype", list(column.cat.categories), set(column.dropna().unique()))
        elif is_categorical(column):
            cats[name] = ("values", None, set(column.dropna().unique().tolist()))
    labels = set(frame[label].dropna().astype(object).unique().tolist())
    return {"columns": list(frame.columns), "categories": cats, "labels": labels,
            "dates": frame["as_of"].value_counts()}  # fmt: skip


def merge_categories(parts: list[dict]) -> dict[str, list]:
    """``learn_categories`` of the concatenated partitions: a category dtype shared by every
    partition keeps its categories; otherwise (pandas' concat gives plain values) the sorted
    distinct values."""
    out = {}
    for name in parts[0]:
        found = [p[name] for p in parts]
        lists = [f[1] for f in found]
        if all(f[0] == "dtype" for f in found) and all(c == lists[0] for c in lists):
            out[name] = lists[0]
        else:
            out[name] = sorted(set().union(*(f[2] for f in found)), key=str)
    return out


def encode_part(frame, names, categories, label, classes, held) -> dict[str, np.ndarray]:
    """The float array the booster sees, the label as class positions and the held-out
    mask of one partition, the fitting rows first (so they and the held-out ones are
    slices, not copies). The array is float32 when that holds every value exactly (the
    features are float32, the category codes small integers): the booster then sees the
    same values in half the memory."""
    y = pd.Index(classes).get_indexer(frame[label].astype(object).to_numpy())
    hold = frame["as_of"].isin(held).to_numpy()
    x = encode(frame, names, categories)
    narrow = x.astype(np.float32)
    if np.array_equal(narrow, x, equal_nan=True):
        x = narrow
    del narrow
    order = np.argsort(hold, kind="stable")
    return {"X": x[order], "y": y[order].astype(np.float64), "hold": hold[order],
            "n_fit": int((~hold).sum())}  # fmt: skip


def _sizes(part: dict) -> tuple[int, int, str]:
    return len(part["y"]), int(part["hold"].sum()), part["X"].dtype.name


def _class_counts(part: dict, k: int) -> np.ndarray:
    return np.bincount(part["y"].astype(np.intp), minlength=k)


def _rows(part: dict, rows: str, key: str) -> np.ndarray:
    fit = part["n_fit"]
    keep = {"all": slice(None), "fit": slice(0, fit), "hold": slice(fit, None)}[rows]
    return part[key][keep]


def _arrays(client, data: _Data, rows: str):
    """Dask arrays ``(X, y)`` of the ``rows`` (all, fit, hold) of every partition."""
    import dask
    import dask.array as da

    width, xs, ys = len(data.names), [], []
    dtype = np.float64 if any(s[2] == "float64" for s in data.sizes) else np.float32
    for part, (n, n_hold, _) in zip(data.encoded, data.sizes, strict=True):
        size = {"all": n, "fit": n - n_hold, "hold": n_hold}[rows]
        if size == 0:
            continue
        x = dask.delayed(_rows)(part, rows, "X")
        y = dask.delayed(_rows)(part, rows, "y")
        xs.append(da.from_delayed(x, shape=(size, width), dtype=dtype))
        ys.append(da.from_delayed(y, shape=(size,), dtype=np.float64))
    return da.concatenate(xs), da.concatenate(ys)


def sklearn_params(params: dict) -> dict:
    """``booster_params`` as ``DaskLGBMClassifier`` keywords (threads: the workers')."""
    rename = {"min_data_in_leaf": "min_child_samples", "bagging_fraction": "subsample",
              "bagging_freq": "subsample_freq", "feature_fraction": "colsample_bytree",
              "lambda_l2": "reg_lambda", "seed": "random_state"}  # fmt: skip
    drop = ("num_threads", "num_class")
    return {rename.get(k, k): v for k, v in params.items() if k not in drop}


def _boost(client, data: _Data, params: dict, rounds: int, rows: str, init=None) -> lgb.Booster:
    """A booster of ``rounds`` more rounds on the ``rows`` of every partition (continued
    from ``init``), as a standalone ``lightgbm.Booster``."""
    from lightgbm.dask import DaskLGBMClassifier

    X, y = _arrays(client, data, rows)
    estimator = DaskLGBMClassifier(client=client, n_estimators=rounds, **sklearn_params(params))
    extra = {"init_model": init} if init is not None else {}
    with warnings.catch_warnings():  # "n_jobs will be ignored": the workers' threads count
        warnings.filterwarnings("ignore", "Parameter n_jobs will be ignored", UserWarning)
        estimator.fit(X, y, feature_name=data.names, categorical_feature=data.categorical,
                      **extra)  # fmt: skip
    return lgb.Booster(model_str=estimator.booster_.model_to_string())


def _fold_booster(client, data: _Data, params: dict, model, hold: bool) -> lgb.Booster:
    """The booster on the earlier rows, early-stopped on the held-out ones when asked."""
    patience = model.early_stopping_rounds
    if not hold or not data.n_hold:
        return _boost(client, data, params, model.n_estimators, rows="all" if not hold else "fit")
    if not patience:
        return _boost(client, data, params, model.n_estimators, rows="fit")
    chunk, losses, booster = max(2 * patience, 40), [], None
    while True:
        grow = min(chunk, model.n_estimators - len(losses))
        booster = _boost(client, data, params, grow, rows="fit", init=booster)
        losses += _held_losses(client, data, booster, start=len(losses), count=grow)
        best, stopped = early_stop(losses, patience)
        if stopped or len(losses) >= model.n_estimators:
            return lgb.Booster(model_str=booster.model_to_string(num_iteration=best))


def early_stop(losses: list[float], patience: int) -> tuple[int, bool]:
    """LightGBM's early-stopping rule on a loss per round: (rounds kept, whether it stopped)."""
    best, best_loss = 0, np.inf
    for i, loss in enumerate(losses):
        if loss < best_loss:
            best, best_loss = i, loss
        elif i - best >= patience:
            return best + 1, True
    return best + 1, False


def _held_losses(client, data: _Data, booster, start: int, count: int) -> list[float]:
    model = booster.model_to_string()
    sums = client.gather(each(client, round_losses, data.encoded, model=model, start=start,
                                    count=count))  # fmt: skip
    return (np.sum(sums, axis=0) / data.n_hold).tolist()


def round_losses(part: dict, model: str, start: int, count: int) -> np.ndarray:
    """Summed held-out log loss (LightGBM's binary/multi logloss) after each of rounds
    ``start+1 .. start+count`` of one partition."""
    X, y = _rows(part, "hold", "X"), _rows(part, "hold", "y").astype(np.intp)
    if not len(y):
        return np.zeros(count)
    booster = lgb.Booster(model_str=model)
    raw = booster.predict(X, raw_score=True, num_iteration=start, num_threads=1) if start else 0
    out = np.empty(count)
    for i in range(count):
        step = booster.predict(X, raw_score=True, start_iteration=start + i, num_iteration=1,
                               num_threads=1)  # fmt: skip
        raw = raw + step
        out[i] = _logloss_sum(raw, y)
    return out


def _logloss_sum(raw: np.ndarray, y: np.ndarray) -> float:
    if raw.ndim == 1:
        p = np.clip(1.0 / (1.0 + np.exp(-raw)), EPS, 1 - EPS)
        return float(-np.sum(np.where(y == 1, np.log(p), np.log(1 - p))))
    z = raw - raw.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return float(-np.sum(np.log(np.maximum(p[np.arange(len(y)), y], EPS))))


def _held_scores(client, data: _Data, booster, raw: bool) -> tuple[np.ndarray, np.ndarray]:
    """The booster's predictions on the held-out rows and their labels, in this process."""
    model = booster.model_to_string()
    found = client.gather(each(client, held_predictions, data.encoded, model=model, raw=raw))
    return (np.concatenate([f[0] for f in found]),
            np.concatenate([f[1] for f in found]))  # fmt: skip


def held_predictions(part: dict, model: str, raw: bool) -> tuple[np.ndarray, np.ndarray]:
    X, y = _rows(part, "hold", "X"), _rows(part, "hold", "y")
    booster = lgb.Booster(model_str=model)
    if not len(y):
        width = booster.num_model_per_iteration()
        return np.zeros((0,) if width == 1 else (0, width)), y
    return booster.predict(X, raw_score=raw, num_threads=1), y
