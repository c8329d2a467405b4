"""``lifecycle retrain``: one scheduled step (train, gated promotion, store refresh) with
exit codes a scheduler can act on, against a real SQLite MLflow store (issue 14, point 1)."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from features.simulator import SimConfig, simulate, write_simulation
from features.store import OnlineStore
from tests.shops import decisions_ledger
from training.cli import app
from training.data import load_tables

pytestmark = pytest.mark.slow

runner = CliRunner()
FAST = ("dataset:\n  snapshots: 4\n  snapshot_every_days: 30\n"
        "churn:\n  n_estimators: 30\nstage:\n  n_estimators: 20\n")  # fmt: skip


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("retrain")
    cfg = SimConfig(customers=900, days=300, seed=8)
    write_simulation(simulate(cfg), folder / "data", cfg)
    (folder / "train.yaml").write_text(FAST)
    decisions_ledger(folder / "ledger.sqlite", load_tables(folder / "data"))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
        yield folder
    mlflow.set_tracking_uri(None)


def retrain(*extra: str):
    return runner.invoke(app, ["retrain", "data", "--config", "train.yaml",
                               "--store", "store/online.sqlite", *extra])  # fmt: skip


def test_retrain_promotes_then_keeps_and_refreshes_the_store_each_time(workdir):
    first = retrain()
    assert first.exit_code == 0, first.output  # no champions yet: every challenger wins
    assert "promoted: lifecycle-churn, lifecycle-stage" in first.output
    client = MlflowClient()
    assert client.get_model_version_by_alias("lifecycle-churn", "champion").version in (1, "1")
    store = OnlineStore(workdir / "store" / "online.sqlite")
    assert store.current().version == 1 and store.current().n_customers > 800

    again = retrain("--ledger", "ledger.sqlite")
    assert again.exit_code == 3, again.output  # a challenger has to win: none did
    assert "ledger ledger.sqlite: 60 decisions as exposures" in again.output
    assert "no challenger won; the champions stay" in again.output
    assert client.get_model_version_by_alias("lifecycle-churn", "champion").version in (1, "1")
    assert client.get_model_version_by_alias("lifecycle-churn", "challenger").version in (2, "2")
    assert store.current().version == 2  # refreshed all the same


def test_retrain_on_bad_input_exits_1_and_promotes_nothing(workdir):
    gone = retrain("--ledger", "gone.sqlite")
    assert gone.exit_code == 1 and "gone.sqlite does not exist" in gone.output
    bad = runner.invoke(app, ["retrain", "nowhere"])
    assert bad.exit_code in (1, 2) and "nowhere" in bad.output


def test_retrain_models_retrains_only_those_and_refuses_unknown_names(workdir):
    client = MlflowClient()

    def versions(name):
        return len(client.search_model_versions(f"name = '{name}'"))

    before = {n: versions(f"lifecycle-{n}") for n in ("churn", "stage")}
    store = OnlineStore(workdir / "store" / "online.sqlite")
    version = store.current().version
    only = retrain("--models", "stage")
    assert only.exit_code in (0, 3), only.output
    assert versions("lifecycle-stage") == before["stage"] + 1  # a new stage challenger
    assert versions("lifecycle-churn") == before["churn"]  # churn untouched
    assert "lifecycle-churn" not in only.output.split("trained:")[-1].split("store")[0]
    assert store.current().version == version + 1  # the store is refreshed all the same
    unknown = retrain("--models", "stage", "--models", "upsell")
    assert unknown.exit_code == 2 and "unknown model(s) upsell" in unknown.output
    assert versions("lifecycle-stage") == before["stage"] + 1  # nothing trained


def test_challengers_keep_the_champions_feature_definition_unless_redefined(workdir):
    from training.registry import load_alias

    cfg = SimConfig(customers=900, days=340, seed=8)  # 40 more days: the BG/NBD fit moves
    write_simulation(simulate(cfg), workdir / "later", cfg)
    champion, _ = load_alias("lifecycle-churn", "champion")
    kept = runner.invoke(app, ["retrain", "later", "--config", "train.yaml", "--store",
                               "store/later.sqlite", "--models", "stage"])  # fmt: skip
    assert kept.exit_code in (0, 3), kept.output
    assert "features as the champions define them" in kept.output
    stage, _ = load_alias("lifecycle-stage", "challenger")
    assert stage.lifecycle_fingerprint_ == champion.lifecycle_fingerprint_  # servable together
    args = ["retrain", "later", "--config", "train.yaml", "--store", "store/later.sqlite"]
    fresh = runner.invoke(app, [*args, "--models", "stage", "--redefine"])
    assert fresh.exit_code in (0, 3), fresh.output
    redefined, _ = load_alias("lifecycle-stage", "challenger")
    assert redefined.lifecycle_fingerprint_ != champion.lifecycle_fingerprint_
