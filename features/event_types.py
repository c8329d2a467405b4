"""Features per event type: the business's own event names carry signal that roles blur.

For each chosen event type (the top N by volume, picked once at training time and recorded
with the model), one grouped pass gives:

| feature | definition |
|---|---|
| ``type_<t>_{7,30,90,365}d`` | events of type t in the last 7 / 30 / 90 / 365 days |
| ``type_<t>_trend_30d_vs_90d`` | (last 30 days + 1) / (the 90 days before / 3 + 1) |
| ``type_<t>_per_active_day_90d`` | per active day (a day with any event), last 90 days |
| ``type_<t>_per_30d_tenure`` | ever, per 30 days since the first event (at least 30) |
| ``type_<t>_recency_days`` | days since the last event of type t |

``<t>`` is the type's name in lower case with every run of other characters than letters and
digits replaced by ``_`` (``"Message Sent"`` -> ``message_sent``).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from features.families import DAY_US, EventArrays
from features.roles import normalise_event_type

WINDOWS = (7, 30, 90, 365)


def slug(event_type: str) -> str:
    """The feature-name form of an event type."""
    return re.sub(r"[^0-9a-z]+", "_", normalise_event_type(event_type)).strip("_") or "blank"


def feature_names(event_types: tuple[str, ...]) -> list[str]:
    """Names of the per-type features, in the order :func:`event_type_features` returns."""
    out = []
    for t in (slug(t) for t in event_types):
        out += [f"type_{t}_{w}d" for w in WINDOWS]
        out += [f"type_{t}_trend_30d_vs_90d", f"type_{t}_per_active_day_90d",
                f"type_{t}_per_30d_tenure", f"type_{t}_recency_days"]  # fmt: skip
    return out


def top_event_types(events: pd.DataFrame, n: int, until: object = None) -> tuple[str, ...]:
    """The ``n`` most frequent event types (normalised names; ties by name), counting the
    events up to ``until`` when given."""
    if n <= 0 or "event_type" not in events.columns:
        return ()
    types = events["event_type"]
    if until is not None:
        types = types[events["timestamp"] <= pd.Timestamp(until)]
    counts = types.dropna().astype("str").map(normalise_event_type).value_counts()
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    chosen: dict[str, str] = {}  # slug -> the most frequent spelling with that feature name
    for name, _ in ranked:
        chosen.setdefault(slug(name), name)
    return tuple(chosen.values())[:n]


def type_index(labels: pd.Index, event_types: tuple[str, ...]) -> np.ndarray:
    """For each event-type label (the events' own spelling), its position among
    ``event_types`` (matched after normalisation), or -1."""
    wanted = {normalise_event_type(t): i for i, t in enumerate(event_types)}
    return np.array([wanted.get(normalise_event_type(str(x)), -1) for x in labels], np.int64)


def event_type_features(
    ev: EventArrays, type_of_event: np.ndarray, event_types: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """Per-type windows, trend, rates and recency for ``ev``'s customers.

    ``type_of_event``: for each event of ``ev``, its position in ``event_types`` or -1.
    """
    k = len(event_types)
    if k == 0:
        return {}
    if len({slug(t) for t in event_types}) < k:
        raise ValueError(f"event types {event_types} give the same feature name twice")
    age = ev.days_ago(ev.ts)
    counts = {w: _grid(ev, type_of_event, age < w, k) for w in (*WINDOWS, 120)}
    total = _grid(ev, type_of_event, np.ones(len(age), bool), k)
    active = _active_days(ev, age < 90)
    tenure = _tenure_days(ev)
    last = _last_seen(ev, type_of_event, k)
    out: dict[str, np.ndarray] = {}
    for i, t in enumerate(slug(t) for t in event_types):
        out |= {f"type_{t}_{w}d": counts[w][:, i] for w in WINDOWS}
        before = counts[120][:, i] - counts[30][:, i]
        out[f"type_{t}_trend_30d_vs_90d"] = (counts[30][:, i] + 1) / (before / 3 + 1)
        out[f"type_{t}_per_active_day_90d"] = _ratio(counts[90][:, i], active)
        out[f"type_{t}_per_30d_tenure"] = total[:, i] / np.maximum(tenure, 30.0) * 30.0
        out[f"type_{t}_recency_days"] = last[:, i]
    return {name: v.astype(np.float32) for name, v in out.items()}


def _grid(ev: EventArrays, kind: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
    m = mask & (kind >= 0)
    keys = ev.code[m].astype(np.int64) * k + kind[m]
    return np.bincount(keys, minlength=ev.n * k).reshape(ev.n, k).astype(np.float64)


def _active_days(ev: EventArrays, mask: np.ndarray) -> np.ndarray:
    days = np.unique(ev.code[mask].astype(np.int64) * 100_000 + ev.ts[mask] // DAY_US % 100_000)
    return np.bincount(days // 100_000, minlength=ev.n).astype(np.float64)


def _tenure_days(ev: EventArrays) -> np.ndarray:
    first = np.full(ev.n, ev.as_of, dtype=np.int64)
    np.minimum.at(first, ev.code, ev.ts)
    return (ev.as_of - first) / DAY_US


def _last_seen(ev: EventArrays, kind: np.ndarray, k: int) -> np.ndarray:
    m = kind >= 0
    last = np.full(ev.n * k, np.iinfo(np.int64).min)
    np.maximum.at(last, ev.code[m].astype(np.int64) * k + kind[m], ev.ts[m])
    days = np.where(last == np.iinfo(np.int64).min, np.nan, (ev.as_of - last) / DAY_US)
    return days.reshape(ev.n, k)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)
