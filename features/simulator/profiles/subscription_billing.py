"""Billing of the ``subscription`` profile: starts, renewal decisions, renewals and endings.

A spell of premium is a run of contiguous billing periods from one anchor date (monthly or
annual, calendar months). Some days before each period's end the user decides whether to
cancel (:func:`cancel_logit`); a cancellation emits ``premium_cancelled`` at once and the spell
ends with the period. Otherwise the next period starts on the previous one's end
(``premium_renewed``, paid at the billing run). Users who left may come back later (win-back:
a new spell, often with a come-back discount).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.simulator.profiles.common import Columns, add_months, expit, hour_seconds
from features.simulator.profiles.subscription_world import (
    COUNTRY_RISK,
    DEVICE_RISK,
    EV,
    PLAN_LOGIT,
    PLAN_MONTHS,
    PLAN_SHARE,
    PLANS,
    PRICE,
    Users,
)

NEVER = np.iinfo(np.int64).max // 4
BASIC, PLUS = PLANS.index("monthly_basic"), PLANS.index("monthly_plus")
BILLING_HOURS = np.r_[np.ones(6), np.zeros(18)] / 6  # renewals are charged 00:00-06:00


@dataclass
class Billing:
    """Per-user billing state."""

    premium: np.ndarray  # bool
    plan: np.ndarray
    anchor: np.ndarray  # first day of the spell
    period_no: np.ndarray  # periods paid in the spell before the current one
    period_start: np.ndarray
    period_end: np.ndarray  # NEVER when not premium
    check_day: np.ndarray  # the day of the renewal decision
    will_cancel: np.ndarray  # bool
    discount: np.ndarray  # of the current period
    offer: np.ndarray  # the spell's discount
    offer_left: np.ndarray  # periods of the spell still discounted, the current one included
    spells: np.ndarray  # spells started so far
    last_end: np.ndarray  # day the last spell ended (-NEVER: none)

    @classmethod
    def empty(cls, n: int) -> Billing:
        i64 = lambda v: np.full(n, v, np.int64)  # noqa: E731
        return cls(
            np.zeros(n, bool), i64(0), i64(0), i64(0), i64(0), i64(NEVER), i64(NEVER),
            np.zeros(n, bool), np.zeros(n), np.zeros(n), i64(0), i64(0), i64(-NEVER),
        )  # fmt: skip


@dataclass
class Ledger:
    """What billing writes: events, billing periods and the truth of every renewal decision."""

    events: Columns
    periods: Columns
    decisions: Columns


def cancel_logit(users: Users, bill: Billing, who: np.ndarray, u: np.ndarray, friends: np.ndarray,
                 help_recent: np.ndarray) -> np.ndarray:  # fmt: skip
    """Log-odds that ``who`` cancel at their coming renewal.

    Protective: interest now, sociability (messages, friends; strong), the friends made so far,
    content habits (weak), periods already paid. Risky: recent help requests and the friction
    that makes them, price (plan and
    price sensitivity), a discount that ends with this period, a win-back spell, frailty
    (unobserved), country and device (mild). Activity (app launches) plays no part.
    """
    plan, tier = bill.plan[who], users.tier[who]
    monthly_price = PRICE[tier, plan] / PLAN_MONTHS[plan]
    discount_ends = (bill.discount[who] > 0) & (bill.offer_left[who] == 1)
    return (
        PLAN_LOGIT[plan]
        - 1.2 * u[who]
        - 0.55 * users.social[who]
        - 0.35 * np.log1p(friends[who])
        - 0.12 * users.content[who]
        + 0.5 * np.minimum(help_recent[who], 3.0)
        + 0.3 * users.friction[who]
        + 0.3 * users.price_sensitivity[who]
        + 0.35 * np.log(monthly_price / 5.0)
        + 1.0 * discount_ends
        - 0.3 * np.log1p(bill.period_no[who])
        + 0.3 * (bill.spells[who] > 1)
        + users.frailty[who]
        + COUNTRY_RISK[users.country[who]]
        + DEVICE_RISK[users.device[who]]
    )


def decide_renewals(day: int, users: Users, bill: Billing, state: dict[str, np.ndarray],
                    ledger: Ledger, rng: np.random.Generator) -> np.ndarray:  # fmt: skip
    """Renewal decisions due today; returns the users who cancel (``premium_cancelled``)."""
    who = np.flatnonzero(bill.premium & (bill.check_day == day) & ~bill.will_cancel)
    if len(who) == 0:
        return who
    logit = cancel_logit(users, bill, who, state["interest"], state["friends"], state["help"])
    p = expit(logit)
    cancel = rng.random(len(who)) < p
    ledger.decisions.add(
        who=who, day=np.full(len(who), day), period_end=bill.period_end[who], plan=bill.plan[who],
        discount_ends=(bill.discount[who] > 0) & (bill.offer_left[who] == 1), p_cancel=p,
        cancelled=cancel, spell=bill.spells[who],
    )  # fmt: skip
    out = who[cancel]
    bill.will_cancel[out] = True
    _event(ledger, out, day, EV["premium_cancelled"], np.nan, hour_seconds(rng, len(out)))
    return out


def end_periods(day: int, users: Users, bill: Billing, start: np.datetime64, ledger: Ledger,
                rng: np.random.Generator) -> np.ndarray:  # fmt: skip
    """Periods ending today: cancelled spells end (returned), the others renew."""
    due = np.flatnonzero(bill.premium & (bill.period_end == day))
    ended, renew = due[bill.will_cancel[due]], due[~bill.will_cancel[due]]
    bill.premium[ended], bill.will_cancel[ended] = False, False
    bill.last_end[ended], bill.period_end[ended], bill.check_day[ended] = day, NEVER, NEVER
    upgrade = renew[(bill.plan[renew] == BASIC) & (rng.random(len(renew)) < 0.02)]
    bill.plan[upgrade] = PLUS
    bill.period_no[renew] += 1
    bill.offer_left[renew] = np.maximum(bill.offer_left[renew] - 1, 0)
    bill.discount[renew] = np.where(bill.offer_left[renew] > 0, bill.offer[renew], 0.0)
    _open_period(renew, day, users, bill, start, ledger, rng, EV["premium_renewed"])
    return ended


def start_premium(who: np.ndarray, day: int, users: Users, bill: Billing,
                  start: np.datetime64, ledger: Ledger, rng: np.random.Generator,
                  seconds: np.ndarray) -> None:  # fmt: skip
    """Start a spell for ``who`` today: plan, intro or come-back discount, first period."""
    back = bill.spells[who] > 0
    fresh = rng.choice(len(PLANS), len(who), p=PLAN_SHARE)
    fresh = np.where((fresh == PLUS) & (users.price_sensitivity[who] > 1.0), BASIC, fresh)
    plan = np.where(back & (rng.random(len(who)) < 0.7), bill.plan[who], fresh)
    annual = PLAN_MONTHS[plan] == 12
    u = rng.random(len(who))
    offer = np.select(
        [back & (u < 0.6), ~back & (u < 0.25), ~back & (u < 0.35)],
        [np.where(annual, 0.3, 0.5), np.where(annual, 0.2, 0.5), np.where(annual, 0.2, 0.3)],
        0.0,
    )
    periods = np.select([annual, back, u < 0.25], [1, 2, 3], 6)
    bill.premium[who], bill.plan[who], bill.anchor[who] = True, plan, day
    bill.period_no[who], bill.spells[who] = 0, bill.spells[who] + 1
    bill.offer[who], bill.discount[who] = offer, offer
    bill.offer_left[who] = np.where(offer > 0, periods, 0)
    _open_period(who, day, users, bill, start, ledger, rng, EV["premium_started"], seconds)


def _open_period(who: np.ndarray, day: int, users: Users, bill: Billing, start: np.datetime64,
                 ledger: Ledger, rng: np.random.Generator, kind: int,
                 seconds: np.ndarray | None = None) -> None:  # fmt: skip
    """Open the next billing period of ``who`` on ``day`` and charge it."""
    if len(who) == 0:
        return
    months = PLAN_MONTHS[bill.plan[who]] * (bill.period_no[who] + 1)
    anchor = start + bill.anchor[who]
    end = (add_months(anchor, months) - start).astype(np.int64)
    lead = np.where(PLAN_MONTHS[bill.plan[who]] == 12, rng.integers(1, 61, len(who)),
                    rng.integers(1, 21, len(who)))  # fmt: skip
    bill.period_start[who], bill.period_end[who] = day, end
    bill.check_day[who] = np.maximum(end - lead, day + 1)
    price = PRICE[users.tier[who], bill.plan[who]]
    paid = np.round(price * (1 - bill.discount[who]), 2)
    ledger.periods.add(who=who, plan=bill.plan[who].copy(), start=np.full(len(who), day),
                       end=end, price=price, discount=bill.discount[who].copy())  # fmt: skip
    if seconds is None:
        seconds = hour_seconds(rng, len(who), BILLING_HOURS)
    _event(ledger, who, day, kind, paid, seconds)


def _event(ledger: Ledger, who: np.ndarray, day: int, kind: int, value: np.ndarray | float,
           seconds: np.ndarray) -> None:  # fmt: skip
    n = len(who)
    if n:
        ledger.events.add(who=who, day=np.full(n, day), sec=seconds, kind=np.full(n, kind),
                          value=np.broadcast_to(np.asarray(value, float), (n,)).copy())  # fmt: skip
