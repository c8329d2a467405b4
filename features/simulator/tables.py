"""Turn the simulator's integer-coded output into the contract's tables and the ground truth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.simulator.catalog import (
    ACQUISITION,
    ARMS,
    CHANNELS,
    OFFERS,
    PLANS,
    REGIONS,
    SEGMENTS,
    STAGES,
)
from features.simulator.events import event_attributes, events_frame
from features.simulator.future import future_columns
from features.simulator.run import RawSimulation


@dataclass
class Simulation:
    """A simulated data set: the four observable tables and the ground truth.

    Observable (contract format, DESIGN section 3): ``events``, ``customers``, ``offers``,
    ``exposures``. Ground truth (never seen by models): ``truth_customers`` (latent traits, true
    first churn, and the purchases and spend each customer realised in the ``future_days`` after
    the log, without campaigns: ``purchases_next_<d>d``, ``spend_next_<d>d``), ``stage_history``
    (true stage intervals), ``snapshots`` (per customer and as-of date: true stage, true churn
    probability per horizon, true stage mix at the stage horizon) and ``truth_exposures`` (per
    exposure: true conversion probability and logging propensity under every arm, ``p_<arm>``
    and ``pi_<arm>``; arm ``control`` = no offer).
    """

    events: pd.DataFrame
    customers: pd.DataFrame
    offers: pd.DataFrame
    exposures: pd.DataFrame
    truth_customers: pd.DataFrame
    stage_history: pd.DataFrame
    snapshots: pd.DataFrame
    truth_exposures: pd.DataFrame

    OBSERVED = ("events", "customers", "offers", "exposures")
    TRUTH = ("truth_customers", "stage_history", "snapshots", "truth_exposures")


def customer_ids(n: int) -> np.ndarray:
    """Stable, sortable ids ``c0000001``... in arrival order."""
    width = max(7, len(str(n)))
    return np.array([f"c{i:0{width}d}" for i in range(1, n + 1)], dtype=object)


def build_tables(raw: RawSimulation) -> Simulation:
    """Assemble every table of a :class:`Simulation` from the raw arrays."""
    rng = np.random.default_rng([raw.config.seed, 1])
    ids = customer_ids(raw.pop.n)
    start = pd.Timestamp(raw.config.start, tz="UTC")
    events, revenue = _events(raw, ids, start, rng)
    return Simulation(
        events=events,
        customers=_customers(raw, ids, start),
        offers=OFFERS[~OFFERS["offer_id"].isin(raw.config.held_back_offers)].reset_index(drop=True),
        exposures=_exposures(raw, ids, start, revenue, rng),
        truth_customers=_truth_customers(raw, ids, start),
        stage_history=_stage_history(raw, ids, start),
        snapshots=_snapshots(raw, ids, start),
        truth_exposures=_truth_exposures(raw),
    )


def _day_ts(
    start: pd.Timestamp, days: np.ndarray, seconds: np.ndarray | int = 0
) -> pd.DatetimeIndex:
    """``start`` + whole ``days`` (NaN -> NaT) + ``seconds``, at microsecond resolution."""
    secs = np.asarray(days, dtype=float) * 86_400 + seconds
    return (start + pd.to_timedelta(secs, unit="s")).as_unit("us")


def _stage_cat(codes: np.ndarray) -> pd.Categorical:
    return pd.Categorical.from_codes(codes.astype(np.int8), categories=STAGES)


def _events(
    raw: RawSimulation, ids: np.ndarray, start: pd.Timestamp, rng: np.random.Generator
) -> tuple[pd.DataFrame, np.ndarray]:
    ev = raw.events
    attrs = event_attributes(raw.pop, ev["who"], ev["kind"], ev["stage"], ev["product"], rng)
    cols = {**ev, **attrs, "second": rng.integers(1, 86_400, size=len(ev["who"]))}
    revenue = np.zeros(len(raw.exposures.get("who", [])))
    conv = ev["exposure"] >= 0
    revenue[ev["exposure"][conv]] = attrs["amount"][conv]
    frame = events_frame(ids, start, cols, tuple(OFFERS["offer_id"]))
    return frame, revenue


def _customers(raw: RawSimulation, ids: np.ndarray, start: pd.Timestamp) -> pd.DataFrame:
    pop = raw.pop
    return pd.DataFrame(
        {
            "customer_id": pd.array(ids, dtype="str"),
            "signup_at": _day_ts(start, raw.state.signup),
            "plan": pd.Categorical.from_codes(pop.plan, categories=PLANS),
            "region": pd.Categorical.from_codes(pop.region, categories=REGIONS),
            "acquisition_channel": pd.Categorical.from_codes(
                pop.acquisition, categories=ACQUISITION
            ),
        }
    )


def _exposures(
    raw: RawSimulation,
    ids: np.ndarray,
    start: pd.Timestamp,
    revenue: np.ndarray,
    rng: np.random.Generator,
) -> pd.DataFrame:
    ex = raw.exposures
    m = len(ex.get("who", []))
    arm = ex.get("arm", np.zeros(0, int))
    offer_channel = np.array([None, *OFFERS["channel"]], dtype=object)
    seconds = rng.integers(8 * 3600, 20 * 3600, size=m)
    return pd.DataFrame(
        {
            "exposure_id": pd.array([f"x{i:08d}" for i in range(1, m + 1)], dtype="str"),
            "customer_id": pd.array(ids[ex.get("who", np.zeros(0, int))], dtype="str"),
            "offer_id": pd.array(np.array([None, *ARMS[1:]], dtype=object)[arm], dtype="str"),
            "sent_at": _day_ts(start, ex.get("day", np.zeros(0)), seconds),
            "channel": pd.array(offer_channel[arm], dtype="str"),
            "propensity": ex["propensity"][np.arange(m), arm] if m else np.zeros(0),
            "converted": pd.array(ex.get("converted", np.zeros(0, bool)), dtype="boolean"),
            "revenue": np.round(revenue, 2),
        }
    )


def _truth_exposures(raw: RawSimulation) -> pd.DataFrame:
    ex = raw.exposures
    m = len(ex.get("who", []))
    frame = pd.DataFrame(
        {
            "exposure_id": pd.array([f"x{i:08d}" for i in range(1, m + 1)], dtype="str"),
            "segment": pd.Categorical.from_codes(ex.get("segment", np.zeros(0, int)), SEGMENTS),
            "true_stage": _stage_cat(ex.get("stage", np.zeros(0, int))),
            "arm": pd.Categorical.from_codes(ex.get("arm", np.zeros(0, int)), ARMS),
        }
    )
    for j, arm in enumerate(ARMS):
        frame[f"p_{arm}"] = ex["p_convert"][:, j] if m else np.zeros(0)
        frame[f"pi_{arm}"] = ex["propensity"][:, j] if m else np.zeros(0)
    return frame


def _stage_history(raw: RawSimulation, ids: np.ndarray, start: pd.Timestamp) -> pd.DataFrame:
    h = raw.history
    order = np.lexsort((h["day"], h["who"]))  # stable: later records of a day win
    who, stage, day = h["who"][order], h["stage"][order], h["day"][order].astype(float)
    same_next = np.r_[who[1:] == who[:-1], False]
    end = np.where(same_next, np.r_[day[1:], np.nan], np.nan)
    keep = ~(end <= day)  # drop zero-length intervals (two moves on one day)
    return pd.DataFrame(
        {
            "customer_id": pd.array(ids[who[keep]], dtype="str"),
            "stage": _stage_cat(stage[keep]),
            "start_at": _day_ts(start, day[keep]),
            "end_at": _day_ts(start, end[keep]),
        }
    )


def _truth_customers(raw: RawSimulation, ids: np.ndarray, start: pd.Timestamp) -> pd.DataFrame:
    pop, h = raw.pop, raw.history
    churn_days = np.full(pop.n, np.nan)
    entered = (h["stage"] == STAGES.index("churned")) & (h["day"] > 0)
    np.fmin.at(churn_days, h["who"][entered], h["day"][entered].astype(float))
    latent = ["satisfaction", "problems", "price_sensitivity", "engagement", "interest",
              "frequency", "activity", "noise", "spend"]  # fmt: skip
    purchases_next, spend_next = future_columns(raw.config.future_days)
    return pd.DataFrame(
        {
            "customer_id": pd.array(ids, dtype="str"),
            "arrived_at": _day_ts(start, pop.arrival_day),
            "initial_stage": _stage_cat(pop.initial_stage),
            "final_stage": _stage_cat(raw.state.stage),
            "first_purchase_at": _day_ts(start, raw.state.first_purchase),
            "first_churn_at": _day_ts(start, churn_days),
            "preferred_channel": pd.Categorical.from_codes(pop.preferred_channel, CHANNELS),
            **{name: getattr(pop, name) for name in latent},
            purchases_next: raw.future["purchases"],
            spend_next: raw.future["spend"],
        }
    )


def _snapshots(raw: RawSimulation, ids: np.ndarray, start: pd.Timestamp) -> pd.DataFrame:
    s = raw.snapshots
    if not s:
        return pd.DataFrame(columns=["customer_id", "as_of", "stage"])
    frame = pd.DataFrame(
        {
            "customer_id": pd.array(ids[s["who"]], dtype="str"),
            "as_of": _day_ts(start, s["day"]),
            "stage": _stage_cat(s["stage"]),
        }
    )
    for key in s:
        if key.startswith("p_churn_"):
            frame[key] = s[key]
        elif key.startswith("p_stage_"):
            frame[f"p_next_{STAGES[int(key.rsplit('_', 1)[1])]}"] = s[key]
    return frame
