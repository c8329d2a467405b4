"""Invariants of build_features (DESIGN.md sections 4 and 10), property-tested on small tables.

No leakage (events after as_of change nothing), row-order invariance, per-customer
independence, monotone windows, str/categorical ids alike. Events are drawn over a few
customers, every event type of the default role map, two years of timestamps, with extra
weight on window edges (exactly 0/7/30/90/120/365 days before as_of), a coarse day grid and
bursts (same customer, type and moment: ties in time); amounts are multiples of 0.25, so sums
are exact in any order and frames are compared exactly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features import load_events
from features.builder import build_features
from features.registry import ROLE_NOUN, WINDOWS
from features.roles import default_role_map

START = pd.Timestamp("2023-01-01", tz="UTC")
SPAN_HOURS = 2 * 365 * 24
ROLE_MAP = default_role_map()
EVENT_TYPES = sorted(ROLE_MAP.mapping)
EDGE_DAYS = (0, 7, 30, 90, 120, 365)
PRODUCTS = (None, "p1", "p2", "p3")
CHANNELS = (None, "web", "app", "store", "email", "kiosk")
SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)  # fmt: skip

as_ofs = st.integers(30 * 24, SPAN_HOURS).map(lambda h: START + pd.Timedelta(hours=h))
# when an event happens: anywhere (hour grid), on a window edge, on a coarse day grid or at
# the same moment as the previous event (same customer and type: ties in time)
moments = st.one_of(
    st.tuples(st.just("same"), st.just(0)),
    st.tuples(st.just("hour"), st.integers(0, SPAN_HOURS)),
    st.tuples(st.just("edge"), st.sampled_from(EDGE_DAYS)),
    st.tuples(st.just("day"), st.integers(-3, 12).map(lambda k: 10 * k)),
)
COMMON = ("purchase", "nps_response", "rating", "login", "page_view")  # drawn more often
event_types = st.one_of(st.sampled_from(COMMON), st.sampled_from(EVENT_TYPES))
in_quarters = st.integers(0, 400)  # amounts in quarters: exact sums in any order
amounts = st.one_of(st.none(), in_quarters, in_quarters, in_quarters)  # mostly present


def event_lists(customers: tuple[str, ...], max_size: int = 15) -> st.SearchStrategy:
    one = st.tuples(
        st.sampled_from(customers), moments, event_types, amounts,
        st.sampled_from(PRODUCTS), st.sampled_from(CHANNELS),
    )  # fmt: skip
    return st.lists(one, min_size=2, max_size=max_size)


def to_rows(events: list[tuple], as_of: pd.Timestamp) -> list[dict]:
    """Raw event rows (before load_events); purchases always get an amount."""
    rows: list[dict] = []
    for customer, (kind, n), event_type, quarters, product, channel in events:
        when = START + pd.Timedelta(hours=n) if kind == "hour" else as_of - pd.Timedelta(days=n)
        if kind == "same" and rows:  # a burst: another event like the last, same moment
            last = rows[-1]
            customer, when, event_type = last["customer_id"], last["timestamp"], last["event_type"]
        if quarters is None and ROLE_MAP.role_of(event_type) == "purchase":
            quarters = 0
        amount = None if quarters is None else quarters / 4
        rows.append({"customer_id": customer, "timestamp": when, "event_type": event_type,
                     "amount": amount, "product": product, "channel": channel})  # fmt: skip
    return rows


@st.composite
def event_rows(
    draw: st.DrawFn, as_of: pd.Timestamp, customers: tuple[str, ...], max_size: int = 15
) -> list[dict]:
    """Raw event rows for ``customers`` around ``as_of``."""
    return to_rows(draw(event_lists(customers, max_size)), as_of)


@st.composite
def future_rows(draw: st.DrawFn, as_of: pd.Timestamp) -> list[dict]:
    """Events strictly after ``as_of`` (1 µs to a year later), for old and new customers."""
    rows = draw(event_rows(as_of, ("a", "b", "c", "new"), max_size=8))
    later = st.integers(1, 365 * 86_400_000_000).map(lambda us: pd.Timedelta(microseconds=us))
    offsets = draw(st.lists(later, min_size=len(rows), max_size=len(rows)))
    return [row | {"timestamp": as_of + dt} for row, dt in zip(rows, offsets, strict=True)]


def load(rows: list[dict]) -> pd.DataFrame:
    return load_events(pd.DataFrame(rows), roles=ROLE_MAP).data


def part(data: pd.DataFrame, tag: str) -> pd.DataFrame:
    """The loaded rows tagged ``tag`` (an extra column, ignored by the builder)."""
    return data[data["tag"] == tag].reset_index(drop=True)


def tagged(rows: list[dict], tag: str) -> list[dict]:
    return [row | {"tag": tag} for row in rows]


def assert_same(frame: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Exactly equal (NaN == NaN), row order included. Faster than assert_frame_equal on
    90 columns; that still runs on a mismatch, for a readable diff."""
    try:
        assert list(frame.columns) == list(expected.columns)
        assert frame.dtypes.equals(expected.dtypes) and frame.index.equals(expected.index)
        assert frame["customer_id"].tolist() == expected["customer_id"].tolist()
        values = frame.drop(columns="customer_id").to_numpy()
        np.testing.assert_array_equal(values, expected.drop(columns="customer_id").to_numpy())
    except AssertionError:
        pd.testing.assert_frame_equal(frame, expected, check_exact=True)
        raise


