"""Point-in-time feature vectors: ``build_features(events, as_of, feature_set)``.

The one implementation behind training sets, the online store and the service's cold-start
scoring (DESIGN section 4): features see only events with ``timestamp <= as_of``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from features import families
from features.families import DAY_US, EventArrays
from features.offer_history import offer_history
from features.registry import CHANNELS, REGISTRY, FeatureSet, get_feature_set
from features.roles import ROLE_DTYPE

FAMILY_FUNCTIONS = {
    "role_windows": families.role_windows_and_rfm,
    "rfm": families.role_windows_and_rfm,
    "trends": families.role_windows_and_rfm,
    "intervals": families.purchase_intervals,
    "tenure": families.recency_and_tenure,
    "products": families.products,
    "channels": families.channels,
    "feedback": families.feedback,
}
# rfm's recency features come from the recency pass
RECENCY = {"recency_days", "purchase_recency_days", "engagement_recency_days",
           "cancel_recency_days", "subscription_start_recency_days"}  # fmt: skip


def to_utc(as_of: object) -> pd.Timestamp:
    """A tz-aware UTC timestamp (naive input is read as UTC)."""
    try:
        ts = pd.Timestamp(as_of)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"as_of must be a timestamp; got {as_of!r} ({exc})") from None
    if ts is pd.NaT:
        raise ValueError(f"as_of must be a timestamp; got {as_of!r}")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def epoch_us(ts: pd.Timestamp) -> int:
    """Microseconds since the epoch (``Timestamp.value`` is always nanoseconds)."""
    return int(np.datetime64(ts.tz_convert(None), "us").astype(np.int64))


def build_features(
    events: pd.DataFrame,
    as_of: object,
    feature_set: str | FeatureSet = "default",
    customers: pd.DataFrame | None = None,
    exposures: pd.DataFrame | None = None,
    offers: pd.DataFrame | None = None,
    response_window_days: int = 14,
    *,
    event_types: tuple[str, ...] = (),
    subscriptions: pd.DataFrame | None = None,
    btyd: object = None,
) -> pd.DataFrame:
    """Feature vectors of every customer with at least one event up to ``as_of``.

    Parameters
    ----------
    events : DataFrame from ``load_events`` (``customer_id``, ``timestamp``, ``role``,
        ``amount``, ``product``, ``channel``).
    as_of : timestamp; naive is UTC. Only events with ``timestamp <= as_of`` are used.
    feature_set : a :class:`FeatureSet` or its key (``"default"``, ``"rfm_core@1"``).
    customers, exposures, offers : optional validated tables for static attributes, signup
        dates and offer history (``offers`` maps exposures to offer kinds).
    response_window_days : an exposure's outcome counts once its window closed by ``as_of``.
    event_types : event types with features of their own (``features.event_types``).
    subscriptions : a validated subscriptions table: adds the contract features
        (``features.subscription_features``).
    btyd : a :class:`features.btyd_features.BTYDSpec` (buy-till-you-die features), or None.

    Returns
    -------
    DataFrame with ``customer_id`` (str), the feature set's features in order (float32), the
    per-type, contract and buy-till-you-die features asked for (float32), then its static
    attributes (datetime attributes as days from them to ``as_of``, float64); one row per
    customer, ordered by first appearance among the events
    up to ``as_of`` (for str and categorical ``customer_id`` alike).
    ``attrs`` carries ``as_of`` (ISO 8601 UTC) and ``feature_set``.
    """
    fs = get_feature_set(feature_set)
    when = to_utc(as_of)
    ev, labels = event_arrays(events, when, with_types=bool(event_types))
    values = _compute(fs, ev, labels, customers, exposures, offers, response_window_days)
    values |= _extras(ev, labels, event_types, subscriptions, btyd)
    seen = _first_appearance(ev)
    frame = pd.DataFrame({"customer_id": pd.array(labels[seen], dtype="str")})
    feats = pd.DataFrame({name: values.pop(name)[seen] for name in list(values)})
    static = _static(fs, customers, labels[seen], when)
    frame = pd.concat([frame, feats, static], axis=1)
    frame.attrs.update(as_of=when.isoformat(), feature_set=fs.key)  # JSON-safe (Parquet)
    return frame


def _extras(
    ev: EventArrays,
    labels: pd.Index,
    event_types: tuple[str, ...],
    subscriptions: pd.DataFrame | None,
    btyd: object,
) -> dict[str, np.ndarray]:
    """The data-dependent families: per event type, contracts, buy-till-you-die."""
    from features.event_types import event_type_features, type_index

    out: dict[str, np.ndarray] = {}
    if event_types:
        kind = type_index(ev.type_labels, event_types)
        out |= event_type_features(ev, np.r_[kind, -1][ev.etype], event_types)
    if subscriptions is not None:
        from features.subscription_features import subscription_features

        out |= subscription_features(subscriptions, labels, ev.as_of)
    if btyd is not None:
        out |= btyd.features(ev)
    return out


def _first_appearance(ev: EventArrays) -> np.ndarray:
    """Codes of the customers with events up to as_of, in order of their first event row."""
    rows = np.arange(len(ev.code), dtype=np.int32 if len(ev.code) < 2**31 - 1 else np.int64)
    first = np.full(ev.n, len(ev.code), dtype=rows.dtype)
    np.minimum.at(first, ev.code, rows)
    seen = np.flatnonzero(first < len(ev.code))
    return seen[np.argsort(first[seen], kind="stable")]


def _compute(
    fs: FeatureSet,
    ev: EventArrays,
    labels: pd.Index,
    customers: pd.DataFrame | None,
    exposures: pd.DataFrame | None,
    offers: pd.DataFrame | None,
    window: int,
) -> dict[str, np.ndarray]:
    wanted = set(fs.features)
    runs = {FAMILY_FUNCTIONS[f] for f in fs.families if f in FAMILY_FUNCTIONS}
    if wanted & RECENCY:
        runs.add(families.recency_and_tenure)
    values: dict[str, np.ndarray] = {}
    for fn in sorted(runs, key=lambda f: f.__name__):  # deterministic order
        values |= fn(ev)
    if "offers" in fs.families:
        values |= offer_history(ev, labels, exposures, offers, window)
    if "days_since_signup" in wanted and customers is not None:
        values["days_since_signup"] = _signup_days(ev, labels, customers, values)
    # pop as we go: each raw array is freed once its filled copy exists (peak memory)
    return {name: _filled(name, values.pop(name)) for name in fs.features}


def _filled(name: str, values: np.ndarray) -> np.ndarray:
    fill = REGISTRY[name].fill
    out = values.astype(REGISTRY[name].dtype, copy=False)
    return out if np.isnan(fill) else np.where(np.isnan(out), fill, out).astype(out.dtype)


def event_arrays(
    events: pd.DataFrame, as_of: pd.Timestamp, with_types: bool = False
) -> tuple[EventArrays, pd.Index]:
    """Flat arrays of the events up to ``as_of`` and the customer label of each code
    (``with_types``: also each event's type code, ``etype``, and the ``type_labels``)."""
    _require(events, ("customer_id", "timestamp", "role"))
    code, labels = _codes(events["customer_id"])
    ts = _epoch_us(events["timestamp"])
    cutoff = epoch_us(as_of)
    time_sorted = bool(len(ts) < 2 or (ts[1:] >= ts[:-1]).all())
    sel = _up_to(ts, cutoff, time_sorted)
    arrays = EventArrays(
        n=len(labels),
        as_of=cutoff,
        code=code[sel],
        ts=ts[sel],
        role=events["role"].cat.codes.to_numpy()[sel],
        amount=_floats(_column(events, "amount", np.nan))[sel],
        product=_codes(_column(events, "product", None))[0][sel],
        channel=_channel_index(_column(events, "channel", None))[sel],
        time_sorted=time_sorted,
    )
    if with_types:
        etype, type_labels = _codes(events["event_type"])
        arrays = replace(arrays, etype=etype[sel], type_labels=type_labels)
    return arrays, labels


def _up_to(ts: np.ndarray, cutoff: int, time_sorted: bool) -> slice | np.ndarray:
    """Selector of the events at or before ``cutoff``: a prefix slice (a view, no copy) when
    the events are in time order, else a mask (or everything)."""
    if time_sorted:
        return slice(0, int(np.searchsorted(ts, cutoff, side="right")))
    keep = ts <= cutoff
    return slice(None) if keep.all() else keep


def _require(events: pd.DataFrame, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in events.columns]
    if missing:
        raise ValueError(
            f"events lacks column(s) {missing}: pass the .data of features.loaders.load_events "
            "(it validates the table and adds each event's lifecycle role)"
        )
    role = events["role"].dtype
    ours = isinstance(role, pd.CategoricalDtype) and role.categories.equals(ROLE_DTYPE.categories)
    if not ours:  # other categories (or their order) would misread the role codes
        raise ValueError("events.role must be the categorical column that load_events adds")


def _column(events: pd.DataFrame, name: str, fill: object) -> pd.Series:
    return events[name] if name in events.columns else pd.Series(fill, index=events.index)


def _codes(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Integer codes (-1 = missing; at least int32, no copy when already) and labels; free
    for categoricals."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes, labels = values.cat.codes.to_numpy(), values.cat.categories
    else:
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        labels = pd.Index(uniques)
    return codes.astype(np.promote_types(codes.dtype, np.int32), copy=False), labels


def _epoch_us(ts: pd.Series) -> np.ndarray:
    """int64 microseconds of a tz-aware timestamp column (a view when already in us)."""
    arr = ts.array if ts.dt.unit == "us" else ts.dt.as_unit("us").array
    return arr.asi8


def _floats(values: pd.Series) -> np.ndarray:
    if values.dtype == np.float64:
        return values.to_numpy()
    return values.to_numpy(dtype="float64", na_value=np.nan)


def _channel_index(channel: pd.Series) -> np.ndarray:
    """Index into CHANNELS, len(CHANNELS) for any other channel, -1 when missing."""
    codes, labels = _codes(channel)
    lookup = np.array([CHANNELS.index(c) if c in CHANNELS else len(CHANNELS) for c in labels])
    lookup = np.r_[lookup, -1].astype(np.int8)  # code -1 -> the last entry
    return lookup[codes]


def _signup_days(
    ev: EventArrays, labels: pd.Index, customers: pd.DataFrame, values: dict[str, np.ndarray]
) -> np.ndarray:
    """Days since signup_at from the customers table when known by as_of, else the event's."""
    if "signup_at" not in customers.columns:
        return values["days_since_signup"]
    pos = labels.get_indexer(customers["customer_id"].astype("str"))
    at = customers["signup_at"].dt.as_unit("us").array.asi8
    ok = (pos >= 0) & (at <= ev.as_of) & customers["signup_at"].notna().to_numpy()
    out = values["days_since_signup"].copy()
    out[pos[ok]] = ((ev.as_of - at[ok]) / DAY_US).astype(np.float32)
    return out


def _static(
    fs: FeatureSet, customers: pd.DataFrame | None, ids: pd.Index, as_of: pd.Timestamp
) -> pd.DataFrame:
    """The feature set's static attributes for ``ids`` (missing customers -> NA; numeric
    attributes as float64, categoricals as they are, datetimes as days since, NaN when
    after ``as_of``)."""
    if customers is None or fs.static == ():
        return pd.DataFrame(index=pd.RangeIndex(len(ids)))
    columns = fs.static or [c for c in customers.columns if c not in ("customer_id", "signup_at")]
    absent = [c for c in columns if c not in customers.columns]
    if absent:
        raise ValueError(f"feature set {fs.key} needs customers columns {absent}")
    table = customers.set_index(customers["customer_id"].astype("str"))[list(columns)]
    out = table.reindex(pd.Index(ids, dtype="str")).reset_index(drop=True)
    # numeric attributes are always float64, so the dtype never depends on whether some
    # customer lacks a customers row (NaN) — pandas and per-partition Dask results agree
    numeric = [c for c in out.columns if pd.api.types.is_numeric_dtype(table[c].dtype)
               and not isinstance(table[c].dtype, pd.CategoricalDtype)]  # fmt: skip
    return _days_since_dates(out.astype(dict.fromkeys(numeric, "float64")), as_of)


def _days_since_dates(frame: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Datetime columns -> ``<name>_days_ago`` (float64 days to ``as_of``; NaN if later)."""
    for name in [c for c in frame.columns if pd.api.types.is_datetime64_any_dtype(frame[c])]:
        when = pd.to_datetime(frame[name], utc=True)
        days = (as_of - when).dt.total_seconds().to_numpy(dtype="float64", na_value=np.nan)
        at = frame.columns.get_loc(name)
        frame = frame.drop(columns=name)
        frame.insert(at, f"{name}_days_ago", np.where(days >= 0, days / 86_400, np.nan))
    return frame
