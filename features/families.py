"""Feature families: each computes a group of registered features in one grouped pass.

Every family is a pure function of an :class:`EventArrays` (the events up to ``as_of`` as flat
numpy arrays, customers as integer codes ``0..n-1``) returning ``{feature name: array of
length n}``. Grouping is ``np.bincount`` / ``ufunc.at`` over the codes: no per-customer Python
loops, no pandas groupby on the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.registry import CHANNELS, LIFETIME_RATE_WINDOWS, ROLE_NOUN, WINDOWS
from features.roles import ROLE_DTYPE, ROLES

DAY_US = 86_400_000_000
N_ROLES = len(ROLE_DTYPE.categories)  # ROLES + "unmapped"
R = {role: i for i, role in enumerate(ROLE_DTYPE.categories)}
# disjoint age buckets [0,7) [7,30) [30,90) [90,120) [120,365) days; windows are their sums
BUCKET_EDGES_DAYS = (7, 30, 90, 120, 365)
WINDOW_END_BUCKET = {7: 0, 30: 1, 90: 2, 120: 3, 365: 4}


@dataclass(frozen=True)
class EventArrays:
    """Events with ``timestamp <= as_of`` as aligned arrays.

    ``code`` int64 customer code; ``ts`` int64 microseconds UTC; ``role`` int8 (index into
    ``ROLE_DTYPE.categories``); ``amount`` float64 (NaN = none); ``product`` int32 codes
    (-1 = none); ``channel`` int8 index into CHANNELS + ("other",); ``n`` customers.
    """

    n: int
    as_of: int
    code: np.ndarray
    ts: np.ndarray
    role: np.ndarray
    amount: np.ndarray
    product: np.ndarray
    channel: np.ndarray
    time_sorted: bool = False
    etype: np.ndarray | None = None  # event-type codes (event_arrays(..., with_types=True))
    type_labels: object = None  # the event-type label of each code (pd.Index)

    def days_ago(self, ts: np.ndarray) -> np.ndarray:
        return (self.as_of - ts) / DAY_US

    def buckets(self) -> list[slice | np.ndarray]:
        """Selectors of the events in each age bucket ``[0,7) [7,30) ... [120,365)`` days.

        Time-sorted events (the usual case: logs are written in time order) give slices,
        which select without copying; otherwise boolean masks from one bucket pass.
        """
        edges = [self.as_of - e * DAY_US for e in BUCKET_EDGES_DAYS]
        if self.time_sorted:
            cuts = np.searchsorted(self.ts, edges, side="right")  # ascending ts, falling edges
            ends = [len(self.ts), *cuts[:-1]]
            return [slice(int(lo), int(hi)) for lo, hi in zip(cuts, ends, strict=True)]
        b = np.zeros(len(self.ts), dtype=np.int8)
        for edge in edges:
            b += self.ts <= edge
        return [b == k for k in range(len(BUCKET_EDGES_DAYS))]


def _last(n: int, code: np.ndarray, ts: np.ndarray) -> np.ndarray:
    out = np.full(n, np.iinfo(np.int64).min)
    np.maximum.at(out, code, ts)
    return out


def _first(n: int, code: np.ndarray, ts: np.ndarray) -> np.ndarray:
    out = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(out, code, ts)
    return out


def _days_since(ev: EventArrays, when: np.ndarray, missing: int) -> np.ndarray:
    return np.where(when == missing, np.nan, ev.days_ago(when)).astype(np.float32)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan).astype(np.float32)


def role_windows_and_rfm(ev: EventArrays) -> dict[str, np.ndarray]:
    """Counts per role per window, spend per window, trends: one pass per age bucket."""
    key_type = np.int32 if ev.n * N_ROLES < np.iinfo(np.int32).max else np.int64
    key = ev.code.astype(key_type) * key_type(N_ROLES) + ev.role
    running = np.zeros((ev.n, N_ROLES), dtype=np.int32)
    spend = np.zeros(ev.n)
    counts, spends = {}, {}
    for b, sel in enumerate(ev.buckets()):
        running += np.bincount(key[sel], minlength=ev.n * N_ROLES).reshape(ev.n, N_ROLES)
        buys = ev.role[sel] == R["purchase"]
        amount = np.nan_to_num(ev.amount[sel][buys])
        spend += np.bincount(ev.code[sel][buys], weights=amount, minlength=ev.n)
        for w, end in WINDOW_END_BUCKET.items():
            if end == b:
                counts[w], spends[w] = running.copy(), spend.copy()
    out = _window_counts(counts)
    out |= {f"spend_{w}d_amount": spends[w].astype(np.float32) for w in WINDOWS}
    out["avg_order_365d_amount"] = _ratio(spends[365], counts[365][:, R["purchase"]])
    out |= _trends(counts, spends)
    return out


def _window_counts(counts: dict[int, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for w in WINDOWS:
        out[f"events_{w}d"] = counts[w].sum(axis=1).astype(np.float32)
        for role in ROLES:
            out[f"{ROLE_NOUN[role]}_{w}d"] = counts[w][:, R[role]].astype(np.float32)
    return out


def _trends(counts: dict[int, np.ndarray], spends: dict[int, np.ndarray]) -> dict[str, np.ndarray]:
    def trend(recent: np.ndarray, upto120: np.ndarray) -> np.ndarray:
        return ((recent + 1.0) / ((upto120 - recent) / 3.0 + 1.0)).astype(np.float32)

    out = {"events_trend_30d_vs_90d": trend(counts[30].sum(1), counts[120].sum(1))}
    for role in ("purchase", "engagement", "visit"):
        name = f"{ROLE_NOUN[role]}_trend_30d_vs_90d"
        out[name] = trend(counts[30][:, R[role]], counts[120][:, R[role]])
    out["spend_trend_30d_vs_90d"] = trend(spends[30], spends[120])
    return out


def recency_and_tenure(ev: EventArrays) -> dict[str, np.ndarray]:
    """Days since the last event / purchase / engagement, and since the first event."""
    lo, hi = np.iinfo(np.int64).min, np.iinfo(np.int64).max
    out = {"recency_days": _days_since(ev, _last(ev.n, ev.code, ev.ts), lo)}
    for role, name in (("purchase", "purchase_recency_days"),
                       ("engagement", "engagement_recency_days"),
                       ("subscription_cancel", "cancel_recency_days"),
                       ("subscription_start", "subscription_start_recency_days")):  # fmt: skip
        m = ev.role == R[role]
        out[name] = _days_since(ev, _last(ev.n, ev.code[m], ev.ts[m]), lo)
    out["tenure_days"] = _days_since(ev, _first(ev.n, ev.code, ev.ts), hi)
    buys = ev.role == R["purchase"]
    out["days_since_first_purchase"] = _days_since(ev, _first(ev.n, ev.code[buys], ev.ts[buys]), hi)
    signups = ev.role == R["signup"]
    out["days_since_signup"] = _days_since(ev, _first(ev.n, ev.code[signups], ev.ts[signups]), hi)
    return out


def purchase_intervals(ev: EventArrays) -> dict[str, np.ndarray]:
    """All of a customer's purchases up to as_of: count, gaps (mean, std, recency ratio),
    lifetime spend, mean and first order, recent purchase rates vs the lifetime rate."""
    m = ev.role == R["purchase"]
    code, ts, amount = ev.code[m], ev.ts[m], ev.amount[m]
    order = np.lexsort((ts, code))
    code, ts, amount = code[order], ts[order], amount[order]
    same = code[1:] == code[:-1]
    gaps = (np.diff(ts) / DAY_US)[same]
    mean, std = _mean_and_std(ev.n, code[1:][same], gaps)
    last = _days_since(ev, _last(ev.n, code, ts), np.iinfo(np.int64).min)
    total = np.bincount(code, minlength=ev.n).astype(np.float64)
    spend = np.bincount(code, weights=np.nan_to_num(amount), minlength=ev.n)
    first = np.r_[True, ~same] if len(code) else np.zeros(0, bool)
    first_ts = np.full(ev.n, np.iinfo(np.int64).max)
    first_ts[code[first]] = ts[first]
    at_first = ts == first_ts[code]  # purchases at the first moment: their mean, any row order
    first_amount = _ratio(np.bincount(code[at_first], weights=np.nan_to_num(amount[at_first]),
                                      minlength=ev.n),
                          np.bincount(code[at_first], minlength=ev.n))  # fmt: skip
    since_first = np.where(total > 0, ev.days_ago(first_ts), np.nan)
    out = {
        "purchases_total": total.astype(np.float32),
        "purchase_interval_mean_days": mean.astype(np.float32),
        "purchase_interval_std_days": std.astype(np.float32),
        "purchase_recency_vs_interval": _ratio(last, mean),
        "spend_total_amount": spend.astype(np.float32),
        "avg_order_amount": _ratio(spend, total),
        "first_order_amount": first_amount,
    }
    for w in LIFETIME_RATE_WINDOWS:
        recent = np.bincount(code[ev.days_ago(ts) < w], minlength=ev.n)
        lifetime = total * w / np.fmax(since_first, w)
        out[f"purchase_rate_{w}d_vs_lifetime"] = _ratio(recent, lifetime)
    return out


def _mean_and_std(n: int, code: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-code mean (NaN without values) and sample std (NaN below two values), float64.

    Two passes (deviations from the float64 mean): ``E[x^2] - mean^2`` cancels badly for
    near-equal gaps of hundreds of days.
    """
    count = np.bincount(code, minlength=n)
    mean = np.bincount(code, weights=x, minlength=n) / np.maximum(count, 1)
    dev2 = np.bincount(code, weights=(x - mean[code]) ** 2, minlength=n)
    std = np.where(count > 1, np.sqrt(dev2 / np.maximum(count - 1, 1)), np.nan)
    return np.where(count > 0, mean, np.nan), std


