"""The amounts check of ``lifecycle monitor`` (training.monitoring.amounts): what customers pay
per event of each money role, the last window against a reference window."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from features.simulator import SimConfig, simulate, write_simulation
from training.data import load_tables
from training.monitoring.amounts import amount_shift
from training.profiles import profile_config

END = pd.Timestamp("2025-06-30", tz="UTC")
REF = END - pd.Timedelta(days=14)
DAY = pd.Timedelta(days=1)
PRICES = np.array([10.0, 25.0, 40.0, 90.0, 150.0])  # a product mix: skewed amounts


def events_of(rows: list[tuple[str, pd.Timestamp, str, float]]) -> pd.DataFrame:
    ids, when, roles, amounts = zip(*rows, strict=True)
    return pd.DataFrame({"customer_id": ids, "timestamp": pd.DatetimeIndex(when), "role": roles,
                         "amount": np.asarray(amounts, dtype=float)})  # fmt: skip


def simulated(customers: int, seed: int, factor: float = 1.0, outliers: bool = False):
    """Purchases (0.2 a customer a week) and refunds (0.03) in both windows, priced from a
    product mix x the customer's own spend level x noise; the current window's prices x
    ``factor``; with ``outliers``, 1 % of purchases are 20 times larger (a bulk order)."""
    rng = np.random.default_rng(seed)
    spend = rng.lognormal(0.0, 0.5, customers)  # customers differ: amounts are clustered
    parts = [pd.DataFrame({"customer_id": np.arange(customers), "role": "feedback",
                           "amount": rng.integers(0, 11, customers).astype(float),
                           "timestamp": END - DAY})]  # a score, never money  # fmt: skip
    for role, rate in (("purchase", 0.2), ("refund", 0.03)):
        for end, f in ((REF, 1.0), (END, factor)):
            who = np.repeat(np.arange(customers), rng.poisson(rate, customers))
            amount = rng.choice(PRICES, len(who)) * spend[who] * rng.lognormal(0, 0.1, len(who))
            if outliers and role == "purchase":
                amount *= np.where(rng.random(len(who)) < 0.01, 20.0, 1.0)
            offset = (rng.uniform(0.01, 6.99, len(who)) * 86_400e6).astype("timedelta64[us]")
            parts.append(pd.DataFrame({"customer_id": who, "role": role,
                                       "amount": np.round(amount * f, 2),
                                       "timestamp": end - pd.to_timedelta(offset)}))  # fmt: skip
    return pd.concat(parts, ignore_index=True)


def test_a_hand_computed_case():
    rows = [("a", REF - DAY, "purchase", 10.0), ("a", REF - 2 * DAY, "purchase", 40.0),
            ("b", REF - DAY, "purchase", 20.0),  # reference: logs of 10, 40 | 20
            ("a", END - DAY, "purchase", 20.0), ("b", END - DAY, "purchase", 40.0),
            ("c", END - DAY, "purchase", 0.0),  # a free order: counted, not in the mean
            ("c", END - DAY, "feedback", 9.0), ("c", END - DAY, "visit", np.nan)]  # fmt: skip
    found = amount_shift(events_of(rows), REF, END, days=7, min_events=1)
    assert found.table["role"].tolist() == ["purchase"]  # neither the score nor a visit
    row = found.table.iloc[0]
    assert row["reference_events"] == 3 and row["current_events"] == 2
    assert row["current_unpriced"] == 1 and row["reference_unpriced"] == 0
    m_ref, m_cur = np.log([10, 40, 20]).mean(), np.log([20, 40]).mean()
    assert row["reference_amount"] == pytest.approx(20.0)  # geometric mean of 10, 40, 20
    assert row["current_amount"] == pytest.approx(np.sqrt(800.0))
    assert row["change"] == pytest.approx(np.exp(m_cur - m_ref) - 1)
    # clustered by customer: sum over customers of (their summed logs - mean x their count)^2
    se_ref = np.hypot(np.log(400) - 2 * m_ref, np.log(20) - m_ref) / 3
    se_cur = np.hypot(np.log(20) - m_cur, np.log(40) - m_cur) / 2
    z = norm.ppf(1 - 0.05 / 2)  # one role tested
    se = np.hypot(se_ref, se_cur)
    assert row["low"] == pytest.approx(np.expm1(m_cur - m_ref - z * se))
    assert row["high"] == pytest.approx(np.expm1(m_cur - m_ref + z * se))
    assert row["shift"] == 0.0 and found.shift == 0.0  # the interval covers no change


@pytest.mark.parametrize("outliers", [False, True])
def test_without_a_change_the_joint_false_alarm_rate_is_about_five_percent(outliers):
    """40 worlds without a price change, two money roles each: any role flagged in about 5 %
    of them (2 expected; <= 6 of 40, three binomial SDs), with bulk orders too."""
    alarms = sum(amount_shift(simulated(1000, seed, outliers=outliers), REF, END).shift > 0
                 for seed in range(40))  # fmt: skip
    assert alarms <= 6


def test_prices_up_by_half_are_found_named_and_cross_a_ten_percent_materiality():
    found = amount_shift(simulated(1000, 0, factor=1.5), REF, END)
    moved = found.moved.set_index("role")
    assert "purchase" in moved.index
    purchase = moved.loc["purchase"]
    assert purchase["low"] < 0.5 < purchase["high"]  # the true change inside
    assert found.shift > 0.1 and found.shift == pytest.approx(moved["shift"].max())


def test_rare_roles_are_reported_not_tested_and_order_is_checked():
    rows = [(f"c{i}", REF - DAY, "purchase", 10.0) for i in range(40)]
    rows += [(f"c{i}", END - DAY, "purchase", 30.0) for i in range(40)]
    rows += [("c1", REF - DAY, "refund", 10.0), ("c2", END - DAY, "refund", 50.0)]
    found = amount_shift(events_of(rows), REF, END).table.set_index("role")
    assert found.loc["purchase", "tested"] and found.loc["purchase", "change"] == pytest.approx(2)
    assert not found.loc["refund", "tested"] and np.isnan(found.loc["refund", "shift"])
    with pytest.raises(ValueError, match="must come after the reference window's end"):
        amount_shift(events_of(rows), END, REF)


def _scaled_after(events: pd.DataFrame, start: pd.Timestamp, factor: float) -> pd.DataFrame:
    later = (events["timestamp"] > start).to_numpy()
    return events.assign(amount=np.where(later, events["amount"] * factor, events["amount"]))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> dict[str, pd.DataFrame]:
    """The events of a retail transaction log and of a subscription app (renewals as
    purchases, starts as subscription_start), each read through its own role map."""
    found = {}
    for profile, customers in (("purchase_only", 4000), ("subscription", 3000)):
        folder = tmp_path_factory.mktemp(profile)
        cfg = SimConfig(profile=profile, customers=customers, days=400, seed=2)
        write_simulation(simulate(cfg), folder, cfg)
        found[profile] = load_tables(folder, config=profile_config(profile)).events
    return found


@pytest.mark.parametrize("profile", ["purchase_only", "subscription"])
def test_both_shapes_stay_quiet_without_a_change_and_flag_prices_up_by_half(shapes, profile):
    events = shapes[profile]
    end = events["timestamp"].max()
    roles = {"purchase_only": {"purchase"}, "subscription": {"purchase", "subscription_start"}}
    quiet = [amount_shift(events, end - (k + 14) * DAY, end - k * DAY).shift for k in range(5)]
    assert max(quiet) <= 0.1, quiet  # never beyond the materiality without a change
    cut = end - 7 * DAY
    found = amount_shift(_scaled_after(events, cut, 1.5), cut - 7 * DAY, end)
    assert set(found.table["role"]) == roles[profile]
    assert found.shift > 0.1 and "purchase" in set(found.moved["role"]), found.table
