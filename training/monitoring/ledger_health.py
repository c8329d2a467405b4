"""Health of the feedback ledger (``serving.ledger``): is the service deciding, exploring and
hearing back?

Over the decisions of the ``days`` before ``now`` (``decided_at`` in ``[now - days, now]``: a
weekly run sees the batch decided at the same time the week before):

- ``decisions``, ``decisions_per_day`` (``decisions / days``), ``decisions_total`` (ever);
- ``exploration_share``: share of decisions taken at random (``explored``);
- ``no_offer_share``: share of "no offer" decisions (the control arm);
- ``cold_start_share``: share decided by the cold-start policy (no offers model);
- ``feedback_share``: share of the *offer* decisions with any feedback event (a "no offer"
  decision has nothing to report); ``sent_share`` the same for ``sent`` events;
- ``feedback_lag_median_hours``: median time from a decision to its first feedback event;
- ``report_delay_median_hours``: median time from a feedback event to its arrival;
- ``rejected_feedback``: events refused (unknown decision, mismatch) received in the window;
- ``hours_since_last_decision`` (NaN for an empty ledger);
- with the champion offers model's training sends per offer (``trained``):
  ``offers_without_training_support``, the offers decided in the window that the model never
  saw sent (a new offer: its uplift is unknown, the service only explores it) and
  ``unsupported_decision_share``, their share of the offer decisions; per offer in
  ``LedgerHealth.offers``.

A new offer is reported, not a threshold: adding one is the business's own decision, and the
service explores it by design until a retrained offers model that knows it is promoted; what
to watch is how long it stays without support.

The ledger is read read-only (the service may be writing). Shares and medians are NaN when
there is nothing to share out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.builder import to_utc

HOUR = 3600.0


@dataclass(frozen=True)
class LedgerHealth:
    """``summary``: the module docstring's figures; ``daily``: decisions in each 24 hours of
    the window (:func:`_daily`)."""

    summary: dict[str, float]
    daily: pd.DataFrame
    offers: pd.DataFrame | None = None  # offer_id, decisions, explored, training_sends,
    #                                     supported (:func:`offer_support`)


def _read(location: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The ledger's decisions, first feedback per (decision, event) and rejected events, from
    a SQLite file or a ``postgresql://`` URL (``training.ledger_tables.read_tables``)."""
    from training.ledger_tables import read_tables

    found = read_tables(location, {
        "decisions": "SELECT decision_id, offer_id, explored, policy, decided_at FROM decisions",
        "feedback": "SELECT decision_id, event, MIN(occurred_at) AS occurred_at, "
                    "MIN(received_at - occurred_at) AS delay FROM feedback "
                    "WHERE decision_id IS NOT NULL GROUP BY decision_id, event",
        "rejected": "SELECT received_at FROM feedback_rejected",
    })  # fmt: skip
    return found["decisions"], found["feedback"], found["rejected"]


def ledger_health(ledger_path: str | Path, now: object, days: int = 7,
                  trained: dict[str, int] | None = None) -> LedgerHealth:  # fmt: skip
    """The ledger's health over the ``days`` before ``now`` (module docstring); the ledger:
    a SQLite file or a ``postgresql://`` URL; ``trained``: the champion offers model's
    training sends per arm (None: not known, no support figures)."""
    decisions, feedback, rejected = _read(ledger_path)
    end = to_utc(now).timestamp()
    start = end - days * 86400.0
    # the window's start is in it: a weekly batch decided at the same time a week ago counts
    recent = decisions[(decisions["decided_at"] >= start) & (decisions["decided_at"] <= end)]
    offered = recent[recent["offer_id"].notna()]
    first = feedback.groupby("decision_id")["occurred_at"].min()
    sent = set(feedback.loc[feedback["event"] == "sent", "decision_id"])
    lag = first.reindex(recent["decision_id"]).to_numpy() - recent["decided_at"].to_numpy()
    delays = feedback.loc[feedback["decision_id"].isin(recent["decision_id"]), "delay"]
    in_window = (rejected["received_at"] >= start) & (rejected["received_at"] <= end)
    last = decisions["decided_at"].max() if len(decisions) else np.nan
    summary = {
        "days": float(days),
        "decisions": float(len(recent)),
        "decisions_per_day": len(recent) / days,
        "decisions_total": float(len(decisions)),
        "exploration_share": _share(recent["explored"].astype(bool)),
        "no_offer_share": _share(recent["offer_id"].isna()),
        "cold_start_share": _share(recent["policy"] == "cold_start"),
        "feedback_share": _share(offered["decision_id"].isin(first.index)),
        "sent_share": _share(offered["decision_id"].isin(sent)),
        "feedback_lag_median_hours": _median(lag / HOUR),
        "report_delay_median_hours": _median(delays.to_numpy(dtype=float) / HOUR),
        "rejected_feedback": float(in_window.sum()),
        "hours_since_last_decision": (end - last) / HOUR if len(decisions) else np.nan,
    }  # fmt: skip
    if trained is None:
        return LedgerHealth(summary, _daily(recent["decided_at"], end, days))
    support = offer_support(offered, trained)
    unsupported = support.loc[~support["supported"], "decisions"].sum()
    summary["offers_without_training_support"] = float((~support["supported"]).sum())
    summary["unsupported_decision_share"] = unsupported / len(offered) if len(offered) else np.nan
    return LedgerHealth(summary, _daily(recent["decided_at"], end, days), support)


def offer_support(offered: pd.DataFrame, trained: dict[str, int]) -> pd.DataFrame:
    """Per offer decided (``offered``: ``offer_id``, ``explored``): ``decisions``,
    ``explored`` (of them), ``training_sends`` (the model's, 0 when it never saw the offer)
    and ``supported`` (sent in its training data); unsupported offers first."""
    frame = pd.DataFrame({"offer_id": offered["offer_id"].astype(str).to_numpy(),
                          "explored": offered["explored"].astype(bool).to_numpy()})  # fmt: skip
    per = frame.groupby("offer_id").agg(decisions=("explored", "size"),
                                        explored=("explored", "sum")).reset_index()  # fmt: skip
    sends = np.array([trained.get(o, 0) for o in per["offer_id"]], dtype=float)
    per = per.assign(decisions=per["decisions"].astype(float),
                     explored=per["explored"].astype(float), training_sends=sends,
                     supported=sends > 0)  # fmt: skip
    return per.sort_values(["supported", "decisions"], ascending=[True, False],
                           ignore_index=True)  # fmt: skip


def _share(flags: pd.Series) -> float:
    return float(flags.mean()) if len(flags) else float("nan")


def _median(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(np.median(values)) if len(values) else float("nan")


def _daily(decided_at: pd.Series, end: float, days: int) -> pd.DataFrame:
    """Decisions in each 24 hours of the window, oldest first: ``until`` (the end of the 24
    hours, UTC, ``YYYY-MM-DD HH:MM``; each span excludes its start but the first, which holds
    the window's start) and ``decisions``."""
    age = np.floor((end - decided_at.to_numpy(dtype=float)) / 86400.0).astype(int)
    counts = np.bincount(days - 1 - np.clip(age, 0, days - 1), minlength=days)
    ends = [pd.Timestamp(end - (days - 1 - k) * 86400.0, unit="s", tz="UTC") for k in range(days)]
    return pd.DataFrame({"until": [f"{t:%Y-%m-%d %H:%M}" for t in ends], "decisions": counts})
