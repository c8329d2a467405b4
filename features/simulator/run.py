"""The daily loop: stages move, events happen, campaigns go out, the truth is recorded.

The loop runs over days only; everything inside a day is vectorised over customers. After the
log, the customers' purchases go on for ``future_days`` more, for the truth only
(:mod:`features.simulator.future`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from features.simulator import dynamics
from features.simulator.campaigns import converted_stages, draw_campaign, segments
from features.simulator.catalog import OFFERS, PLANS, PRODUCTS, S
from features.simulator.config import SimConfig
from features.simulator.events import NO_OFFER, T, daily_events, purchase_moves, trait_multipliers
from features.simulator.future import simulate_future
from features.simulator.population import Population, draw_population

# product index (into PRODUCTS) per arm; -1 = control, or an offer on no single product
_OFFER_PRODUCT = np.r_[-1, pd.Index(PRODUCTS["product"]).get_indexer(OFFERS["product"])]


@dataclass
class Log:
    """Columns appended to during the loop, concatenated once at the end."""

    parts: dict[str, list[np.ndarray]] = field(default_factory=lambda: defaultdict(list))

    def add(self, **cols: np.ndarray | int) -> None:
        n = max(len(v) for v in cols.values() if isinstance(v, np.ndarray))
        for name, v in cols.items():
            self.parts[name].append(v if isinstance(v, np.ndarray) else np.full(n, v))

    def columns(self) -> dict[str, np.ndarray]:
        return {k: np.concatenate(v) for k, v in self.parts.items()}


@dataclass
class State:
    """What changes day to day, per customer position."""

    stage: np.ndarray
    first_purchase: np.ndarray  # day, NaN before the first purchase
    purchases: np.ndarray
    last_purchase: np.ndarray  # day, NaN before the first purchase
    signup: np.ndarray  # day, NaN before sign-up

    def tenure(self, day: int) -> np.ndarray:
        return np.nan_to_num(day - self.first_purchase, nan=0.0)


@dataclass
class RawSimulation:
    """Integer-coded output of :func:`run`; :mod:`features.simulator.tables` makes frames of it."""

    config: SimConfig
    pop: Population
    state: State
    events: dict[str, np.ndarray]
    exposures: dict[str, np.ndarray]
    history: dict[str, np.ndarray]
    snapshots: dict[str, np.ndarray]
    future: dict[str, np.ndarray]  # per customer position: purchases, spend after the log


@dataclass
class Running:
    """A simulation under way: the state, the logs so far and the next day to simulate.

    :func:`run` steps it through the log; :mod:`features.simulator.world` goes on stepping
    it past the log, with the decision service choosing the campaigns.
    """

    config: SimConfig
    pop: Population
    state: State
    rng: np.random.Generator
    static_mult: np.ndarray
    traits: np.ndarray
    events: Log = field(default_factory=Log)
    exposures: Log = field(default_factory=Log)
    history: Log = field(default_factory=Log)
    snaps: Log = field(default_factory=Log)
    day: int = 0


def begin(config: SimConfig) -> Running:
    """Draw the population and its history before day 0; nothing simulated yet."""
    rng = np.random.default_rng(config.seed)
    pop = draw_population(config.customers, config.days, config.initial_share, rng)
    state = _initial_state(pop, rng)
    sim = Running(config, pop, state, rng, dynamics.static_multipliers(pop),
                  trait_multipliers(pop, config.event_rate_scale))  # fmt: skip
    _prior_history(pop, state, sim.events, rng)
    sim.history.add(who=np.arange(pop.n), stage=state.stage.copy(), day=pop.arrival_day)
    return sim


def step(sim: Running) -> None:
    """Simulate one day (``sim.day``): events, the day's randomised campaign (inside the
    log's campaign days only), stage moves, the truth snapshot; then move to the next day."""
    config, pop, state, rng, day = sim.config, sim.pop, sim.state, sim.rng, sim.day
    k = int(np.searchsorted(pop.arrival_day, day, side="right"))
    who, kind = daily_events(state.stage[:k], sim.traits[:k], rng)
    _emit(sim.events, who, kind, day, state)
    if day >= config.campaign_first_day and _is_campaign_day(config, day):
        _campaign(config, pop, state, k, day, sim.events, sim.exposures, sim.history, rng)
    new = dynamics.step(state.stage[:k], sim.static_mult[:k], state.tenure(day)[:k], rng)
    _transition(pop, state, new, day, sim.events, sim.history, rng)
    if _is_snapshot_day(config, day):
        _snapshot(config, state, sim.static_mult[:k], day, sim.snaps)
    sim.day += 1


