"""``purchase_only``: a retailer's plain transaction log (non-contractual, silent dropout).

Observed, one table in the retailer's own names: ``transactions`` with ``cust_id`` (str,
``C000123``), ``order_date`` (int ``YYYYMMDD``), ``order_value`` (float, 2 decimals, > 0) and
``category`` (str), in time order.

The process is buy-till-you-die with the departures real logs show. Each customer buys on a
Poisson clock with a gamma-distributed rate (``purchase_rate_per_year``; most buy every few
months, some monthly, some once a year), and after each repeat purchase decides to leave with
their own probability (``dropout_probability``, lower for bigger spenders); a share of new
customers never come back after the first order (``one_and_done``). Unlike BG/NBD, a leaver
does not vanish at once: their rate fades to nothing over ``fade_days`` (the decline shows in
recent-vs-earlier counts), and purchases follow the season (a November-December peak, busier
weekends). Each customer has a typical basket (``mean_order_value``) and category habits.

Customers arrive over the whole log (cohorts, their first order on the day they arrive), and
``initial_share`` of them were already customers before it: their history is simulated from
up to three years earlier and only the part inside the log is written (they are those still
active at day 0 who order at least once in the log, like any real extract).

Ground truth, ``truth/customers``: arrival day (negative = before the log), the latent rate,
dropout probability, basket and habits, the day they decided to leave and the day they dropped
out (NaN while still active at the end), ``alive_at_end``, purchase counts before and in the
log (genuine repeat rows aside), and the true purchases and spend of the 365 days after it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.simulator.config import SimConfig
from features.simulator.profiles.common import (
    Calendar,
    Columns,
    choice_rows,
    day_dates,
    expit,
    sequential_ids,
)

CATEGORIES = ("apparel", "beauty", "electronics", "home", "sports", "toys")
_POPULARITY = np.array([0.24, 0.17, 0.10, 0.23, 0.14, 0.12])
_PRICE = np.array([1.0, 0.55, 2.6, 1.25, 1.1, 0.8])  # basket size multiplier per category
_HOLIDAY_MIX = np.array([1.1, 1.2, 1.9, 0.9, 0.8, 2.4])  # category weights in Nov-Dec
_MONTH = np.array([0.85, 0.8, 0.95, 1.0, 1.0, 0.95, 0.9, 0.95, 1.0, 1.02, 1.3, 1.6])
_WEEKDAY = np.array([0.94, 0.92, 0.95, 0.97, 1.04, 1.13, 1.05])
DATE_COLUMNS = {"truth_customers": ("arrived_at", "dropped_out_at")}
PRE_DAYS = 3 * 365  # history simulated before the log for customers active at its start
FUTURE_DAYS = 365  # simulated after the log, for the truth only
FADE_START = 0.7  # a leaver's rate multiplier right after deciding; it falls linearly to 0
REPEAT_SHARE = 0.002  # genuine repeats: the same order placed twice on a day


@dataclass
class Customers:
    """Latent per-customer arrays, ordered by arrival day."""

    arrival: np.ndarray  # int day (negative = before the log)
    rate: np.ndarray  # purchases per day, before season and fading
    dropout: np.ndarray  # probability of deciding to leave after a repeat purchase
    one_and_done: np.ndarray  # bool: leaves right after the first purchase
    fade_days: np.ndarray  # int: how long a leaver's rate takes to fade out
    spend: np.ndarray  # mean order value
    prefs: np.ndarray  # (n, len(CATEGORIES)) category habits

    def take(self, idx: np.ndarray) -> Customers:
        return Customers(**{k: v[idx] for k, v in vars(self).items()})


def simulate(config: SimConfig) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """Observed tables and ground truth of the ``purchase_only`` profile."""
    n_initial = int(round(config.initial_share * config.customers))
    pool = max(64, 3 * n_initial)  # candidates; about 40% are active at day 0 and order in it
    cal = Calendar.make(config.start, -PRE_DAYS, config.days + FUTURE_DAYS)
    while True:  # almost always once; else again with a pool sized from what was found
        rng = np.random.default_rng([config.seed, 101, pool])
        cust = _draw(pool, config.customers - n_initial, config, rng)
        log = _run(cust, cal, rng)
        keep, found = _keep(cust, log, n_initial, config.days)
        if found >= n_initial:
            break
        pool = int(pool * max(2.0, 1.3 * n_initial / max(found, 1)))
    return _tables(config, cust, log, keep, cal, rng)


def _draw(n_initial: int, n_new: int, config: SimConfig, rng: np.random.Generator) -> Customers:
    """Latent traits of ``n_initial`` candidates known before the log and ``n_new`` arrivals
    (a growing business, more of them in the holiday season)."""
    n, days = n_initial + n_new, config.days
    weight = np.linspace(1.0, 1.3, days) * _MONTH[Calendar.make(config.start, 0, days).month - 1]
    new = rng.choice(days, n_new, p=weight / weight.sum())
    arrival = np.r_[-rng.integers(1, PRE_DAYS, n_initial), new]
    loyalty = rng.normal(size=n)  # bigger baskets, fewer dropouts
    prefs = rng.dirichlet(_POPULARITY * 3.0, size=n)
    rate = rng.gamma(1.3, 3.4 / 1.3, n) * (1 + 0.8 * prefs[:, 1]) / 365  # beauty: replenishment
    cust = Customers(
        arrival=arrival.astype(np.int64),
        rate=np.clip(rate, 0.25 / 365, 40 / 365),
        dropout=expit(np.log(0.1 / 0.9) + 0.8 * rng.normal(size=n) - 0.45 * loyalty),
        one_and_done=rng.random(n) < expit(np.log(0.3 / 0.7) - 0.3 * loyalty),
        fade_days=rng.integers(60, 301, n),
        spend=42.0 * np.exp(0.5 * loyalty + 0.15 * rng.normal(size=n)),
        prefs=prefs,
    )
    return cust.take(np.argsort(cust.arrival, kind="stable"))


@dataclass
class Log:
    """Every simulated purchase (``who``, ``day``) and each customer's leaving days."""

    who: np.ndarray
    day: np.ndarray
    leave: np.ndarray  # day the customer decided to leave (inf = never)
    drop: np.ndarray  # first day without any purchase chance (inf = never)


