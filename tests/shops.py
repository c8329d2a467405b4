"""A retailer's plain transaction log (the ``purchase_only`` profile) loaded through its role
map, as a user's own file would be: the data several test modules train and score on."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd

from features.loaders import load_mapped
from features.simulator import SimConfig, simulate
from training.profiles import PURCHASE_ONLY


def transaction_log(seed: int, customers: int = 1_500, days: int = 730) -> pd.DataFrame:
    """The events of a simulated ``purchase_only`` log (orders as purchases)."""
    sim = simulate(SimConfig(profile="purchase_only", customers=customers, days=days, seed=seed))
    events = PURCHASE_ONLY["data"]["events"]
    return load_mapped("events", sim.transactions, columns=events["columns"],
                       constants=events["constants"], deduplicate=False).data  # fmt: skip


def decisions_ledger(path: Path, tables, customers: int = 60, days_before_end: int = 60) -> list:
    """A feedback ledger of decisions for the first ``customers`` of ``tables`` (offers in
    turn, "no offer" among them; propensity 0.5), every offer reported sent, all decided
    ``days_before_end`` days before the data's last event. Returns the decision ids."""
    from serving.ledger import Decisions, FeedbackLedger

    who = tables.events["customer_id"].astype(str).unique()[:customers].tolist()
    offers = [None, *tables.offers["offer_id"].astype(str)]
    chosen = [offers[i % len(offers)] for i in range(len(who))]
    ids = [f"dec{i}" for i in range(len(who))]
    book = FeedbackLedger(path)
    book.record_decisions(Decisions(ids, who, chosen, [0.5] * len(ids), [True] * len(ids),
                                    None, None, "{}", None))  # fmt: skip
    when = (tables.end - pd.Timedelta(days=days_before_end)).timestamp()
    book.record_feedback(
        [
            {"event_id": f"s{i}", "event": "sent", "decision_id": d, "occurred_at": when}
            for i, (d, o) in enumerate(zip(ids, chosen, strict=True))
            if o
        ]
    )
    book.close()
    with sqlite3.connect(path) as conn:  # decided on the data's days, not today
        conn.execute("UPDATE decisions SET decided_at = ?", (when,))
    return ids
