"""Optuna tuning: time folds, seeded reproducibility, nested MLflow runs, pruning, storage
reuse, tuned params read back, and the ``lifecycle tune`` command (real SQLite stores)."""

from __future__ import annotations

import mlflow
import optuna
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from features.simulator import SimConfig, simulate, write_simulation
from training import cli_tune, tune
from training.cli import app
from training.data import load_tables
from training.datasets import DatasetConfig
from training.pipeline import TrainConfig
from training.registry import setup

CONFIG = TrainConfig(dataset={"snapshots": 6, "snapshot_every_days": 30})

if not any(c.callback is cli_tune.tune for c in app.registered_commands):
    app.command()(cli_tune.tune)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tune") / "data"
    cfg = SimConfig(customers=1500, days=300, seed=4)
    write_simulation(simulate(cfg), folder, cfg)
    return folder


@pytest.fixture(scope="module")
def tables(data):
    return load_tables(data)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One SQLite MLflow store for the module (its schema takes seconds to create)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(autouse=True)
def workdir(tmp_path, monkeypatch):
    """A fresh working dir per test, and a cheap search space."""
    monkeypatch.setitem(tune.SEARCH_SPACE, "n_estimators", tune.Dim(int, 10, 40, log=True))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def tracking(store, monkeypatch, request):
    """The module's MLflow store, with an experiment of this test's own."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    setup(experiment := f"tune-{request.node.name}")
    yield experiment
    mlflow.set_tracking_uri(None)


def trial_runs(experiment: str, model: str = "churn") -> tuple[object, list]:
    client = MlflowClient()
    ids = [client.get_experiment_by_name(experiment).experiment_id]
    parents = client.search_runs(ids, filter_string=f"tags.mlflow.runName = 'tune-{model}'")
    assert len(parents) == 1
    children = client.search_runs(
        ids, filter_string=f"tags.mlflow.parentRunId = '{parents[0].info.run_id}'"
    )
    return parents[0], sorted(children, key=lambda r: int(r.data.tags["optuna.trial"]))


def test_folds_are_expanding_windows_purged_of_label_overlap():
    dates = pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta([0, 30, 60, 90, 120], "D")
    frame = pd.DataFrame({"as_of": dates.repeat(2), "x": range(10)})
    config = DatasetConfig(churn_horizon_days=60, stage_horizon_days=30)
    folds = tune.fold_frames(frame, config)
    assert [f[1]["as_of"].unique().tolist() for f in folds] == [[dates[3]], [dates[4]]]
    assert [f[0]["as_of"].unique().tolist() for f in folds] == [list(dates[:2]), list(dates[:3])]
    with pytest.raises(ValueError, match="1 training snapshot.*dataset.snapshots"):
        tune.fold_frames(frame.iloc[2:], config)


def test_same_seed_gives_same_trials_in_fresh_storages(tables, tmp_path, tracking):
    runs = [
        tune.tune(tables, "churn", 3, CONFIG, storage=f"sqlite:///{tmp_path / name}", seed=7)
        for name in ("a.db", "b.db")
    ]
    assert [t.params for t in runs[0].trials] == [t.params for t in runs[1].trials]
    assert runs[0].best_params == runs[1].best_params
    assert runs[0].best_value == pytest.approx(runs[1].best_value)


def test_every_trial_is_a_nested_run_and_best_params_are_written(tables, workdir, tracking):
    study = tune.tune(tables, "churn", 3, CONFIG, seed=1)
    assert (workdir / "optuna.db").exists(), "default storage is in the working directory"
    parent, children = trial_runs(tracking)
    assert [int(c.data.tags["optuna.trial"]) for c in children] == [0, 1, 2]
    for run, trial in zip(children, study.trials, strict=True):
        assert run.data.tags["optuna.state"] == "COMPLETE"
        assert run.data.params["num_leaves"] == str(trial.params["num_leaves"])
        assert {"fold0.roc_auc", "fold1.roc_auc", "roc_auc"} <= set(run.data.metrics)
        assert run.data.metrics["roc_auc"] == pytest.approx(trial.value)
    assert parent.data.metrics["best_roc_auc"] == pytest.approx(study.best_value)
    assert parent.data.params["storage"] == "sqlite:///optuna.db"
    assert (workdir / "tuned" / "churn.yaml").exists()
    assert tune.tuned_params("churn") == study.best_params


def test_pruned_trials_are_logged_as_pruned(tables, workdir, tracking):
    never = optuna.pruners.ThresholdPruner(lower=1.5)  # no ROC-AUC reaches it: prune at fold 0
    study = tune.tune(tables, "churn", 2, CONFIG, pruner=never)
    assert {t.state for t in study.trials} == {optuna.trial.TrialState.PRUNED}
    _, children = trial_runs(tracking)
    assert [c.data.tags["optuna.state"] for c in children] == ["PRUNED", "PRUNED"]
    assert all("fold0.roc_auc" in c.data.metrics for c in children)
    assert not any("fold1.roc_auc" in c.data.metrics for c in children)
    assert tune.best_trial(study) is None and not (workdir / "tuned").exists()


def test_reusing_the_storage_continues_the_study(tables, tracking):
    first = tune.tune(tables, "stage", 2, CONFIG, seed=3)
    second = tune.tune(tables, "stage", 2, CONFIG, seed=3)
    assert second.study_name == first.study_name == "lifecycle-stage"
    assert [t.number for t in second.trials] == [0, 1, 2, 3]
    params = [tuple(t.params.values()) for t in second.trials]
    assert len(set(params)) == 4, "a continued study does not repeat its first draws"
    assert tune.tuned_params("stage") == second.best_params


def test_tuned_params_merge_under_explicit_config(tmp_path):
    assert tune.tuned_params("churn", tmp_path) == {}
    (tmp_path / "churn.yaml").write_text("num_leaves: 7\nlearning_rate: 0.1\n")
    config = TrainConfig(churn={"num_leaves": 31})
    merged = tune.with_tuned(config, tmp_path)
    assert merged.churn == {"num_leaves": 31, "learning_rate": 0.1} and merged.stage == {}
    (tmp_path / "stage.yaml").write_text("- 1\n")
    with pytest.raises(ValueError, match="stage.yaml: expected a mapping"):
        tune.tuned_params("stage", tmp_path)
    with pytest.raises(ValueError, match="churn, stage; got 'uplift'"):
        tune.tuned_params("uplift", tmp_path)


def test_tune_rejects_bad_arguments(tables):
    with pytest.raises(ValueError, match="trials must be >= 1"):
        tune.tune(tables, "churn", 0, CONFIG)
    with pytest.raises(ValueError, match="dataset.snapshots"):
        tune.tune(tables, "churn", 1, TrainConfig(dataset={"snapshots": 3}))


def test_cli_prints_trials_and_best(data, workdir, tracking):
    (workdir / "train.yaml").write_text("dataset:\n  snapshots: 6\n")
    runner = CliRunner()
    args = ["tune", str(data), "--model", "churn", "--trials", "2", "--config", "train.yaml"]
    result = runner.invoke(app, [*args, "--experiment", tracking])
    assert result.exit_code == 0, result.output
    assert "trial   0" in result.output and "trial   1" in result.output
    assert "num_leaves=" in result.output and "best trial" in result.output
    assert "written to tuned/churn.yaml" in result.output
    assert tune.tuned_params("churn")
    bad = runner.invoke(app, ["tune", str(data), "--model", "uplift"])
    assert bad.exit_code == 2 and "churn, stage" in bad.output
    zero = runner.invoke(app, ["tune", str(data), "--model", "churn", "--trials", "0"])
    assert zero.exit_code == 2 and "--trials must be >= 1" in zero.output
