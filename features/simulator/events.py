"""Events: which happen each day (by stage and traits), and their attributes, all vectorised."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.simulator.catalog import (
    CATEGORIES,
    CHANNELS,
    EVENT_FIXED_CHANNEL,
    EVENT_GROUP,
    EVENT_RATES,
    EVENT_TYPES,
    PRODUCTS,
    E,
    S,
)
from features.simulator.population import Population

# Events emitted on stage transitions come after the rate-driven types.
ALL_EVENT_TYPES = (*EVENT_TYPES, "signup", "subscription_start", "subscription_cancel")
T = {name: i for i, name in enumerate(ALL_EVENT_TYPES)}
NO_OFFER = -1


def trait_multipliers(pop: Population, scale: float) -> np.ndarray:
    """``(n, len(EVENT_TYPES))`` float32: each customer's multiplier of each event type's rate."""
    groups = np.stack(
        [
            np.ones(pop.n),  # visit
            np.exp(0.5 * pop.engagement),  # engagement
            np.exp(0.5 * pop.interest),  # intent
            np.exp(0.5 * pop.frequency),  # purchase
            np.exp(0.8 * pop.problems),  # support
            np.ones(pop.n),  # plain
        ],
        axis=1,
    )
    return (groups[:, EVENT_GROUP] * (pop.activity * scale)[:, None]).astype(np.float32)


def daily_events(
    stage: np.ndarray, traits: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One day's rate-driven events for customers ``0..len(stage)``.

    Returns ``(customer_position, event_type_index)`` arrays, one entry per event.
    """
    rates = EVENT_RATES[stage] * traits
    total = rates.sum(axis=1)
    counts = rng.poisson(total)
    who = np.repeat(np.arange(len(stage), dtype=np.int32), counts)
    cum = np.cumsum(rates[who], axis=1)
    u = rng.random(len(who)) * total[who]
    kind = np.minimum((u[:, None] >= cum).sum(axis=1), len(EVENT_TYPES) - 1)
    return who, kind.astype(np.int8)


def purchase_moves(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masks of the stage moves ``src -> dst`` that come with a purchase on the day of the move.

    Returns ``(first, repeat, back)``: a prospect's first purchase (evaluation -> purchase), a
    buyer's repeat (purchase -> retention) and a win-back (churned -> win_back; a lost lead's
    first purchase too).
    """
    first = (src == S["evaluation"]) & (dst == S["purchase"])
    repeat = (src == S["purchase"]) & (dst == S["retention"])
    back = (src == S["churned"]) & (dst == S["win_back"])
    return first, repeat, back


def draw_products(pop: Population, who: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A product index (into PRODUCTS) per event, by the customer's category affinity."""
    cum = np.cumsum(pop.affinity[who], axis=1)
    cat = np.minimum((rng.random(len(who))[:, None] >= cum).sum(axis=1), len(CATEGORIES) - 1)
    by_cat = [np.flatnonzero(PRODUCTS["category"].to_numpy() == c) for c in CATEGORIES]
    starts = np.array([g[0] for g in by_cat])
    sizes = np.array([len(g) for g in by_cat])
    return starts[cat] + (rng.random(len(who)) * sizes[cat]).astype(np.int64)


def event_attributes(
    pop: Population,
    who: np.ndarray,
    kind: np.ndarray,
    stage: np.ndarray,
    product: np.ndarray,
    rng: np.random.Generator,
    price_factor: np.ndarray | float = 1.0,
) -> dict[str, np.ndarray]:
    """Amount, product and channel for every event.

    ``product`` is a preset product index per event (-1 = draw one by affinity when the event
    type carries a product); ``price_factor`` (per event, or one for all) scales the catalog
    prices the event was priced at (a price change, ``World.change_prices``): a purchase's
    amount and a refund's (what was paid back) move with it; 1 leaves every amount as it was.
    Returns arrays ``amount`` (float, NaN when none), ``product`` (int, -1 when none) and
    ``channel`` (int index into CHANNELS).
    """
    carries = np.isin(kind, [T["purchase"], T["refund"], T["add_to_cart"]])
    drawn = draw_products(pop, who, rng)
    product = np.where(carries, np.where(product >= 0, product, drawn), -1)
    price = PRODUCTS["price"].to_numpy()[np.maximum(product, 0)] * price_factor
    noise = rng.lognormal(0.0, 0.1, size=len(who))
    amount = np.full(len(who), np.nan)
    buy = kind == T["purchase"]
    amount[buy] = np.round(price[buy] * pop.spend[who[buy]] * noise[buy], 2)
    refund = kind == T["refund"]
    amount[refund] = np.round(price[refund] * noise[refund], 2)
    fb = kind == T["nps_response"]
    score = 7 + 1.5 * pop.satisfaction[who[fb]] - 2.0 * (stage[fb] == S["at_risk"])
    amount[fb] = np.clip(np.round(score + rng.normal(0, 1.5, size=fb.sum())), 0, 10)
    return {"amount": amount, "product": product, "channel": _channels(pop, who, kind, rng)}


def _channels(
    pop: Population, who: np.ndarray, kind: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    channel = np.where(
        rng.random(len(who)) < 0.7,
        pop.preferred_channel[who],
        rng.integers(0, 3, size=len(who)),
    )
    for etype, name in EVENT_FIXED_CHANNEL.items():
        channel[kind == etype] = CHANNELS.index(name)
    return channel.astype(np.int8)


def events_frame(
    ids: np.ndarray,
    start: pd.Timestamp,
    cols: dict[str, np.ndarray],
    offer_ids: tuple[str, ...],
) -> pd.DataFrame:
    """Assemble the events table in the contract's columns from per-event integer codes."""
    ts = start + pd.to_timedelta(cols["day"] * 86_400 + cols["second"], unit="s")
    frame = pd.DataFrame(
        {
            "customer_id": pd.Categorical.from_codes(cols["who"], categories=ids),
            "timestamp": ts.as_unit("us"),
            "event_type": pd.Categorical.from_codes(cols["kind"], categories=ALL_EVENT_TYPES),
            "amount": cols["amount"],
            "product": pd.Categorical.from_codes(cols["product"], categories=PRODUCTS["product"]),
            "channel": pd.Categorical.from_codes(cols["channel"], categories=CHANNELS),
            "offer_id": pd.Categorical.from_codes(cols["offer"], categories=list(offer_ids)),
        }
    )
    return frame.sort_values("timestamp", kind="stable", ignore_index=True)


__all__ = ["ALL_EVENT_TYPES", "E", "NO_OFFER", "T"]
