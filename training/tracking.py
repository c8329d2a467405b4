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

KINDS: dict[str, Kind] = {"churn": "churn", "stage": "stage", "offers": "uplift", "clv": "clv"}


@dataclass(frozen=True)
class LoggedRun:
    run_id: str
    children: dict[str, str]
    registered: dict[str, Registered]


def _flat(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}{k}": float(v) for k, v in metrics.items()}


def _lineage(result: TrainResult, source: str) -> None:
    """The training set as an MLflow dataset input (schema, digest, source folder); nothing
    when the run built none (only CLV and offers models, which read the tables)."""
    if result.dataset is None:
        return
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


def _log_config(result: TrainResult) -> None:
    """The resolved project config (params and ``lifecycle.yaml``), the columns dropped as
    constant, and every model skipped with its reason (tags ``skipped.<model>``)."""
    import yaml

    dataset = result.config.dataset.model_dump(mode="json", exclude={"stages", "event_types"})
    mlflow.log_params({"dataset." + k: str(v)[:500] for k, v in dataset.items()})
    mlflow.log_param("config_fingerprint", result.config.fingerprint())
    mlflow.log_text(yaml.safe_dump(result.config.model_dump(mode="json"), sort_keys=False),
                    "lifecycle.yaml")  # fmt: skip
    mlflow.log_dict({"dropped_constant_columns": result.dropped,
                     "skipped_models": result.skipped}, "run_choices.json")  # fmt: skip
    for name, why in result.skipped.items():
        mlflow.set_tag(f"skipped.{name}", why[:5000])


def log_run(result: TrainResult, source: str, register: bool = True) -> LoggedRun:
    """Parent run ``train`` with the config, a child run per model (churn, stage, offers)."""
    children, registered = {}, {}
    with mlflow.start_run(run_name="train") as parent:
        _log_config(result)
        mlflow.log_param("holdout_as_of", pd.Timestamp(result.holdout_as_of).isoformat())
        if result.dataset is not None:
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
