"""``lifecycle train`` then ``lifecycle promote`` against a real SQLite MLflow store."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from features.simulator import SimConfig, simulate, write_simulation
from training.cli import app
from training.models.stage import PRIOR_POWERS

pytestmark = pytest.mark.slow

runner = CliRunner()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train")
    cfg = SimConfig(customers=1500, days=300, seed=4)
    write_simulation(simulate(cfg), folder / "data", cfg)
    (folder / "train.yaml").write_text(
        "dataset:\n  snapshots: 4\n  snapshot_every_days: 30\n"
        "churn:\n  n_estimators: 60\nstage:\n  n_estimators: 40\n"
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
        yield folder
    mlflow.set_tracking_uri(None)


def run(*args: str):
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_train_logs_runs_and_promote_moves_champion_only_on_a_win(workdir):
    out = run("train", "data", "--config", "train.yaml")
    assert "lifecycle-churn v1 @challenger" in out and "lifecycle-stage v1 @challenger" in out
    assert "baselines: logistic" in out and "stay_in_stage" in out
    client = MlflowClient()
    parent = client.search_runs(
        [client.get_experiment_by_name("customer-lifecycle").experiment_id],
        filter_string="tags.mlflow.runName = 'train'",
    )[0]
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )
    assert {c.info.run_name for c in children} == {"churn", "stage", "offers", "clv"}
    churn = next(c for c in children if c.info.run_name == "churn")
    assert {"roc_auc", "brier", "ece", "baseline_logistic.roc_auc"} <= set(churn.data.metrics)
    assert churn.inputs.dataset_inputs, "data lineage is logged"
    artifacts = {a.path for a in client.list_artifacts(churn.info.run_id, "plots")}
    assert {"plots/reliability.png", "plots/gains.png", "plots/risk_histogram.png"} <= artifacts
    stage = next(c for c in children if c.info.run_name == "stage")
    assert {"macro_f1", "log_loss", "baseline_stay_in_stage.macro_f1"} <= set(stage.data.metrics)
    assert stage.data.metrics["prior_power"] in PRIOR_POWERS  # the decision rule's chosen k
    offers = next(c for c in children if c.info.run_name == "offers")
    offer_plots = {a.path for a in client.list_artifacts(offers.info.run_id, "plots")}
    assert {"plots/qini.png", "plots/uplift_by_offer.png"} <= offer_plots

    clv = next(c for c in children if c.info.run_name == "clv")
    assert {"normalized_gini", "top_decile_capture", "mae",
            "baseline_past_spend.normalized_gini"} <= set(clv.data.metrics)  # fmt: skip
    first = run("promote", "data", "--config", "train.yaml")
    assert first.count("-> champion") == 4  # churn, stage, offers, clv
    run("train", "data", "--config", "train.yaml")  # same data and seed: no better
    second = run("promote", "data", "--config", "train.yaml")
    assert "stays challenger" in second
    offers = next(line for line in second.splitlines() if line.startswith("lifecycle-offers"))
    # the same model and data: the paired difference is 0, not above 0 -> the champion stays
    assert "difference +0.0000" in offers and "recent" in offers and "stays challenger" in offers
    promotions = client.search_runs(
        [parent.info.experiment_id], filter_string="tags.mlflow.runName = 'promotion'"
    )
    assert len(promotions) == 2 and {
        "offers.difference",
        "offers.lo",
        "churn.challenger",
        "churn.promoted",
    } <= set(promotions[0].data.metrics)
    assert client.get_model_version_by_alias("lifecycle-churn", "champion").version in (1, "1")
    assert client.get_model_version_by_alias("lifecycle-churn", "challenger").version in (2, "2")


def test_promote_before_train_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'empty.db'}")
    cfg = SimConfig(customers=300, days=200, seed=1)
    write_simulation(simulate(cfg), tmp_path / "data", cfg)
    result = runner.invoke(app, ["promote", "data"])
    assert result.exit_code == 1 and "lifecycle train" in result.output


def test_a_model_training_skipped_is_not_an_error_for_promote(tmp_path, monkeypatch):
    """A short campaign log: training skips the offers model (too few sends per arm, with its
    reason); `promote` still promotes the others and says the offers model has no
    challenger (as `lifecycle demo --customers 500` does)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    cfg = SimConfig(customers=400, days=300, seed=2)
    write_simulation(simulate(cfg), tmp_path / "data", cfg)
    (tmp_path / "fast.yaml").write_text("churn:\n  n_estimators: 20\nstage:\n  n_estimators: 20\n")
    trained = runner.invoke(app, ["train", "data", "--config", "fast.yaml"])
    assert trained.exit_code == 0, trained.output
    assert "skipped offers" in trained.output
    result = runner.invoke(app, ["promote", "data", "--config", "fast.yaml"])
    assert result.exit_code == 0, result.output
    assert "lifecycle-churn: roc_auc challenger v1" in result.output
    assert "lifecycle-offers: no challenger" in result.output
    client = MlflowClient()
    assert str(client.get_model_version_by_alias("lifecycle-churn", "champion").version) == "1"
    mlflow.set_tracking_uri(None)
