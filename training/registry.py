"""MLflow at the edge: where runs go, how a fitted estimator becomes a registered model, and the
challenger -> champion promotion (DESIGN section 7).

Models are logged as pyfunc models wrapping the fitted estimator (joblib artifact), not with
``mlflow.sklearn`` (its default skops format rejects our LightGBM-based estimators, DESIGN 11).
Nothing here runs at import time.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import joblib
import mlflow
import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
EXPERIMENT = "customer-lifecycle"
Kind = Literal["churn", "stage", "uplift", "clv"]
PIP_REQUIREMENTS = ["lightgbm==4.7.0", "scikit-learn==1.9.1", "pandas==3.1.1", "numpy==2.4.6"]


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the embedded SQLite file in the working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def setup(experiment: str = EXPERIMENT, artifact_root: str | Path | None = None) -> str:
    """Point MLflow at :func:`tracking_uri` and make sure ``experiment`` exists.

    With the embedded SQLite default, artifacts go to ``./mlartifacts`` beside it. Under
    ``mlflow run`` (``MLFLOW_RUN_ID`` set) the launched run's experiment is used, so our runs
    land in (and nest under) the run MLflow started. Returns the experiment id.
    """
    mlflow.set_tracking_uri(tracking_uri())
    client = MlflowClient()
    launched = os.environ.get("MLFLOW_RUN_ID")  # started by `mlflow run`: use its experiment
    if launched:
        experiment_id = client.get_run(launched).info.experiment_id
        mlflow.set_experiment(experiment_id=experiment_id)
        return experiment_id
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        mlflow.set_experiment(experiment)
        return found.experiment_id
    root = Path(artifact_root or "mlartifacts").resolve()
    experiment_id = client.create_experiment(experiment, artifact_location=root.as_uri())
    mlflow.set_experiment(experiment)
    return experiment_id


class EstimatorModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper: ``churn`` -> churn probability, ``stage`` -> one column per stage,
    ``uplift`` -> one column per offer (uplift vs no offer), ``clv`` -> the customer lifetime
    value."""

    def __init__(self, kind: Kind) -> None:
        self.kind = kind

    def load_context(self, context) -> None:  # noqa: D401 - MLflow hook
        self.estimator = joblib.load(context.artifacts["estimator"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return model_output(self.estimator, self.kind, model_input)


def model_output(estimator, kind: Kind, X: pd.DataFrame) -> pd.DataFrame:
    """What a registered model of ``kind`` answers for the rows of ``X``."""
    if kind == "churn":
        return pd.DataFrame({"churn_probability": estimator.predict_proba(X)[:, 1]})
    if kind == "stage":
        return pd.DataFrame(estimator.predict_proba(X), columns=list(estimator.classes_))
    if kind == "clv":
        return pd.DataFrame({"clv": estimator.predict(X)})
    return estimator.predict_uplift(X).reset_index(drop=True)


def signature_frame(X: pd.DataFrame) -> pd.DataFrame:
    """Signature example: categorical columns as strings (what JSON callers send; the estimator
    re-applies its training categories on predict, DESIGN 11)."""
    out = X.copy()
    for col in out.columns:
        if isinstance(out[col].dtype, pd.CategoricalDtype) or out[col].dtype == "str":
            out[col] = out[col].astype("object")
        elif pd.api.types.is_integer_dtype(out[col].dtype):
            out[col] = out[col].astype("float64")  # features may be missing at serving time
    return out


@dataclass(frozen=True)
class Registered:
    name: str
    version: str
    run_id: str


def log_estimator(
    estimator, kind: Kind, name: str, X_example: pd.DataFrame, register_as: str | None = None
) -> Registered | None:
    """Log ``estimator`` as a pyfunc model in the active run; register it (alias ``challenger``)
    when ``register_as`` is given."""
    example = signature_frame(X_example.head(50))
    signature = infer_signature(example, model_output(estimator, kind, X_example.head(50)))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "estimator.joblib"
        joblib.dump(estimator, path)
        info = mlflow.pyfunc.log_model(
            name=name, python_model=EstimatorModel(kind), artifacts={"estimator": str(path)},
            signature=signature, input_example=example.head(3), pip_requirements=PIP_REQUIREMENTS,
            registered_model_name=register_as,
        )  # fmt: skip
    if register_as is None:
        return None
    version = str(info.registered_model_version)
    MlflowClient().set_registered_model_alias(register_as, "challenger", version)
    return Registered(register_as, version, info.run_id)


def has_alias(name: str, alias: str) -> bool:
    """Whether ``models:/name@alias`` exists (nothing is loaded)."""
    try:
        MlflowClient().get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException:
        return False
    return True


def load_alias(name: str, alias: str):
    """The estimator behind ``models:/name@alias`` (None when the alias does not exist)."""
    client = MlflowClient()
    try:
        version = client.get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException:
        return None, None
    model = mlflow.pyfunc.load_model(f"models:/{name}@{alias}")
    return model.unwrap_python_model().estimator, version


@dataclass(frozen=True)
class Promotion:
    name: str
    metric: str
    challenger: float
    champion: float | None
    promoted: bool
    version: str | None
    detail: dict = field(default_factory=dict)  # a paired comparison: difference, lo, hi, rows

    def summary(self) -> str:
        champ = "none" if self.champion is None else f"{self.champion:.4f}"
        verdict = "-> champion" if self.promoted else "stays challenger"
        d = self.detail
        paired = "" if "difference" not in d else (
            f" (difference {d['difference']:+.4f}, {100 * (1 - d.get('alpha', 0.05)):.0f}% "
            f"interval [{d['lo']:+.4f}, {d['hi']:+.4f}] on the same {d['rows']:,} recent "
            "sends; promoted only when the interval is above 0)")  # fmt: skip
        return (f"{self.name}: {self.metric} challenger v{self.version} {self.challenger:.4f} vs "
                f"champion {champ}: {verdict}{paired}")  # fmt: skip


Compare = Callable[[object, object | None], tuple[float, float | None, bool, dict]]


def promote(
    name: str, metric: str, evaluate: Callable[[object], float], higher_is_better: bool = True
) -> Promotion:
    """Compare ``challenger`` and ``champion`` with ``evaluate(estimator)`` (the same later
    holdout for both) and move ``champion`` to the challenger only when it wins (or when there
    is no champion yet)."""

    def compare(challenger, champion) -> tuple[float, float | None, bool, dict]:
        new = float(evaluate(challenger))
        old = None if champion is None else float(evaluate(champion))
        wins = old is None or (new > old if higher_is_better else new < old) or np.isnan(old)
        return new, old, wins, {}

    return promote_by(name, metric, compare)


def promote_by(name: str, metric: str, compare: Compare) -> Promotion:
    """Move ``champion`` to the challenger when ``compare(challenger, champion or None)``
    says it wins; ``compare`` returns (challenger's score, champion's, wins, detail)."""
    challenger, version = load_alias(name, "challenger")
    if challenger is None:
        raise LookupError(f"model {name!r} has no 'challenger' version; run `lifecycle train`")
    champion, _ = load_alias(name, "champion")
    new, old, wins, detail = compare(challenger, champion)
    if wins:
        MlflowClient().set_registered_model_alias(name, "champion", str(version.version))
    return Promotion(name, metric, new, old, wins, str(version.version), detail)