def by_customer(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("customer_id", ignore_index=True)


def first_appearance(data: pd.DataFrame, as_of: pd.Timestamp) -> list[str]:
    return data.loc[data["timestamp"] <= as_of, "customer_id"].unique().tolist()


@st.composite
def with_future(draw: st.DrawFn) -> tuple[pd.Timestamp, list[dict], list[dict], bool]:
    as_of = draw(as_ofs)
    rows = draw(event_rows(as_of, ("a", "b", "c")))
    return as_of, rows, draw(future_rows(as_of)), draw(st.booleans())


@given(with_future())
@SETTINGS
def test_events_after_as_of_never_change_the_features(case):
    as_of, rows, later, prepend = case
    now, later = tagged(rows, "now"), tagged(later, "later")
    data = load(later + now if prepend else now + later)
    expected = build_features(part(data, "now"), as_of)
    # not even the row order: it follows first appearance among the events up to as_of
    assert_same(build_features(data, as_of), expected)


@st.composite
def shuffled(draw: st.DrawFn) -> tuple[pd.Timestamp, list[dict], list[int]]:
    as_of = draw(as_ofs)
    rows = draw(event_rows(as_of, ("a", "b", "c"), max_size=20))
    return as_of, rows, draw(st.permutations(range(len(rows))))


@given(shuffled())
@SETTINGS
def test_shuffling_rows_changes_nothing_but_the_row_order(case):
    as_of, rows, new_position = case
    data = load([row | {"position": p} for row, p in zip(rows, new_position, strict=True)])
    permuted = data.sort_values("position", ignore_index=True)
    expected, frame = build_features(data, as_of), build_features(permuted, as_of)
    assert_same(by_customer(frame), by_customer(expected))
    assert frame["customer_id"].tolist() == first_appearance(permuted, as_of)
    assert expected["customer_id"].tolist() == first_appearance(data, as_of)


@st.composite
def two_groups(draw: st.DrawFn) -> tuple[pd.Timestamp, list[dict], list[dict], bool]:
    as_of = draw(as_ofs)
    mine = draw(event_rows(as_of, ("a", "b")))
    others = draw(event_rows(as_of, ("x", "y", "z")))
    return as_of, mine, others, draw(st.booleans())


@given(two_groups())
@SETTINGS
def test_other_customers_events_never_change_a_customers_row(case):
    as_of, mine, others, prepend = case
    mine, others = tagged(mine, "mine"), tagged(others, "others")
    data = load(others + mine if prepend else mine + others)
    expected = build_features(part(data, "mine"), as_of)
    frame = build_features(data, as_of)
    assert_same(frame[frame["customer_id"].isin(["a", "b"])].reset_index(drop=True), expected)


@st.composite
def one_table(draw: st.DrawFn) -> tuple[pd.Timestamp, list[dict]]:
    as_of = draw(as_ofs)
    return as_of, draw(event_rows(as_of, ("a", "b", "c"), max_size=25))


@given(one_table())
@SETTINGS
def test_longer_windows_never_count_less(case):
    as_of, rows = case
    frame = build_features(load(rows), as_of)
    prefixes = [f"{noun}_" for noun in ("events", *ROLE_NOUN.values())]
    groups = [[f"{p}{w}d" for w in WINDOWS] for p in prefixes]
    groups.append([f"spend_{w}d_amount" for w in WINDOWS])
    for names in groups:
        values = frame[names].to_numpy()
        assert (np.diff(values, axis=1) >= 0).all(), names
    assert (frame["purchases_365d"] <= frame["purchases_total"]).all()
    # every default event type has a role, so the roles add up to all events
    for w in WINDOWS:
        roles = frame[[f"{noun}_{w}d" for noun in ROLE_NOUN.values()]].sum(axis=1)
        np.testing.assert_array_equal(roles.to_numpy(), frame[f"events_{w}d"].to_numpy())


@given(one_table())
@SETTINGS
def test_str_and_categorical_customer_ids_give_equal_frames(case):
    as_of, rows = case
    data = load(rows)
    as_category = data.assign(customer_id=data["customer_id"].astype("category"))
    assert_same(build_features(as_category, as_of), build_features(data, as_of))
