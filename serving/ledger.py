"""The feedback ledger: decisions the service made and what campaign apps report back.

``decisions`` holds every decision with the propensity of the action chosen (for off-policy
evaluation) and the policy that chose it (``model``: epsilon-greedy on the offers model;
``cold_start``: at random with a control share, before there is an offers model; no expected
value then); ``feedback`` holds sends, opens, clicks and conversions, idempotent on the
caller's ``event_id``; ``feedback_rejected`` keeps events that could not be matched to a
decision, with the reason, so nothing a caller sent is lost. The ledger feeds contact caps and
cooldowns (``contacts``, ``reserve_contacts``: ``serving/ledger_common.py``). A decision whose
caller left before its answer is marked undelivered (``decisions.undelivered_at``,
``mark_undelivered``): kept, but neither a contact nor something to learn from.

Two backends behind one interface, chosen by the location (:func:`open_ledger`): a file path
or ``sqlite:///PATH`` is this module's SQLite file, for one machine; ``postgresql://...`` is
``serving/ledger_postgres.py``, shared by service replicas on many hosts.

SQLite (WAL): feedback is committed with ``synchronous=FULL`` (on disk before the service
answers 200); decisions with ``NORMAL`` (safe across a crash of the service, not of the
machine), which keeps ``/decide`` fast, or with ``FULL`` too (``durability="full"``, the
service's ``ledger_durability``; README, "Durability").

Nothing waits forever and nothing fails with a bare SQLite error: a lock held by another
process longer than ``LOCK_TIMEOUT_SECONDS``, a damaged file or a failing disk raise
:class:`LedgerUnavailable` naming the file and what to do (a 503 in the service). A damaged
file is written no more (every later call raises the same) until the service is restarted
after ``lifecycle ledger repair``; :meth:`FeedbackLedger.ping` (readiness) also opens the file
afresh and takes its write lock, so a file damaged, replaced or locked while the service
runs turns readiness off with the reason.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from itertools import repeat
from pathlib import Path
from typing import Any, TypeVar

from serving.ledger_common import (
    ADDED_COLUMNS,
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
           "LedgerBase", "LedgerUnavailable", "UnopenedLedger", "open_ledger",
           "open_or_stand_in", "read_tables"]  # fmt: skip
T = TypeVar("T")
logger = logging.getLogger("serving.ledger")
LOCK_TIMEOUT_SECONDS = 5.0  # longest wait for another connection's lock, then a 503
PING_TIMEOUT_SECONDS = 2.0  # readiness: longest wait for the write lock
SYNCHRONOUS = {"normal": "NORMAL", "full": "FULL"}  # durability of decisions -> SQLite's level
_DAMAGED = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
_LOCKED = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}
_BUGS = (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError)
_DDL = (
    """CREATE TABLE IF NOT EXISTS decisions (
        decision_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, offer_id TEXT,
        propensity REAL NOT NULL, explored INTEGER NOT NULL, channel TEXT,
        expected_value REAL, models TEXT NOT NULL, features_as_of TEXT,
        decided_at REAL NOT NULL, policy TEXT NOT NULL DEFAULT 'model',
        undelivered_at REAL)""",
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
      AND decided_at >= :start AND undelivered_at IS NULL AND NOT EXISTS (SELECT 1
        FROM feedback AS f WHERE f.decision_id = d.decision_id AND f.event = 'sent')"""
_CONTACTS = """SELECT customer_id, offer_id, MAX(at), SUM(at >= :start) FROM ({rows})
    GROUP BY customer_id, offer_id"""
_INSERT_DECISIONS = """
    INSERT INTO decisions (decision_id, customer_id, offer_id, propensity, explored,
        models, features_as_of, decided_at, policy, expected_value, channel)
    VALUES (?,?,?,?,?,?,?,?,?,{expected_value},{channel})"""
_MARK_UNDELIVERED = """UPDATE decisions SET undelivered_at = :at
    WHERE decision_id IN (SELECT value FROM json_each(:ids)) AND undelivered_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM feedback AS f WHERE f.decision_id = decisions.decision_id)"""
_CLEAR_UNDELIVERED = """UPDATE decisions SET undelivered_at = NULL
    WHERE decision_id IN (SELECT value FROM json_each(:ids)) AND undelivered_at IS NOT NULL"""


def open_ledger(
    location: str | Path, checkpoint_seconds: float | None = None, durability: str = "normal"
) -> LedgerBase:
    """The ledger at ``location``: a file path or ``sqlite:///PATH`` (:class:`FeedbackLedger`,
    ``checkpoint_seconds`` as there) or ``postgresql://USER[:PASSWORD]@HOST:PORT/DATABASE``
    (:class:`serving.ledger_postgres.PostgresLedger`, which connects on first use).
    ``durability``: how decisions are committed, ``"normal"`` (on disk soon after: a power
    loss may lose the last ones) or ``"full"`` (on disk before the answer); feedback is
    always ``"full"``."""
    if durability not in SYNCHRONOUS:
        raise ValueError(f"ledger durability must be one of {sorted(SYNCHRONOUS)}; "
                         f"got {durability!r}")  # fmt: skip
    kind, target = parse_location(location)
    if kind == "postgresql":
        from serving.ledger_postgres import PostgresLedger

        return PostgresLedger(target, durability)
    return FeedbackLedger(target, checkpoint_seconds, durability)