def _run(cust: Customers, cal: Calendar, rng: np.random.Generator) -> Log:
    """The daily loop: seasonal Poisson purchases, leave decisions after repeat purchases."""
    n = len(cust.arrival)
    leave, drop = np.full(n, np.inf), np.full(n, np.inf)
    season = _MONTH[cal.month - 1] * _WEEKDAY[cal.weekday]
    season /= season.mean()
    buys = Columns()
    k_prev = 0
    for pos, day in enumerate(range(cal.first, cal.first + len(cal.dates))):
        k = int(np.searchsorted(cust.arrival, day, side="right"))
        if k == 0:
            continue
        since = day - leave[:k]
        fade = np.where(since >= 0, FADE_START * (1 - since / cust.fade_days[:k]), 1.0)
        p = -np.expm1(-cust.rate[:k] * season[pos] * np.maximum(fade, 0.0))
        buy = (rng.random(k) < p) & (day < drop[:k])
        buy[k_prev:k] = True  # the first order, on arrival
        who = np.flatnonzero(buy)
        buys.add(who=who, day=np.full(len(who), day))
        first = who >= k_prev
        quit_now = who[first & cust.one_and_done[who]]
        leave[quit_now], drop[quit_now] = day, day + 1
        repeat = who[~first & np.isinf(leave[who])]
        decide = repeat[rng.random(len(repeat)) < cust.dropout[repeat]]
        leave[decide], drop[decide] = day, day + cust.fade_days[decide]
        k_prev = k
    return Log(buys.get("who", np.int64), buys.get("day", np.int64), leave, drop)


def _keep(cust: Customers, log: Log, n_initial: int, days: int) -> tuple[np.ndarray, int]:
    """Positions of the customers in the log (the first ``n_initial`` candidates active at
    day 0 with an order in the log, and every new arrival) and how many candidates qualified."""
    in_log = np.zeros(len(cust.arrival), bool)
    in_log[log.who[(log.day >= 0) & (log.day < days)]] = True
    initial = cust.arrival < 0
    ok = np.flatnonzero(initial & in_log & (log.drop > 0))
    chosen = ~initial
    chosen[ok[:n_initial]] = True
    return np.flatnonzero(chosen), len(ok)


