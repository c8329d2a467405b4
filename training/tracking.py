"""Log a :class:`training.pipeline.TrainResult` to MLflow: one parent run per training job,
one child run per model with params, metrics (model and baselines), figures, data lineage and
the registered model (alias ``challenger``)."""

from __future__ import annotations

from dataclasses import dataclass

import mlflow
import pandas as pd

from training.names import REGISTERED_NAMES
from training.pipeline import ModelReport, TrainResult
from training.registry import Kind, Registered, log_estimator

KINDS: dict[str, Kind] = {"churn": "churn", "stage": "stage", "offers": "uplift"}


@dataclass(frozen=True)
class LoggedRun:
    run_id: str
    children: dict[str, str]
    registered: dict[str, Registered]


def _flat(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}{k}": float(v) for k, v in metrics.items()}


def _lineage(result: TrainResult, source: str) -> None:
    """The training set as an MLflow dataset input (schema, digest, source folder)."""
    frame = result.dataset.drop(columns=["as_of"]).head(1_000)  # schema + digest of a sample
    dataset = mlflow.data.from_pandas(frame, source=source, name="training_set",
                                      targets="churned")  # fmt: skip
    mlflow.log_input(dataset, context="training")


def _log_model(report: ModelReport, register: bool) -> Registered | None:
    mlflow.log_params({k: str(v) for k, v in report.params.items()})
    mlflow.log_metrics(_flat("", report.metrics))
    for name, metrics in report.baselines.items():
        mlflow.log_metrics(_flat(f"baseline_{name}.", metrics))
    for file, figure in report.figures.items():
        mlflow.log_figure(figure, f"plots/{file}")
    register_as = REGISTERED_NAMES[report.name] if register else None
    return log_estimator(report.estimator, KINDS[report.name], report.name, report.X_example,
                         register_as)  # fmt: skip


def log_run(result: TrainResult, source: str, register: bool = True) -> LoggedRun:
    """Parent run ``train`` with the config, a child run per model (churn, stage, offers)."""
    children, registered = {}, {}
    with mlflow.start_run(run_name="train") as parent:
        mlflow.log_params({"dataset." + k: str(v)
                           for k, v in result.config.dataset.model_dump().items()})  # fmt: skip
        mlflow.log_param("holdout_as_of", pd.Timestamp(result.holdout_as_of).isoformat())
        mlflow.log_param("training_rows", len(result.dataset))
        _lineage(result, source)
        for name, report in result.reports.items():
            with mlflow.start_run(run_name=name, nested=True) as child:
                _lineage(result, source)
                found = _log_model(report, register)
                children[name] = child.info.run_id
                if found is not None:
                    registered[name] = found
    return LoggedRun(parent.info.run_id, children, registered)