def open_or_stand_in(
    location: str | Path, checkpoint_seconds: float | None = None, durability: str = "normal"
) -> LedgerBase | UnopenedLedger:
    """:func:`open_ledger`, or, when it raises :class:`LedgerUnavailable` (a damaged file),
    an :class:`UnopenedLedger` saying why (logged once, without a traceback)."""

    def again() -> LedgerBase:
        return open_ledger(location, checkpoint_seconds, durability)

    try:
        return again()
    except LedgerUnavailable as err:
        logger.error("the feedback ledger could not be opened: %s", err)
        return UnopenedLedger(again, str(err))


class UnopenedLedger:
    """Stands for a ledger that could not be opened when the service started (a damaged
    file): every use raises :class:`LedgerUnavailable` with why and what to do, so the worker
    starts, answers ``/livez``, and ``/readyz`` and each request needing the ledger answer
    503 with the reason, where a bare ``bentoml serve`` would otherwise restart a failing
    worker for ever (``lifecycle serve`` refuses to start instead: ``serving.preflight``).

    :meth:`ping` (readiness) tries ``open_again`` at most every ``retry_seconds``; once it
    succeeds (the file repaired or moved aside) every call goes to the opened ledger."""

    def __init__(self, open_again: Callable[[], LedgerBase], problem: str,
                 retry_seconds: float = 5.0) -> None:  # fmt: skip
        self.problem = problem
        self._open_again = open_again
        self._retry_seconds = retry_seconds
        self._tried = time.monotonic()
        self._ledger: LedgerBase | None = None
        self._lock = threading.Lock()

    def ping(self) -> None:
        if self._ledger is None and time.monotonic() - self._tried >= self._retry_seconds:
            with self._lock:
                if self._ledger is None:
                    self._tried = time.monotonic()
                    try:
                        self._ledger = self._open_again()
                    except LedgerUnavailable as err:
                        self.problem = str(err)
        if self._ledger is None:
            raise LedgerUnavailable(self.problem)
        self._ledger.ping()

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()

    def __getattr__(self, name: str) -> Any:  # only names not set in __init__
        if name.startswith("_"):
            raise AttributeError(name)
        if self._ledger is None:
            raise LedgerUnavailable(self.problem)
        return getattr(self._ledger, name)


