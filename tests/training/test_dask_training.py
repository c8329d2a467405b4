"""Training and batch scoring on Dask (issue 16) agree with the single-process path.

One small simulated world, one real multi-process LocalCluster for the module. Tolerances
(chosen from measurement, README "Training and scoring on Dask"): holdout ROC-AUC within
0.02, stage log loss within 0.03, macro-F1 within 0.05.

The Dask boosters are not deterministic (partitions reach the workers in any order; LightGBM
merges their histograms), and on this world's 2,000 customers the stage model's decision rule
(``prior_power`` picked from 0.25 / 0.5 / 0.75 on held-out rows) flips between runs, which
moves macro-F1 in steps. Measured here, single process vs 11 Dask runs on the same tables:
ROC-AUC 0.9439 vs 0.9446-0.9464; log loss 0.6471 vs 0.6420-0.6580; macro-F1 0.5637 vs
0.5646-0.5974 (one CI run gave 0.5966 against a 0.03 tolerance and failed). On 20,000 x 6
snapshots the paths agree closer: 0.9348 vs 0.9347 and 0.6056 vs 0.6026 (BENCHMARKS).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.project import ProjectConfig
from features.simulator import SimConfig, simulate, write_simulation
from training.data import load_tables
from training.models.churn import ChurnModel
from training.models.stage import StageModel

pytest.importorskip("distributed")
pytestmark = pytest.mark.slow

AUC_TOLERANCE = 0.02
LOG_LOSS_TOLERANCE = 0.03
F1_TOLERANCE = 0.05


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dask_world") / "data"
    cfg = SimConfig(customers=2000, days=300, seed=5)
    write_simulation(simulate(cfg), folder, cfg)
    return folder, load_tables(folder, "strict", ProjectConfig())


@pytest.fixture(scope="module")
def both(world, client):
    """The single-process and the cluster result on the same tables (churn and stage)."""
    from training.pipeline import fit_and_evaluate
    from training.scale.pipeline import fit_and_evaluate_on_cluster

    tables, config = world[1], ProjectConfig()
    single = fit_and_evaluate(tables, config, models=("churn", "stage"))
    on_cluster = fit_and_evaluate_on_cluster(tables, config, client, ("churn", "stage"), 4)
    return single, on_cluster


def test_training_sets_are_identical(world, client):
    from training.datasets import build_training_set
    from training.scale.dataset import build_training_set_on_cluster

    tables, config = world[1], ProjectConfig().dataset
    single = build_training_set(tables, config)
    single = single.sort_values(["snapshot", "customer_id"], ignore_index=True)
    on_cluster = build_training_set_on_cluster(tables, config, client, 4).collect()
    assert "btyd_p_alive" in single.columns  # the globally fitted features are covered
    pd.testing.assert_frame_equal(on_cluster, single, check_exact=True)
    assert on_cluster.attrs == single.attrs


def test_quality_matches_the_single_process_path(both):
    single, on_cluster = both
    churn = single.reports["churn"].primary, on_cluster.reports["churn"].primary
    stage = single.reports["stage"].primary, on_cluster.reports["stage"].primary
    loss = [r.reports["stage"].metrics["log_loss"] for r in (single, on_cluster)]
    print(f"ROC-AUC single {churn[0]:.4f} dask {churn[1]:.4f}; "
          f"macro-F1 single {stage[0]:.4f} dask {stage[1]:.4f}; "
          f"log loss single {loss[0]:.4f} dask {loss[1]:.4f}")  # fmt: skip
    assert abs(churn[0] - churn[1]) <= AUC_TOLERANCE
    assert abs(loss[0] - loss[1]) <= LOG_LOSS_TOLERANCE
    assert abs(stage[0] - stage[1]) <= F1_TOLERANCE
    assert on_cluster.dropped == single.dropped
    assert len(on_cluster.dataset) == len(single.dataset)
    assert on_cluster.holdout_as_of == single.holdout_as_of


def test_models_are_the_same_in_kind(both):
    import lightgbm as lgb

    single, on_cluster = both
    for name, kind in (("churn", ChurnModel), ("stage", StageModel)):
        a, b = single.reports[name].estimator, on_cluster.reports[name].estimator
        assert type(b) is kind and isinstance(b.booster_, lgb.Booster)
        assert list(b.feature_names_in_) == list(a.feature_names_in_)
        assert b.categories_ == a.categories_
        assert list(b.classes_) == list(a.classes_)
        assert b.lifecycle_config_ == a.lifecycle_config_  # no trace of the cluster
    assert type(on_cluster.reports["churn"].estimator.calibrator_) is type(
        single.reports["churn"].estimator.calibrator_
    )


def test_early_stopping_rule_matches_lightgbm():
    from training.scale.fit import early_stop

    assert early_stop([3.0, 2.0, 2.5, 2.6, 2.7], patience=3) == (2, True)
    assert early_stop([3.0, 2.0, 1.0], patience=3) == (3, False)
    assert early_stop([1.0, 1.0, 1.0], patience=2) == (1, True)  # ties do not improve


def test_score_all_writes_every_customer(world, both, client, tmp_path):
    from training.scale.scoring import score_all, store_from_tables

    tables = world[1]
    models = {n: both[1].reports[n].estimator for n in ("churn", "stage")}
    store = store_from_tables(tables, models["churn"], tmp_path / "store.db")
    out = score_all(store, models, tmp_path / "scores.parquet", client, chunk=700)
    scores = pd.read_parquet(out)
    ids = store.customer_ids()
    assert sorted(scores["customer_id"]) == sorted(ids)
    assert scores["churn_probability"].between(0, 1).all()
    assert set(scores["next_stage"]) <= set(models["stage"].classes_)
    local = score_all(store, models, tmp_path / "local.parquet", None, chunk=700)
    merged = scores.merge(pd.read_parquet(local), on="customer_id", suffixes=("", "_local"))
    np.testing.assert_allclose(merged["churn_probability"], merged["churn_probability_local"])


def test_score_command_errors_clearly(tmp_path):
    from typer.testing import CliRunner

    from training.cli import app

    runner = CliRunner()
    missing = runner.invoke(app, ["score", "--all", "--store", str(tmp_path / "none.db"),
                                  "--models", str(tmp_path)])  # fmt: skip
    assert missing.exit_code == 1 and "no such store" in missing.output
    (tmp_path / "store.db").write_bytes(b"")
    no_models = runner.invoke(app, ["score", "--all", "--store", str(tmp_path / "store.db"),
                                    "--models", str(tmp_path)])  # fmt: skip
    assert no_models.exit_code == 1 and "churn.joblib" in no_models.output
    assert runner.invoke(app, ["score"]).exit_code == 1


def test_score_command_writes_parquet(world, both, tmp_path):
    import joblib
    from typer.testing import CliRunner

    from training.cli import app
    from training.scale.scoring import store_from_tables

    folder = tmp_path / "export"
    folder.mkdir()
    for name in ("churn", "stage"):
        joblib.dump(both[1].reports[name].estimator, folder / f"{name}.joblib")
    store = store_from_tables(world[1], both[1].reports["churn"].estimator, tmp_path / "s.db")
    out = tmp_path / "scores.parquet"
    done = CliRunner().invoke(app, ["score", "--all", "--store", str(tmp_path / "s.db"),
                                    "--models", str(folder), "--out", str(out),
                                    "--chunk", "500"])  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "scored" in done.output and "this process" in done.output
    assert len(pd.read_parquet(out)) == len(store.customer_ids())