def run(config: SimConfig, progress: bool = False) -> RawSimulation:
    """Simulate ``config.days`` days for ``config.customers`` customers, and their purchases
    over the ``config.future_days`` after (ground truth, from a random stream of its own)."""
    sim = begin(config)
    for _ in tqdm(range(config.days), desc="simulating days", disable=not progress, unit="day"):
        step(sim)
    return finish(sim, progress)


def finish(sim: Running, progress: bool = False) -> RawSimulation:
    """The raw output so far, with the truth of the ``future_days`` after ``sim.day``."""
    config = sim.config.model_copy(update={"days": sim.day})
    future = simulate_future(config, sim.pop, sim.state.stage, sim.state.first_purchase,
                             progress)  # fmt: skip
    return RawSimulation(
        config, sim.pop, sim.state, sim.events.columns(), sim.exposures.columns(),
        sim.history.columns(), sim.snaps.columns(), future,
    )  # fmt: skip


def _is_campaign_day(config: SimConfig, day: int) -> bool:
    last = config.days - config.response_window_days
    return (day - config.campaign_first_day) % config.campaign_every_days == 0 and day <= last


def _is_snapshot_day(config: SimConfig, day: int) -> bool:
    offset = day + 1 - config.snapshot_first_day
    return offset >= 0 and offset % config.snapshot_every_days == 0


def _initial_state(pop: Population, rng: np.random.Generator) -> State:
    n = pop.n
    return State(
        stage=pop.initial_stage.copy(),
        first_purchase=pop.first_purchase_day.copy(),
        purchases=np.zeros(n, dtype=np.int32),
        last_purchase=np.full(n, np.nan),
        signup=np.full(n, np.nan),
    )


def _prior_history(pop: Population, state: State, events: Log, rng: np.random.Generator) -> None:
    """Sign-ups of customers who start engaged, and purchases before day 0 of day-0 buyers."""
    n, stage = pop.n, state.stage
    first = state.first_purchase
    buyer = ~np.isnan(first)
    known = stage != S["awareness"]
    signup = np.where(buyer, first - rng.uniform(0, 60, n), -rng.uniform(1, 90, n))
    signup = np.where(pop.arrival_day > 0, pop.arrival_day, signup)  # newcomers already engaged
    state.signup[known] = np.floor(signup[known])
    _emit(events, np.flatnonzero(known), T["signup"], state.signup[known])
    gap = np.select(
        [stage == S["at_risk"], stage == S["churned"]],
        [rng.uniform(40, 120, n), rng.uniform(120, 400, n)],
        rng.uniform(1, 45, n),
    )
    last = np.where(buyer, np.maximum(first, -np.ceil(gap)), np.nan)
    count = np.where(buyer, 1 + np.minimum(rng.poisson(np.nan_to_num(-first) / 75), 8), 0)
    who = np.repeat(np.arange(n), count)
    frac = rng.random(len(who))
    is_first = np.r_[True, who[1:] != who[:-1]] if len(who) else np.zeros(0, bool)
    days = np.floor(np.where(is_first, first[who], first[who] + frac * (last[who] - first[who])))
    _emit(events, who, T["purchase"], days, state)
    subs = buyer & (pop.plan != PLANS.index("none"))
    _emit(events, np.flatnonzero(subs), T["subscription_start"], first[subs])


def _emit(
    events: Log,
    who: np.ndarray,
    kind: np.ndarray | int,
    day: np.ndarray | int,
    state: State | None = None,
    product: np.ndarray | int = -1,
    offer: np.ndarray | int = NO_OFFER,
    exposure: np.ndarray | int = -1,
) -> None:
    """Append events; when ``state`` is given, purchases update the purchase history."""
    if len(who) == 0:
        return
    who = who.astype(np.int32)
    kind_arr = np.broadcast_to(np.asarray(kind, dtype=np.int8), who.shape)
    day_arr = np.broadcast_to(np.asarray(day, dtype=np.int32), who.shape)
    if state is not None:
        buys = kind_arr == T["purchase"]
        np.add.at(state.purchases, who[buys], 1)
        state.last_purchase[who[buys]] = np.fmax(state.last_purchase[who[buys]], day_arr[buys])
    stage_now = state.stage[who] if state is not None else np.full(len(who), -1, np.int8)
    events.add(
        who=who, kind=kind_arr.copy(), day=day_arr.copy(), stage=stage_now, product=product,
        offer=offer, exposure=exposure,
    )  # fmt: skip


