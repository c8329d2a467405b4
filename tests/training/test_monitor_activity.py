"""The activity check of ``lifecycle monitor`` (training.monitoring.activity): each role's
event rate per active customer, the last window against a reference window."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from training.monitoring.activity import activity_shift

END = pd.Timestamp("2025-06-30", tz="UTC")
REF = END - pd.Timedelta(days=14)


def events_of(rows: list[tuple[str, pd.Timestamp, str]]) -> pd.DataFrame:
    ids, when, roles = zip(*rows, strict=True)
    return pd.DataFrame({"customer_id": ids, "timestamp": pd.DatetimeIndex(when), "role": roles})


def simulated(rates: dict[str, tuple[float, float]], customers: int, seed: int,
              dispersion: float | None = None) -> pd.DataFrame:  # fmt: skip
    """Every customer active before both windows (a visit 30 days before the reference
    window); per role, Poisson (or gamma-Poisson with shape ``dispersion``) counts at the
    reference and current rates, spread over each window."""
    rng = np.random.default_rng(seed)
    ids = np.arange(customers)
    parts = [pd.DataFrame({"customer_id": ids, "role": "visit",
                           "timestamp": REF - pd.Timedelta(days=30)})]  # fmt: skip
    for role, pair in rates.items():
        for end, rate in zip((REF, END), pair, strict=True):
            lam = np.full(customers, rate)
            if dispersion is not None:
                lam = rng.gamma(dispersion, rate / dispersion, customers)
            who = np.repeat(ids, rng.poisson(lam))
            offset = (rng.uniform(0.01, 6.99, len(who)) * 86_400e6).astype("timedelta64[us]")
            parts.append(pd.DataFrame({"customer_id": who, "role": role,
                                       "timestamp": end - pd.to_timedelta(offset)}))  # fmt: skip
    return pd.concat(parts, ignore_index=True)


def test_a_hand_computed_case():
    day = pd.Timedelta(days=1)
    rows = [(c, REF - 20 * day, "visit") for c in ("a", "b", "c", "d")]  # 4 active before both
    rows += [("a", REF - day, "purchase"), ("a", REF - 2 * day, "purchase"),
             ("b", REF - day, "purchase")]  # reference: a 2, b 1  # fmt: skip
    rows += [("a", END - day, "purchase"), ("b", END - day, "purchase"),
             ("c", END - day, "purchase"), ("d", END - day, "purchase"),
             ("d", END - 2 * day, "purchase")]  # current: 1, 1, 1, 2  # fmt: skip
    found = activity_shift(events_of(rows), REF, END, days=7, min_events=1)
    row = found.table.set_index("role").loc["purchase"]
    n_ref, n_cur = 3.5, 5.5  # + half an event each
    assert row["reference_events"] == 3 and row["current_events"] == 5
    assert row["reference_rate"] == pytest.approx(3 / 4) and row["current_rate"] == 5 / 4
    assert row["change"] == pytest.approx(n_cur / n_ref - 1)
    se = np.sqrt((4 + 1 + 0.5) / n_ref**2 + (1 + 1 + 1 + 4 + 0.5) / n_cur**2)
    z = norm.ppf(1 - 0.05 / 2)  # one role tested: the visits lie before both windows
    assert row["low"] == pytest.approx(np.expm1(np.log(n_cur / n_ref) - z * se))
    assert row["high"] == pytest.approx(np.expm1(np.log(n_cur / n_ref) + z * se))
    assert row["shift"] == 0.0 and found.shift == 0.0  # the interval covers no change


def test_a_doubled_rate_is_found_and_named_and_a_steady_one_is_not():
    events = simulated({"purchase": (0.3, 0.3), "subscription_cancel": (0.05, 0.1)}, 5000, 0)
    found = activity_shift(events, REF, END)
    moved = found.moved
    assert moved["role"].tolist() == ["subscription_cancel"]
    cancel = moved.iloc[0]
    assert cancel["low"] < 1.0 < cancel["high"]  # the true change, +100 %, inside
    assert found.shift == pytest.approx(cancel["low"]) and found.shift > 0.3


@pytest.mark.parametrize("dispersion", [None, 0.5])
def test_without_a_change_the_joint_false_alarm_rate_is_about_five_percent(dispersion):
    """40 worlds without a change, three roles each (Poisson, and over-dispersed counts):
    any role flagged in about 5 % of them (2 expected; <= 6 of 40, three binomial SDs)."""
    rates = {"purchase": (0.2, 0.2), "visit_page": (1.0, 1.0), "support": (0.03, 0.03)}
    alarms = sum(activity_shift(simulated(rates, 1000, seed, dispersion), REF, END).shift > 0
                 for seed in range(40))  # fmt: skip
    assert alarms <= 6


def test_a_role_that_vanished_is_a_change_and_rare_roles_are_not_tested():
    day = pd.Timedelta(days=1)
    rows = [(f"c{i}", REF - 20 * day, "visit") for i in range(200)]
    rows += [(f"c{i}", REF - day, "purchase") for i in range(100)]  # none in the current week
    rows += [("c1", REF - day, "referral"), ("c2", END - day, "referral")]
    found = activity_shift(events_of(rows), REF, END).table.set_index("role")
    assert found.loc["purchase", "tested"] and found.loc["purchase", "shift"] > 0.5
    assert not found.loc["referral", "tested"] and np.isnan(found.loc["referral", "shift"])


def test_active_customers_are_the_denominator_not_everyone_ever_seen():
    """Twice the customers active before the current window, twice the events: no change."""
    day = pd.Timedelta(days=1)
    rows = [(f"old{i}", REF - 300 * day, "visit") for i in range(1000)]  # long gone
    rows += [(f"a{i}", REF - 20 * day, "visit") for i in range(100)]
    rows += [(f"b{i}", END - 20 * day, "visit") for i in range(100)]
    rows += [(f"a{i}", REF - day, "purchase") for i in range(100)]
    rows += [(f"{p}{i}", END - day, "purchase") for p in "ab" for i in range(100)]
    row = activity_shift(events_of(rows), REF, END).table.set_index("role").loc["purchase"]
    assert row["change"] == pytest.approx(0.0, abs=0.01) and row["shift"] == 0.0


def test_windows_in_the_wrong_order_or_without_customers_are_clear_errors():
    rows = [("a", REF - pd.Timedelta(days=1), "purchase")]
    with pytest.raises(ValueError, match="must come after the reference window's end"):
        activity_shift(events_of(rows), END, REF)
    with pytest.raises(ValueError, match="no customer had an event in the 90 days before"):
        activity_shift(events_of(rows), REF, END)
