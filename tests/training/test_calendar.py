"""The snapshot calendar: long horizons train, impossible settings fail before any work."""

from __future__ import annotations

import pandas as pd
import pytest

from features.project import DatasetConfig
from training.calendar import CalendarError, plan_snapshots, snapshot_dates

START = pd.Timestamp("2024-01-01", tz="UTC")
END = pd.Timestamp("2025-12-31", tz="UTC")  # 730 days


def test_a_273_day_horizon_gets_training_snapshots_before_the_validation_date():
    config = DatasetConfig(churn_horizon_days=273)
    dates = plan_snapshots(START, END, config)
    test, valid = dates[-1], dates[-2]
    assert test == (END - pd.Timedelta(days=273)).floor("D")
    assert valid == test - pd.Timedelta(days=30)
    train = dates[:-2]
    assert len(train) >= 1
    assert all(d + pd.Timedelta(days=273) <= valid for d in train)
    assert min(train) >= START + pd.Timedelta(days=60)


def test_an_impossible_horizon_names_the_span_and_a_horizon_that_works():
    config = DatasetConfig(churn_horizon_days=400)
    with pytest.raises(CalendarError) as err:
        plan_snapshots(START, END, config)
    text = str(err.value)
    assert "churn_horizon_days=400" in text
    assert "2024-01-01 .. 2025-12-31 (730 days)" in text
    workable = int(text.split("A horizon of at most ")[1].split(" days")[0])
    plan_snapshots(START, END, DatasetConfig(churn_horizon_days=workable))  # it does work
    with pytest.raises(CalendarError):
        plan_snapshots(START, END, DatasetConfig(churn_horizon_days=workable + 20))


def test_a_calendar_outside_the_data_is_refused():
    config = DatasetConfig(last_as_of="2025-12-01", churn_horizon_days=60)
    with pytest.raises(CalendarError, match="last_as_of 2025-12-01 leaves less than the horizon"):
        plan_snapshots(START, END, config)
    late_start = DatasetConfig(first_as_of="2025-10-01")
    with pytest.raises(CalendarError, match="leaves no training snapshot"):
        plan_snapshots(START, END, late_start)


def test_fixed_snapshot_count_keeps_consecutive_dates():
    config = DatasetConfig(snapshots=3, snapshot_every_days=14, churn_horizon_days=60)
    dates = snapshot_dates(END, config)
    assert [d.strftime("%Y-%m-%d") for d in dates] == ["2025-10-04", "2025-10-18", "2025-11-01"]
