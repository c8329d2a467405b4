"""Promotion: evaluate challenger and champion on the same later holdout, keep the better."""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import pandas as pd
from pandas.api.types import is_numeric_dtype

from training.datasets import Tables, build_training_set, resolve, time_split
from training.metrics import churn_metrics, stage_metrics
from training.models._lgbm import feature_columns
from training.pipeline import PRIMARY, SNAPSHOT_MODELS, TrainConfig, churn_population
from training.registry import Compare, Promotion, has_alias, promote, promote_by
from training.tracking import REGISTERED_NAMES

OFFERS_METRIC = "policy_value_dr (paired, latest sends)"


def latest_holdout(
    tables: Tables, config: TrainConfig, training_set: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The latest labelled snapshot(s) of the training set, built from ``tables`` unless
    ``training_set`` (``TrainResult.dataset``) is a frame built with this very dataset config
    (the resolved config it records in ``attrs["dataset"]``): then it is split, not rebuilt."""
    dataset = resolve(tables, config.dataset)
    if not _built_with(training_set, dataset):
        training_set = build_training_set(tables, dataset)
    parts = time_split(training_set, dataset)
    return parts["test"] if len(parts["test"]) else parts["validation"]


def _built_with(training_set: object, dataset) -> bool:
    """Whether ``training_set`` is a :func:`build_training_set` frame of ``dataset``."""
    recorded = getattr(training_set, "attrs", {}).get("dataset")
    return isinstance(training_set, pd.DataFrame) and recorded == dataset.model_dump_json()


def churn_score(holdout: pd.DataFrame):
    test = churn_population(holdout)
    cols = feature_columns(test)

    def evaluate(estimator) -> float:
        p = estimator.predict_proba(test[cols])[:, 1]
        return churn_metrics(test["churned"].to_numpy(), p)[PRIMARY["churn"]]

    return evaluate


def stage_score(holdout: pd.DataFrame):
    cols = feature_columns(holdout)

    def evaluate(estimator) -> float:
        proba = pd.DataFrame(estimator.predict_proba(holdout[cols]),
                             columns=list(estimator.classes_))  # fmt: skip
        y = holdout["stage_next"].astype("str").to_numpy()
        return stage_metrics(y, proba, estimator.predict(holdout[cols]))[PRIMARY["stage"]]

    return evaluate


def offers_gate(tables: Tables, config: TrainConfig, n_bootstrap: int = 1000,
                alpha: float = 0.05) -> Compare:  # fmt: skip
    """Challenger against champion on the most recent logged sends (the later share of send
    days: campaign logs and, with ``--ledger``, the service's own decisions): each one's
    learned policy valued by the doubly robust incremental value per send, on the SAME rows;
    the challenger wins only when the lower bound of the paired bootstrap interval of the
    difference is above 0 (a challenger no better than noise keeps the champion). Each side
    is valued by its ``gate_model_`` (``offers_pipeline.gate_model``): the served model is
    refitted on every send, these rows too; its evaluated twin saw only the earlier ones.

    Both policies are valued with the SAME outcome model: one conversion model cross-fitted
    on these sends (:func:`shared_outcome_model`), not each model's own predictions. With
    each its own, the difference carried the two models' disagreement on every send, also
    where both choose the same offer, and each model judged by itself (the 8-week drift loop:
    intervals +-0.9 to 1.3 wide on 3,100-6,700 sends, BENCHMARKS)."""
    from training import offers_pipeline as op
    from training.ope import incremental_dr_terms, paired_difference

    earlier, recent = op.split_by_send_day(op.offer_data(tables, config.dataset.feature_set))
    catalog = tables.offers.set_index(tables.offers["offer_id"].astype("str"))
    arms = ["control", *catalog.index]
    logged = pd.Index(arms).get_indexer(recent.arm.astype("str"))
    values, costs = np.r_[0.0, catalog["value"]], np.r_[0.0, catalog["cost"]]
    propensity = recent.exposures["propensity"].to_numpy(dtype=float)
    past = pd.Index(arms).get_indexer(earlier.arm.astype("str"))
    known = past >= 0  # an offer since taken out of the catalog teaches nothing here
    older = (earlier.X[known], past[known], earlier.y[known])
    outcome = shared_outcome_model(recent.X, logged, recent.y, len(arms), config.seed, older)

    def terms(served) -> np.ndarray:
        model = op.gate_model(served)  # fitted before the recent sends: out of sample
        policies, _ = op.evaluated_policies(model, recent, tables.offers,
                                            model.predict_uplift(recent.X))  # fmt: skip
        own = ["control", *model.offers_]
        pi = pd.DataFrame(policies["learned"], columns=own).reindex(columns=arms, fill_value=0)
        return incremental_dr_terms(recent.y, logged, propensity, pi.to_numpy(), values, costs,
                                    outcome)  # fmt: skip

    def compare(challenger, champion) -> tuple[float, float | None, bool, dict]:
        new = terms(challenger)
        if champion is None:
            return float(new.mean()), None, True, {"rows": len(new)}
        table = paired_difference(new, terms(champion), n_bootstrap, alpha, config.seed)
        diff = table.loc["a - b"]
        detail = {"difference": float(diff["estimate"]), "lo": float(diff["lo"]),
                  "hi": float(diff["hi"]), "rows": len(new), "alpha": alpha}  # fmt: skip
        return (float(table.loc["a", "estimate"]), float(table.loc["b", "estimate"]),
                bool(diff["lo"] > 0), detail)  # fmt: skip

    return compare


def shared_outcome_model(X: pd.DataFrame, logged: np.ndarray, converted: np.ndarray,
                         n_arms: int, seed: int = 0,
                         older: tuple[pd.DataFrame, np.ndarray, np.ndarray] | None = None,
                         ) -> np.ndarray:  # fmt: skip
    """Out-of-fold conversion probability ``(n, n_arms)`` of each send under every arm, from
    one model cross-fitted on the sends (``training.ope_reward_model``, 2 folds): the outcome
    model of both sides of a paired off-policy comparison. ``older``: the earlier sends
    ``(X, logged arm, converted)``, which every fold learns from too. The recent sends are
    mostly the champion's own choices, so alone they teach the model little of the arms a
    challenger prefers, and its direct-method part then sides with the champion (the drift
    loop, BENCHMARKS); the older sends include the randomised campaign logs. Categorical
    features enter as their codes (missing: NaN), coded alike in both."""
    from training.ope_reward_model import cross_fitted_rewards

    frames = [X] if older is None else [X, older[0]]
    numeric = _numeric(pd.concat(frames, ignore_index=True))
    extra = None if older is None else (numeric[len(X) :], older[1], older[2].astype(float))
    return cross_fitted_rewards(numeric[: len(X)], logged, converted.astype(float), n_arms,
                                folds=2, random_state=seed, extra=extra)  # fmt: skip


def _numeric(X: pd.DataFrame) -> np.ndarray:
    """``X`` as floats: numeric columns as they are, others as category codes (NaN missing)."""
    numeric = pd.DataFrame(index=X.index)
    for name, column in X.items():
        if is_numeric_dtype(column) and not isinstance(column.dtype, pd.CategoricalDtype):
            numeric[name] = column.astype("float64")
        else:
            codes = pd.Categorical(column.astype("object")).codes.astype("float64")
            numeric[name] = np.where(codes < 0, np.nan, codes)
    return numeric.to_numpy()


def clv_score(tables: Tables, config: TrainConfig):
    """Normalised Gini of the realised CLV at the latest labelled as-of date (None when the
    CLV horizon leaves no such date)."""
    from training import clv_pipeline as cp
    from training.metrics import value_metrics

    dates = cp.clv_dates(tables, config.dataset)
    if not dates:
        return None
    holdout = cp.clv_frame(tables, config.dataset, dates[-1:])

    def evaluate(estimator) -> float:
        y = holdout[cp.LABEL].to_numpy()
        return value_metrics(y, estimator.predict(holdout))[PRIMARY["clv"]]

    return evaluate


def promote_all(
    tables: Tables, config: TrainConfig, names: Collection[str] | None = None,
    training_set: pd.DataFrame | None = None,
) -> list[Promotion]:  # fmt: skip
    """Promote each model's challenger that wins on the same later holdout; ``names``: only
    these models (default: every model the data has the tables for). A model with no
    challenger at all (training skipped it, e.g. too few campaign sends for the offers model)
    is left out of the outcomes, not an error: :func:`without_challenger` names them.
    ``training_set``: the training run's (``TrainResult.dataset``), split for the churn and
    stage holdout instead of building it again (:func:`latest_holdout`); the holdout is
    built only when churn or stage is compared."""
    wanted = [name for name in ("churn", "stage", "clv", "offers")
              if (names is None or name in names)
              and has_alias(REGISTERED_NAMES[name], "challenger")]  # fmt: skip
    scores = _scores(tables, config, wanted, training_set)
    outcomes = [promote(REGISTERED_NAMES[name], PRIMARY[name], scores[name])
                for name in wanted if name in scores]  # fmt: skip
    if "offers" in wanted and tables.exposures is not None and tables.offers is not None \
            and len(tables.exposures):  # fmt: skip
        outcomes.append(promote_by(REGISTERED_NAMES["offers"], OFFERS_METRIC,
                                   offers_gate(tables, config)))  # fmt: skip
    if outcomes:
        log_promotions(outcomes)
    return outcomes


def _scores(tables: Tables, config: TrainConfig, wanted: list[str],
            training_set: pd.DataFrame | None) -> dict:  # fmt: skip
    """The scoring function of each wanted holdout-scored model (churn, stage, CLV when its
    horizon leaves a labelled date), built only for those."""
    scores = {}
    if SNAPSHOT_MODELS & set(wanted):
        holdout = latest_holdout(tables, config, training_set)
        scores |= {"churn": churn_score(holdout), "stage": stage_score(holdout)}
    if "clv" in wanted and (found := clv_score(tables, config)) is not None:
        scores["clv"] = found
    return scores


def without_challenger(names: Collection[str] | None = None) -> list[str]:
    """The registered models (of ``names``; default every one) that have no challenger."""
    return [registered for name, registered in REGISTERED_NAMES.items()
            if (names is None or name in names)
            and not has_alias(registered, "challenger")]  # fmt: skip


def log_promotions(outcomes: list[Promotion]) -> None:
    """The comparisons as one MLflow run (``promotion``) of the current experiment: each
    model's challenger and champion scores, whether it was promoted, and a paired
    comparison's difference and interval."""
    import mlflow

    metrics = {}
    for o in outcomes:
        short = o.name.removeprefix("lifecycle-")
        metrics |= {f"{short}.challenger": o.challenger, f"{short}.promoted": float(o.promoted)}
        if o.champion is not None:
            metrics[f"{short}.champion"] = o.champion
        metrics |= {f"{short}.{k}": float(v) for k, v in o.detail.items()}
    with mlflow.start_run(run_name="promotion"):
        mlflow.log_metrics(metrics)
        mlflow.set_tags({f"{o.name.removeprefix('lifecycle-')}.verdict": o.summary()
                         for o in outcomes})  # fmt: skip
