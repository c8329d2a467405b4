"""The truth after the log: what each customer buys in the ``future_days`` after it ends.

The daily dynamics of :mod:`features.simulator.run` go on past the last day of the log, for
ground truth only (never exported as events): the same stage chain (:func:`dynamics.step`) and
the same purchases (rate-driven, and those a stage move implies, with the log's amounts), but
no campaigns (nobody is contacted after the log ends: the truth is what customers would do
without us) and no new arrivals. Only the stage moves and purchases are simulated; the other
event types do not shape either. The future draws from a random stream of its own, so the
log is the same with or without it.
"""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from features.simulator import dynamics
from features.simulator.campaigns import converted_stages
from features.simulator.catalog import BASE_RATES, EVENT_RATES, E, S
from features.simulator.config import SimConfig
from features.simulator.events import T, event_attributes, purchase_moves, trait_multipliers
from features.simulator.population import Population

FUTURE_STREAM = 2  # the future's generator: default_rng([seed, 2]) (tables draw from [seed, 1])


def future_columns(days: int) -> tuple[str, str]:
    """Names of the truth columns: ``purchases_next_<days>d`` and ``spend_next_<days>d``."""
    return f"purchases_next_{days}d", f"spend_next_{days}d"


def simulate_future(
    config: SimConfig,
    pop: Population,
    stage: np.ndarray,
    first_purchase: np.ndarray,
    progress: bool = False,
    stream: tuple[int, ...] = (FUTURE_STREAM,),
) -> dict[str, np.ndarray]:
    """Each customer's purchases and spend over the ``config.future_days`` after the log.

    ``stage`` and ``first_purchase`` (day, NaN before the first purchase) are the state at the
    end of the log, per customer position; they are not changed. Returns ``purchases`` (int64,
    purchase events on days ``days .. days + future_days - 1``) and ``spend`` (float64, their
    summed amounts, rounded to cents), one value per customer position; zeros when
    ``future_days`` is 0. ``stream``: the random stream (after the seed); the truth's is
    ``(FUTURE_STREAM,)``.
    """
    rng = np.random.default_rng([config.seed, *stream])
    stage, first_purchase = stage.copy(), first_purchase.copy()
    static_mult = dynamics.static_multipliers(pop)
    leaving = _leaving_hazards(static_mult)
    buy_rate = trait_multipliers(pop, config.event_rate_scale)[:, E["purchase"]]
    stage_rate = EVENT_RATES[:, E["purchase"]]
    intensity = np.zeros(pop.n)  # expected rate-driven purchases, summed over the days
    move_buys = np.zeros(pop.n, dtype=np.int64)  # purchases that come with a stage move
    days = range(config.days, config.days + config.future_days)
    for day in tqdm(days, desc="simulating after the log", disable=not progress, unit="day"):
        intensity += stage_rate[stage] * buy_rate
        tenure = np.nan_to_num(day - first_purchase, nan=0.0)
        new = _step(stage, static_mult, tenure, leaving, rng)
        first, repeat, back = purchase_moves(stage, new)
        first_purchase[first | back] = np.fmin(first_purchase[first | back], day)
        move_buys += first | repeat | back
        stage = new
    # daily_events' purchases are Poisson each day (the purchase share of a Poisson count) and
    # independent given the stages, so their sum over the days is Poisson with the summed mean
    purchases = move_buys + rng.poisson(intensity)
    return {"purchases": purchases, "spend": _spend(pop, purchases, rng)}


def conversion_gains(
    config: SimConfig, pop: Population, stage: np.ndarray, first_purchase: np.ndarray,
    reps: int = 8,
) -> np.ndarray:  # fmt: skip
    """What a conversion on the last day of the log adds to each customer's spend over the
    ``config.future_days`` after it, beyond the converted purchase itself: the expected spend
    from the stage the conversion moves them to (:func:`campaigns.converted_stages`: a
    prospect buys, an at-risk customer is retained, a churned one won back) minus that from
    where they are; 0 for a customer the conversion does not move.

    Monte Carlo: ``reps`` pairs of futures, each pair on one random stream of its own (common
    random numbers, so the difference is less noisy than the two means apart); the mean
    difference per customer position, float64.
    """
    moved = converted_stages(stage)
    bought = np.where(moved != stage, np.fmin(first_purchase, config.days - 1), first_purchase)
    gain = np.zeros(pop.n)
    for r in range(reps):
        stream = (FUTURE_STREAM + 1, r)
        after = simulate_future(config, pop, moved, bought, stream=stream)["spend"]
        before = simulate_future(config, pop, stage, first_purchase, stream=stream)["spend"]
        gain += after - before
    return np.where(moved != stage, gain / max(reps, 1), 0.0)


def _leaving_hazards(static_mult: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each customer's daily hazard of leaving each stage, flat ``(n * stages,)`` arrays: the
    part the tenure does not touch, and the move to ``at_risk`` that
    :func:`dynamics.tenure_factor` scales."""
    risk = BASE_RATES[:, S["at_risk"]] * static_mult[:, [S["at_risk"]]]
    return (static_mult @ BASE_RATES.T - risk).ravel(), risk.ravel()


def _step(
    stage: np.ndarray,
    static_mult: np.ndarray,
    tenure: np.ndarray,
    leaving: tuple[np.ndarray, np.ndarray],
    rng: np.random.Generator,
) -> np.ndarray:
    """:func:`dynamics.step` for everyone, resolved only for the few who move today.

    A customer moves when their uniform draw falls below their total hazard of leaving their
    stage; :func:`dynamics.step` picks the target from the same draw, so the law is that of
    stepping everyone (the threshold has a hair of slack: ``step`` keeps anyone above their
    exact total where they are).
    """
    u = rng.random(len(stage))
    at = np.arange(len(stage)) * static_mult.shape[1] + stage
    total = leaving[0][at] + leaving[1][at] * dynamics.tenure_factor(tenure)
    movers = np.flatnonzero(u < total * (1 + 1e-9))
    new = stage.copy()
    new[movers] = dynamics.step(stage[movers], static_mult[movers], tenure[movers], rng, u[movers])
    return new


def _spend(pop: Population, purchases: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Summed amounts of ``purchases[i]`` purchases per customer, priced as in the log."""
    who = np.repeat(np.arange(pop.n), purchases)
    kind = np.full(len(who), T["purchase"], dtype=np.int8)
    none = np.full(len(who), -1)
    amount = event_attributes(pop, who, kind, none, none, rng)["amount"]
    return np.round(np.bincount(who, weights=amount, minlength=pop.n), 2)
