"""The feedback ledger: decisions the service made and what campaign apps report back.

One SQLite file (WAL). ``decisions`` holds every decision with the propensity of the action
chosen (for off-policy evaluation) and the policy that chose it (``model``: epsilon-greedy on
the offers model; ``cold_start``: at random with a control share, before there is an offers
model; no expected value then); ``feedback`` holds sends, opens, clicks and conversions,
idempotent on the caller's ``event_id``; ``feedback_rejected`` keeps events that could not be
matched to a decision, with the reason, so nothing a caller sent is lost. Feedback is
committed with ``synchronous=FULL`` (on disk before the service answers 200); decisions with
``NORMAL`` (safe across a crash of the service, not of the machine), which keeps ``/decide``
fast. The ledger feeds contact caps and cooldowns (:meth:`FeedbackLedger.contacts`).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import NamedTuple

import numpy as np

EVENTS = ("sent", "opened", "clicked", "converted")
_DDL = (
    """CREATE TABLE IF NOT EXISTS decisions (
        decision_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, offer_id TEXT,
        propensity REAL NOT NULL, explored INTEGER NOT NULL, channel TEXT,
        expected_value REAL, models TEXT NOT NULL, features_as_of TEXT,
        decided_at REAL NOT NULL, policy TEXT NOT NULL DEFAULT 'model')""",
    """CREATE TABLE IF NOT EXISTS feedback (
        event_id TEXT PRIMARY KEY, decision_id TEXT, customer_id TEXT NOT NULL, offer_id TEXT,
        event TEXT NOT NULL, revenue REAL, occurred_at REAL NOT NULL, received_at REAL NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS feedback_contacts ON feedback (customer_id, event, occurred_at)",
    """CREATE TABLE IF NOT EXISTS feedback_rejected (
        received_at REAL NOT NULL, event_id TEXT, reason TEXT NOT NULL, body TEXT NOT NULL)""",
)
_CONTACTS_SQL = """
    SELECT customer_id, offer_id, MAX(occurred_at), SUM(occurred_at >= ?)
    FROM feedback WHERE event = 'sent' AND customer_id IN (SELECT value FROM json_each(?))
    GROUP BY customer_id, offer_id"""


_INSERT_DECISIONS = """
    INSERT INTO decisions (decision_id, customer_id, offer_id, propensity, explored,
        models, features_as_of, decided_at, policy, expected_value, channel)
    VALUES (?,?,?,?,?,?,?,?,?,{expected_value},{channel})"""
_DECISION_COLUMNS = ("decision_id, customer_id, offer_id, propensity, explored, channel, "
                     "expected_value, models, features_as_of, policy")  # fmt: skip


class Decision(NamedTuple):
    """One logged decision. A named tuple, not a dataclass: a frozen dataclass took ~3 us to
    build, which counted when every request built one per customer."""

    decision_id: str
    customer_id: str
    offer_id: str | None
    propensity: float
    explored: bool
    channel: str | None
    expected_value: float | None  # None: the cold-start policy (no offers model)
    models: str  # JSON of the model versions
    features_as_of: str | None
    policy: str = "model"  # the policy that chose: "model" or "cold_start"


@dataclass(frozen=True)
class Decisions:
    """One request's decisions as columns (entry ``i`` = customer ``i``) and what they share.

    The engine has its answers as whole arrays and SQLite takes rows of plain values, so the
    columns are zipped straight into rows; iterating gives :class:`Decision` rows.
    ``expected_value`` None: unknown for all (the cold-start policy has no model)."""

    decision_id: Sequence[str]
    customer_id: Sequence[str]
    offer_id: Sequence[str | None]
    propensity: Sequence[float]
    explored: Sequence[bool]
    expected_value: Sequence[float] | None
    channel: str | None
    models: str  # JSON of the model versions
    features_as_of: str | None
    policy: str = "model"

    def __len__(self) -> int:
        return len(self.decision_id)

    def __iter__(self) -> Iterator[Decision]:
        value = repeat(None) if self.expected_value is None else self.expected_value
        rows = zip(self.decision_id, self.customer_id, self.offer_id, self.propensity,
                   self.explored, repeat(self.channel), value, repeat(self.models),
                   repeat(self.features_as_of), repeat(self.policy), strict=False)  # fmt: skip
        return map(Decision._make, rows)


@dataclass(frozen=True)
class FeedbackResult:
    accepted: int
    duplicates: int
    rejected: list[dict]


