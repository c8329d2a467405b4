"""The offers model served is refitted on every send after its evaluation, and the promotion
gate values each side by its evaluated twin, fitted before the recent sends it is judged on
(training.offers_pipeline.refit_on_every_send, training.promotion.offers_gate)."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from features.simulator import SimConfig, simulate, write_simulation
from training import offers_pipeline as op
from training.data import load_tables
from training.pipeline import TrainConfig, fit_offers, resolved
from training.promotion import offers_gate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("refit")
    cfg = SimConfig(customers=900, days=300, seed=8)
    write_simulation(simulate(cfg), folder, cfg)
    tables = load_tables(folder)
    config = resolved(tables, TrainConfig(offers={"n_estimators": 20, "min_arm_size": 30}))
    return tables, config, fit_offers(tables, config)


def test_the_served_model_learnt_every_send_and_its_twin_the_earlier_ones(world):
    tables, config, report = world
    data = op.offer_data(tables, config.dataset.feature_set)
    train, test = op.split_by_send_day(data)
    served, twin = report.estimator, report.estimator.gate_model_
    assert sum(served.arm_counts_.values()) == len(data.y)
    assert sum(twin.arm_counts_.values()) == len(train.y) < len(data.y)
    assert not hasattr(twin, "gate_model_")
    # the run's metrics are the twin's, on the later sends it did not see
    again = op.evaluate_offers(twin, test, tables.offers)["metrics"]
    assert pd.Series(report.metrics).equals(pd.Series(again))
    assert op.gate_model(served) is twin and op.gate_model(twin) is twin
    # the refit moved the served model's estimates
    assert not np.allclose(served.predict_uplift(test.X).fillna(0).to_numpy(),
                           twin.predict_uplift(test.X).fillna(0).to_numpy())  # fmt: skip


def test_the_gate_values_each_side_by_its_evaluated_twin(world):
    tables, config, report = world
    compare = offers_gate(tables, config, n_bootstrap=200)
    served = report.estimator
    other = copy.copy(served)  # another served model with the same evaluated twin

    def never(*args, **kwargs):
        raise AssertionError("the gate valued the served model, not its twin")

    other.predict_uplift = other.uplift_and_support = never
    new, old, wins, detail = compare(other, served)
    assert detail["difference"] == 0.0 and not wins and new == old
    # a model without a twin (trained before refits) is valued itself
    plain = copy.copy(served.gate_model_)
    assert compare(plain, served)[3]["difference"] == 0.0
    refit_alone = copy.copy(served)
    del refit_alone.gate_model_
    assert compare(refit_alone, served)[3]["difference"] != 0.0
