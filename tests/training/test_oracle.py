"""Informed oracles: the simulator's truth placed on the training set's own rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.loaders import load_customers, load_events
from features.simulator import SimConfig, simulate
from training.datasets import DatasetConfig, Tables, build_training_set, snapshot_dates
from training.oracle import LATENT_TRAITS, aligned_snapshot_first_day, with_truth

DAYS = 240


@pytest.fixture(scope="module")
def aligned():
    cfg = DatasetConfig(snapshots=3)
    first = aligned_snapshot_first_day(DAYS, cfg.horizon_days)
    sim = simulate(SimConfig(customers=1500, days=DAYS, seed=3, snapshot_first_day=first))
    tables = Tables(load_events(sim.events).data, load_customers(sim.customers).data)
    return sim, build_training_set(tables, cfg), cfg, tables


def test_aligned_first_day_puts_truth_snapshots_on_the_training_dates(aligned):
    sim, frame, cfg, tables = aligned
    assert aligned_snapshot_first_day(365, 60) == 64  # 2025-11-01 = day 304 = 64 + 8 * 30
    truth_dates = set(sim.snapshots["as_of"].unique())
    assert set(snapshot_dates(tables.end, cfg)) <= truth_dates


def test_with_truth_adds_each_rows_own_snapshot_and_traits(aligned):
    sim, frame, _, _ = aligned
    out = with_truth(frame, sim.snapshots, sim.truth_customers)
    assert len(out) == len(frame) and out.index.equals(frame.index)
    pd.testing.assert_frame_equal(out[frame.columns], frame)
    assert {"truth_stage", "truth_p_churn_60d", "truth_p_next_churned"} <= set(out.columns)
    assert {f"truth_{t}" for t in LATENT_TRAITS} <= set(out.columns)
    assert out["truth_stage"].notna().mean() > 0.99  # every known customer has a snapshot row
    row = out.iloc[len(out) // 2]
    snap = sim.snapshots[(sim.snapshots["as_of"] == row["as_of"])
                         & (sim.snapshots["customer_id"] == row["customer_id"])]  # fmt: skip
    assert np.isclose(row["truth_p_churn_60d"], snap["p_churn_60d"].iloc[0])
    trait = sim.truth_customers.set_index("customer_id").loc[row["customer_id"], "satisfaction"]
    assert row["truth_satisfaction"] == trait
