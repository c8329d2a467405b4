"""The champion models the service decides with, from the MLflow registry or from a folder
exported for deployment without it (``lifecycle export``).

Churn and stage are required; the offers model is optional (a business without campaign logs
has none yet: the service then decides offers with the cold-start policy, or not at all
without a catalog, ``serving/policies.py``), and the bundle says why it is absent.

An export folder holds ``churn.joblib``, ``stage.joblib``, ``offers.joblib`` (when there is an
offers model), the offer catalog ``offers.json`` (when one was given) and ``manifest.json``
(versions, run ids, training dates, metrics; ``absent``: the models left out and why;
``catalog``: the catalog's file name or null).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import joblib
import pandas as pd

from features.loaders import load_offers
from training.names import REGISTERED_NAMES as REGISTERED

NAMES = ("churn", "stage", "offers", "clv")
REQUIRED = ("churn", "stage")  # without them the service is not ready
HEADLINE = {
    "churn": ("roc_auc", "pr_auc", "brier", "ece", "lift_top_decile"),
    "stage": ("macro_f1", "accuracy", "log_loss"),
    "offers": ("policy_value_dr", "auuc_mean"),
    "clv": ("normalized_gini", "top_decile_capture", "spearman", "mae"),
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
    """The loaded models (``offers`` None when there is none), where they came from and, in
    ``absent``, why a model is missing (model name -> reason)."""

    churn: object
    stage: object
    offers: object | None
    info: dict[str, ModelInfo]
    source: str
    absent: dict[str, str] = field(default_factory=dict)
    clv: object | None = None

    @property
    def versions(self) -> dict[str, str]:
        return {name: info.version for name, info in self.info.items()}


def registry_versions(alias: str, tracking_uri: str | None = None) -> dict[str, str] | None:
    """The registry's version behind ``alias`` for each model it has (None if churn or stage
    is missing; no ``offers`` key without an offers model)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    out = {}
    for name in NAMES:
        try:
            out[name] = str(client.get_model_version_by_alias(REGISTERED[name], alias).version)
        except mlflow.exceptions.MlflowException:
            if name in REQUIRED:
                return None
    return out


def missing_in_registry(name: str, alias: str) -> str:
    """Why model ``name`` cannot be loaded from the registry, and what makes one."""
    if name == "offers":
        return (f"no offers model: {REGISTERED[name]!r} has no {alias!r} version in the "
                "registry (`lifecycle train` fits one when the data holds campaign logs, "
                "i.e. exposures, and an offer catalog; then `lifecycle promote`)")  # fmt: skip
    if name == "clv":
        return (f"no CLV model: {REGISTERED[name]!r} has no {alias!r} version in the registry "
                "(`lifecycle train` fits one when the history is longer than the CLV horizon; "
                "then `lifecycle promote`)")  # fmt: skip
    return (f"model {REGISTERED[name]!r} has no {alias!r} version in the registry; run "
            "`lifecycle train` then `lifecycle promote` (or serve an export folder)")  # fmt: skip


def from_registry(alias: str = "champion") -> ModelBundle:
    """Load ``models:/lifecycle-<name>@alias`` for each model (tracking URI already set);
    churn and stage are required, the offers model is loaded when there is one."""
    from mlflow.tracking import MlflowClient

    from training.registry import load_alias

    client, estimators, info, absent = MlflowClient(), {}, {}, {}
    for name in NAMES:
        estimator, version = load_alias(REGISTERED[name], alias)
        estimators[name] = estimator
        if estimator is None:
            if name in REQUIRED:
                raise ModelsUnavailable(missing_in_registry(name, alias))
            absent[name] = missing_in_registry(name, alias)
            continue
        run = client.get_run(version.run_id) if version.run_id else None
        info[name] = ModelInfo(
            name, REGISTERED[name], str(version.version), version.run_id,
            _iso(run.info.start_time) if run else None,
            _headline(name, run.data.metrics if run else {}),
        )  # fmt: skip
    return ModelBundle(**estimators, info=info, source=f"registry@{alias}", absent=absent)


def from_folder(folder: str | Path) -> ModelBundle:
    """Load an export written by :func:`export` (the models its manifest lists)."""
    folder = Path(folder)
    manifest = folder / "manifest.json"
    if not manifest.exists():
        raise ModelsUnavailable(f"{folder} has no manifest.json; write one with `lifecycle export`")
    meta = json.loads(manifest.read_text())
    listed = [name for name in NAMES if name in meta["models"]]
    for name in REQUIRED:
        if name not in listed:
            raise ModelsUnavailable(f"{manifest} lists no {name} model; export one with "
                                    "`lifecycle export`")  # fmt: skip
    estimators = {name: joblib.load(folder / f"{name}.joblib") for name in listed}
    info = {name: ModelInfo(**meta["models"][name]) for name in listed}
    absent = {name: meta.get("absent", {}).get(name) or f"the export {folder} has no {name} model"
              for name in NAMES if name not in listed}  # fmt: skip
    return ModelBundle(**{"offers": None, "clv": None, **estimators}, info=info,
                       source=str(folder), absent=absent)  # fmt: skip


def export(bundle: ModelBundle, catalog: pd.DataFrame | None, folder: str | Path) -> Path:
    """Write ``bundle`` and the offer ``catalog`` (when given) to ``folder`` (see module
    docstring); files of a model or catalog left out are removed from an earlier export."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in NAMES:
        path = folder / f"{name}.joblib"
        if name in bundle.info:
            joblib.dump(getattr(bundle, name), path)
        else:
            path.unlink(missing_ok=True)
    shipped = folder / "offers.json"
    if catalog is not None:
        shipped.write_text(json.dumps(json.loads(catalog.to_json(orient="records")), indent=1))
    else:
        shipped.unlink(missing_ok=True)
    meta = {
        "source": bundle.source, "models": {n: asdict(i) for n, i in bundle.info.items()},
        "absent": {n: why for n, why in bundle.absent.items() if n not in bundle.info},
        "catalog": None if catalog is None else shipped.name,
    }  # fmt: skip
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
