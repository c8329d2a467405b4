"""Randomised offer campaigns: the logging policy, true conversion probabilities and outcomes.

Each arm's true effect is heterogeneous on the logit scale (``true_effects``): every offer helps
some customers, does nothing for others and hurts a few — a discount sent to a loyal,
price-insensitive customer, a loyalty nudge that wakes a disengaged one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.simulator.catalog import (
    ACTIVE_DAYS,
    ARM_WEIGHTS,
    ARMS,
    CATEGORIES,
    LAPSING_DAYS,
    PLANS,
    SEGMENTS,
    S,
)
from features.simulator.population import Population

A = {name: i for i, name in enumerate(ARMS)}
SEGMENT_LOGIT = np.array([-0.8, 0.6, -0.2, -1.2])  # prospect, active, lapsing, lapsed
BASE_LOGIT = -2.4
SURE_THING = 0.5


def arm_weight_table() -> np.ndarray:
    """``(len(SEGMENTS), len(ARMS))`` logging-policy weights; 0 = not eligible."""
    w = np.zeros((len(SEGMENTS), len(ARMS)))
    for s, seg in enumerate(SEGMENTS):
        for arm, weight in ARM_WEIGHTS[seg].items():
            w[s, A[arm]] = weight
    return w


def segments(purchases: np.ndarray, days_since_purchase: np.ndarray) -> np.ndarray:
    """Observable segment per customer (index into SEGMENTS) from purchase history."""
    seg = np.where(days_since_purchase <= ACTIVE_DAYS, 1, 2)
    seg = np.where(days_since_purchase > LAPSING_DAYS, 3, seg)
    return np.where(purchases == 0, 0, seg)


def logging_propensities(
    seg: np.ndarray, plan: np.ndarray, held_back: tuple[str, ...] = ()
) -> np.ndarray:
    """Probability of each arm per customer under the logging policy, ``(m, len(ARMS))``;
    never an offer ``held_back`` (not in the catalog yet)."""
    w = arm_weight_table()[seg]
    w[:, A["upsell_premium"]] *= plan != PLANS.index("premium")  # exclude_if_owned
    for offer in held_back:
        w[:, A[offer]] = 0.0
    return w / w.sum(axis=1, keepdims=True)


def true_effects(pop: Population, idx: np.ndarray, tenure: np.ndarray) -> np.ndarray:
    """Logit-scale effect of each arm vs no offer, ``(len(idx), len(ARMS))``; control = 0."""
    sat, sens = pop.satisfaction[idx], pop.price_sensitivity[idx]
    eng, prob = pop.engagement[idx], pop.problems[idx]
    aff = pop.affinity[idx]
    tau = np.zeros((len(idx), len(ARMS)))
    tau[:, A["upsell_premium"]] = 0.5 + 0.6 * sat - 0.5 * sens
    tau[:, A["upsell_annual"]] = 0.2 + 0.5 * (tenure > 180) - 0.6 * sens + 0.3 * pop.frequency[idx]
    tau[:, A["xsell_accessories"]] = 0.8 + 2.0 * aff[:, CATEGORIES.index("accessories")]
    tau[:, A["xsell_services"]] = -0.1 + 2.0 * aff[:, CATEGORIES.index("services")] + 0.5 * prob
    tau[:, A["xsell_starter"]] = 0.5 + 0.5 * pop.interest[idx]
    tau[:, A["ret_discount20"]] = 0.2 + 1.0 * sens - 0.8 * sat
    tau[:, A["ret_loyalty"]] = 0.6 + 0.7 * eng
    tau[:, A["wb_comeback30"]] = 0.7 + 0.6 * sens - 0.4 * prob
    tau[:, A["wb_freemonth"]] = 0.2 + 0.8 * eng
    return tau


def true_probabilities(
    pop: Population, idx: np.ndarray, stage: np.ndarray, seg: np.ndarray, tenure: np.ndarray
) -> np.ndarray:
    """True conversion probability within the response window under each arm, ``(m, arms)``."""
    base = (
        BASE_LOGIT
        + 0.5 * pop.frequency[idx]
        + 0.3 * pop.engagement[idx]
        + SEGMENT_LOGIT[seg]
        - 0.5 * (stage == S["at_risk"])
        - 1.5 * (stage == S["churned"])
    )
    tau = true_effects(pop, idx, tenure)
    # "sure things": customers who would buy anyway gain little from an offer (cannibalised)
    tau[:, 1:] -= SURE_THING * np.maximum(base - BASE_LOGIT, 0.0)[:, None]
    return 1.0 / (1.0 + np.exp(-(base[:, None] + tau)))


def converted_stages(stage: np.ndarray) -> np.ndarray:
    """Each customer's stage after a conversion: a prospect becomes a buyer, an at-risk
    customer is retained, a churned one is won back; any other stays where it is."""
    prospect = np.isin(stage, [S["awareness"], S["engagement"], S["evaluation"]])
    moved = stage.copy()
    moved[prospect] = S["purchase"]
    moved[stage == S["at_risk"]] = S["retention"]
    moved[stage == S["churned"]] = S["win_back"]
    return moved


@dataclass
class CampaignDraw:
    """One campaign's exposures (positions into the population) and what became of them."""

    idx: np.ndarray  # customer positions
    arm: np.ndarray  # index into ARMS
    propensity: np.ndarray  # (m, arms) logging probabilities
    p_convert: np.ndarray  # (m, arms) true conversion probabilities
    converted: np.ndarray  # bool
    delay: np.ndarray  # days from send to conversion


def draw_campaign(
    pop: Population,
    candidates: np.ndarray,
    stage: np.ndarray,
    seg: np.ndarray,
    tenure: np.ndarray,
    share: float,
    window: int,
    rng: np.random.Generator,
    held_back: tuple[str, ...] = (),
) -> CampaignDraw:
    """Sample a share of the contactable ``candidates``, randomise arms (never one
    ``held_back``), draw outcomes.

    ``stage``, ``seg`` and ``tenure`` are full-population arrays indexed by position.
    """
    idx = candidates[rng.random(len(candidates)) < share]
    prop = logging_propensities(seg[idx], pop.plan[idx], held_back)
    cum = np.cumsum(prop, axis=1)
    arm = ((rng.random(len(idx)) * cum[:, -1])[:, None] >= cum).sum(axis=1)
    p = true_probabilities(pop, idx, stage[idx], seg[idx], tenure[idx])
    converted = rng.random(len(idx)) < p[np.arange(len(idx)), arm]
    delay = rng.integers(0, window, size=len(idx))
    return CampaignDraw(idx, arm, prop, p, converted, delay)
