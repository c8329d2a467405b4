"""``mlflow run . -e train --env-manager local`` works offline with the project's venv."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from features.simulator import SimConfig, simulate, write_simulation

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_mlflow_run_train_entry_point(tmp_path):
    cfg = SimConfig(customers=1200, days=300, seed=3)
    write_simulation(simulate(cfg), tmp_path / "data", cfg)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    inherited = {
        k: v for k, v in os.environ.items() if k not in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID")
    }  # other tests' runs
    env = {**inherited, "MLFLOW_TRACKING_URI": uri,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "mlflow", "run", str(ROOT), "-e", "train", "--env-manager",
         "local", "-P", f"data={tmp_path / 'data'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "lifecycle-churn v1 @challenger" in result.stdout
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert {r.info.run_name for r in runs} >= {"churn", "stage", "offers"}
    assert client.get_model_version_by_alias("lifecycle-stage", "challenger")
