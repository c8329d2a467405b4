"""The snapshot calendar: which as-of dates a training set stacks, checked before any work.

Default (``snapshots: null``): the test snapshot(s) at ``last_as_of`` (the data's end minus
the horizon), the validation snapshot(s) ``snapshot_every_days`` before, then
``train_snapshots`` training dates going back from the validation date minus the horizon (so
no training label window reaches an evaluation date), none before ``first_as_of`` (the data's
start plus ``min_history_days``). With ``snapshots: N``, N consecutive dates ending at
``last_as_of``. A labels table brings its own dates.
"""

from __future__ import annotations

import pandas as pd

from features.builder import to_utc
from features.project import DatasetConfig


class CalendarError(ValueError):
    """The calendar cannot give a training set on this data; the message says what would."""


def _day(value: object) -> pd.Timestamp:
    return to_utc(value).floor("D")


def bounds(start: object, end: object, config: DatasetConfig) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(first, last) allowed as-of dates."""
    last = _day(config.last_as_of) if config.last_as_of else None
    last = last or _day(to_utc(end) - pd.Timedelta(days=config.horizon_days))
    first = _day(config.first_as_of) if config.first_as_of else None
    first = first or (to_utc(start) + pd.Timedelta(days=config.min_history_days)).ceil("D")
    return first, last


def snapshot_dates(
    end: object, config: DatasetConfig, start: object | None = None
) -> list[pd.Timestamp]:
    """The as-of dates (midnight UTC), oldest first (see the module docstring)."""
    step = pd.Timedelta(days=config.snapshot_every_days)
    first, last = bounds(end if start is None else start, end, config)
    if start is None:  # no lower bound known: the old contract of this function
        first = pd.Timestamp.min.tz_localize("UTC")
    if config.snapshots is not None:
        dates = [last - step * k for k in reversed(range(config.snapshots))]
        return [d for d in dates if d >= first] if start is not None else dates
    n_eval = config.validation_snapshots + config.test_snapshots
    evaluation = [last - step * k for k in reversed(range(n_eval))]
    newest_train = evaluation[0] - pd.Timedelta(days=config.horizon_days)
    train = [newest_train - step * k for k in reversed(range(config.train_snapshots))]
    return [d for d in train if d >= first] + evaluation


def plan_snapshots(
    start: object,
    end: object,
    config: DatasetConfig,
    labels: pd.DataFrame | None = None,
    for_training: bool = True,
) -> list[pd.Timestamp]:
    """The dates to build, after checking they lie in the data and (``for_training``) leave
    training snapshots beside the evaluation ones."""
    if config.churn_definition == "labels" and labels is not None and len(labels):
        dates = sorted(pd.to_datetime(labels["as_of"].unique(), utc=True))
        _check_labelled(dates, config)
        return dates
    first, last = bounds(start, end, config)
    span = f"{_day(start):%Y-%m-%d} .. {_day(end):%Y-%m-%d} ({(_day(end) - _day(start)).days} days)"
    latest = _day(to_utc(end) - pd.Timedelta(days=config.horizon_days))
    if last > latest:
        raise CalendarError(
            f"dataset.last_as_of {last:%Y-%m-%d} leaves less than the horizon "
            f"({config.horizon_days} days) before the data's end; the data spans {span}; "
            f"use a last_as_of up to {latest:%Y-%m-%d}"
        )
    dates = snapshot_dates(end, config, start)
    if not dates:
        raise CalendarError(_no_training_message(first, last, _day(end), span, config))
    if not for_training:
        return dates
    usable = _training_dates(dates, config)
    if not usable or len(dates) <= config.validation_snapshots + config.test_snapshots:
        raise CalendarError(_no_training_message(first, last, _day(end), span, config))
    return dates


def _training_dates(dates: list[pd.Timestamp], config: DatasetConfig) -> list[pd.Timestamp]:
    n_eval = config.validation_snapshots + config.test_snapshots
    if n_eval >= len(dates):
        return []
    valid_from = dates[len(dates) - n_eval]
    return [d for d in dates[: len(dates) - n_eval]
            if d + pd.Timedelta(days=config.horizon_days) <= valid_from]  # fmt: skip


def _no_training_message(
    first: pd.Timestamp, last: pd.Timestamp, end: pd.Timestamp, span: str, config: DatasetConfig
) -> str:
    """Why no snapshot can train, with the longest horizon that would work: the newest
    training date is the validation date minus the horizon, the test date the end minus
    the horizon, so 2 x horizon + the evaluation dates' spread must fit in the span."""
    step, h = config.snapshot_every_days, config.horizon_days
    n_eval = config.validation_snapshots + config.test_snapshots
    room = (end - first).days - step * max(n_eval - 1, 0)
    workable = max(room // 2, 0)
    if config.snapshots is not None and workable >= h:  # the data has room: the count is short
        spread = step * max(config.snapshots - n_eval, 0)
        needed = n_eval + -(-h // step)
        return (
            f"dataset.snapshots={config.snapshots} (as-of dates {step} days apart) leaves no "
            f"training snapshot: with {n_eval} validation/test date(s) the oldest date is "
            f"{spread} days before the validation date, less than the horizon of {h} days "
            f"(a training label window must end before the validation date). Use "
            f"snapshots >= {needed}, or leave snapshots unset (train_snapshots dates are then "
            f"placed a horizon before the evaluation dates); the data spans {span}"
        )
    return (
        f"the horizon of {h} days (dataset.churn_horizon_days={config.churn_horizon_days}, "
        f"stage_horizon_days={config.stage_horizon_days}) leaves no training snapshot: the data "
        f"spans {span}, as-of dates may run from {first:%Y-%m-%d} (first_as_of, or the start "
        f"plus min_history_days={config.min_history_days}) to {last:%Y-%m-%d}, and a training "
        f"snapshot's label window must end before the validation date. A horizon of at most "
        f"{workable} days would work here (or a smaller min_history_days, "
        f"snapshot_every_days or fewer validation/test snapshots, or more data); the "
        f"buy-till-you-die baseline forecasts any horizon without training"
    )


def _check_labelled(dates: list[pd.Timestamp], config: DatasetConfig) -> None:
    if len(dates) <= config.validation_snapshots + config.test_snapshots:
        raise CalendarError(
            f"the labels table has {len(dates)} as_of date(s); training needs more than "
            f"validation_snapshots + test_snapshots = "
            f"{config.validation_snapshots + config.test_snapshots}"
        )
