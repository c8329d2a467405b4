"""The service's own decisions as a campaign log: the feedback ledger in the exposures format.

Every decision the service logged carries the probability its policy had of taking it
(``propensity``), so the decisions are a randomised campaign log like any other (DESIGN
section 13): an offer decision is an exposure to that offer, a "no offer" decision one to the
held-out control arm. :func:`ledger_exposures` turns a ledger file into rows of the exposures
contract (``features.loaders.load_exposures``) that training reads beside the campaign logs.

- **Which decisions.** A "no offer" decision is a control exposure (nothing was to be sent).
  An offer decision counts once the campaign app reported it ``sent`` (``/feedback``), at the
  first ``sent`` time; with ``require_sent=False`` every offer decision counts, at the
  decision's time (for apps that report no sends). Decisions of every policy (``model``,
  ``cold_start``) count: each logged its propensity. A decision marked undelivered (its caller
  left before the answer: ``decisions.undelivered_at``) never counts: nobody received it, so
  it is no exposure (and the propensities of the delivered ones are unchanged by leaving it
  out: a caller leaves whatever the policy chose).
- **Outcomes, as for every arm alike.** ``converted``: the customer has a purchase event in
  ``(sent_at, sent_at + response_window_days]``; ``revenue``: those purchases' amounts. The
  control arm has no feedback to report, so outcomes come from the events for both arms (the
  campaign logs' meaning of ``converted``: a purchase within the response window).
- **Point in time.** Only exposures whose response window closed by ``as_of`` (default: the
  last event) and feedback that occurred by then; later ones are left for a later run.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from features.builder import to_utc

COLUMNS = ("exposure_id", "customer_id", "offer_id", "sent_at", "channel", "propensity",
           "converted", "revenue")  # fmt: skip
PREFIX = "ledger-"  # exposure ids: the decision id, marked as the ledger's
UNDELIVERED = "undelivered_at"  # set on decisions whose caller left before the answer


def read_ledger(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ledger's delivered ``decisions`` and ``sent`` feedback, read-only (the service
    may be writing): ``decisions`` (decision_id, customer_id, offer_id, propensity, channel,
    decided_at; none marked undelivered) and ``sent`` (decision_id, occurred_at), times as
    UTC timestamps. ``path``: a SQLite file or a ``postgresql://`` URL
    (``training.ledger_tables.read_tables``); a ledger of an earlier version, without
    ``undelivered_at``, has every decision delivered."""
    from training.ledger_tables import columns, read_tables

    delivered = " WHERE undelivered_at IS NULL" if UNDELIVERED in columns(path, "decisions") else ""
    found = read_tables(path, {
        "decisions": "SELECT decision_id, customer_id, offer_id, propensity, channel, "
                     f"decided_at FROM decisions{delivered}",
        "sent": "SELECT decision_id, MIN(occurred_at) AS occurred_at FROM feedback "
                "WHERE event = 'sent' AND decision_id IS NOT NULL GROUP BY decision_id",
    })  # fmt: skip
    decisions, sent = found["decisions"], found["sent"]
    for frame, column in ((decisions, "decided_at"), (sent, "occurred_at")):
        frame[column] = pd.to_datetime(frame[column], unit="s", utc=True)
    return decisions, sent


def ledger_exposures(
    path: str | Path,
    events: pd.DataFrame,
    response_window_days: int,
    as_of: object | None = None,
    require_sent: bool = True,
) -> pd.DataFrame:
    """The ledger's decisions as exposures (module docstring), one row per decision that
    counts, columns :data:`COLUMNS`; ``events``: the loaded events (``customer_id``,
    ``timestamp``, ``role``, ``amount``) the outcomes are read from."""
    decisions, sent = read_ledger(path)
    when = to_utc(events["timestamp"].max() if as_of is None else as_of)
    rows = decisions.merge(sent, on="decision_id", how="left")
    offered = rows["offer_id"].notna()
    sent_at = rows["occurred_at"].where(offered, rows["decided_at"])
    if not require_sent:
        sent_at = sent_at.fillna(rows["decided_at"])
    window = pd.Timedelta(days=response_window_days)
    keep = sent_at.notna() & (sent_at + window <= when)
    rows, sent_at = rows[keep.to_numpy()], sent_at[keep]
    out = pd.DataFrame({
        "exposure_id": PREFIX + rows["decision_id"].astype(str),
        "customer_id": rows["customer_id"].astype(str),
        "offer_id": rows["offer_id"].astype("object"),
        "sent_at": sent_at,
        "channel": rows["channel"].astype("object"),
        "propensity": rows["propensity"].astype(float),
    }).reset_index(drop=True)  # fmt: skip
    converted, revenue = window_purchases(events, out["customer_id"], out["sent_at"], window)
    return out.assign(converted=converted, revenue=revenue)


def window_purchases(
    events: pd.DataFrame, customers: pd.Series, starts: pd.Series, window: pd.Timedelta
) -> tuple[np.ndarray, np.ndarray]:
    """Per (customer, start): whether they bought in ``(start, start + window]`` and the
    amounts they spent there (NaN amounts count as 0)."""
    if not len(customers):  # nothing to match (an empty merge loses the times' dtype)
        return np.zeros(0, bool), np.zeros(0)
    buys = events.loc[events["role"].astype("object") == "purchase",
                      ["customer_id", "timestamp", "amount"]]  # fmt: skip
    buys = buys.assign(customer_id=buys["customer_id"].astype(str),
                       amount=pd.to_numeric(buys["amount"]).fillna(0.0))  # fmt: skip
    asked = pd.DataFrame({"customer_id": customers.to_numpy(), "start": starts.to_numpy(),
                          "row": np.arange(len(customers))})  # fmt: skip
    pairs = asked.merge(buys, on="customer_id", how="inner")
    inside = (pairs["timestamp"] > pairs["start"]) & (pairs["timestamp"] <= pairs["start"] + window)
    hit = pairs[inside.to_numpy()]
    converted = np.zeros(len(customers), bool)
    converted[hit["row"].to_numpy()] = True
    revenue = np.bincount(hit["row"], weights=hit["amount"], minlength=len(customers))
    return converted, revenue


def with_ledger(tables, path: str | Path, response_window_days: int,
                require_sent: bool = True) -> tuple[object, int]:  # fmt: skip
    """``tables`` (:class:`training.datasets.Tables`) with the ledger's exposures added to
    the campaign logs' (checked by the exposures contract against the offer catalog), and how
    many were added."""
    from features.loaders import load_exposures

    if tables.offers is None:
        raise ValueError(f"the ledger {path} holds offer decisions, which need the offer "
                         "catalog (an offers table in the data folder)")  # fmt: skip
    found = ledger_exposures(path, tables.events, response_window_days,
                             require_sent=require_sent)  # fmt: skip
    loaded = load_exposures(found, offers=tables.offers).data
    if tables.exposures is not None and len(tables.exposures):
        loaded = pd.concat([tables.exposures, loaded], ignore_index=True)
    return replace(tables, exposures=loaded), len(found)
