"""``lifecycle monitor`` end to end (issue 14, point 4): a champion trained and promoted by
``lifecycle retrain`` on a real SQLite MLflow store, its training snapshot against the online
store, exit codes a scheduler can act on."""

from __future__ import annotations

import json
import shutil
import sqlite3

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


def test_prices_doubled_in_the_last_week_cross_the_amount_check_naming_the_role(workdir):
    """Every amount of the last 7 days of a copy of the data doubled (a price rise): the
    amounts check compares what customers paid that week with the week before the reference
    date; the activity check (how often) does not move."""
    events = pd.read_parquet(workdir / "data" / "events.parquet")
    end = pd.to_datetime(events["timestamp"], utc=True).max()
    recent = pd.to_datetime(events["timestamp"], utc=True) > end - pd.Timedelta(days=7)
    shutil.copytree(workdir / "data", workdir / "dear", dirs_exist_ok=True)
    scaled = events["amount"].where(~recent | (events["event_type"] == "nps_response"),
                                    events["amount"] * 2)  # fmt: skip
    events.assign(amount=scaled).to_parquet(workdir / "dear" / "events.parquet")
    reference = (end - pd.Timedelta(days=28)).isoformat()
    result = runner.invoke(app, ["monitor", "dear", "--config", "train.yaml", "--reference-as-of",
                                 reference, "--out", "dear-out"])  # fmt: skip
    assert result.exit_code == 4, result.output
    found = json.loads((workdir / "dear-out" / "monitor.json").read_text())
    assert "amount_shift" in found["crossed"] and "activity_shift" not in found["crossed"]
    (check,) = [c for c in found["checks"] if c["name"] == "amount_shift"]
    assert check["detail"].startswith("purchase +") and check["value"] > 0.1, check
    assert check["threshold"] == 0.1 and found["thresholds"]["amount"] == 0.1
    roles = {row["role"]: row for row in found["amounts"]["roles"]}
    assert roles["purchase"]["low"] < 1.0 < roles["purchase"]["high"]  # every amount x 2
    assert "feedback" not in roles  # an NPS score is not money
    assert "amounts per event, same windows: roles moved beyond noise: purchase" in result.output
    prom = (workdir / "dear-out" / "monitor.prom").read_text()
    assert 'lifecycle_amount_change{role="purchase"}' in prom
    assert 'lifecycle_monitor_threshold_crossed{check="amount_shift"} 1.0' in prom
    assert "<h2>Amounts</h2>" in (workdir / "dear-out" / "monitor.html").read_text()
    looser = runner.invoke(app, ["monitor", "dear", "--config", "train.yaml", "--out", "dear-5",
                                 "--amount-threshold", "5", "--reference-as-of",
                                 reference])  # fmt: skip
    assert looser.exit_code in (0, 4), looser.output
    found = json.loads((workdir / "dear-5" / "monitor.json").read_text())
    assert "amount_shift" not in found["crossed"] and found["thresholds"]["amount"] == 5


def test_without_an_offers_champion_the_ledger_notes_a_cold_start(workdir):
    end = end_of_data(workdir)  # 900 customers: too few sends for an offers model
    result = monitor("--reference-as-of", end, "--ledger", "ledger.sqlite", "--now", end,
                     "--ledger-days", "90", "--out", "cold")  # fmt: skip
    assert result.exit_code == 0, result.output
    found = json.loads((workdir / "cold" / "monitor.json").read_text())
    assert found["ledger"]["offers"] is None
    assert any(n.startswith("no champion offers model") for n in found["notes"])


def test_an_offer_the_champion_never_saw_is_reported_not_a_threshold(workdir, monkeypatch):
    """The ledger's decisions of an offer absent from the champion offers model's training
    data (a new offer): named in a note, the ledger's offers table and a gauge; exit 0."""
    from training.monitoring import inputs

    tables = load_tables(workdir / "data")
    trained = {"control": 500, **{str(o): 100 for o in tables.offers["offer_id"]}}
    monkeypatch.setattr(inputs, "offers_training_sends", lambda alias="champion": trained)
    shutil.copy(workdir / "ledger.sqlite", workdir / "ledger-new.sqlite")
    with sqlite3.connect(workdir / "ledger-new.sqlite") as conn:
        conn.execute("UPDATE decisions SET offer_id = 'xsell_new' WHERE decision_id IN "
                     "('dec1', 'dec2', 'dec3')")  # fmt: skip
    end = end_of_data(workdir)
    result = monitor("--reference-as-of", end, "--ledger", "ledger-new.sqlite", "--now", end,
                     "--ledger-days", "90", "--out", "new-offer")  # fmt: skip
    assert result.exit_code == 0, result.output
    found = json.loads((workdir / "new-offer" / "monitor.json").read_text())
    (note,) = [n for n in found["notes"] if n.startswith("offers without training support")]
    assert "xsell_new (3 decisions, 3 explored)" in note and "not a threshold" in note
    ledger = found["ledger"]
    assert ledger["summary"]["offers_without_training_support"] == 1
    offered = sum(row["decisions"] for row in ledger["offers"])
    assert ledger["summary"]["unsupported_decision_share"] == pytest.approx(3 / offered)
    new = ledger["offers"][0]  # unsupported first
    assert new["offer_id"] == "xsell_new" and new["training_sends"] == 0 and not new["supported"]
    assert all(row["supported"] and row["training_sends"] > 0 for row in ledger["offers"][1:])
    prom = (workdir / "new-offer" / "monitor.prom").read_text()
    assert 'lifecycle_ledger_offer_training_sends{offer="xsell_new"} 0.0' in prom
    assert "lifecycle_ledger_offers_without_training_support 1.0" in prom
    page = (workdir / "new-offer" / "monitor.html").read_text()
    assert "training data: an offer without any" in page and "xsell_new" in page
