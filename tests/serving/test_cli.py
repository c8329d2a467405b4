"""``lifecycle export`` and the serving commands' help and errors."""

from __future__ import annotations

import json

from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from serving.cli import app
from training.tracking import REGISTERED_NAMES

runner = CliRunner()


def test_serving_commands_have_help():
    for command in ("serve", "export"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output


def test_export_writes_a_registry_free_folder(world, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", world["uri"])
    out = tmp_path / "models"
    result = runner.invoke(
        app, ["export", "--out", str(out), "--data", str(world["folder"] / "data")]
    )
    assert result.exit_code == 0, result.output
    # the champions' versions now: other tests on the session's world republish the same
    # models as new versions to test hot reloads
    client = MlflowClient(tracking_uri=world["uri"])
    now = {n: client.get_model_version_by_alias(registered, "champion").version
           for n, registered in REGISTERED_NAMES.items() if n != "clv"}  # fmt: skip
    assert (f"exported churn v{now['churn']}, stage v{now['stage']}, offers v{now['offers']}"
            in result.output)  # fmt: skip
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["models"]["churn"]["version"] == str(now["churn"])
    assert manifest["source"] == "registry@champion"
    assert {p.name for p in out.iterdir()} >= {
        "churn.joblib",
        "stage.joblib",
        "offers.joblib",
        "offers.json",
    }


def test_export_says_what_is_missing(world, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'empty.db'}")
    for data in ([], ["--data", str(world["folder"] / "data")]):
        result = runner.invoke(app, ["export", "--out", str(tmp_path / "m"), *data])
        assert result.exit_code == 1 and "lifecycle train" in result.output


def test_an_offers_model_is_exported_only_with_its_catalog(world, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", world["uri"])  # an offers champion
    result = runner.invoke(app, ["export", "--out", str(tmp_path / "m")])
    assert result.exit_code == 1 and "--offers FILE or --data FOLDER" in result.output
    result = runner.invoke(app, ["export", "--out", str(tmp_path / "m"), "--data", str(tmp_path)])
    assert result.exit_code == 1 and "has no offers table" in result.output
