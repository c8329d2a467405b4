"""One small trained world for the service tests: simulated data, the three models trained,
registered in a real SQLite MLflow store and promoted to champion, an export folder, and the
online store materialised (with the rule stage and owned products)."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from features.simulator import SimConfig, simulate, write_simulation
from features.store import OnlineStore
from serving import bundle as bundles
from training.data import load_tables
from training.datasets import DatasetConfig
from training.pipeline import TrainConfig, fit_and_evaluate
from training.registry import setup
from training.resolve import store_vectors
from training.tracking import REGISTERED_NAMES, log_run

TRAIN = TrainConfig(
    dataset=DatasetConfig(snapshots=4, snapshot_every_days=30, clv_horizon_days=90),
    churn={"n_estimators": 40}, stage={"n_estimators": 30},
    offers={"n_estimators": 40, "min_arm_size": 50}, clv={"n_estimators": 40},
)  # fmt: skip


def promote_latest(alias: str = "champion") -> None:
    client = MlflowClient()
    for name in REGISTERED_NAMES.values():
        version = client.get_model_version_by_alias(name, "challenger").version
        client.set_registered_model_alias(name, alias, str(version))


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """Folder with data/, mlflow.db, store/online.sqlite, export/; env for the service."""
    folder = tmp_path_factory.mktemp("serving")
    cfg = SimConfig(customers=1500, days=300, seed=11)
    write_simulation(simulate(cfg), folder / "data", cfg)
    tables = load_tables(folder / "data")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.delenv("MLFLOW_EXPERIMENT_ID", raising=False)  # set_experiment sets it: undone on exit
        setup()
        result = fit_and_evaluate(tables, TRAIN)
        log_run(result, source=str(folder / "data"))
        promote_latest()
        bundles.export(bundles.from_registry(), tables.offers, folder / "export")
    mlflow.set_tracking_uri(None)
    vectors, label = store_vectors(tables, result.config)  # as `features materialize` does
    OnlineStore(folder / "store" / "online.sqlite").materialize(vectors, tables.end, label)
    return {"folder": folder, "uri": uri, "tables": tables, "vectors": vectors,
            "config": result.config, "label": label}  # fmt: skip


@pytest.fixture
def service_env(world, tmp_path, monkeypatch):
    """Env vars for a service on the world's registry, store and a fresh ledger."""
    env = {
        "MLFLOW_TRACKING_URI": world["uri"],
        "LIFECYCLE_MODELS": "registry",
        "LIFECYCLE_STORE": str(world["folder"] / "store" / "online.sqlite"),
        "LIFECYCLE_LEDGER": str(tmp_path / "ledger.sqlite"),
        "LIFECYCLE_OFFERS": str(world["folder"] / "data" / "offers.parquet"),
        "BENTOML_HOME": str(tmp_path / "bentoml"),
        "LIFECYCLE_COMPILE_CACHE": str(world["folder"] / "trees"),  # compiled once per session
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture(scope="session")
def app():
    """The service's ASGI app, one per process (its Prometheus metrics register once); each
    ``TestClient`` context runs its lifespan, so a fresh service instance reads the env of
    its test."""
    from serving.service import LifecycleService

    return LifecycleService.to_asgi()
