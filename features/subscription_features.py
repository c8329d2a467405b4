"""Contract features from a subscriptions table (billing periods), point in time.

A period is known once it has started (``period_start <= as_of``); its scheduled end is
known from then on. Features per customer:

| feature | definition |
|---|---|
| ``contract_active`` | 1 when a known period covers ``as_of`` |
| ``contract_periods_total`` | periods started up to ``as_of`` |
| ``contract_tenure_days`` | days since the first period started |
| ``contract_days_to_period_end`` | days from ``as_of`` to the end of the current period |
| ``contract_days_since_end`` | days since the last period ended (not active) |
| ``contract_recurring_value`` | recurring value of the latest period |
| ``contract_discount`` | discount of the latest period (0-1) |
| ``contract_value_change_90d`` | latest recurring value minus the one 90 days earlier |
| ``contract_discount_ended_90d`` | a discount ran 90 days earlier, not now |
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.families import DAY_US

FEATURES = (
    "contract_active", "contract_periods_total", "contract_tenure_days",
    "contract_days_to_period_end", "contract_days_since_end", "contract_recurring_value",
    "contract_discount", "contract_value_change_90d", "contract_discount_ended_90d",
)  # fmt: skip


def _us(column: pd.Series) -> np.ndarray:
    return column.dt.as_unit("us").array.asi8


def known_periods(subscriptions: pd.DataFrame, labels: pd.Index, as_of_us: int) -> pd.DataFrame:
    """The periods started by ``as_of`` of customers in ``labels``, sorted by customer and
    start: columns ``pos`` (index into labels), ``start``, ``end`` (us), ``value``, ``discount``."""
    pos = labels.get_indexer(subscriptions["customer_id"].astype("str"))
    start = _us(subscriptions["period_start"])
    keep = (pos >= 0) & (start <= as_of_us)
    frame = pd.DataFrame({
        "pos": pos[keep], "start": start[keep], "end": _us(subscriptions["period_end"])[keep],
        "value": _column(subscriptions, "recurring_value")[keep],
        "discount": _column(subscriptions, "discount")[keep],
    })  # fmt: skip
    return frame.sort_values(["pos", "start"], kind="stable")


def _column(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name not in frame.columns:
        return np.full(len(frame), np.nan)
    return frame[name].to_numpy(dtype="float64", na_value=np.nan)


def subscription_features(
    subscriptions: pd.DataFrame | None, labels: pd.Index, as_of_us: int
) -> dict[str, np.ndarray]:
    """The contract features of every customer in ``labels`` (NaN / 0 without periods)."""
    n = len(labels)
    if subscriptions is None or len(subscriptions) == 0:
        return _empty(n)
    p = known_periods(subscriptions, labels, as_of_us)
    latest = p.groupby("pos").tail(1)
    then = as_of_us - 90 * DAY_US
    earlier = p[p["start"] <= then].groupby("pos").tail(1)
    out = _empty(n)
    idx, end = latest["pos"].to_numpy(), latest["end"].to_numpy()
    active = end > as_of_us
    out["contract_active"][idx] = active
    out["contract_periods_total"] = np.bincount(p["pos"], minlength=n).astype(np.float32)
    first = p.groupby("pos")["start"].min()
    out["contract_tenure_days"][first.index] = (as_of_us - first.to_numpy()) / DAY_US
    out["contract_days_to_period_end"][idx[active]] = (end[active] - as_of_us) / DAY_US
    out["contract_days_since_end"][idx[~active]] = (as_of_us - end[~active]) / DAY_US
    out["contract_recurring_value"][idx] = latest["value"].to_numpy()
    out["contract_discount"][idx] = np.nan_to_num(latest["discount"].to_numpy())
    _changes(out, latest, earlier, n)
    return {k: v.astype(np.float32) for k, v in out.items()}


def _changes(out: dict, latest: pd.DataFrame, earlier: pd.DataFrame, n: int) -> None:
    before = earlier.set_index("pos").reindex(latest["pos"])
    idx = latest["pos"].to_numpy()
    out["contract_value_change_90d"][idx] = latest["value"].to_numpy() - before["value"].to_numpy()
    had = np.nan_to_num(before["discount"].to_numpy()) > 0
    out["contract_discount_ended_90d"][idx] = had & (np.nan_to_num(latest["discount"]) == 0)


def _empty(n: int) -> dict[str, np.ndarray]:
    zero = ("contract_active", "contract_periods_total", "contract_discount_ended_90d")
    return {f: (np.zeros if f in zero else _nans)(n) for f in FEATURES}


def _nans(n: int) -> np.ndarray:
    return np.full(n, np.nan)


def contract_ends(
    subscriptions: pd.DataFrame, labels: pd.Index, as_of_us: int, horizon_days: int,
    grace_days: int,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Contractual churn: (holds a contract at ``as_of``, its coverage ends within the
    horizon), per customer in ``labels``.

    Coverage is the union of all periods (future ones included: this is a label); it ends
    within ``(as_of, as_of + horizon]`` when no period covers ``as_of + horizon`` and no
    period starts within ``grace_days`` after the covered stretch ends.
    """
    n = len(labels)
    pos = labels.get_indexer(subscriptions["customer_id"].astype("str"))
    start, end = _us(subscriptions["period_start"]), _us(subscriptions["period_end"])
    ok = pos >= 0
    pos, start, end = pos[ok], start[ok], end[ok] + grace_days * DAY_US
    holder = np.zeros(n, bool)
    holder[pos[(start <= as_of_us) & (end - grace_days * DAY_US > as_of_us)]] = True
    later = as_of_us + horizon_days * DAY_US
    covered = np.zeros(n, bool)
    covered[pos[(start <= later) & (end > later)]] = True
    return holder, holder & ~covered
