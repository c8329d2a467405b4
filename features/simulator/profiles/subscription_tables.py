"""Frames of the ``subscription`` profile: events, accounts, subscriptions and the truth."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.simulator.config import SimConfig
from features.simulator.profiles.common import day_dates, timestamps
from features.simulator.profiles.subscription_billing import NEVER, Billing, Ledger
from features.simulator.profiles.subscription_world import (
    COUNTRIES,
    DEVICES,
    ENGAGEMENT,
    EV,
    EVENT_TYPES,
    PLANS,
    REFERRALS,
    Users,
)

LATENT = ("general", "activity", "content", "social", "friction", "price_sensitivity", "frailty",
          "interest_mean", "interest_decay")  # fmt: skip


def user_ids(n: int, seed: int) -> np.ndarray:
    """Random-looking, unique ids ``u_<10 hex digits>`` in sign-up order (a bijection of
    0..n-1; the prefix keeps CSV readers from taking an all-digit id for a number)."""
    offset = np.random.default_rng([seed, 7]).integers(0, 2**40)
    x = (np.arange(n, dtype=np.uint64) * np.uint64(0x9E3779B97) + np.uint64(offset)) % np.uint64(
        2**40
    )
    return np.array([f"u_{v:010x}" for v in x.tolist()], dtype=object)


def build(
    config: SimConfig, users: Users, bill: Billing, state: dict[str, np.ndarray], ledger: Ledger
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """Observed tables (``events``, ``accounts``, ``subscriptions``) and the truth
    (``customers``, ``renewal_decisions``)."""
    ids = user_ids(users.n, config.seed)
    start = np.datetime64(config.start, "D")
    tables = {
        "events": _events(ledger, users, ids, start),
        "accounts": _accounts(config, users, ids, start),
        "subscriptions": _subscriptions(ledger, ids, start),
    }
    truth = {
        "customers": _truth_customers(users, bill, state, ledger, ids, start),
        "renewal_decisions": _decisions(ledger, ids, start),
    }
    return tables, truth


def _str(values: np.ndarray) -> pd.array:
    return pd.array(values, dtype="str")


def _events(ledger: Ledger, users: Users, ids: np.ndarray, start: np.datetime64) -> pd.DataFrame:
    ev = ledger.events
    who, day, kind = ev.get("who", np.int64), ev.get("day", np.int64), ev.get("kind", np.int64)
    sec = ev.get("sec", np.int64)
    created = users.created_sec[who]
    first_day = (day == users.created_day[who]) & (kind < len(ENGAGEMENT))
    sec = np.where(first_day, created + sec * (86_400 - created) // 86_400, sec)  # after sign-up
    ts = timestamps(start, day, sec)
    order = np.lexsort((kind, who, ts))
    return pd.DataFrame(
        {
            "user_id": _str(ids[who[order]]),
            "ts": ts[order],
            "event": _str(np.asarray(EVENT_TYPES, dtype=object)[kind[order]]),
            "value": ev.get("value")[order],
        }
    )


def _accounts(
    config: SimConfig, users: Users, ids: np.ndarray, start: np.datetime64
) -> pd.DataFrame:
    created = timestamps(start, users.created_day, users.created_sec)
    end = start.astype("datetime64[s]") + config.days * 86_400
    delay = np.nan_to_num(users.verify_delay, nan=-1).astype(np.int64)
    verified = created + delay
    verified = np.where((delay >= 0) & (verified < end), verified, np.datetime64("NaT"))
    return pd.DataFrame(
        {
            "user_id": _str(ids),
            "created_at": created,
            "country": _str(np.asarray(COUNTRIES, dtype=object)[users.country]),
            "device": _str(np.asarray(DEVICES, dtype=object)[users.device]),
            "referral_source": _str(np.asarray(REFERRALS, dtype=object)[users.referral]),
            "email_verified_at": verified.astype("datetime64[s]"),
        }
    )


def _subscriptions(ledger: Ledger, ids: np.ndarray, start: np.datetime64) -> pd.DataFrame:
    p = ledger.periods
    who, first = p.get("who", np.int64), p.get("start", np.int64)
    order = np.lexsort((who, first))
    return pd.DataFrame(
        {
            "user_id": _str(ids[who[order]]),
            "plan": _str(np.asarray(PLANS, dtype=object)[p.get("plan", np.int64)[order]]),
            "period_start": day_dates(start, first[order]),
            "period_end": day_dates(start, p.get("end", np.int64)[order]),
            "price": p.get("price")[order],
            "discount": p.get("discount")[order],
        }
    )


def _decisions(ledger: Ledger, ids: np.ndarray, start: np.datetime64) -> pd.DataFrame:
    d = ledger.decisions
    who = d.get("who", np.int64)
    return pd.DataFrame(
        {
            "user_id": _str(ids[who]),
            "decided_on": day_dates(start, d.get("day")),
            "period_end": day_dates(start, d.get("period_end")),
            "plan": _str(np.asarray(PLANS, dtype=object)[d.get("plan", np.int64)]),
            "spell": d.get("spell", np.int64),
            "discount_ends": d.get("discount_ends", bool),
            "p_cancel": d.get("p_cancel"),
            "cancelled": d.get("cancelled", bool),
        }
    )


def _truth_customers(users: Users, bill: Billing, state: dict[str, np.ndarray], ledger: Ledger,
                     ids: np.ndarray, start: np.datetime64) -> pd.DataFrame:  # fmt: skip
    n = users.n
    ev = ledger.events
    who, day, kind = ev.get("who", np.int64), ev.get("day", np.int64), ev.get("kind", np.int64)
    started = kind == EV["premium_started"]
    cancel = kind == EV["premium_cancelled"]
    return pd.DataFrame(
        {
            "user_id": _str(ids),
            "signup_day": users.created_day,
            **{name: getattr(users, name) for name in LATENT},
            "interest_at_end": state["interest"],
            "friends_added": state["friends"].astype(np.int64),
            "ever_premium": bill.spells > 0,
            "premium_at_end": bill.premium,
            "first_premium_on": day_dates(start, _first(who[started], day[started], n)),
            "premium_spells": bill.spells,
            "win_backs": np.maximum(bill.spells - 1, 0),
            "cancellations": np.bincount(who[cancel], minlength=n),
            "first_cancelled_on": day_dates(start, _first(who[cancel], day[cancel], n)),
            "last_cancelled_on": day_dates(start, -_first(who[cancel], -day[cancel], n)),
            "last_premium_end_on": day_dates(
                start, np.where(bill.last_end > -NEVER, bill.last_end, np.nan)
            ),
            "dormant_since_on": day_dates(
                start, np.where(state["dormant"], state["dormant_since"], np.nan)
            ),
        }
    )


def _first(who: np.ndarray, day: np.ndarray, n: int) -> np.ndarray:
    """Per user, the smallest ``day`` (NaN if none)."""
    out = np.full(n, np.inf)
    np.minimum.at(out, who, day.astype(float))
    return np.where(np.isfinite(out), out, np.nan)
