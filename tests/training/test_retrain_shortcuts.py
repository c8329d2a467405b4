"""The weekly retrain does no work its models do not need (issue 14, point 5): an offers-only
run builds no snapshot training set, and the promotion splits the run's training set instead
of building it again; the results are the ones the full work gives."""

from __future__ import annotations

import pandas as pd
import pytest

from features.simulator import SimConfig, simulate, write_simulation
from training import pipeline, promotion
from training.data import load_tables
from training.pipeline import TrainConfig, fit_and_evaluate, resolved

pytestmark = pytest.mark.slow

FAST = {"churn": {"n_estimators": 30}, "stage": {"n_estimators": 20},
        "offers": {"n_estimators": 20, "min_arm_size": 30}}  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shortcuts")
    cfg = SimConfig(customers=900, days=300, seed=8)
    write_simulation(simulate(cfg), folder, cfg)
    tables = load_tables(folder)
    return tables, resolved(tables, TrainConfig(**FAST))


@pytest.fixture(scope="module")
def full(world):
    tables, config = world
    return fit_and_evaluate(tables, config, ["churn", "offers"])


def _no_training_set(*args, **kwargs):
    raise AssertionError("a snapshot training set was built")


def test_an_offers_only_run_builds_no_training_set_and_fits_the_same_model(
    world, full, monkeypatch
):
    tables, config = world
    monkeypatch.setattr(pipeline, "build_training_set", _no_training_set)
    only = fit_and_evaluate(tables, config, ["offers"])
    assert only.dataset is None and only.dropped == []
    assert only.holdout_as_of == full.holdout_as_of
    assert set(only.reports) == {"offers"}
    same = pd.Series(only.reports["offers"].metrics).equals(
        pd.Series(full.reports["offers"].metrics)
    )  # NaN (an offer without a model) equal to NaN
    assert same


def test_the_promotion_holdout_is_split_from_the_runs_training_set(world, full, monkeypatch):
    tables, config = world
    rebuilt = promotion.latest_holdout(tables, config)
    monkeypatch.setattr(promotion, "build_training_set", _no_training_set)
    reused = promotion.latest_holdout(tables, config, training_set=full.dataset)
    pd.testing.assert_frame_equal(reused, rebuilt)


def test_a_training_set_of_another_definition_is_not_reused(world, full):
    tables, config = world
    other = config.model_copy(
        update={"dataset": config.dataset.model_copy(update={"churn_horizon_days": 30})}
    )
    holdout = promotion.latest_holdout(tables, other, training_set=full.dataset)
    pd.testing.assert_frame_equal(holdout, promotion.latest_holdout(tables, other))
    assert not holdout["churned"].equals(promotion.latest_holdout(tables, config)["churned"])


def test_an_offers_only_promotion_builds_no_holdout(world, monkeypatch):
    tables, config = world
    monkeypatch.setattr(promotion, "build_training_set", _no_training_set)
    assert promotion._scores(tables, config, ["offers"], None) == {}
