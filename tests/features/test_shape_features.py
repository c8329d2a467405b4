"""Hand-computed answers for the data-shape features, labels and stage rules: per event type,
contracts from a subscriptions table, rhythm-relative churn, cancellations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.builder import build_features
from features.event_types import slug, top_event_types
from features.labels import churn_outcome
from features.loaders import load_events, load_mapped
from features.roles import default_role_map
from features.stages import StageRules, assign_stages

AS_OF = "2025-04-01"


def events(rows, roles=None):
    frame = pd.DataFrame(rows, columns=["customer_id", "timestamp", "event_type", "amount"])
    return load_events(frame, roles=roles).data


def test_event_type_features_by_hand():
    roles = default_role_map().with_overrides({"Msg Sent": "engagement", "like": "engagement"})
    ev = events([
        ("a", "2025-03-31", "Msg Sent", None),   # 1 day ago
        ("a", "2025-03-20", "msg sent", None),   # 12 days ago, same type after normalising
        ("a", "2025-01-10", "like", None),       # 81 days ago
        ("b", "2025-03-30", "like", None),
    ], roles)  # fmt: skip
    f = build_features(ev, AS_OF, event_types=("msg sent", "like")).set_index("customer_id")
    assert f.loc["a", "type_msg_sent_7d"] == 1 and f.loc["a", "type_msg_sent_30d"] == 2
    assert f.loc["a", "type_like_30d"] == 0 and f.loc["a", "type_like_90d"] == 1
    assert f.loc["b", "type_msg_sent_365d"] == 0 and f.loc["b", "type_like_7d"] == 1
    # (2 in 30 days + 1) / (0 in the 90 before / 3 + 1) = 3
    assert f.loc["a", "type_msg_sent_trend_30d_vs_90d"] == pytest.approx(3.0)
    # a has 3 active days in 90 days, 2 of them with a message
    assert f.loc["a", "type_msg_sent_per_active_day_90d"] == pytest.approx(2 / 3)
    # a's tenure is 81 days: 2 messages per 81 days * 30
    assert f.loc["a", "type_msg_sent_per_30d_tenure"] == pytest.approx(2 / 81 * 30, rel=1e-5)
    assert f.loc["a", "type_msg_sent_recency_days"] == pytest.approx(1.0)
    assert np.isnan(f.loc["b", "type_msg_sent_recency_days"])


@pytest.mark.filterwarnings("ignore::features.contracts.UnmappedEventTypeWarning")
def test_top_event_types_count_up_to_a_date_and_merge_spellings():
    ev = events([("a", "2025-01-01", "X", None), ("a", "2025-01-02", " x ", None),
                 ("a", "2025-01-03", "y", None), ("b", "2025-05-01", "z", None),
                 ("b", "2025-05-02", "z", None), ("b", "2025-05-03", "z", None)])  # fmt: skip
    assert top_event_types(ev, 2) == ("z", "x")
    assert top_event_types(ev, 5, until=pd.Timestamp("2025-02-01", tz="UTC")) == ("x", "y")
    assert slug("Message Sent!") == "message_sent"


SUBS = pd.DataFrame({
    "customer_id": ["a", "a", "b", "c"],
    "period_start": ["2025-01-01", "2025-02-01", "2025-01-15", "2025-05-01"],
    "period_end": ["2025-02-01", "2025-03-01", "2025-04-15", "2025-06-01"],
    "recurring_value": [10.0, 12.0, 30.0, 5.0],
    "discount": [0.5, 0.0, 0.0, 0.0],
})  # fmt: skip


def test_subscription_features_point_in_time():
    subs = load_mapped("subscriptions", SUBS).data
    ev = events([("a", "2025-01-01", "login", None), ("b", "2025-01-15", "login", None),
                 ("c", "2025-01-20", "login", None)])  # fmt: skip
    f = build_features(ev, AS_OF, subscriptions=subs).set_index("customer_id")
    # a's periods ended on 2025-03-01: not active, 31 days since the end, 2 periods
    assert f.loc["a", "contract_active"] == 0 and f.loc["a", "contract_periods_total"] == 2
    assert f.loc["a", "contract_days_since_end"] == pytest.approx(31)
    assert f.loc["a", "contract_recurring_value"] == 12
    assert f.loc["a", "contract_tenure_days"] == pytest.approx(90)
    # b is covered until 2025-04-15: 14 days to the period end
    assert f.loc["b", "contract_active"] == 1
    assert f.loc["b", "contract_days_to_period_end"] == pytest.approx(14)
    # c's period starts after as_of: unknown yet
    assert f.loc["c", "contract_periods_total"] == 0 and np.isnan(
        f.loc["c", "contract_tenure_days"]
    )
    # 90 days before (2025-01-01) a was on the discounted first period: the discount ended
    assert f.loc["a", "contract_discount_ended_90d"] == 1
    assert f.loc["a", "contract_value_change_90d"] == pytest.approx(2.0)


def test_contract_labels_from_the_subscriptions_table():
    subs = load_mapped("subscriptions", SUBS).data
    ev = events([("a", "2025-01-01", "login", None), ("b", "2025-01-15", "login", None),
                 ("c", "2025-01-20", "login", None)])  # fmt: skip
    label, applies = churn_outcome(ev, ["a", "b", "c"], "2025-02-10", 30, "contract",
                                   subscriptions=subs, grace_days=3)  # fmt: skip
    # a: covered until 2025-03-01 (< 2025-03-12), no renewal -> churns; b: covered past the
    # horizon end; c: no contract on 2025-02-10 -> the definition does not apply
    assert applies.tolist() == [True, True, False]
    assert label[:2].tolist() == [1.0, 0.0] and np.isnan(label[2])


def test_rhythm_labels_follow_each_customers_own_gap():
    rows = [("m", f"2025-0{k}-01", "purchase", 5.0) for k in (1, 2, 3)]  # monthly buyer
    rows += [("q", "2024-07-01", "purchase", 5.0), ("q", "2024-10-01", "purchase", 5.0),
             ("q", "2025-01-01", "purchase", 5.0)]  # quarterly buyer  # fmt: skip
    rows += [("late", "2025-06-01", "purchase", 5.0)]
    ev = events(rows)
    label, applies = churn_outcome(ev, ["m", "q", "nobody"], AS_OF, 60, "rhythm",
                                   rhythm_multiple=2.0)  # fmt: skip
    # m: last buy 2025-03-01, gap ~29.5 d; by 2025-05-31 91 days silent > 2 x 29.5 -> churned
    # q: last buy 2025-01-01, gap ~92 d; 150 days < 2 x 92 -> not (yet) churned
    assert label[:2].tolist() == [1.0, 0.0]
    assert applies.tolist() == [True, True, False]


def frame(**cols):
    base = {c: [0.0] for c in StageRules().required_features()}
    base |= {"recency_days": [5.0], "purchases_total": [3.0], "purchase_recency_days": [5.0],
             "purchase_recency_vs_interval": [0.1], "events_trend_30d_vs_90d": [1.0],
             "days_since_first_purchase": [400.0], "feedback_last_score": [np.nan]}  # fmt: skip
    base |= {k: [v] for k, v in cols.items()}
    return pd.DataFrame(base)


def test_cancellation_makes_churned_and_a_later_renewal_keeps_retained():
    cancelled = frame(cancel_recency_days=3.0, subscription_start_recency_days=200.0,
                      purchase_recency_days=20.0, recency_days=1.0)  # fmt: skip
    assert assign_stages(cancelled).astype(str).tolist() == ["churned"]
    renewed = frame(cancel_recency_days=40.0, subscription_start_recency_days=200.0,
                    purchase_recency_days=10.0)  # fmt: skip
    assert assign_stages(renewed).astype(str).tolist() == ["retention"]
    ended = frame(contract_active=0.0, contract_periods_total=4.0)
    assert assign_stages(ended).astype(str).tolist() == ["churned"]


def test_rhythm_stage_rule_scales_with_the_customers_gap():
    rules = StageRules(churn_rule="rhythm", typical_gap_days=100)
    # a monthly buyer silent for 70 days: 70 / 30 > 1.5 -> at risk; 100 days > 3 x 30 -> churned
    monthly = [frame(purchase_interval_mean_days=30.0, purchase_recency_days=d,
                     recency_days=d) for d in (20.0, 70.0, 100.0)]  # fmt: skip
    got = assign_stages(pd.concat(monthly, ignore_index=True), rules).astype(str).tolist()
    assert got == ["retention", "at_risk", "churned"]
    # a one-time buyer is judged on the typical gap: 160 days is at risk (> 1.5 x 100), not
    # churned (< 3 x 100)
    once = frame(purchases_total=1.0, purchase_interval_mean_days=np.nan,
                 purchase_recency_days=160.0, recency_days=160.0)  # fmt: skip
    assert assign_stages(once, rules).astype(str).tolist() == ["at_risk"]
    # the fixed 60-day window would call both silent customers churned
    assert assign_stages(once).astype(str).tolist() == ["churned"]
