"""Activity by role: how often customers do each kind of thing, last week vs a reference week.

A change in how customers behave (a price rise that drives them to cancel, a broken sign-up
page, a competitor's campaign) shows within days in the event rates, long before the
features move (most summarise months) or a cohort's churn horizon passes (realised
calibration).

For each role of the data (purchase, subscription_cancel, visit, ...) and each window of
``days`` days, the *rate* is the window's events of that role per *active* customer (one with
any event in the ``base_days`` before the window), so a growing or shrinking customer base is
not read as a change of behaviour. ``change = rate_current / rate_reference - 1`` with an
interval from the variance of the log counts over customers (``sum(c_i ** 2) / sum(c_i) ** 2``
per window: Poisson counts and over-dispersed ones alike; the base sizes are taken as exact).
Half an event is added to every count, so a role that vanished (a broken tracking feed) or
appeared is a finite change too. The intervals are Bonferroni-adjusted over the roles checked
(95 % jointly); roles with fewer than ``min_events`` events in the two windows together are
reported, not tested.

The check's value is the largest *shift*: the smallest change a role's interval allows (0 when
it covers 0), so it crosses its threshold only when a change is both material and beyond noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

ALPHA = 0.05  # joint over the roles checked
MIN_EVENTS = 30
BASE_DAYS = 90


@dataclass(frozen=True)
class RoleChanges:
    """Per role (``table``: one row each, with ``change``, ``low``, ``high``, ``shift`` and
    ``tested``) of the two windows ending at ``reference_end`` and ``current_end``;
    ``shift`` the largest of the roles'. What the activity and amounts checks report."""

    reference_end: pd.Timestamp
    current_end: pd.Timestamp
    days: int
    table: pd.DataFrame

    @property
    def shift(self) -> float:
        tested = self.table[self.table["tested"]]
        return float(tested["shift"].max()) if len(tested) else np.nan

    @property
    def moved(self) -> pd.DataFrame:
        """The tested roles whose interval excludes 0, largest shift first."""
        t = self.table
        return t[t["tested"] & (t["shift"] > 0)].sort_values("shift", ascending=False)


class Activity(RoleChanges):
    """Events per active customer by role; ``table``: role, reference_events,
    current_events, reference_rate, current_rate, change, low, high, shift, tested."""


def window_counts(events: pd.DataFrame, end: pd.Timestamp, days: int,
                  base_days: int = BASE_DAYS) -> tuple[pd.DataFrame, int]:  # fmt: skip
    """Per (role, customer) event counts in ``(end - days, end]``, and the number of customers
    active (any event) in the ``base_days`` before the window."""
    start = end - pd.Timedelta(days=days)
    ts = events["timestamp"]
    base = (ts > start - pd.Timedelta(days=base_days)) & (ts <= start)
    active = int(events.loc[base, "customer_id"].nunique())
    inside = events.loc[(ts > start) & (ts <= end), ["role", "customer_id"]]
    counts = inside.groupby(["role", "customer_id"], observed=True).size().rename("n")
    return counts.reset_index(), active


def _per_role(counts: pd.DataFrame) -> pd.DataFrame:
    """role -> events, sum of squared per-customer counts."""
    n = counts["n"].to_numpy(float)
    frame = pd.DataFrame({"role": counts["role"].astype(str), "events": n, "squares": n * n})
    return frame.groupby("role").sum()


def activity_shift(events: pd.DataFrame, reference_end: pd.Timestamp,
                   current_end: pd.Timestamp, days: int = 7, base_days: int = BASE_DAYS,
                   min_events: int = MIN_EVENTS) -> Activity:  # fmt: skip
    """:class:`Activity` of the windows of ``days`` days ending at ``reference_end`` and at
    ``current_end`` (``events``: ``customer_id``, ``timestamp`` (UTC), ``role``).

    Raises
    ------
    ValueError
        When the current window does not end after the reference one, or no customer was
        active before either window.
    """
    reference_end, current_end = pd.Timestamp(reference_end), pd.Timestamp(current_end)
    if current_end <= reference_end:
        raise ValueError(f"activity: the current window's end {current_end} must come after "
                         f"the reference window's end {reference_end}")  # fmt: skip
    ref_counts, ref_active = window_counts(events, reference_end, days, base_days)
    cur_counts, cur_active = window_counts(events, current_end, days, base_days)
    if min(ref_active, cur_active) == 0:
        raise ValueError(
            f"activity: no customer had an event in the {base_days} days before "
            f"the window ending {reference_end if ref_active == 0 else current_end}"
        )
    joined = pd.merge(_per_role(ref_counts), _per_role(cur_counts), how="outer", left_index=True,
                      right_index=True, suffixes=("_ref", "_cur")).fillna(0.0)  # fmt: skip
    e_ref, e_cur = joined["events_ref"].to_numpy(), joined["events_cur"].to_numpy()
    tested = e_ref + e_cur >= min_events
    # half an event added to each count (Haldane): a role that vanished, or appeared, from one
    # window to the next is a finite, testable change
    n_ref, n_cur = e_ref + 0.5, e_cur + 0.5
    log_change = np.log(n_cur / cur_active) - np.log(n_ref / ref_active)
    se = np.sqrt((joined["squares_ref"].to_numpy() + 0.5) / n_ref**2
                 + (joined["squares_cur"].to_numpy() + 0.5) / n_cur**2)  # fmt: skip
    table = pd.DataFrame({
        "role": joined.index.to_numpy(), "reference_events": e_ref, "current_events": e_cur,
        "reference_rate": e_ref / ref_active, "current_rate": e_cur / cur_active,
        **changes(log_change, se, tested),
    })  # fmt: skip
    return Activity(reference_end, current_end, days, table.reset_index(drop=True))


def changes(log_change: np.ndarray, se: np.ndarray, tested: np.ndarray) -> dict[str, np.ndarray]:
    """Per role, from the change on the log scale and its standard error: ``change``, the
    Bonferroni-adjusted 95 % interval (``low``, ``high``: joint over the tested roles),
    ``shift`` (the smallest change the interval allows, 0 when it covers none) and
    ``tested``; the interval and shift are NaN for a role not tested."""
    z = norm.ppf(1 - ALPHA / 2 / max(int(tested.sum()), 1))
    low, high = np.expm1(log_change - z * se), np.expm1(log_change + z * se)
    shift = np.where((low > 0) | (high < 0), np.minimum(abs(low), abs(high)), 0.0)
    return {"change": np.expm1(log_change), "low": np.where(tested, low, np.nan),
            "high": np.where(tested, high, np.nan), "shift": np.where(tested, shift, np.nan),
            "tested": tested}  # fmt: skip
