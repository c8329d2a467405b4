"""Promotion: evaluate challenger and champion on the same later holdout, keep the better."""

from __future__ import annotations

from collections.abc import Collection

import pandas as pd

from training.datasets import Tables, build_training_set, time_split
from training.metrics import churn_metrics, stage_metrics
from training.models._lgbm import feature_columns
from training.pipeline import PRIMARY, TrainConfig, churn_population
from training.registry import Promotion, load_alias, promote
from training.tracking import REGISTERED_NAMES


def latest_holdout(tables: Tables, config: TrainConfig) -> pd.DataFrame:
    parts = time_split(build_training_set(tables, config.dataset), config.dataset)
    return parts["test"] if len(parts["test"]) else parts["validation"]


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


def offers_score(tables: Tables, config: TrainConfig):
    from training import offers_pipeline as op

    _, test = op.split_by_send_day(op.offer_data(tables, config.dataset.feature_set))

    def evaluate(estimator) -> float:
        return op.evaluate_offers(estimator, test, tables.offers)["metrics"][PRIMARY["offers"]]

    return evaluate


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


def promote_all(tables: Tables, config: TrainConfig,
                names: Collection[str] | None = None) -> list[Promotion]:  # fmt: skip
    """Promote each model's challenger that wins on the same later holdout; ``names``: only
    these models (default: every model the data has the tables for)."""
    holdout = latest_holdout(tables, config)
    scores = {"churn": churn_score(holdout), "stage": stage_score(holdout)}
    if tables.exposures is not None and tables.offers is not None and len(tables.exposures):
        scores["offers"] = offers_score(tables, config)
    if load_alias(REGISTERED_NAMES["clv"], "challenger")[0] is not None:  # CLV was trained
        found = clv_score(tables, config)
        if found is not None:
            scores["clv"] = found
    return [promote(REGISTERED_NAMES[name], PRIMARY[name], score)
            for name, score in scores.items() if names is None or name in names]  # fmt: skip
