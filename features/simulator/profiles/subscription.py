"""``subscription``: a social app's own event log, accounts and billing export (contractual).

Observed, in the app's own vocabulary (none of its event types is a default role name):

- ``events``: ``user_id``, ``ts`` (naive datetime; ``YYYY-MM-DD HH:MM:SS`` in CSV), ``event``
  (``app_launched``, ``post_created``, ``photo_liked``, ``message_sent``, ``friend_added``,
  ``help_request``, ``premium_started``, ``premium_renewed``, ``premium_cancelled``) and
  ``value`` (the amount paid on started/renewed rows, else empty), in time order;
- ``accounts``: ``user_id``, ``created_at``, ``country``, ``device``, ``referral_source``,
  ``email_verified_at`` (empty when never verified);
- ``subscriptions``: one row per billing period, ``user_id``, ``plan`` (``monthly_basic``,
  ``monthly_plus``, ``annual``), ``period_start``, ``period_end`` (dates), ``price`` (the list
  price of the period) and ``discount`` (fraction off, 0-1).

Users sign up over the log. Each has a daily interest that drifts and wears off with tenure
and per-type engagement traits; each event type follows its own trait and interest. Many start
premium (at sign-up or later); before each renewal a user decides whether to cancel, and
distinct event types carry distinct signal about it (see
:func:`~features.simulator.profiles.subscription_billing.cancel_logit`): messages and friends
protect strongly, likes weakly, help requests add risk, app launches are mostly noise. A user
who decided to cancel engages less, and free users may abandon the app (dormant). Some who left
come back (win-back).

Ground truth: ``truth/customers`` (latent traits, interest at the end, premium history,
cancellation and win-back counts and dates, dormancy) and ``truth/renewal_decisions`` (every
renewal decision: day, period end, plan, whether a discount ended, the true probability of
cancelling and the outcome).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.simulator.config import SimConfig
from features.simulator.profiles.common import Calendar, Columns, expit, hour_seconds
from features.simulator.profiles.subscription_billing import (
    NEVER,
    Billing,
    Ledger,
    decide_renewals,
    end_periods,
    start_premium,
)
from features.simulator.profiles.subscription_tables import build
from features.simulator.profiles.subscription_world import (
    BASE_RATE,
    ENGAGEMENT,
    FRIEND_INVITE,
    INTEREST_POWER,
    WEEKEND_LIFT,
    Users,
    draw_users,
)

DATE_COLUMNS = {
    "subscriptions": ("period_start", "period_end"),
    "truth_customers": ("first_premium_on", "first_cancelled_on", "last_cancelled_on",
                        "last_premium_end_on", "dormant_since_on"),
    "truth_renewal_decisions": ("decided_on", "period_end"),
}  # fmt: skip
THETA, SIGMA = 0.05, 0.08  # daily pull of interest to its (decaying) mean, daily noise
WEAR_OFF_DAYS = 240  # novelty wears off over the first months
SLUMP_RATE, REVIVAL_RATE = 0.005, 0.002  # daily chance of a shift down / up of interest
FRIEND = ENGAGEMENT.index("friend_added")
HELP = ENGAGEMENT.index("help_request")


def simulate(config: SimConfig) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """Observed tables and ground truth of the ``subscription`` profile."""
    rng = np.random.default_rng([config.seed, 202])
    n, days = config.customers, config.days
    users = draw_users(n, days, hour_seconds(rng, n), rng)
    start = np.datetime64(config.start, "D")
    weekday = Calendar.make(config.start, 0, days).weekday
    bill = Billing.empty(n)
    state = {
        "interest": users.interest_mean + 0.3,
        "friends": np.zeros(n),
        "help": np.zeros(n),
        "dormant": np.zeros(n, bool),
        "dormant_since": np.full(n, NEVER),
        "shift": np.zeros(n),
    }
    ledger = Ledger(Columns(), Columns(), Columns())
    log_traits = users.traits + np.log(BASE_RATE)
    k_prev = 0
    for day in range(days):
        k = int(np.searchsorted(users.created_day, day, side="right"))
        _drift(day, users, state, k, rng)
        _engage(day, users, log_traits, bill, state, k, WEEKEND_LIFT[weekday[day]], ledger, rng)
        cancelled = decide_renewals(day, users, bill, state, ledger, rng)
        state["interest"][cancelled] -= 0.25  # they have already left in their heads
        end_periods(day, users, bill, start, ledger, rng)
        _starts(day, users, bill, state, k_prev, k, start, ledger, rng)
        _abandon(day, bill, state, k, rng)
        k_prev = k
    return build(config, users, bill, state, ledger)


def _drift(
    day: int, users: Users, state: dict[str, np.ndarray], k: int, rng: np.random.Generator
) -> None:
    """Interest follows a mean-reverting walk around a mean that wears off with tenure and
    shifts now and then (mostly down: a slump that shows over the following weeks)."""
    u = rng.random(k)
    shift = state["shift"][:k]
    down, up = u < SLUMP_RATE, (u >= SLUMP_RATE) & (u < SLUMP_RATE + REVIVAL_RATE)
    shift[down] += rng.normal(-0.9, 0.4, down.sum())
    shift[up] += rng.normal(0.5, 0.3, up.sum())
    tenure = np.minimum(day - users.created_day[:k], WEAR_OFF_DAYS) / WEAR_OFF_DAYS
    target = users.interest_mean[:k] - users.interest_decay[:k] * tenure + shift
    interest = state["interest"]
    interest[:k] += THETA * (target - interest[:k]) + SIGMA * rng.standard_normal(k)


def _engage(day: int, users: Users, log_traits: np.ndarray, bill: Billing,
            state: dict[str, np.ndarray], k: int, lift: float, ledger: Ledger,
            rng: np.random.Generator) -> None:  # fmt: skip
    """Today's engagement events: Poisson per user and type."""
    mult = np.where(state["dormant"][:k], 0.03, np.where(bill.will_cancel[:k], 0.6, 1.0)) * lift
    log_rate = log_traits[:k] + state["interest"][:k, None] * INTEREST_POWER
    rates = np.exp(log_rate) * mult[:, None]
    tenure = day - users.created_day[:k]
    rates[:, FRIEND] *= 0.3 + 1.5 * np.exp(-tenure / 45)  # friends are made early
    counts = rng.poisson(rates)
    state["friends"][:k] += counts[:, FRIEND]
    state["help"][:k] = state["help"][:k] * np.exp(-1 / 30) + counts[:, HELP]
    flat = np.flatnonzero(counts)
    reps = counts.ravel()[flat]
    who = np.repeat(flat // len(ENGAGEMENT), reps)
    kind = np.repeat(flat % len(ENGAGEMENT), reps)
    ledger.events.add(who=who, day=np.full(len(who), day), sec=hour_seconds(rng, len(who)),
                      kind=kind, value=np.full(len(who), np.nan))  # fmt: skip


def _starts(day: int, users: Users, bill: Billing, state: dict[str, np.ndarray], k_prev: int,
            k: int, start: np.datetime64, ledger: Ledger,
            rng: np.random.Generator) -> None:  # fmt: skip
    """Premium starts: at sign-up, later on interest (first spell), or win-backs."""
    u, social, price = state["interest"][:k], users.social[:k], users.price_sensitivity[:k]
    tenure = day - users.created_day[:k]
    first = 0.004 * np.exp(0.7 * u + 0.25 * social - 0.2 * price) * np.where(tenure < 90, 1, 0.35)
    back = 0.005 * np.exp(0.6 * u) * (day - bill.last_end[:k] >= 14)
    p = np.where(bill.spells[:k] == 0, first, back)
    new = slice(k_prev, k)
    p[new] = expit(-1.3 + 0.3 * users.general[new] + 0.4 * (users.referral[new] == FRIEND_INVITE)
                   - 0.3 * users.price_sensitivity[new])  # fmt: skip
    go = ~bill.premium[:k] & ~state["dormant"][:k] & (rng.random(k) < p)
    who = np.flatnonzero(go)
    seconds = hour_seconds(rng, len(who))
    today = who >= k_prev  # signed up today: buys minutes after signing up
    after = users.created_sec[who] + rng.integers(60, 1800, len(who))
    seconds = np.where(today, np.minimum(after, 86_399), seconds)
    start_premium(who, day, users, bill, start, ledger, rng, seconds)


def _abandon(day: int, bill: Billing, state: dict[str, np.ndarray], k: int,
             rng: np.random.Generator) -> None:  # fmt: skip
    """Free users with low interest abandon the app (more so after leaving premium)."""
    free = ~bill.premium[:k] & ~state["dormant"][:k]
    h = 0.004 * np.exp(-1.2 * state["interest"][:k]) * np.where(bill.spells[:k] > 0, 1.5, 1.0)
    who = np.flatnonzero(free & (rng.random(k) < h))
    state["dormant"][who] = True
    state["dormant_since"][who] = day
