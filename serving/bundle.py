"""The three champion models the service decides with, from the MLflow registry or from a
folder exported for deployment without it (``lifecycle export``).

An export folder holds ``churn.joblib``, ``stage.joblib``, ``offers.joblib``, the offer
catalog ``offers.json`` and ``manifest.json`` (versions, run ids, training dates, metrics).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import joblib
import pandas as pd

from features.loaders import load_offers
from training.names import REGISTERED_NAMES as REGISTERED

NAMES = ("churn", "stage", "offers")
HEADLINE = {
    "churn": ("roc_auc", "pr_auc", "brier", "ece", "lift_top_decile"),
    "stage": ("macro_f1", "accuracy", "log_loss"),
    "offers": ("policy_value_dr", "auuc_mean"),
}


class ModelsUnavailable(RuntimeError):
    """The models cannot be loaded (no champion yet, missing export files...)."""


@dataclass(frozen=True)
class ModelInfo:
    """Where one loaded model came from and how it scored on its holdout."""

    name: str
    registered_name: str
    version: str
    run_id: str | None
    trained_at: str | None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelBundle:
    churn: object
    stage: object
    offers: object
    info: dict[str, ModelInfo]
    source: str

    @property
    def versions(self) -> dict[str, str]:
        return {name: info.version for name, info in self.info.items()}


def registry_versions(alias: str, tracking_uri: str | None = None) -> dict[str, str] | None:
    """The registry's version behind ``alias`` for each model (None if one is missing)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    out = {}
    for name in NAMES:
        try:
            out[name] = str(client.get_model_version_by_alias(REGISTERED[name], alias).version)
        except mlflow.exceptions.MlflowException:
            return None
    return out


def from_registry(alias: str = "champion") -> ModelBundle:
    """Load ``models:/lifecycle-<name>@alias`` for the three models (tracking URI already set)."""
    from mlflow.tracking import MlflowClient

    from training.registry import load_alias

    client, estimators, info = MlflowClient(), {}, {}
    for name in NAMES:
        estimator, version = load_alias(REGISTERED[name], alias)
        if estimator is None:
            raise ModelsUnavailable(
                f"model {REGISTERED[name]!r} has no {alias!r} version in the registry; "
                "run `lifecycle train` then `lifecycle promote` (or serve an export folder)"
            )
        run = client.get_run(version.run_id) if version.run_id else None
        estimators[name] = estimator
        info[name] = ModelInfo(
            name, REGISTERED[name], str(version.version), version.run_id,
            _iso(run.info.start_time) if run else None,
            _headline(name, run.data.metrics if run else {}),
        )  # fmt: skip
    return ModelBundle(**estimators, info=info, source=f"registry@{alias}")


def from_folder(folder: str | Path) -> ModelBundle:
    """Load an export written by :func:`export`."""
    folder = Path(folder)
    manifest = folder / "manifest.json"
    if not manifest.exists():
        raise ModelsUnavailable(f"{folder} has no manifest.json; write one with `lifecycle export`")
    meta = json.loads(manifest.read_text())
    estimators = {name: joblib.load(folder / f"{name}.joblib") for name in NAMES}
    info = {name: ModelInfo(**meta["models"][name]) for name in NAMES}
    return ModelBundle(**estimators, info=info, source=str(folder))


def export(bundle: ModelBundle, catalog: pd.DataFrame, folder: str | Path) -> Path:
    """Write ``bundle`` and the offer ``catalog`` to ``folder`` (see module docstring)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in NAMES:
        joblib.dump(getattr(bundle, name), folder / f"{name}.joblib")
    catalog_records = json.loads(catalog.to_json(orient="records"))
    (folder / "offers.json").write_text(json.dumps(catalog_records, indent=1))
    meta = {"source": bundle.source, "models": {n: asdict(i) for n, i in bundle.info.items()}}
    (folder / "manifest.json").write_text(json.dumps(meta, indent=1))
    return folder


def load_catalog(path: str | Path) -> pd.DataFrame:
    """The offer catalog from ``.parquet``/``.csv`` or an export's ``offers.json``,
    validated through the offers contract."""
    path = Path(path)
    if not path.exists():
        raise ModelsUnavailable(f"offer catalog {path} does not exist")
    source = pd.DataFrame(json.loads(path.read_text())) if path.suffix == ".json" else path
    return load_offers(source).data.reset_index(drop=True)


def _headline(name: str, metrics: dict[str, float]) -> dict[str, float]:
    return {
        k: float(metrics[k]) for k in HEADLINE[name] if k in metrics and metrics[k] == metrics[k]
    }


def _iso(ms: int | None) -> str | None:
    return None if ms is None else pd.Timestamp(ms, unit="ms", tz="UTC").isoformat()
