"""Customers: latent traits, static attributes and the state they start in."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.simulator.catalog import (
    CATEGORIES,
    INITIAL_STAGE_MIX,
    PLAN_PRICE_INDEX,
    PLAN_SHARE,
    PLANS,
    PURCHASER_STAGES,
    STAGES,
)


@dataclass
class Population:
    """Per-customer arrays, customers ordered by arrival day (index = position).

    Latent traits (never written to the observable tables, only to the ground truth):
    ``satisfaction``, ``problems``, ``price_sensitivity``, ``engagement``, ``interest``,
    ``frequency``, ``activity``, ``noise``. Observable attributes: ``plan``, ``region``,
    ``acquisition``. ``affinity`` is each customer's share of purchases per category.
    """

    arrival_day: np.ndarray  # int, day the customer becomes known (<= 0 for day-0 customers)
    initial_stage: np.ndarray  # int, index into STAGES
    first_purchase_day: np.ndarray  # float, NaN when not (yet) a purchaser
    satisfaction: np.ndarray
    problems: np.ndarray
    price_sensitivity: np.ndarray
    engagement: np.ndarray
    interest: np.ndarray
    frequency: np.ndarray
    activity: np.ndarray
    noise: np.ndarray
    spend: np.ndarray
    affinity: np.ndarray  # (n, len(CATEGORIES))
    plan: np.ndarray  # int index into PLANS
    region: np.ndarray
    acquisition: np.ndarray
    preferred_channel: np.ndarray

    @property
    def n(self) -> int:
        return len(self.arrival_day)

    @property
    def price_index(self) -> np.ndarray:
        return PLAN_PRICE_INDEX[self.plan]


def draw_population(
    n: int, days: int, initial_share: float, rng: np.random.Generator
) -> Population:
    """Draw ``n`` customers: who is known on day 0, who arrives later and when, and their traits."""
    initial = rng.random(n) < initial_share
    arrival = np.where(initial, 0, rng.integers(1, max(2, int(days * 0.85)), size=n))
    order = np.argsort(arrival, kind="stable")
    arrival, initial = arrival[order], initial[order]
    stage = np.where(
        initial,
        rng.choice(len(STAGES), size=n, p=INITIAL_STAGE_MIX),
        rng.choice(2, size=n, p=[0.6, 0.4]),  # newcomers start aware or already engaged
    )
    purchaser = np.isin(stage, PURCHASER_STAGES) | (stage == STAGES.index("churned"))
    tenure = rng.uniform(30, 1000, size=n)
    first_purchase = np.where(initial & purchaser, -np.round(tenure), np.nan)
    problems = rng.normal(size=n)
    satisfaction = 0.8 * rng.normal(size=n) - 0.4 * problems
    plan = rng.choice(len(PLANS), size=n, p=PLAN_SHARE)
    return Population(
        arrival_day=arrival.astype(np.int64),
        initial_stage=stage.astype(np.int8),
        first_purchase_day=first_purchase,
        satisfaction=satisfaction,
        problems=problems,
        price_sensitivity=rng.normal(size=n) - 0.4 * (plan >= 2),
        engagement=rng.normal(size=n),
        interest=rng.normal(size=n),
        frequency=rng.normal(size=n),
        activity=rng.lognormal(-0.05, 0.3, size=n),
        noise=rng.normal(size=n),
        spend=rng.lognormal(0.0, 0.25, size=n),
        affinity=rng.dirichlet(np.ones(len(CATEGORIES)), size=n),
        plan=plan.astype(np.int8),
        region=rng.integers(0, 4, size=n).astype(np.int8),
        acquisition=rng.choice(5, size=n, p=[0.35, 0.25, 0.2, 0.1, 0.1]).astype(np.int8),
        preferred_channel=rng.choice(3, size=n, p=[0.5, 0.35, 0.15]).astype(np.int8),
    )