def products(ev: EventArrays) -> dict[str, np.ndarray]:
    """Distinct products bought in 365 days and the top product's share of those purchases."""
    m = (ev.role == R["purchase"]) & (ev.product >= 0) & (ev.ts > ev.as_of - 365 * DAY_US)
    n_products = int(ev.product.max(initial=-1)) + 1
    keys = ev.code[m].astype(np.int64) * max(n_products, 1) + ev.product[m]
    pairs, counts = np.unique(keys, return_counts=True)
    owner = pairs // max(n_products, 1)
    top = np.zeros(ev.n)
    np.maximum.at(top, owner, counts)
    return {
        "distinct_products_365d": np.bincount(owner, minlength=ev.n).astype(np.float32),
        "top_product_share_365d": _ratio(top, np.bincount(ev.code[m], minlength=ev.n)),
    }


def channels(ev: EventArrays) -> dict[str, np.ndarray]:
    """Share of each channel among the customer's events with a channel, last 90 days."""
    m = (ev.channel >= 0) & (ev.ts > ev.as_of - 90 * DAY_US)
    width = len(CHANNELS) + 1
    grid = np.bincount(ev.code[m] * width + ev.channel[m], minlength=ev.n * width)
    grid = grid.reshape(ev.n, width)
    total = grid.sum(axis=1)
    names = (*CHANNELS, "other")
    return {f"channel_{c}_share_90d": np.nan_to_num(_ratio(grid[:, i], total))
            for i, c in enumerate(names)}  # fmt: skip


def feedback(ev: EventArrays) -> dict[str, np.ndarray]:
    """Latest feedback score, and the mean score over 365 days."""
    m = (ev.role == R["feedback"]) & ~np.isnan(ev.amount)
    code, ts, score = ev.code[m], ev.ts[m], ev.amount[m]
    order = np.lexsort((score, ts, code))  # ties in time: the higher score is "last"
    code, score = code[order], score[order]
    last_of_group = np.r_[code[1:] != code[:-1], True] if len(code) else np.zeros(0, bool)
    last = np.full(ev.n, np.nan, dtype=np.float32)
    last[code[last_of_group]] = score[last_of_group]
    recent = ts[order] > ev.as_of - 365 * DAY_US
    total = np.bincount(code[recent], weights=score[recent], minlength=ev.n)
    return {
        "feedback_last_score": last,
        "feedback_mean_score_365d": _ratio(total, np.bincount(code[recent], minlength=ev.n)),
    }
