"""The latent stage process: daily hazards, one step of the chain, and exact forward propagation.

The same two functions, :func:`stage_multipliers` and the table ``BASE_RATES``, drive both the
simulation (:func:`step`) and the ground truth (:func:`propagate`), so the truth is the exact
law of the simulated chain (for fixed multipliers, and no campaign in between).
"""

from __future__ import annotations

import numpy as np

from features.simulator.catalog import BASE_RATES, STAGES, S
from features.simulator.population import Population

N_STAGES = len(STAGES)
_ABSORBING = BASE_RATES.copy()
_ABSORBING[S["churned"]] = 0.0  # for "churned at least once within h days"
RISK_CENTER = 0.6
MAX_MULTIPLIER = 20.0
PRICE_SHOCK = 1.0  # how strongly paying customers react to a price rise (static_multipliers)


def static_multipliers(pop: Population, price_factor: float = 1.0) -> np.ndarray:
    """Per-customer multiplier of each target stage's hazard, without the tenure effect;
    ``price_factor``: a price change from the log's prices (1 = none): a rise by ``f`` adds
    ``PRICE_SHOCK x log(f) x (1 + max(sensitivity, 0))`` to the log-hazard of falling at risk
    of every paying customer (half of it off their purchase hazard): everyone who pays feels
    it, the price-sensitive most.

    Returns an ``(n, len(STAGES))`` float array; column ``at_risk`` holds the risk score that
    :func:`stage_multipliers` scales by tenure.
    """
    paying = pop.price_index > 0
    rise = np.log(price_factor) * paying * (1.0 + np.maximum(pop.price_sensitivity, 0.0))
    m = np.ones((pop.n, N_STAGES))
    m[:, S["engagement"]] = np.exp(0.4 * pop.interest)
    m[:, S["evaluation"]] = np.exp(0.4 * pop.interest)
    m[:, S["purchase"]] = np.exp(
        0.5 * pop.interest
        - 0.3 * pop.price_index * pop.price_sensitivity
        - 0.5 * PRICE_SHOCK * rise
    )
    m[:, S["retention"]] = np.exp(0.4 * pop.frequency + 0.3 * pop.satisfaction)
    m[:, S["advocacy"]] = np.exp(0.8 * pop.satisfaction)
    m[:, S["at_risk"]] = np.exp(
        -0.7 * pop.satisfaction
        + 0.5 * pop.problems
        + 0.6 * pop.price_index * pop.price_sensitivity
        + PRICE_SHOCK * rise
        - 0.4 * pop.engagement
        + 0.5 * pop.noise
        - RISK_CENTER
    )
    return np.minimum(m, MAX_MULTIPLIER)


def tenure_factor(tenure_days: np.ndarray) -> np.ndarray:
    """Risk falls with tenure (days since first purchase, 0 if none)."""
    return 1.0 / np.sqrt(1.0 + np.maximum(tenure_days, 0.0) / 180.0)


def stage_multipliers(static: np.ndarray, tenure_days: np.ndarray) -> np.ndarray:
    """Multipliers for one day: the static ones with the tenure effect applied to risk."""
    m = static.copy()
    m[:, S["at_risk"]] *= tenure_factor(tenure_days)
    return m


def step(
    stage: np.ndarray,
    static: np.ndarray,
    tenure_days: np.ndarray,
    rng: np.random.Generator,
    u: np.ndarray | None = None,
) -> np.ndarray:
    """Draw tomorrow's stage for every customer (``stage`` ints, ``static`` (n, stages)).

    Equivalent to sampling from ``BASE_RATES[stage] * stage_multipliers(static, tenure)``:
    a customer moves to the first target whose cumulated hazard exceeds a uniform draw, ``u``
    (one per customer) when given, else drawn from ``rng``.
    """
    rates = BASE_RATES[stage] * static
    rates[:, S["at_risk"]] *= tenure_factor(tenure_days)
    cum = np.cumsum(rates, axis=1, out=rates)
    u = rng.random(len(stage)) if u is None else u
    target = (u[:, None] >= cum).sum(axis=1)
    return np.where(target < N_STAGES, target, stage).astype(stage.dtype)


def _stepper(mult: np.ndarray, base: np.ndarray):
    """One-day update, in place, of stage distributions held stage-major: ``v`` (stages, n).

    ``base`` is sparse (a few moves per stage), so the update is a handful of in-place vector
    operations (float32): far cheaper than a dense product, and this runs ~100 times per
    snapshot over every customer.
    """
    mult_t = np.ascontiguousarray(mult.T, dtype=np.float32)
    stay = (1.0 - base @ mult_t).astype(np.float32)  # stay[s, i] = 1 - sum_t base[s,t] m[i,t]
    moves = [(s, t, np.float32(base[s, t])) for s, t in zip(*np.nonzero(base), strict=True)]
    inflow = np.empty_like(mult_t)
    tmp = np.empty(mult_t.shape[1], dtype=np.float32)

    def advance(v: np.ndarray) -> np.ndarray:
        inflow.fill(0.0)
        for s, t, rate in moves:
            np.multiply(v[s], rate, out=tmp)
            inflow[t] += tmp
        np.multiply(inflow, mult_t, out=inflow)
        v *= stay
        v += inflow
        return v

    return advance


def propagate(
    stage: np.ndarray, mult: np.ndarray, churn_horizons: tuple[int, ...], stage_horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact outlook of the chain from today's stage.

    Returns ``(p_churn, p_stage)``: ``p_churn[:, j]`` is the probability of entering ``churned``
    within ``churn_horizons[j]`` days (1 for customers churned today); ``p_stage`` is the
    distribution over STAGES ``stage_horizon`` days ahead.
    """
    start = np.ascontiguousarray(np.eye(N_STAGES, dtype=np.float32)[:, stage])  # (stages, n)
    advance = _stepper(mult, _ABSORBING)
    p_churn = np.empty((len(stage), len(churn_horizons)))
    v = start.copy()
    for day in range(1, max(churn_horizons) + 1):
        v = advance(v)
        for j, h in enumerate(churn_horizons):
            if h == day:
                p_churn[:, j] = v[S["churned"]]
    advance, v = _stepper(mult, BASE_RATES), start
    for _ in range(stage_horizon):
        v = advance(v)
    return p_churn, v.T.astype(np.float64)