def _tables(
    config: SimConfig,
    cust: Customers,
    log: Log,
    keep: np.ndarray,
    cal: Calendar,
    rng: np.random.Generator,
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    new_pos = np.full(len(cust.arrival), -1)
    new_pos[keep] = np.arange(len(keep))
    who, day = new_pos[log.who], log.day
    rows = (who >= 0) & (day >= 0)
    who, day = who[rows], day[rows]
    cust, leave, drop = cust.take(keep), log.leave[keep], log.drop[keep]
    ids = sequential_ids("C", len(keep))
    category, value = _orders(cust, who, cal.month[cal.at(day)], rng)
    in_log = day < config.days
    transactions = _transactions(
        ids, who[in_log], day[in_log], category[in_log], value[in_log], cal, rng
    )
    before = np.bincount(log.who[(log.day < 0)], minlength=len(new_pos))[keep]
    future = ~in_log
    truth = _truth(config, cust, ids, leave, drop, before, who, in_log, future, value, cal.start)
    return {"transactions": transactions}, {"customers": truth}


def _orders(
    cust: Customers, who: np.ndarray, month: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Category (from habits, toys and electronics in the holidays) and value of each order."""
    holiday = month >= 11
    category = choice_rows(cust.prefs[who] * np.where(holiday[:, None], _HOLIDAY_MIX, 1.0), rng)
    basket = cust.spend[who] * _PRICE[category] * rng.gamma(4.0, 0.25, len(who))
    value = np.maximum(np.round(basket * np.where(holiday, 1.08, 1.0), 2), 1.0)
    return category, value


def _transactions(
    ids: pd.array,
    who: np.ndarray,
    day: np.ndarray,
    category: np.ndarray,
    value: np.ndarray,
    cal: Calendar,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """The retailer's log: rows in time order, a few genuine same-day repeats."""
    rows = np.arange(len(who))
    rows = np.sort(np.r_[rows, rows[rng.random(len(rows)) < REPEAT_SHARE]])
    order = np.lexsort((rng.random(len(rows)), day[rows]))  # time of day is not exported
    rows = rows[order]
    return pd.DataFrame(
        {
            "cust_id": ids[who[rows]],
            "order_date": cal.yyyymmdd[cal.at(day[rows])].astype(np.int64),
            "order_value": value[rows],
            "category": pd.array(np.asarray(CATEGORIES, dtype=object)[category[rows]], dtype="str"),
        }
    )


def _truth(
    config: SimConfig,
    cust: Customers,
    ids: pd.array,
    leave: np.ndarray,
    drop: np.ndarray,
    before: np.ndarray,
    who: np.ndarray,
    in_log: np.ndarray,
    future: np.ndarray,
    value: np.ndarray,
    start: np.datetime64,
) -> pd.DataFrame:
    n = len(ids)
    dropped = drop < config.days
    leave_day = np.where(np.isfinite(leave) & (leave < config.days), leave, np.nan)
    drop_day = np.where(dropped, drop, np.nan)
    return pd.DataFrame(
        {
            "customer_id": ids,
            "active_at_start": cust.arrival < 0,
            "arrival_day": cust.arrival,
            "arrived_at": day_dates(start, cust.arrival),
            "purchase_rate_per_year": cust.rate * 365,
            "dropout_probability": cust.dropout,
            "one_and_done": cust.one_and_done,
            "fade_days": cust.fade_days,
            "mean_order_value": cust.spend,
            "favourite_category": pd.array(
                np.asarray(CATEGORIES, dtype=object)[cust.prefs.argmax(axis=1)], dtype="str"
            ),
            "leaving_since_day": leave_day,
            "dropout_day": drop_day,
            "dropped_out_at": day_dates(start, drop_day),
            "alive_at_end": ~dropped,
            "purchases_before_log": before,
            "purchases_in_log": np.bincount(who[in_log], minlength=n),
            f"purchases_next_{FUTURE_DAYS}d": np.bincount(who[future], minlength=n),
            f"spend_next_{FUTURE_DAYS}d": np.round(
                np.bincount(who[future], weights=value[future], minlength=n), 2
            ),
        }
    )
