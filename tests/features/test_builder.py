"""build_features on tiny hand-written tables, one family at a time, with hand-computed answers.

Every event is placed ``days`` before ``AS_OF`` (negative = after it), so the window
arithmetic can be read straight off the rows. Invariants (no leakage, row order, per-customer
independence, monotone windows) are property-tested in test_builder_properties.py.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from features import load_customers, load_events, load_exposures, load_offers
from features.builder import build_features
from features.registry import DEFAULT, REGISTRY, RFM_CORE, ROLE_NOUN, WINDOWS, FeatureSet

AS_OF = pd.Timestamp("2024-06-30T12:00:00Z")
US = pd.Timedelta(microseconds=1)
NAN = float("nan")


def at(days: float | pd.Timedelta) -> pd.Timestamp:
    """The moment ``days`` before AS_OF (a Timedelta is taken as is)."""
    return AS_OF - (days if isinstance(days, pd.Timedelta) else pd.Timedelta(days=days))


def ev(
    customer: str,
    days: float | pd.Timedelta,
    event_type: str,
    amount: float | None = None,
    product: str | None = None,
    channel: str | None = None,
) -> dict:
    return {
        "customer_id": customer, "timestamp": at(days), "event_type": event_type,
        "amount": amount, "product": product, "channel": channel,
    }  # fmt: skip


def load(rows: list[dict]) -> pd.DataFrame:
    return load_events(pd.DataFrame(rows)).data


def build(rows: list[dict], as_of: object = AS_OF, **kwargs: object) -> pd.DataFrame:
    """Features indexed by customer_id (``build_features`` itself returns a RangeIndex)."""
    return build_features(load(rows), as_of, **kwargs).set_index("customer_id")


def check(frame: pd.DataFrame, customer: str, **expected: float) -> None:
    """Each feature of ``customer`` equals its hand-computed value (NaN matches NaN)."""
    got = {name: float(frame.at[customer, name]) for name in expected}
    for name, want in expected.items():
        if math.isnan(want):
            assert math.isnan(got[name]), f"{customer}.{name}: want NaN, got {got[name]}"
        else:
            assert got[name] == pytest.approx(want, rel=1e-6, abs=1e-6), f"{customer}.{name}"


def windows(prefix: str, counts: tuple[float, float, float, float], suffix: str = "") -> dict:
    """``{prefix_7d<suffix>: n7, ..._30d: n30, ...}`` for the four windows."""
    return {f"{prefix}_{w}d{suffix}": n for w, n in zip(WINDOWS, counts, strict=True)}


# ---- role windows ---------------------------------------------------------------------


def test_window_edges_as_of_included_7_days_old_only_in_30d_future_excluded():
    rows = [
        ev("a", 0, "login"),  # exactly at as_of: inside every window
        ev("a", 7, "login"),  # exactly 7 days old: not in 7d, in 30d
        ev("a", -US, "login"),  # 1 µs after as_of: nowhere
    ]
    frame = build(rows)
    check(frame, "a", **windows("engagements", (1, 2, 2, 2)), **windows("events", (1, 2, 2, 2)))


@pytest.mark.parametrize("w", WINDOWS)
def test_an_event_exactly_w_days_old_is_outside_the_w_day_window_1us_younger_inside(w):
    frame = build([ev("a", w, "page_view"), ev("a", pd.Timedelta(days=w) - US, "page_view")])
    expected = [1 if v == w else (2 if v > w else 0) for v in WINDOWS]
    assert [frame.at["a", f"visits_{v}d"] for v in WINDOWS] == expected


def test_each_default_event_type_counts_for_its_role_in_every_window():
    types = {
        "page_view": "visit", "login": "engagement", "app_open": "engagement",
        "email_click": "engagement", "pricing_view": "intent", "add_to_cart": "intent",
        "purchase": "purchase", "support_ticket": "support", "nps_response": "feedback",
        "referral": "referral", "review": "review", "signup": "signup",
        "subscription_cancel": "subscription_cancel", "refund": "refund",
    }  # fmt: skip
    rows = [ev("a", 1, t, amount=5.0 if t in ("purchase", "nps_response") else None) for t in types]
    frame = build(rows)
    for role, noun in ROLE_NOUN.items():
        n = sum(r == role for r in types.values())
        check(frame, "a", **windows(noun, (n,) * 4))
    check(frame, "a", **windows("events", (len(types),) * 4))


def test_role_counts_per_window():
    rows = [
        ev("a", 2, "support_ticket"), ev("a", 20, "support_ticket"), ev("a", 60, "complaint"),
        ev("a", 200, "support_chat"), ev("a", 400, "support_ticket"),
        ev("a", 3, "page_view"), ev("b", 100, "page_view"),
    ]  # fmt: skip
    frame = build(rows)
    check(frame, "a", **windows("support_tickets", (1, 2, 3, 4)), **windows("visits", (1,) * 4))
    check(frame, "a", **windows("events", (2, 3, 4, 5)))
    check(frame, "b", **windows("support_tickets", (0,) * 4), **windows("visits", (0, 0, 0, 1)))


# ---- rfm: spend, average order, recency -------------------------------------------------


def test_spend_per_window_and_average_order():
    rows = [
        ev("a", 0, "purchase", 10.0), ev("a", 7, "purchase", 20.0),
        ev("a", 30, "order", 30.0), ev("a", 90, "purchase", 40.0),
        ev("a", 365, "purchase", 50.0),  # outside 365d
        ev("a", -US, "purchase", 999.0),  # after as_of
        ev("a", 1, "nps_response", 9.0), ev("a", 1, "refund", 7.0),  # amounts, not spend
        ev("b", 1, "login"),
    ]  # fmt: skip
    frame = build(rows)
    check(frame, "a", **windows("spend", (10, 30, 60, 100), "_amount"), avg_order_365d_amount=25)
    check(frame, "a", **windows("purchases", (1, 2, 3, 4)))
    check(frame, "b", **windows("spend", (0,) * 4, "_amount"), avg_order_365d_amount=NAN)


def test_a_zero_amount_purchase_counts_as_an_order():
    frame = build([ev("a", 1, "purchase", 0.0), ev("a", 2, "purchase", 30.0)])
    check(frame, "a", purchases_7d=2, spend_7d_amount=30, avg_order_365d_amount=15)


def test_recency_in_fractional_days_per_role():
    rows = [
        ev("a", 10.25, "purchase", 1.0), ev("a", 3, "login"), ev("a", 2.5, "page_view"),
        ev("a", 40, "purchase", 1.0), ev("a", -1, "purchase", 1.0),  # future ignored
        ev("b", 400, "support_ticket"),
    ]  # fmt: skip
    frame = build(rows)
    check(frame, "a", recency_days=2.5, purchase_recency_days=10.25, engagement_recency_days=3)
    check(frame, "b", recency_days=400, purchase_recency_days=NAN, engagement_recency_days=NAN)


# ---- trends -----------------------------------------------------------------------------


def test_trends_last_30_days_against_the_90_days_before():
    # recent = [0, 30) days old, before = [30, 120) days old
    rows = [
        ev("a", 1, "purchase", 10.0), ev("a", 29, "purchase", 20.0),  # recent
        ev("a", 30, "purchase", 30.0), ev("a", 60, "purchase", 40.0),  # before
        ev("a", 119, "purchase", 50.0),  # before
        ev("a", 120, "purchase", 1000.0),  # neither
        ev("a", 5, "login"), ev("a", 100, "page_view"),
        ev("b", 200, "login"),
    ]  # fmt: skip
    frame = build(rows)
    check(
        frame, "a",
        purchases_trend_30d_vs_90d=(2 + 1) / (3 / 3 + 1),
        spend_trend_30d_vs_90d=(30 + 1) / (120 / 3 + 1),
        events_trend_30d_vs_90d=(3 + 1) / (4 / 3 + 1),
        engagements_trend_30d_vs_90d=(1 + 1) / (0 / 3 + 1),
        visits_trend_30d_vs_90d=(0 + 1) / (1 / 3 + 1),
    )  # fmt: skip
    names = ("events", "purchases", "engagements", "visits", "spend")
    check(frame, "b", **{f"{n}_trend_30d_vs_90d": 1.0 for n in names})


# ---- purchase intervals -----------------------------------------------------------------


def test_purchase_intervals_mean_sample_std_and_recency_ratio():
    rows = [
        ev("a", 30, "purchase", 1.0), ev("a", 100, "purchase", 1.0),  # input order unsorted
        ev("a", 10, "purchase", 1.0), ev("a", 70, "purchase", 1.0),
        ev("a", -5, "purchase", 1.0),  # after as_of: ignored
        ev("b", 500, "purchase", 1.0),  # one-time buyer (older than 365 days still counts)
        ev("c", 20.5, "purchase", 1.0), ev("c", 10, "purchase", 1.0),  # a single gap
        ev("d", 1, "login"),
    ]  # fmt: skip
    frame = build(rows)
    # a: gaps 30, 40, 20 -> mean 30, sample std sqrt((0 + 100 + 100) / 2) = 10, 10 / 30
    check(frame, "a", purchases_total=4, purchase_interval_mean_days=30,
          purchase_interval_std_days=10, purchase_recency_vs_interval=10 / 30)  # fmt: skip
    check(frame, "b", purchases_total=1, purchase_interval_mean_days=NAN,
          purchase_interval_std_days=NAN, purchase_recency_vs_interval=NAN)  # fmt: skip
    check(frame, "c", purchases_total=2, purchase_interval_mean_days=10.5,
          purchase_interval_std_days=NAN, purchase_recency_vs_interval=10 / 10.5)  # fmt: skip
    check(frame, "d", purchases_total=0, purchase_interval_mean_days=NAN,
          purchase_interval_std_days=NAN, purchase_recency_vs_interval=NAN)  # fmt: skip


def test_lifetime_spend_orders_and_recent_rates_against_the_lifetime_rate():
    rows = [
        ev("a", 10, "purchase", 30.0), ev("a", 400, "purchase", 10.0),  # input order unsorted
        ev("a", 200, "purchase", 15.0), ev("a", 50, "purchase", 20.0),
        ev("a", -5, "purchase", 99.0),  # after as_of: ignored
        ev("b", 60, "purchase", 0.0),  # a zero-amount first order, 60 days ago
        ev("c", 1, "login"),
    ]  # fmt: skip
    frame = build(rows)
    # a: 4 orders over 400 days -> 0.9 per 90 days, 3.65 per 365; 2 of them within 90 days,
    # 3 within 365 (the 400-day one is not); spend 75 over 4 orders; the first order 10
    check(frame, "a", spend_total_amount=75, avg_order_amount=18.75, first_order_amount=10,
          purchase_rate_90d_vs_lifetime=2 / 0.9,
          purchase_rate_365d_vs_lifetime=3 / 3.65)  # fmt: skip
    # b: younger than both windows: the lifetime rate spreads its 1 order over the window
    check(frame, "b", spend_total_amount=0, avg_order_amount=0, first_order_amount=0,
          purchase_rate_90d_vs_lifetime=1.0, purchase_rate_365d_vs_lifetime=1.0)  # fmt: skip
    check(frame, "c", spend_total_amount=0, avg_order_amount=NAN, first_order_amount=NAN,
          purchase_rate_90d_vs_lifetime=NAN, purchase_rate_365d_vs_lifetime=NAN)  # fmt: skip


def test_equal_purchase_gaps_have_zero_std():
    # regression: E[x^2] - mean^2 with a float32 mean gave ~0.06 days here
    gap = pd.Timedelta(days=187, hours=7, minutes=13)
    rows = [ev("a", pd.Timedelta(days=1) + k * gap, "purchase", 1.0) for k in range(4)]
    frame = build(rows)
    check(frame, "a", purchase_interval_mean_days=gap / pd.Timedelta(days=1))
    assert frame.at["a", "purchase_interval_std_days"] == pytest.approx(0.0, abs=1e-4)


def test_purchases_at_the_same_moment_give_a_zero_gap_and_no_recency_ratio():
    frame = build([ev("a", 3, "purchase", 1.0), ev("a", 3, "purchase", 2.0)])
    check(frame, "a", purchase_interval_mean_days=0, purchase_recency_vs_interval=NAN)


# ---- tenure and signup ------------------------------------------------------------------


def test_tenure_first_purchase_and_signup_from_events():
    rows = [
        ev("a", 400.5, "page_view"), ev("a", 300, "signup"), ev("a", 200, "purchase", 5.0),
        ev("a", 250, "register"),  # a later signup event: the first one counts
        ev("a", -1, "page_view"),
        ev("b", 3, "login"),
    ]  # fmt: skip
    frame = build(rows)
    check(frame, "a", tenure_days=400.5, days_since_first_purchase=200, days_since_signup=300)
    check(frame, "b", tenure_days=3, days_since_first_purchase=NAN, days_since_signup=NAN)


def test_days_since_signup_prefers_customers_signup_at_known_by_as_of():
    rows = [ev(c, 300, "signup") for c in ("a", "b", "c")] + [ev("d", 5, "login")]
    rows += [ev("e", 5, "login")]
    customers = load_customers(
        pd.DataFrame({
            "customer_id": ["a", "b", "c", "d", "zz"],
            "signup_at": [at(100), at(-10), None, at(50.5), at(1)],
        })
    ).data  # fmt: skip
    frame = build(rows, customers=customers)
    check(frame, "a", days_since_signup=100)  # signup_at wins over the event
    check(frame, "b", days_since_signup=300)  # signup_at after as_of: ignored
    check(frame, "c", days_since_signup=300)  # no signup_at: the event
    check(frame, "d", days_since_signup=50.5)  # signup_at without a signup event
    check(frame, "e", days_since_signup=NAN)  # in neither
    assert "zz" not in frame.index  # no events: no row


# ---- products and channels -----------------------------------------------------------------


def test_distinct_products_and_top_product_share_over_365_days():
    rows = [
        ev("a", 1, "purchase", 1.0, "p1"), ev("a", 2, "purchase", 1.0, "p1"),
        ev("a", 3, "purchase", 1.0, "p2"), ev("a", 364, "purchase", 1.0, "p3"),
        ev("a", 4, "purchase", 1.0),  # no product: not in the share
        ev("a", 365, "purchase", 1.0, "p4"),  # 365 days old: outside
        ev("a", 5, "page_view", product="p5"),  # not a purchase
        ev("b", 1, "purchase", 1.0), ev("c", 1, "login", product="p1"),
    ]  # fmt: skip
    frame = build(rows)
    check(frame, "a", distinct_products_365d=3, top_product_share_365d=2 / 4)
    check(frame, "b", distinct_products_365d=0, top_product_share_365d=NAN)
    check(frame, "c", distinct_products_365d=0, top_product_share_365d=NAN)


def test_channel_shares_over_90_days_unknown_is_other_missing_ignored():
    rows = [
        ev("a", 1, "login", channel="web"), ev("a", 2, "page_view", channel="web"),
        ev("a", 3, "purchase", 1.0, channel="app"), ev("a", 4, "login", channel="kiosk"),
        ev("a", 5, "login"),  # no channel: ignored
        ev("a", 90, "login", channel="store"), ev("a", 100, "login", channel="email"),  # old
        ev("b", 1, "login"),
    ]  # fmt: skip
    frame = build(rows)
    check(frame, "a", channel_web_share_90d=0.5, channel_app_share_90d=0.25,
          channel_store_share_90d=0, channel_email_share_90d=0,
          channel_other_share_90d=0.25)  # fmt: skip
    names = ("web", "app", "store", "email", "other")
    check(frame, "b", **{f"channel_{c}_share_90d": 0 for c in names})


def test_channels_without_a_channel_column():
    frame = build_features(load([ev("a", 1, "login")]).drop(columns="channel"), AS_OF)
    assert frame["channel_web_share_90d"].tolist() == [0.0]


# ---- feedback -----------------------------------------------------------------------------


def test_feedback_last_score_and_365_day_mean():
    rows = [
        ev("a", 400, "nps_response", 2.0), ev("a", 100, "nps_response", 8.0),
        ev("a", 10, "csat_response", 6.0), ev("a", 5, "nps_response"),  # no score: ignored
        ev("a", -1, "nps_response", 0.0),  # after as_of
        ev("b", 400, "rating", 3.0), ev("c", 1, "login"),
    ]  # fmt: skip
    frame = build(rows)
    check(frame, "a", feedback_last_score=6, feedback_mean_score_365d=7)
    check(frame, "b", feedback_last_score=3, feedback_mean_score_365d=NAN)
    check(frame, "c", feedback_last_score=NAN, feedback_mean_score_365d=NAN)


def test_feedback_scores_at_the_same_moment_do_not_depend_on_row_order():
    rows = [ev("a", 1, "nps_response", 3.0), ev("a", 1, "nps_response", 9.0)]
    assert build(rows).at["a", "feedback_last_score"] == 9
    assert build(rows[::-1]).at["a", "feedback_last_score"] == 9


# ---- offer history ------------------------------------------------------------------------


def offers() -> pd.DataFrame:
    return load_offers(
        pd.DataFrame({
            "offer_id": ["up1", "ret1", "xs1"], "kind": ["upsell", "retention", "cross_sell"],
            "value": [10.0, 5.0, 3.0], "cost": [1.0, 1.0, 1.0],
        })
    ).data  # fmt: skip


def exposures(catalog: pd.DataFrame | None = None) -> pd.DataFrame:
    """a: upsell 100d (won), upsell 20d (lost), retention 14d (won, window just closed),
    retention 5d (won, window open), one sent after as_of; zz has no events."""
    rows = [
        ("e1", "a", "up1", at(100), True), ("e2", "a", "up1", at(20), False),
        ("e3", "a", "ret1", at(14), True), ("e4", "a", "ret1", at(5), True),
        ("e5", "a", "xs1", at(-US), True), ("e6", "zz", "up1", at(30), True),
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=["exposure_id", "customer_id", "offer_id", "sent_at",
                                        "converted"])  # fmt: skip
    return load_exposures(frame.assign(propensity=0.5), offers=catalog).data


EVENTS_AB = [ev("a", 1, "login"), ev("b", 1, "login")]
COUNTS_A = dict(contacts_90d=3, contacts_total=4, days_since_last_contact=5)


def test_offer_history_with_the_offers_catalog():
    frame = build(EVENTS_AB, exposures=exposures(offers()), offers=offers())
    check(frame, "a", **COUNTS_A, offer_conversions_total=2, response_rate_upsell=0.5,
          response_rate_retention=1.0, response_rate_cross_sell=NAN,
          response_rate_winback=NAN)  # fmt: skip
    check(frame, "b", contacts_90d=0, contacts_total=0, offer_conversions_total=0,
          days_since_last_contact=NAN, response_rate_upsell=NAN)  # fmt: skip
    assert "zz" not in frame.index


def test_offer_history_without_the_catalog_has_no_response_rates():
    frame = build(EVENTS_AB, exposures=exposures())
    check(frame, "a", **COUNTS_A, offer_conversions_total=2)
    rates = [f"response_rate_{k}" for k in ("upsell", "cross_sell", "retention", "winback")]
    assert frame[rates].isna().all().all()


def test_a_longer_response_window_keeps_outcomes_unknown_longer():
    frame = build(EVENTS_AB, exposures=exposures(offers()), offers=offers(),
                  response_window_days=30)  # fmt: skip
    # only e1 (100 days old) has closed: e2 (20d) and e3 (14d) are still open
    check(frame, "a", **COUNTS_A, offer_conversions_total=1, response_rate_upsell=1.0,
          response_rate_retention=NAN)  # fmt: skip


def test_no_exposures_means_zero_contacts():
    frame = build(EVENTS_AB, offers=offers())
    check(frame, "a", contacts_90d=0, contacts_total=0, offer_conversions_total=0,
          days_since_last_contact=NAN, response_rate_upsell=NAN)  # fmt: skip


# ---- static attributes, feature sets, output shape ---------------------------------------


def customers_table() -> pd.DataFrame:
    return load_customers(
        pd.DataFrame({
            "customer_id": ["b", "a", "zz"], "signup_at": [at(10), at(20), at(30)],
            "region": ["north", "south", "east"],
            "tier": pd.Categorical(["gold", "silver", "gold"]),
        })
    ).data  # fmt: skip


def test_static_attributes_pass_through_after_the_features():
    rows = [ev("a", 1, "login"), ev("b", 1, "login"), ev("c", 1, "login")]
    frame = build_features(load(rows), AS_OF, customers=customers_table())
    assert list(frame.columns) == ["customer_id", *DEFAULT.features, "region", "tier"]
    assert frame["region"].tolist()[:2] == ["south", "north"] and pd.isna(frame.at[2, "region"])
    assert isinstance(frame["tier"].dtype, pd.CategoricalDtype)
    assert frame["tier"].tolist()[:2] == ["silver", "gold"] and pd.isna(frame.at[2, "tier"])


def test_default_output_columns_dtypes_and_attrs():
    frame = build_features(load([ev("a", 1, "login")]), AS_OF)
    assert list(frame.columns) == ["customer_id", *REGISTRY]
    assert frame["customer_id"].dtype == "str"
    assert (frame.dtypes.iloc[1:] == np.float32).all()
    assert frame.attrs == {"as_of": "2024-06-30T12:00:00+00:00", "feature_set": "default@3"}


@pytest.mark.parametrize("key", ["rfm_core@1", "rfm_core", RFM_CORE])
def test_rfm_core_returns_exactly_its_features(key):
    rows = [ev("a", 1, "purchase", 4.0), ev("a", 40, "purchase", 6.0)]
    frame = build_features(load(rows), AS_OF, key, customers=customers_table())
    assert list(frame.columns) == ["customer_id", *RFM_CORE.features]
    assert frame.attrs["feature_set"] == "rfm_core@1"
    check(frame.set_index("customer_id"), "a", spend_30d_amount=4, spend_90d_amount=10,
          purchases_365d=2, purchase_recency_days=1)  # fmt: skip


@pytest.mark.parametrize("name", ["days_since_signup", "recency_days", "response_rate_upsell"])
def test_a_one_feature_set_computes_its_feature(name):
    fs = FeatureSet("one", 1, (name,), static=())
    rows = [ev("a", 3, "signup"), ev("a", 2, "login")]
    frame = build(rows, feature_set=fs, customers=customers_table())
    assert list(frame.columns) == [name]
    want = {"days_since_signup": 20, "recency_days": 2, "response_rate_upsell": NAN}[name]
    check(frame, "a", **{name: want})


def test_no_events_up_to_as_of_gives_an_empty_frame_with_every_column():
    frame = build_features(load([ev("a", -1, "login")]), AS_OF)
    assert len(frame) == 0 and list(frame.columns) == ["customer_id", *REGISTRY]


def test_rows_follow_first_appearance_among_events_up_to_as_of():
    rows = [ev("b", -1, "login"), ev("c", 2, "login"), ev("a", 1, "login"), ev("b", 3, "login")]
    rows += [ev("d", -2, "login")]  # only after as_of: no row
    frame = build_features(load(rows), AS_OF)
    assert frame["customer_id"].tolist() == ["c", "a", "b"]
    assert frame.index.equals(pd.RangeIndex(3))


def test_str_and_categorical_customer_ids_give_equal_frames():
    rows = [ev("b", 1, "login"), ev("a", 2, "purchase", 3.0), ev("c", -1, "login")]
    data = load(rows)
    as_category = data.assign(customer_id=data["customer_id"].astype("category"))
    kwargs = dict(customers=customers_table(), exposures=exposures(offers()), offers=offers())
    expected = build_features(data, AS_OF, **kwargs)
    pd.testing.assert_frame_equal(build_features(as_category, AS_OF, **kwargs), expected)
    assert expected["customer_id"].tolist() == ["b", "a"]


def test_naive_as_of_is_utc_and_aware_as_of_is_converted():
    data = load([ev("a", 1, "login"), ev("a", 0, "purchase", 1.0)])
    expected = build_features(data, AS_OF)
    for as_of in ("2024-06-30 12:00:00", "2024-06-30T14:00:00+02:00", AS_OF.tz_convert(None)):
        frame = build_features(data, as_of)
        pd.testing.assert_frame_equal(frame, expected)
        assert frame.attrs["as_of"] == "2024-06-30T12:00:00+00:00"  # ISO 8601, UTC


# ---- errors -------------------------------------------------------------------------------


def test_unknown_feature_set_names_the_known_ones():
    with pytest.raises(KeyError, match=r"unknown feature set 'nope@1'.*rfm_core@1"):
        build_features(load([ev("a", 1, "login")]), AS_OF, "nope@1")


@pytest.mark.parametrize("bad", ["not a date", "2024-13-01", None, [1, 2], pd.NaT])
def test_bad_as_of_is_a_clear_error(bad):
    with pytest.raises(ValueError, match=r"as_of must be a timestamp; got "):
        build_features(load([ev("a", 1, "login")]), bad)


def test_a_raw_frame_without_role_points_to_load_events():
    raw = pd.DataFrame([ev("a", 1, "login")])
    with pytest.raises(ValueError, match=r"events lacks column\(s\) \['role'\].*load_events"):
        build_features(raw, AS_OF)


NOT_OURS = {
    "str": lambda r: r.astype("str"),
    "own categories": lambda r: r.astype("str").astype("category"),
}


@pytest.mark.parametrize("cast", NOT_OURS.values(), ids=NOT_OURS.keys())
def test_a_role_column_not_made_by_load_events_is_refused(cast):
    data = load([ev("a", 1, "login"), ev("a", 2, "purchase", 1.0)])
    with pytest.raises(ValueError, match="events.role must be the categorical column"):
        build_features(data.assign(role=cast(data["role"])), AS_OF)


def test_time_sorted_and_unsorted_events_give_the_same_vectors():
    """The builder slices time-sorted events instead of masking them: same answers."""
    from features.simulator import SimConfig, simulate

    sim = simulate(SimConfig(customers=400, days=120, seed=9))
    ordered = load_events(sim.events.sort_values("timestamp", kind="stable")).data
    shuffled = ordered.sample(frac=1.0, random_state=1).reset_index(drop=True)
    for when in ("2025-02-15", "2025-04-30T12:00"):
        a = build_features(ordered, when).sort_values("customer_id", ignore_index=True)
        b = build_features(shuffled, when).sort_values("customer_id", ignore_index=True)
        pd.testing.assert_frame_equal(a, b)


def test_numeric_static_attributes_are_float64_whether_or_not_a_customer_is_missing():
    frame = pd.DataFrame({"customer_id": ["a", "b"], "timestamp": ["2025-01-01", "2025-01-02"],
                          "event_type": ["login", "login"]})  # fmt: skip
    events = load_events(frame).data
    both = pd.DataFrame({"customer_id": ["a", "b"], "seats": [3, 5], "vip": [True, False]})
    only_a = both.iloc[:1]
    full = build_features(events, "2025-02-01", customers=both)
    assert full["seats"].dtype == "float64" and full["vip"].dtype == "float64"
    partial = build_features(events, "2025-02-01", customers=only_a)
    assert partial["seats"].dtype == "float64" and np.isnan(partial["seats"].iloc[1])
