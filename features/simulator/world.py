"""The simulator as an environment: the world goes on after the log, and the service chooses
the offers.

:meth:`World.start` simulates the log (``config.days`` days, with its randomised campaigns:
the history a business has when it starts using the service). From then on the world's own
campaigns stop; the caller contacts customers with :meth:`World.send` (each response drawn
from the true conversion probabilities, :meth:`World.offer_truth`), lets time pass with
:meth:`World.advance` and writes the observable tables as of now with :meth:`World.export`.
Nobody arrives after the log.

- **Events only once they happened.** A conversion's purchase is dated a few days after the
  send (inside the response window), as in the campaign logs; :meth:`World.export` writes the
  events dated before now only, so a written folder never holds the future.
- **The past does not change.** Each export draws the attributes (amounts, products,
  channels) of the events new since the last export only, from a random stream of its own,
  and appends them: a purchase keeps its amount from one export to the next.
- **Prices as of the event's day.** After :meth:`World.change_prices`, the purchases and
  refunds dated from that day are priced at the new prices (the events before keep theirs).
- **Responses from a stream of their own** (``[seed, 3]``), so the world's own dynamics do
  not depend on how many customers were contacted; what a conversion changes (the stage it
  moves the customer to, :func:`campaigns.converted_stages`) does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.simulator import dynamics
from features.simulator.campaigns import segments, true_probabilities
from features.simulator.catalog import ARMS, OFFERS, STAGES
from features.simulator.config import SimConfig
from features.simulator.events import T, event_attributes, events_frame
from features.simulator.run import (
    _OFFER_PRODUCT,
    Running,
    _apply_offer_effects,
    _emit,
    begin,
    finish,
    step,
)
from features.simulator.tables import Simulation, _day_ts, build_tables, customer_ids

RESPONSE_STREAM = 3  # default_rng([seed, 3]): the responses to the service's sends
EXPORT_STREAM = 4  # default_rng([seed, 4, day]): attributes of the events new at each export


@dataclass
class Sends:
    """What became of one batch of sends: per customer, the arm sent (index into ARMS), the
    true conversion probability under it and whether (and when) they converted."""

    customer_id: np.ndarray  # str
    offer_id: np.ndarray  # str, None = no offer (nothing was sent)
    sent_at: pd.Timestamp
    p_convert: np.ndarray
    converted: np.ndarray  # bool
    converted_at: pd.DatetimeIndex  # NaT when not converted


@dataclass
class World:
    """A running simulation past its log (module docstring); build it with :meth:`start`."""

    running: Running
    history: Simulation  # the tables of the log, truth included
    events: list[pd.DataFrame] = field(default_factory=list)  # exported after the log
    exported_day: int = 0
    response_rng: np.random.Generator | None = None
    added_offers: list[str] = field(default_factory=list)  # held back, added since
    price_factor: float = 1.0
    price_changes: list[tuple[int, float]] = field(default_factory=list)  # (from day, factor)

    @classmethod
    def start(cls, config: SimConfig, progress: bool = False) -> World:
        """Simulate the log; the world then stands at its last day (``now`` = its end)."""
        if config.profile != "default":
            raise ValueError(f"the closed loop needs the default profile (its campaigns and "
                             f"truth); got profile {config.profile!r}")  # fmt: skip
        running = begin(config)
        for _ in range(config.days):
            step(running)
        history = build_tables(finish(running, progress))
        rng = np.random.default_rng([config.seed, RESPONSE_STREAM])
        return cls(running, history, [], config.days, rng)

    @property
    def config(self) -> SimConfig:
        return self.running.config

    @property
    def day(self) -> int:
        """Days since the log's first day: the next day to simulate."""
        return self.running.day

    @property
    def now(self) -> pd.Timestamp:
        """The world's clock: the start of day :attr:`day` (UTC)."""
        return _day_start(self.config, self.day)

    @property
    def ids(self) -> np.ndarray:
        return customer_ids(self.running.pop.n)

    def positions(self, customer: np.ndarray | list) -> np.ndarray:
        """Positions (into the population) of customer ids; raises on an unknown id."""
        pos = pd.Index(self.ids).get_indexer(np.asarray(customer, dtype=object))
        if (pos < 0).any():
            raise KeyError(f"unknown customer ids: {list(np.asarray(customer)[pos < 0][:5])}")
        return pos

    def contactable(self) -> np.ndarray:
        """Ids of the customers who signed up (as the log's campaigns chose from)."""
        return self.ids[~np.isnan(self.running.state.signup)]

    def offer_truth(self, customer: np.ndarray | list) -> pd.DataFrame:
        """True conversion probability within the response window under every arm, if sent
        now (columns ``p_<arm>``, ``control`` = no offer), with the true ``stage``; one row per
        id, in order."""
        pos = self.positions(customer)
        p = self._probabilities(pos)
        state = self.running.state
        return pd.DataFrame({
            "customer_id": np.asarray(customer, dtype=object),
            "stage": pd.Categorical.from_codes(state.stage[pos], STAGES),
            **{f"p_{a}": p[:, j] for j, a in enumerate(ARMS)},
        })  # fmt: skip

    def send(self, customer: np.ndarray | list, offer: np.ndarray | list) -> Sends:
        """Send ``offer[i]`` (an offer id, or None for no offer) to ``customer[i]`` now; draw
        each response from the truth. A conversion is a purchase of the offer's product some
        days later (inside the response window) and moves the customer on from tomorrow. An
        offer still held back raises."""
        customer = np.asarray(customer, dtype=object)
        offer = np.asarray(offer, dtype=object)
        held = set(self.config.held_back_offers) - set(self.added_offers)
        early = held & set(offer[pd.notna(offer)])
        if early:
            raise ValueError(f"send: {sorted(early)} held back: not in the catalog yet "
                             "(World.add_offer)")  # fmt: skip
        pos = self.positions(customer)
        arm = _arms(offer)
        p = self._probabilities(pos)[np.arange(len(pos)), arm]
        window = self.config.response_window_days
        converted = (self.response_rng.random(len(pos)) < p) & (arm > 0)
        delay = self.response_rng.integers(0, window, size=len(pos))
        sent = arm > 0
        running, day = self.running, self.day
        buy, buy_arm = pos[converted], arm[converted]
        _emit(running.events, buy, T["purchase"], day + delay[converted],
                      running.state, _OFFER_PRODUCT[buy_arm], buy_arm - 1)  # fmt: skip
        _apply_offer_effects(running.state, buy, day, running.history)
        when = self.now + pd.to_timedelta(delay * 86_400 + 43_200, unit="s")  # mid-day
        return Sends(customer[sent], offer[sent], self.now, p[sent], converted[sent],
                     pd.DatetimeIndex(when[sent]).where(converted[sent]))  # fmt: skip

    @property
    def offers(self) -> pd.DataFrame:
        """The catalog as of now: the log's, with the held-back offers added since."""
        held = set(self.config.held_back_offers) - set(self.added_offers)
        return OFFERS[~OFFERS["offer_id"].isin(held)].reset_index(drop=True)

    def add_offer(self, offer_id: str) -> None:
        """Put a held-back offer (``SimConfig.held_back_offers``) into the catalog from now:
        a new offer, which no campaign log has ever sent."""
        if offer_id not in self.config.held_back_offers:
            held = list(self.config.held_back_offers)
            raise ValueError(f"add_offer: {offer_id!r} is not held back (held_back_offers: "
                             f"{held})")  # fmt: skip
        if offer_id not in self.added_offers:
            self.added_offers.append(offer_id)

    def change_prices(self, factor: float) -> None:
        """Scale every price by ``factor`` from now on (relative to the log's prices): the
        amounts of the purchases (and refunds) dated from today are the catalog's prices times
        ``factor`` (:meth:`prices_on`); and fewer purchases and more churn risk for paying
        customers, the price-sensitive most (:func:`dynamics.static_multipliers`)."""
        if not factor > 0:
            raise ValueError(f"change_prices: factor must be > 0; got {factor}")
        self.price_factor = factor
        self.price_changes.append((self.day, float(factor)))
        self.running.static_mult = dynamics.static_multipliers(self.running.pop, factor)

    def prices_on(self, days: np.ndarray) -> np.ndarray | float:
        """The price factor in force on each of ``days`` (days since the log's first day):
        the latest change made on or before it; 1 (the scalar, when prices never changed)."""
        if not self.price_changes:
            return 1.0
        since, factors = zip(*self.price_changes, strict=True)
        at = np.searchsorted(np.asarray(since), np.asarray(days), side="right") - 1
        return np.where(at >= 0, np.asarray(factors)[np.maximum(at, 0)], 1.0)

    def advance(self, days: int) -> None:
        """Let ``days`` days pass: events, stage moves and truth snapshots, no campaigns."""
        for _ in range(days):
            step(self.running)

    def export(self, out: str | Path) -> dict[str, Path]:
        """Write the observable tables as of :attr:`now` (``events``, ``customers``,
        ``offers``, ``exposures`` as Parquet) under ``out``; returns name -> path."""
        self._attribute_new_events()
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        tables = {
            "events": pd.concat([self.history.events, *self.events], ignore_index=True),
            "customers": self._customers(),
            "offers": self.offers,
            "exposures": self.history.exposures,
        }
        paths = {}
        for name, frame in tables.items():
            paths[name] = out / f"{name}.parquet"
            tmp = paths[name].with_suffix(".parquet.tmp")
            frame.to_parquet(tmp, index=False)
            tmp.replace(paths[name])  # a reader never sees half a file
        return paths

    def _probabilities(self, pos: np.ndarray) -> np.ndarray:
        state, day = self.running.state, self.day
        since = day - np.nan_to_num(state.last_purchase, nan=-1e9)
        seg = segments(state.purchases, since)
        return true_probabilities(self.running.pop, pos, state.stage[pos], seg[pos],
                                  state.tenure(day)[pos])  # fmt: skip

    def _attribute_new_events(self) -> None:
        """Frames for the events dated in ``[exported_day, day)``, appended to :attr:`events`."""
        if self.exported_day >= self.day:
            return
        cols = self.running.events.columns()
        pick = (cols["day"] >= self.exported_day) & (cols["day"] < self.day)
        ev = {k: v[pick] for k, v in cols.items()}
        rng = np.random.default_rng([self.config.seed, EXPORT_STREAM, self.day])
        attrs = event_attributes(self.running.pop, ev["who"], ev["kind"], ev["stage"],
                                 ev["product"], rng, self.prices_on(ev["day"]))  # fmt: skip
        ev |= attrs | {"second": rng.integers(1, 86_400, size=len(ev["who"]))}
        start = pd.Timestamp(self.config.start, tz="UTC")
        self.events.append(events_frame(self.ids, start, ev, tuple(OFFERS["offer_id"])))
        self.exported_day = self.day

    def _customers(self) -> pd.DataFrame:
        start = pd.Timestamp(self.config.start, tz="UTC")
        return self.history.customers.assign(signup_at=_day_ts(start, self.running.state.signup))


def _day_start(config: SimConfig, day: int) -> pd.Timestamp:
    return pd.Timestamp(config.start, tz="UTC") + pd.Timedelta(days=day)


def _arms(offer: np.ndarray) -> np.ndarray:
    """Index into ARMS per offer id (None -> control); raises on an id outside the catalog."""
    arm_of = {a: j for j, a in enumerate(ARMS)}
    unknown = {o for o in offer if o is not None and o not in arm_of}
    if unknown:
        raise KeyError(f"offers outside the simulated catalog: {sorted(unknown)}")
    return np.array([0 if o is None else arm_of[o] for o in offer], dtype=np.int64)
