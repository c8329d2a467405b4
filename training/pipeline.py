"""Train and evaluate the churn and stage models beside their baselines — pure, no MLflow.

``fit_and_evaluate`` builds the snapshot training set, splits it in time, fits every model on
the earlier snapshots and scores it on the latest one; ``training.tracking.log_run`` puts the
result in MLflow. Primary metrics (what ``lifecycle promote`` compares): churn ROC-AUC, stage
macro-F1.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from pydantic import BaseModel, ConfigDict, Field

from features.yaml_config import load_yaml_model
from training import plots
from training.datasets import DatasetConfig, Tables, build_training_set, time_split
from training.metrics import churn_metrics, confusion, stage_metrics
from training.models._lgbm import feature_columns
from training.models.baselines import LogisticChurn, RFMChurnHeuristic, StayInStage
from training.models.churn import ChurnModel
from training.models.stage import StageModel

PRIMARY = {"churn": "roc_auc", "stage": "macro_f1", "offers": "policy_value_dr"}


class TrainConfig(BaseModel):
    """The training pipeline's one config (YAML via :meth:`from_yaml`, unknown keys rejected)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    churn: dict = Field(default_factory=dict, description="ChurnModel parameters")
    stage: dict = Field(default_factory=dict, description="StageModel parameters")
    offers: dict = Field(default_factory=dict, description="UpliftModel parameters")
    seed: int = 0

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        return load_yaml_model(cls, path)


@dataclass
class ModelReport:
    """One model's fit: the estimator, its metrics on the holdout beside the baselines'."""

    name: str
    estimator: object
    params: dict
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    figures: dict[str, Figure] = field(default_factory=dict)
    X_example: pd.DataFrame | None = None

    @property
    def primary(self) -> float:
        return self.metrics[PRIMARY[self.name]]


@dataclass
class TrainResult:
    config: TrainConfig
    dataset: pd.DataFrame
    holdout_as_of: pd.Timestamp
    reports: dict[str, ModelReport]
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per step


def fit_and_evaluate(tables: Tables, config: TrainConfig | None = None) -> TrainResult:
    """Training set -> time split -> churn and stage models (+ baselines) -> holdout metrics.

    ``TrainResult.seconds`` holds the wall time of each step (``training_set``, ``churn``,
    ``stage``, ``offers``).
    """
    config = config or TrainConfig()
    seconds: dict[str, float] = {}
    with _timed(seconds, "training_set"):
        frame = build_training_set(tables, config.dataset)
        parts = time_split(frame, config.dataset)
    fit_part = pd.concat([parts["train"], parts["validation"]], ignore_index=True)
    holdout = parts["test"] if len(parts["test"]) else parts["validation"]
    reports = {}
    for name, fit in (("churn", fit_churn), ("stage", fit_stage)):
        with _timed(seconds, name):
            reports[name] = fit(fit_part, holdout, config)
    if tables.exposures is not None and tables.offers is not None and len(tables.exposures):
        with _timed(seconds, "offers"):
            reports["offers"] = fit_offers(tables, config)
    return TrainResult(config, frame, holdout["as_of"].max(), reports, seconds)


@contextmanager
def _timed(seconds: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    seconds[name] = time.perf_counter() - start


def fit_offers(tables: Tables, config: TrainConfig) -> ModelReport:
    """Uplift model on earlier sends; Qini/AUUC and off-policy values on later sends."""
    from training import offers_pipeline as op

    train, test = op.split_by_send_day(op.offer_data(tables, config.dataset.feature_set))
    params = {"random_state": config.seed, **config.offers}
    model = op.fit_uplift(train, params)
    result = op.evaluate_offers(model, test, tables.offers)
    metrics = result["metrics"]
    baselines = {p: {PRIMARY["offers"]: metrics[f"policy_value_dr.{p}"]}
                 for p in ("propensity", "random")}  # fmt: skip
    return ModelReport("offers", model, params, metrics, baselines, op.offer_figures(result),
                       test.X.head(100))  # fmt: skip


def churn_population(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["in_churn_population"].to_numpy(dtype=bool)]


def fit_churn(fit_part: pd.DataFrame, holdout: pd.DataFrame, config: TrainConfig) -> ModelReport:
    """ChurnModel (calibrated on the latest fitting snapshot) vs logistic and RFM baselines."""
    train, test = churn_population(fit_part), churn_population(holdout)
    cols = feature_columns(train)
    params = {"random_state": config.seed, **config.churn}
    model = ChurnModel(**params).fit(train[cols], train["churned"], time=train["as_of"])
    y = test["churned"].to_numpy()
    curves = {"lightgbm": (y, model.predict_proba(test[cols])[:, 1])}
    baselines = {}
    for name, base in (("logistic", LogisticChurn()), ("rfm", RFMChurnHeuristic())):
        p = base.fit(train[cols], train["churned"]).predict_proba(test[cols])[:, 1]
        curves[name], baselines[name] = (y, p), churn_metrics(y, p)
    figures = {
        "reliability.png": plots.reliability_diagrams(curves),
        "gains.png": plots.gains_chart(curves),
        "feature_importance.png": plots.feature_importance_plot(model.feature_importance()),
        "risk_histogram.png": plots.risk_histogram(curves["lightgbm"][1]),
    }
    return ModelReport("churn", model, params, churn_metrics(*curves["lightgbm"]), baselines,
                       figures, test[cols].head(100))  # fmt: skip


def fit_stage(fit_part: pd.DataFrame, holdout: pd.DataFrame, config: TrainConfig) -> ModelReport:
    """StageModel (current stage as an input) vs "stays in its current stage"."""
    cols = feature_columns(fit_part)  # the current stage is one of them
    train = fit_part.assign(stage=fit_part["stage"].astype("category"))
    test = holdout.assign(stage=pd.Categorical(holdout["stage"], train["stage"].cat.categories))
    params = {"random_state": config.seed, **config.stage}
    model = StageModel(**params).fit(train[cols], train["stage_next"], time=train["as_of"])
    y = test["stage_next"].astype("str").to_numpy()
    proba = pd.DataFrame(model.predict_proba(test[cols]), columns=list(model.classes_))
    stay = StayInStage().fit(train[cols], train["stage_next"])
    stay_proba = pd.DataFrame(stay.predict_proba(test[cols]), columns=list(stay.classes_))
    predicted = model.predict(test[cols])
    matrix = confusion(y, predicted, list(proba.columns))
    figures = {"confusion.png": plots.confusion_heatmap(matrix)}
    metrics = stage_metrics(y, proba, predicted) | {"prior_power": model.prior_power_}
    return ModelReport("stage", model, params, metrics,
                       {"stay_in_stage": stage_metrics(y, stay_proba)}, figures,
                       test[cols].head(100))  # fmt: skip