def _transition(
    pop: Population,
    state: State,
    new: np.ndarray,
    day: int,
    events: Log,
    history: Log,
    rng: np.random.Generator,
) -> None:
    """Apply tomorrow's stages and emit the events a move implies (sign-up, purchase, cancel)."""
    old = state.stage[: len(new)]
    moved = np.flatnonzero(old != new)
    src, dst = old[moved], new[moved]
    subscriber = pop.plan[moved] != PLANS.index("none")
    signup = moved[(src == S["awareness"]) & (dst == S["engagement"])]
    state.signup[signup] = day
    _emit(events, signup, T["signup"], day)
    first, repeat, back = (moved[mask] for mask in purchase_moves(src, dst))
    for buyers in (first, back):
        state.first_purchase[buyers] = np.fmin(state.first_purchase[buyers], day)
    buy = np.concatenate([first, repeat, back])
    _emit(events, buy, T["purchase"], day, state)
    subs = np.concatenate([first, back])
    _emit(events, subs[pop.plan[subs] != PLANS.index("none")], T["subscription_start"], day)
    cancel = (src == S["at_risk"]) & (dst == S["churned"]) & subscriber
    cancel &= rng.random(len(moved)) < 0.6
    _emit(events, moved[cancel], T["subscription_cancel"], day)
    state.stage[moved] = dst
    history.add(who=moved, stage=dst, day=day + 1)


def _campaign(
    config: SimConfig,
    pop: Population,
    state: State,
    k: int,
    day: int,
    events: Log,
    exposures: Log,
    history: Log,
    rng: np.random.Generator,
) -> None:
    """Send one randomised campaign to a share of today's contactable customers."""
    candidates = np.flatnonzero(~np.isnan(state.signup[:k]))
    since = day - np.nan_to_num(state.last_purchase, nan=-1e9)
    seg = segments(state.purchases, since)
    draw = draw_campaign(
        pop, candidates, state.stage, seg, state.tenure(day), config.campaign_share,
        config.response_window_days, rng, config.held_back_offers,
    )  # fmt: skip
    first_id = sum(len(p) for p in exposures.parts.get("who", []))
    ids = first_id + np.arange(len(draw.idx))
    exposures.add(
        who=draw.idx, day=day, arm=draw.arm, converted=draw.converted, delay=draw.delay,
        segment=seg[draw.idx], stage=state.stage[draw.idx], p_convert=draw.p_convert,
        propensity=draw.propensity,
    )  # fmt: skip
    c = draw.converted
    who, arm = draw.idx[c], draw.arm[c]
    _emit(
        events, who, T["purchase"], day + draw.delay[c], state, _OFFER_PRODUCT[arm], arm - 1, ids[c]
    )
    _apply_offer_effects(state, who, day, history)


def _apply_offer_effects(state: State, who: np.ndarray, day: int, history: Log) -> None:
    """A conversion moves a customer on (:func:`campaigns.converted_stages`), from the next
    day, and counts as a purchase."""
    stage = state.stage[who]
    state.first_purchase[who] = np.fmin(state.first_purchase[who], day)
    moved = converted_stages(stage)
    for target in (S["purchase"], S["retention"], S["win_back"]):  # as before: in this order
        mask = (moved == target) & (moved != stage)
        state.stage[who[mask]] = target
        history.add(who=who[mask], stage=np.full(mask.sum(), target, np.int8), day=day + 1)


def _snapshot(
    config: SimConfig, state: State, static_mult: np.ndarray, day: int, snaps: Log
) -> None:
    """Record the exact outlook of every known customer as of the end of ``day``."""
    k = len(static_mult)
    stage = state.stage[:k]
    mult = dynamics.stage_multipliers(static_mult, state.tenure(day + 1)[:k])
    p_churn, p_stage = dynamics.propagate(
        stage, mult, config.churn_horizons_days, config.stage_horizon_days
    )
    cols = {f"p_churn_{h}d": p_churn[:, j].astype(np.float32)
            for j, h in enumerate(config.churn_horizons_days)}  # fmt: skip
    cols |= {f"p_stage_{j}": p_stage[:, j].astype(np.float32) for j in range(p_stage.shape[1])}
    snaps.add(who=np.arange(k), day=day + 1, stage=stage.copy(), **cols)