class FeedbackLedger(LedgerBase):
    """Thread-safe (one connection per thread and durability level) SQLite ledger in
    ``path``.

    ``checkpoint_seconds``: copy the write-ahead log into the database from a background
    thread this often, instead of SQLite's automatic checkpoint, which runs inside whichever
    commit crosses 1,000 log pages: every few 1,000-id ``/batch`` requests one of them
    waited 40-55 ms for it (and its fsync). Durability does not change: a commit is
    complete once in the log. None: SQLite's automatic checkpoints (one-off tools, tests).
    ``durability``: ``"normal"`` or ``"full"``, the ``synchronous`` level of decisions.
    """

    def __init__(
        self, path: str | Path, checkpoint_seconds: float | None = None, durability: str = "normal"
    ) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.checkpoint_seconds = checkpoint_seconds
        self.decisions_synchronous = SYNCHRONOUS[durability]
        self._reservations_indexed = False
        self._local = threading.local()
        self._closed = threading.Event()
        self._damaged: str | None = None  # why the file is written no more

        def create(conn: sqlite3.Connection) -> None:
            for ddl in _DDL:
                conn.execute(ddl)
            _add_columns(conn)

        self._run(create, True)
        self._file = _identity(self.path)  # the file the connections opened
        if checkpoint_seconds:
            threading.Thread(target=self._checkpoints, name="ledger-checkpoints",
                             daemon=True).start()  # fmt: skip

    def _conn(self, synchronous: str) -> sqlite3.Connection:
        key = f"conn_{synchronous}"
        conn = getattr(self._local, key, None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=LOCK_TIMEOUT_SECONDS,
                                   check_same_thread=False)  # fmt: skip
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={synchronous}")
            if self.checkpoint_seconds:
                conn.execute("PRAGMA wal_autocheckpoint=0")  # _checkpoints does it
            setattr(self._local, key, conn)
        return conn

    def _checkpoints(self) -> None:
        conn = sqlite3.connect(self.path, timeout=LOCK_TIMEOUT_SECONDS, check_same_thread=False)
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

    def ping(self) -> None:
        """Raise :class:`LedgerUnavailable` unless the ledger can be written now: not found
        damaged by a request, still the file the service opened (not moved or deleted), and,
        opened afresh (no cached pages), a ledger whose write lock can be taken within
        ``PING_TIMEOUT_SECONDS``."""
        if self._damaged:
            raise LedgerUnavailable(self._damaged)
        if _identity(self.path) != self._file:
            raise LedgerUnavailable(
                f"the feedback ledger {self.path} was moved, replaced or deleted while the "
                "service ran (its connections still write to the old file): restart the service"
            )
        try:
            with contextlib.closing(sqlite3.connect(self.path, timeout=PING_TIMEOUT_SECONDS,
                                                    isolation_level=None)) as conn:  # fmt: skip
                conn.execute("BEGIN IMMEDIATE")
                names = {row[0] for row in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'")}  # fmt: skip
                conn.execute("ROLLBACK")
        except sqlite3.Error as err:
            raise self._unavailable(err, PING_TIMEOUT_SECONDS) from None
        missing = sorted({"decisions", "feedback", "feedback_rejected"} - names)
        if missing:
            raise LedgerUnavailable(f"the feedback ledger {self.path} lacks the tables {missing} "
                                    "(replaced by another file?): restart the service")  # fmt: skip

    def _run(self, work: Callable[[Any], T], durable: bool, lock: Sequence[str] = ()) -> T:
        """``work`` in a transaction on this thread's connection (``FULL`` when ``durable``,
        else the decisions' level); a SQLite failure (not a bug of ours) is rolled back and
        raised as :class:`LedgerUnavailable` (:meth:`_unavailable`).

        ``lock``: ``BEGIN IMMEDIATE`` takes the file's write lock before ``work`` reads, so
        that no other thread or process writes until the commit (SQLite locks the whole file,
        so every customer's lock)."""
        if self._damaged:
            raise LedgerUnavailable(self._damaged)
        try:
            conn = self._conn("FULL" if durable else self.decisions_synchronous)
            with conn:  # commits on return, rolls back on an error
                if lock:
                    conn.execute("BEGIN IMMEDIATE")
                return work(conn)
        except _BUGS:
            raise
        except sqlite3.Error as err:
            raise self._unavailable(err, LOCK_TIMEOUT_SECONDS) from None

    def _unavailable(self, err: sqlite3.Error, waited: float) -> LedgerUnavailable:
        """What is wrong with the file, and what to do; a damaged file is written no more."""
        code = getattr(err, "sqlite_errorcode", 0) & 0xFF
        if code in _LOCKED:
            return LedgerUnavailable(
                f"the feedback ledger {self.path} stayed locked by another connection for more "
                f"than {waited:g} s ({err}); nothing was written: retry, and if it lasts find "
                f"the process holding it (`fuser {self.path}`)"
            )
        if code in _DAMAGED:
            self._damaged = (
                f"the feedback ledger {self.path} is damaged ({err}); nothing more is written "
                f"to it: stop the service, run `lifecycle ledger check {self.path}` and "
                f"`lifecycle ledger repair {self.path}` (it keeps the damaged file aside), or "
                "restore it from a backup, then start the service again"
            )
            return LedgerUnavailable(self._damaged)
        return LedgerUnavailable(
            f"the feedback ledger {self.path} cannot be written ({err}); nothing was written: "
            "check the disk (space, permissions) and the file"
        )

    def reserve_contacts(self, customer_ids, offer_ids, now, window_days, decide):  # noqa: D102
        if not self._reservations_indexed:
            self._run(lambda conn: [conn.execute(ddl) for ddl in _RESERVATION_DDL], True)
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

    def _mark_undelivered(self, conn: sqlite3.Connection, ids: list[str], at: float) -> int:
        return conn.execute(_MARK_UNDELIVERED, {"ids": json.dumps(ids), "at": at}).rowcount

    def _clear_undelivered(self, conn: sqlite3.Connection, ids: list[str]) -> int:
        return conn.execute(_CLEAR_UNDELIVERED, {"ids": json.dumps(ids)}).rowcount

    def _count(self, conn: sqlite3.Connection, table: str) -> int:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def _identity(path: Path) -> tuple[int, int] | None:
    """The file at ``path`` (device, inode), None when there is none."""
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_dev, found.st_ino


def _add_columns(conn: sqlite3.Connection) -> None:
    """Ledgers written by an earlier version get the decisions' columns added since
    (``ADDED_COLUMNS``): ``policy`` (their decisions were all the model's), ``undelivered_at``
    (all delivered, as far as anyone knew). Another process may add one at the same moment."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(decisions)")}
    for name, (kind, _) in ADDED_COLUMNS.items():
        if name in columns:
            continue
        try:
            conn.execute(f"ALTER TABLE decisions ADD COLUMN {name} {kind}")
        except sqlite3.OperationalError as err:
            if "duplicate column" not in str(err):
                raise
