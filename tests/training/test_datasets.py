"""Training sets over as-of snapshots and their time-ordered splits."""

from __future__ import annotations

import pandas as pd
import pytest

from features.loaders import load_customers, load_events, load_exposures, load_offers
from features.simulator import SimConfig, simulate
from training.calendar import CalendarError, plan_snapshots
from training.datasets import (
    DatasetConfig,
    Tables,
    build_training_set,
    snapshot_dates,
    time_split,
)
from training.pipeline import TrainConfig, fit_and_evaluate


@pytest.fixture(scope="module")
def tables() -> Tables:
    sim = simulate(SimConfig(customers=1500, days=300, seed=8))
    offers = load_offers(sim.offers).data
    return Tables(
        events=load_events(sim.events).data,
        customers=load_customers(sim.customers).data,
        offers=offers,
        exposures=load_exposures(sim.exposures, offers=offers).data,
    )


def test_snapshot_dates_leave_a_full_horizon_and_are_evenly_spaced():
    end = pd.Timestamp("2025-12-31 17:00", tz="UTC")
    cfg = DatasetConfig(snapshots=3, snapshot_every_days=14, churn_horizon_days=60)
    dates = snapshot_dates(end, cfg)
    assert dates == [pd.Timestamp(d, tz="UTC") for d in ("2025-10-04", "2025-10-18", "2025-11-01")]


def test_training_set_stacks_snapshots_with_labels(tables):
    cfg = DatasetConfig(snapshots=4, snapshot_every_days=30)
    frame = build_training_set(tables, cfg)
    assert frame["snapshot"].tolist() == sorted(frame["snapshot"])  # oldest first
    assert not frame.duplicated(["as_of", "customer_id"]).any()
    assert frame["as_of"].nunique() == 4
    assert set(frame["churned"].unique()) <= {0, 1}
    assert frame["stage_next"].notna().all() and frame["stage"].notna().all()
    pop = frame[frame["in_churn_population"]]
    assert 0.01 < pop["churned"].mean() < 0.6
    # the horizon of the last snapshot ends inside the data
    assert frame["as_of"].max() + pd.Timedelta(days=60) <= tables.end


def test_time_split_is_ordered_and_purges_overlapping_label_windows(tables):
    cfg = DatasetConfig(snapshots=5, snapshot_every_days=20, churn_horizon_days=45,
                        validation_snapshots=1, test_snapshots=1)  # fmt: skip
    frame = build_training_set(tables, cfg)
    parts = time_split(frame, cfg)
    dates = sorted(frame["as_of"].unique())
    assert parts["test"]["as_of"].unique().tolist() == [dates[-1]]
    assert parts["validation"]["as_of"].unique().tolist() == [dates[-2]]
    # 45-day labels from the snapshot 20 and 40 days before validation would overlap it
    assert sorted(parts["train"]["as_of"].unique()) == dates[:1]
    assert parts["train"]["as_of"].max() + pd.Timedelta(days=45) <= dates[-2]


def test_too_few_snapshots_fail_before_any_work(tables):
    cfg = DatasetConfig(snapshots=2)
    needed = 2 + -(-cfg.horizon_days // cfg.snapshot_every_days)
    with pytest.raises(CalendarError, match=rf"leaves no training snapshot.*snapshots >= {needed}"):
        plan_snapshots(tables.start, tables.end, cfg)
    plan_snapshots(tables.start, tables.end, DatasetConfig(snapshots=needed))  # the advice works
    with pytest.raises(CalendarError, match="leaves no training snapshot"):
        fit_and_evaluate(tables, TrainConfig(dataset=cfg))
    frame = build_training_set(tables, cfg)  # a set to look at needs no training dates
    with pytest.raises(ValueError, match="cannot give 1 validation and 1 test"):
        time_split(frame, cfg)


def test_dataset_config_yaml_errors_name_the_field(tmp_path):
    path = tmp_path / "data.yaml"
    path.write_text("snapshots: 0\nchurn_definition: vibes\n")
    with pytest.raises(ValueError, match=r"data\.yaml.*churn_definition.*vibes.*snapshots"):
        DatasetConfig.from_yaml(path)