class FeedbackLedger:
    """Thread-safe (one connection per thread and durability level) ledger in ``path``.

    ``checkpoint_seconds``: copy the write-ahead log into the database from a background
    thread this often, instead of SQLite's automatic checkpoint, which runs inside whichever
    commit crosses 1,000 log pages: every few 1,000-id ``/batch`` requests one of them
    waited 40-55 ms for it (and its fsync). Durability does not change: a commit is
    complete once in the log. None: SQLite's automatic checkpoints (one-off tools, tests).
    """

    def __init__(self, path: str | Path, checkpoint_seconds: float | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.checkpoint_seconds = checkpoint_seconds
        self._local = threading.local()
        self._closed = threading.Event()
        with self._conn("FULL") as conn:
            for ddl in _DDL:
                conn.execute(ddl)
            _add_policy_column(conn)
        if checkpoint_seconds:
            threading.Thread(target=self._checkpoints, name="ledger-checkpoints",
                             daemon=True).start()  # fmt: skip

    def _conn(self, synchronous: str) -> sqlite3.Connection:
        key = f"conn_{synchronous}"
        conn = getattr(self._local, key, None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={synchronous}")
            if self.checkpoint_seconds:
                conn.execute("PRAGMA wal_autocheckpoint=0")  # _checkpoints does it
            setattr(self._local, key, conn)
        return conn

    def _checkpoints(self) -> None:
        conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
        try:
            while not self._closed.wait(self.checkpoint_seconds):
                try:  # PASSIVE: copies what it can without waiting for readers or writers
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:  # busy or locked: the next round catches up
                    continue
        finally:
            conn.close()

    def close(self) -> None:
        """Stop the background checkpoints (connections close with their threads)."""
        self._closed.set()

    def record_decisions(self, decisions: Decisions) -> None:
        """Log one request's decisions, all decided now (``synchronous=NORMAL``).

        The columns are zipped into rows as they are. No channel (no expected values) is
        written as a NULL in the statement, not bound per row: the sqlite3 module binds None
        through its slow adaptation path (~1.5 ms per 1,000 rows)."""
        d = decisions
        shared = [d.models, d.features_as_of, time.time(), d.policy]
        values = [] if d.expected_value is None else [d.expected_value]
        if d.channel is not None:
            shared.append(d.channel)
        rows = zip(d.decision_id, d.customer_id, d.offer_id, d.propensity, map(int, d.explored),
                   *map(repeat, shared[:4]), *values, *map(repeat, shared[4:]),
                   strict=False)  # fmt: skip
        sql = _INSERT_DECISIONS.format(expected_value="NULL" if d.expected_value is None else "?",
                                       channel="NULL" if d.channel is None else "?")  # fmt: skip
        with self._conn("NORMAL") as conn:
            conn.executemany(sql, rows)

    def decision(self, decision_id: str) -> Decision | None:
        sql = f"SELECT {_DECISION_COLUMNS} FROM decisions WHERE decision_id = ?"
        row = self._conn("NORMAL").execute(sql, (decision_id,)).fetchone()
        return None if row is None else Decision(*row[:4], bool(row[4]), *row[5:])

    def record_feedback(
        self, events: Iterable[dict], refused: Iterable[tuple[dict, str]] = ()
    ) -> FeedbackResult:
        """Store feedback events durably; each needs ``event_id``, ``event``, ``occurred_at``
        (epoch seconds) and a ``decision_id`` or a ``customer_id`` (+ ``offer_id``).

        Events the caller already ``refused`` (event, reason) and events that match no
        decision are kept in ``feedback_rejected`` with their reason, in the same commit."""
        now, rows, refused = time.time(), [], list(refused)
        for event in events:
            resolved = self._resolve(event)
            if isinstance(resolved, str):
                refused.append((event, resolved))
                continue
            rows.append((event["event_id"], event.get("decision_id"), *resolved, event["event"],
                         event.get("revenue"), event["occurred_at"], now))  # fmt: skip
        with self._conn("FULL") as conn:
            before = conn.total_changes
            conn.executemany("INSERT OR IGNORE INTO feedback VALUES (?,?,?,?,?,?,?,?)", rows)
            accepted = conn.total_changes - before
            conn.executemany(
                "INSERT INTO feedback_rejected VALUES (?,?,?,?)",
                [(now, e.get("event_id"), why, json.dumps(e, default=str)) for e, why in refused],
            )
        rejected = [{"event_id": e.get("event_id"), "error": why} for e, why in refused]
        return FeedbackResult(accepted, len(rows) - accepted, rejected)

    def _resolve(self, event: dict) -> tuple[str, str | None] | str:
        """(customer_id, offer_id) of an event, or the reason it cannot be matched."""
        if not event.get("decision_id"):
            return event["customer_id"], event.get("offer_id")
        found = self.decision(event["decision_id"])
        if found is None:
            return f"decision_id {event['decision_id']!r} is unknown to this ledger"
        for key in ("customer_id", "offer_id"):
            if event.get(key) is not None and event[key] != getattr(found, key):
                return (f"{key} {event[key]!r} does not match decision {found.decision_id!r} "
                        f"({key} {getattr(found, key)!r})")  # fmt: skip
        return found.customer_id, found.offer_id

    def contacts(
        self, customer_ids: Sequence[str], offer_ids: Sequence[str], now: float, window_days: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Sends per customer in the last ``window_days`` ``(n,)`` and days since each offer
        was last sent ``(n, offers)`` (NaN = never), from ``sent`` feedback."""
        ids, offers = list(customer_ids), list(offer_ids)
        sends, days = np.zeros(len(ids)), np.full((len(ids), len(offers)), np.nan)
        row_of = {c: i for i, c in enumerate(ids)}  # duplicates share the last row
        col_of = {o: j for j, o in enumerate(offers)}
        start = now - window_days * 86400.0
        found = self._conn("NORMAL").execute(_CONTACTS_SQL, (start, json.dumps(ids))).fetchall()
        for customer, offer, last, recent in found:
            i = row_of[customer]
            sends[i] += recent
            if offer in col_of:
                days[i, col_of[offer]] = (now - last) / 86400.0
        index = np.array([row_of[c] for c in ids], dtype=np.intp)
        return sends[index], days[index]

    def counts(self) -> dict[str, int]:
        conn = self._conn("NORMAL")
        return {table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                for table in ("decisions", "feedback", "feedback_rejected")}  # fmt: skip


def _add_policy_column(conn: sqlite3.Connection) -> None:
    """Ledgers written before decisions recorded their policy get the column (their
    decisions were all the model's). Another process may add it at the same moment."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(decisions)")}
    if "policy" not in columns:
        try:
            conn.execute("ALTER TABLE decisions ADD COLUMN policy TEXT NOT NULL DEFAULT 'model'")
        except sqlite3.OperationalError as err:
            if "duplicate column" not in str(err):
                raise
