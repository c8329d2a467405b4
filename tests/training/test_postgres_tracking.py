"""MLflow tracking and registry, and Optuna storage, on PostgreSQL (DESIGN section 9): plain
``postgresql://`` URLs (SQLAlchemy's default driver, psycopg2), each against a fresh database
of the project's own server (``tests/services.py``), with MLflow's and Optuna's migrations."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import psycopg
from mlflow.tracking import MlflowClient
from sklearn.linear_model import LogisticRegression

from features.simulator import SimConfig, simulate, write_simulation
from training import registry, tune
from training.data import load_tables
from training.pipeline import TrainConfig


def tables_in(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        found = conn.execute("SELECT table_name FROM information_schema.tables "
                             "WHERE table_schema = 'public'")  # fmt: skip
        return {row[0] for row in found}


def test_mlflow_registers_and_promotes_on_postgresql(postgres_db_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # artifacts: ./mlartifacts, as with the SQLite default
    monkeypatch.setenv("MLFLOW_TRACKING_URI", postgres_db_url)
    try:
        registry.setup("pg-experiment")
        rng = np.random.default_rng(0)
        X = pd.DataFrame({"recency_days": rng.exponential(30, 300),
                          "purchases_90d": rng.poisson(2, 300).astype(float)})  # fmt: skip
        y = (X["recency_days"] > 30).astype(int)
        model = LogisticRegression().fit(X, y)
        model.features_ = list(X.columns)
        with mlflow.start_run():
            version = registry.log_estimator(model, "churn", "churn", X, "churn_pg")
        promoted = registry.promote("churn_pg", "roc_auc", lambda e: 0.9)
        champion, found = registry.load_alias("churn_pg", "champion")
        assert promoted.promoted and str(found.version) == str(version.version) == "1"
        assert np.allclose(champion.predict_proba(X)[:, 1], model.predict_proba(X)[:, 1])
        stored = MlflowClient().get_model_version_by_alias("churn_pg", "champion")
        assert str(stored.version) == "1"
    finally:
        mlflow.set_tracking_uri(None)
    assert {"experiments", "runs", "registered_models", "model_versions",
            "alembic_version"} <= tables_in(postgres_db_url)  # fmt: skip


def test_an_optuna_study_runs_and_resumes_on_postgresql(postgres_db_url, tmp_path, monkeypatch):
    folder = tmp_path / "data"
    cfg = SimConfig(customers=400, days=300, seed=4)
    write_simulation(simulate(cfg), folder, cfg)
    monkeypatch.setitem(tune.SEARCH_SPACE, "n_estimators", tune.Dim(int, 10, 20, log=True))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    config = TrainConfig(dataset={"snapshots": 6, "snapshot_every_days": 30})
    try:
        registry.setup("pg-tune")
        study = tune.tune(load_tables(folder), "churn", 2, config, storage=postgres_db_url,
                          seed=7)  # fmt: skip
    finally:
        mlflow.set_tracking_uri(None)
    assert len(study.trials) == 2 and np.isfinite(study.best_value)
    again = tune.open_study("churn", postgres_db_url, None, 7, None)  # another worker's view
    assert [t.params for t in again.trials] == [t.params for t in study.trials]
    assert {"studies", "trials", "trial_params"} <= tables_in(postgres_db_url)
