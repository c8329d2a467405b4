"""Amounts by role: what customers pay per event, last week vs a reference week.

A price change is visible at once in what customers pay, long before it shows in how often
they buy or leave (:mod:`training.monitoring.activity`) or in features that summarise months.
For each role whose amount is money (:data:`MONEY_ROLES`: purchases and renewals, refunds,
subscription starts; which event types they are is the data's role map) and each window of
``days`` days, the statistic is the *geometric mean* amount per event, ``exp(mean(log
amount))``, over the events with a positive amount; ``change = current / reference - 1``.

Why the geometric mean: amounts are right-skewed (a few large orders), so a plain mean moves
with single outliers, while a price change is multiplicative: it moves every amount's log by
the same ``log(factor)``, so the change reads as the price change itself; and the mean of logs
has a simple standard error, where a median would need a bootstrap. The standard error is
clustered by customer (a customer's amounts are alike): for a window's mean ``m = sum_i s_i /
sum_i n_i`` over customers ``i`` (``s_i`` their summed log amounts, ``n_i`` their events),
``se^2 = sum_i (s_i - m n_i)^2 / (sum_i n_i)^2``. The intervals are Bonferroni-adjusted over the
roles checked (95 % jointly), as the activity check's; roles with fewer than ``min_events``
positive amounts in either window are reported, not tested; roles without any amount are left
out. Events without an amount or with a zero one (a free order) are not in the mean; their
count is reported.

The check's value is the largest *shift*: the smallest change a role's interval allows (0 when
it covers 0), so it crosses its threshold only when a change is both material and beyond noise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.monitoring.activity import RoleChanges, changes

MIN_EVENTS = 30  # positive amounts in each window
# roles whose amount is money (a feedback event's amount is a score, DESIGN section 3)
MONEY_ROLES = ("purchase", "refund", "subscription_start", "subscription_cancel")
SUMMARY = ["events", "unpriced", "mean_log", "se", "any"]  # per role and window


class Amounts(RoleChanges):
    """Amount per event by money role; ``table``: role, reference_events, current_events,
    reference_unpriced, current_unpriced, reference_amount, current_amount, change, low,
    high, shift, tested."""


def window_logs(events: pd.DataFrame, end: pd.Timestamp, days: int) -> pd.DataFrame:
    """Per money role of the events in ``(end - days, end]``: ``events`` (positive amounts),
    ``unpriced`` (no or a zero amount), ``mean_log`` and its clustered ``se`` (module
    docstring); roles without any amount in the window are left out."""
    ts = events["timestamp"]
    rows = events.loc[(ts > end - pd.Timedelta(days=days)) & (ts <= end),
                      ["role", "customer_id", "amount"]]  # fmt: skip
    rows = rows[rows["role"].isin(MONEY_ROLES).to_numpy()]
    if rows.empty:
        return pd.DataFrame(columns=SUMMARY, index=pd.Index([], name="role"), dtype=float)
    amount = pd.to_numeric(rows["amount"], errors="coerce").to_numpy(float)
    priced = np.isfinite(amount) & (amount > 0)
    frame = pd.DataFrame({"role": rows["role"].astype(str).to_numpy(),
                          "customer_id": rows["customer_id"].astype(str).to_numpy(),
                          "log": np.where(priced, np.log(np.where(priced, amount, 1.0)), 0.0),
                          "n": priced.astype(float), "unpriced": (~priced).astype(float),
                          "any": np.isfinite(amount).astype(float)})  # fmt: skip
    per = frame.groupby(["role", "customer_id"], sort=False)[["log", "n", "unpriced", "any"]].sum()
    return pd.DataFrame({role: _role_summary(part) for role, part in per.groupby(level="role")},
                        index=SUMMARY).T.rename_axis("role")  # fmt: skip


def _role_summary(per: pd.DataFrame) -> list[float]:
    """One role's customers (``log`` summed, ``n`` events) -> :data:`SUMMARY`."""
    s, n = per["log"].to_numpy(), per["n"].to_numpy()
    total = n.sum()
    mean = s.sum() / total if total else np.nan
    se = np.sqrt(((s - mean * n) ** 2).sum()) / total if total else np.nan
    return [total, per["unpriced"].sum(), mean, se, per["any"].sum()]


def amount_shift(events: pd.DataFrame, reference_end: pd.Timestamp,
                 current_end: pd.Timestamp, days: int = 7,
                 min_events: int = MIN_EVENTS) -> Amounts:  # fmt: skip
    """:class:`Amounts` of the windows of ``days`` days ending at ``reference_end`` and at
    ``current_end`` (``events``: ``customer_id``, ``timestamp`` (UTC), ``role``, ``amount``).

    Raises
    ------
    ValueError
        When the current window does not end after the reference one.
    """
    reference_end, current_end = pd.Timestamp(reference_end), pd.Timestamp(current_end)
    if current_end <= reference_end:
        raise ValueError(f"amounts: the current window's end {current_end} must come after "
                         f"the reference window's end {reference_end}")  # fmt: skip
    ref = window_logs(events, reference_end, days)
    cur = window_logs(events, current_end, days)
    joined = pd.merge(ref, cur, how="outer", left_index=True, right_index=True,
                      suffixes=("_ref", "_cur"))  # fmt: skip
    joined = joined[(joined["any_ref"].fillna(0) + joined["any_cur"].fillna(0)) > 0]
    e_ref, e_cur = (
        joined["events_ref"].fillna(0).to_numpy(),
        joined["events_cur"].fillna(0).to_numpy(),
    )
    tested = np.minimum(e_ref, e_cur) >= min_events
    log_change = joined["mean_log_cur"].to_numpy() - joined["mean_log_ref"].to_numpy()
    se = np.hypot(joined["se_ref"].to_numpy(), joined["se_cur"].to_numpy())
    table = pd.DataFrame({
        "role": joined.index.to_numpy(), "reference_events": e_ref, "current_events": e_cur,
        "reference_unpriced": joined["unpriced_ref"].fillna(0).to_numpy(),
        "current_unpriced": joined["unpriced_cur"].fillna(0).to_numpy(),
        "reference_amount": np.exp(joined["mean_log_ref"].to_numpy()),
        "current_amount": np.exp(joined["mean_log_cur"].to_numpy()),
        **changes(log_change, se, tested),
    })  # fmt: skip
    return Amounts(reference_end, current_end, days, table.reset_index(drop=True))
