"""``lifecycle monitor`` end to end (issue 14, point 4): a champion trained and promoted by
``lifecycle retrain`` on a real SQLite MLflow store, its training snapshot against the online
store, exit codes a scheduler can act on."""

from __future__ import annotations

import json
import shutil

import mlflow
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.simulator import SimConfig, simulate, write_simulation
from features.store import OnlineStore
from tests.shops import decisions_ledger
from training.cli import app
from training.data import load_tables

runner = CliRunner()
FAST = ("dataset:\n  snapshots: 4\n  snapshot_every_days: 30\n"
        "churn:\n  n_estimators: 30\nstage:\n  n_estimators: 20\n")  # fmt: skip


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A data folder, a ledger, champions promoted by `lifecycle retrain` (which fills
    store/online.sqlite), and store/shifted.sqlite materialised from the same data with every
    event amount tripled."""
    folder = tmp_path_factory.mktemp("monitor")
    cfg = SimConfig(customers=900, days=300, seed=8)
    write_simulation(simulate(cfg), folder / "data", cfg)
    (folder / "train.yaml").write_text(FAST)
    decisions_ledger(folder / "ledger.sqlite", load_tables(folder / "data"))
    shutil.copytree(folder / "data", folder / "shifted")
    events = pd.read_parquet(folder / "data" / "events.parquet")
    events.assign(amount=events["amount"] * 3).to_parquet(folder / "shifted" / "events.parquet")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
        trained = runner.invoke(app, ["retrain", "data", "--config", "train.yaml"])
        assert trained.exit_code == 0, trained.output
        shifted = runner.invoke(app, ["features", "materialize", "shifted", "--config",
                                      "train.yaml", "--store", "store/shifted.sqlite"])  # fmt: skip
        assert shifted.exit_code == 0, shifted.output
        yield folder
    mlflow.set_tracking_uri(None)


def monitor(*extra: str):
    return runner.invoke(app, ["monitor", "data", "--config", "train.yaml", *extra])


def end_of_data(workdir) -> str:
    return OnlineStore(workdir / "store" / "online.sqlite").current().as_of.isoformat()


def test_same_data_is_within_thresholds_and_every_output_is_written(workdir):
    end = end_of_data(workdir)
    result = monitor("--reference-as-of", end, "--ledger", "ledger.sqlite", "--now", end,
                     "--ledger-days", "90", "--out", "same")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "every check within its threshold (exit 0)" in result.output
    found = json.loads((workdir / "same" / "monitor.json").read_text())
    assert found["crossed"] == [] and found["model"] == "lifecycle-churn v1"
    assert found["current"]["source"].startswith("online store store/online.sqlite")
    assert max(f["psi"] for f in found["feature_drift"]) == 0.0  # the store holds these vectors
    assert found["score_drift"]["psi"] == 0.0
    cal = found["calibration"]
    assert cal["customers"] > 100 and 0 <= cal["ece"] < 0.1
    # equal-frequency bins; tied (isotonic-calibrated) scores stay together, merging some
    assert 2 <= len(cal["deciles"]) <= 10
    assert sum(row["count"] for row in cal["deciles"]) == cal["customers"]
    assert found["ledger"]["summary"]["decisions"] == 60  # decided 60 days before the end
    assert {row["arm"] for row in found["offers"]} >= {"control"}
    prom = (workdir / "same" / "monitor.prom").read_text()
    assert "lifecycle_churn_ece " in prom and "lifecycle_ledger_exploration_share 1.0" in prom
    assert "data:image/png;base64" in (workdir / "same" / "monitor.html").read_text()


def test_a_shifted_store_crosses_the_psi_threshold_and_exits_4(workdir):
    end = end_of_data(workdir)
    result = monitor("--reference-as-of", end, "--store", "store/shifted.sqlite", "--out", "shift")
    assert result.exit_code == 4, result.output
    found = json.loads((workdir / "shift" / "monitor.json").read_text())
    assert "feature_psi" in found["crossed"]
    top = found["feature_drift"][0]
    assert "amount" in top["feature"] and top["psi"] > 0.25, top  # spend features moved
    assert "threshold crossed: feature_psi" in result.output


def test_the_training_snapshot_is_the_default_reference(workdir):
    result = monitor("--psi-threshold", "0.0001", "--out", "trained")
    assert result.exit_code == 4, result.output
    found = json.loads((workdir / "trained" / "monitor.json").read_text())
    holdout = mlflow.search_runs(search_all_experiments=True, filter_string="run_name = 'train'")
    assert found["reference"]["as_of"] == holdout["params.holdout_as_of"].iloc[0]
    assert found["reference"]["source"].startswith("training snapshot of v1")


def test_a_missing_ledger_exits_1_before_any_work(workdir):
    result = monitor("--ledger", "gone.sqlite")
    assert result.exit_code == 1 and "gone.sqlite does not exist" in result.output


def test_purchases_gone_in_the_last_week_cross_the_activity_check_naming_the_role(workdir):
    """A tracking feed that stopped: no purchase event in the last 7 days of a copy of the data.
    The activity check compares that week with the week before the reference date."""
    events = pd.read_parquet(workdir / "data" / "events.parquet")
    end = pd.to_datetime(events["timestamp"], utc=True).max()
    recent = pd.to_datetime(events["timestamp"], utc=True) > end - pd.Timedelta(days=7)
    shutil.copytree(workdir / "data", workdir / "gone", dirs_exist_ok=True)
    purchases = events["event_type"] == "purchase"
    events[~(recent & purchases)].to_parquet(workdir / "gone" / "events.parquet")
    reference = (end - pd.Timedelta(days=28)).isoformat()
    result = runner.invoke(app, ["monitor", "gone", "--config", "train.yaml", "--reference-as-of",
                                 reference, "--out", "gone-out"])  # fmt: skip
    assert result.exit_code == 4, result.output
    found = json.loads((workdir / "gone-out" / "monitor.json").read_text())
    assert "activity_shift" in found["crossed"]
    (check,) = [c for c in found["checks"] if c["name"] == "activity_shift"]
    assert check["detail"].startswith("purchase -") and check["value"] > 0.5, check
    roles = {row["role"]: row for row in found["activity"]["roles"]}
    assert roles["purchase"]["current_events"] == 0 and roles["purchase"]["reference_events"] > 30
    assert "roles moved beyond noise: purchase" in result.output
    assert 'lifecycle_activity_change{role="purchase"}' in (workdir / "gone-out" /
                                                           "monitor.prom").read_text()  # fmt: skip
    assert "<h2>Activity</h2>" in (workdir / "gone-out" / "monitor.html").read_text()
