"""The feedback ledger: decisions the service made and what campaign apps report back.

``decisions`` holds every decision with the propensity of the action chosen (for off-policy
evaluation) and the policy that chose it (``model``: epsilon-greedy on the offers model;
``cold_start``: at random with a control share, before there is an offers model; no expected
value then); ``feedback`` holds sends, opens, clicks and conversions, idempotent on the
caller's ``event_id``; ``feedback_rejected`` keeps events that could not be matched to a
decision, with the reason, so nothing a caller sent is lost. The ledger feeds contact caps and
cooldowns (``contacts``, ``reserve_contacts``: ``serving/ledger_common.py``).

Two backends behind one interface, chosen by the location (:func:`open_ledger`): a file path
or ``sqlite:///PATH`` is this module's SQLite file, for one machine; ``postgresql://...`` is
``serving/ledger_postgres.py``, shared by service replicas on many hosts.

SQLite (WAL): feedback is committed with ``synchronous=FULL`` (on disk before the service
answers 200); decisions with ``NORMAL`` (safe across a crash of the service, not of the
machine), which keeps ``/decide`` fast.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Sequence
from itertools import repeat
from pathlib import Path
from typing import Any, TypeVar

from serving.ledger_common import (
    DECISION_COLUMNS,
    EVENTS,
    Decision,
    Decisions,
    FeedbackResult,
    LedgerBase,
    LedgerUnavailable,
    decision_row,
    parse_location,
)
from training.ledger_tables import read_tables

__all__ = ["EVENTS", "Decision", "Decisions", "FeedbackLedger", "FeedbackResult",
           "LedgerBase", "LedgerUnavailable", "open_ledger", "read_tables"]  # fmt: skip
T = TypeVar("T")
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
# what reserve_contacts reads, created on its first use (an index more on every /decide
# write is not worth it for services that count reported sends only)
_RESERVATION_DDL = (
    "CREATE INDEX IF NOT EXISTS decisions_customer ON decisions (customer_id, decided_at)",
    "CREATE INDEX IF NOT EXISTS feedback_decision ON feedback (decision_id)",
)
_SENT = """SELECT customer_id, offer_id, occurred_at AS at FROM feedback
    WHERE event = 'sent' AND customer_id IN (SELECT value FROM json_each(:ids))"""
_RESERVED = """SELECT customer_id, offer_id, decided_at FROM decisions AS d
    WHERE customer_id IN (SELECT value FROM json_each(:ids)) AND offer_id IS NOT NULL
      AND decided_at >= :start AND NOT EXISTS (SELECT 1 FROM feedback AS f
        WHERE f.decision_id = d.decision_id AND f.event = 'sent')"""
_CONTACTS = """SELECT customer_id, offer_id, MAX(at), SUM(at >= :start) FROM ({rows})
    GROUP BY customer_id, offer_id"""
_INSERT_DECISIONS = """
    INSERT INTO decisions (decision_id, customer_id, offer_id, propensity, explored,
        models, features_as_of, decided_at, policy, expected_value, channel)
    VALUES (?,?,?,?,?,?,?,?,?,{expected_value},{channel})"""


def open_ledger(location: str | Path, checkpoint_seconds: float | None = None) -> LedgerBase:
    """The ledger at ``location``: a file path or ``sqlite:///PATH`` (:class:`FeedbackLedger`,
    ``checkpoint_seconds`` as there) or ``postgresql://USER[:PASSWORD]@HOST:PORT/DATABASE``
    (:class:`serving.ledger_postgres.PostgresLedger`, which connects on first use)."""
    kind, target = parse_location(location)
    if kind == "postgresql":
        from serving.ledger_postgres import PostgresLedger

        return PostgresLedger(target)
    return FeedbackLedger(target, checkpoint_seconds)


class FeedbackLedger(LedgerBase):
    """Thread-safe (one connection per thread and durability level) SQLite ledger in
    ``path``.

    ``checkpoint_seconds``: copy the write-ahead log into the database from a background
    thread this often, instead of SQLite's automatic checkpoint, which runs inside whichever
    commit crosses 1,000 log pages: every few 1,000-id ``/batch`` requests one of them
    waited 40-55 ms for it (and its fsync). Durability does not change: a commit is
    complete once in the log. None: SQLite's automatic checkpoints (one-off tools, tests).
    """

    def __init__(self, path: str | Path, checkpoint_seconds: float | None = None) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.checkpoint_seconds = checkpoint_seconds
        self._reservations_indexed = False
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

    def _run(self, work: Callable[[Any], T], durable: bool, lock: Sequence[str] = ()) -> T:
        """``work`` in a transaction on this thread's connection (``FULL`` when ``durable``).

        ``lock``: ``BEGIN IMMEDIATE`` takes the file's write lock before ``work`` reads, so
        that no other thread or process writes until the commit (SQLite locks the whole file,
        so every customer's lock)."""
        conn = self._conn("FULL" if durable else "NORMAL")
        with conn:  # commits on return, rolls back on an error
            if lock:
                conn.execute("BEGIN IMMEDIATE")
            return work(conn)

    def reserve_contacts(self, customer_ids, offer_ids, now, window_days, decide):  # noqa: D102
        if not self._reservations_indexed:
            with self._conn("FULL") as conn:
                for ddl in _RESERVATION_DDL:
                    conn.execute(ddl)
            self._reservations_indexed = True
        return super().reserve_contacts(customer_ids, offer_ids, now, window_days, decide)

    reserve_contacts.__doc__ = LedgerBase.reserve_contacts.__doc__

    def _insert_decisions(self, conn: sqlite3.Connection, decisions: Decisions, now: float) -> None:
        """The columns are zipped into rows as they are. No channel (no expected values) is
        written as a NULL in the statement, not bound per row: the sqlite3 module binds None
        through its slow adaptation path (~1.5 ms per 1,000 rows)."""
        d = decisions
        shared = [d.models, d.features_as_of, now, d.policy]
        values = [] if d.expected_value is None else [d.expected_value]
        if d.channel is not None:
            shared.append(d.channel)
        rows = zip(d.decision_id, d.customer_id, d.offer_id, d.propensity, map(int, d.explored),
                   *map(repeat, shared[:4]), *values, *map(repeat, shared[4:]),
                   strict=False)  # fmt: skip
        sql = _INSERT_DECISIONS.format(expected_value="NULL" if d.expected_value is None else "?",
                                       channel="NULL" if d.channel is None else "?")  # fmt: skip
        conn.executemany(sql, rows)

    def _select_decision(self, conn: sqlite3.Connection, decision_id: str) -> Decision | None:
        sql = f"SELECT {DECISION_COLUMNS} FROM decisions WHERE decision_id = ?"
        row = conn.execute(sql, (decision_id,)).fetchone()
        return None if row is None else decision_row(row)

    def _insert_feedback(self, conn: sqlite3.Connection, rows: list, rejected: list) -> int:
        before = conn.total_changes
        conn.executemany("INSERT OR IGNORE INTO feedback VALUES (?,?,?,?,?,?,?,?)", rows)
        accepted = conn.total_changes - before
        conn.executemany("INSERT INTO feedback_rejected VALUES (?,?,?,?)", rejected)
        return accepted

    def _select_contacts(
        self, conn: sqlite3.Connection, ids: list[str], start: float, reserved: bool
    ) -> list:
        rows = f"{_SENT} UNION ALL {_RESERVED}" if reserved else _SENT
        return conn.execute(_CONTACTS.format(rows=rows),
                            {"ids": json.dumps(ids), "start": start}).fetchall()  # fmt: skip

    def _count(self, conn: sqlite3.Connection, table: str) -> int:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


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
