"""The feedback ledger on PostgreSQL (``postgresql://...``), shared by service replicas on many
hosts: the same tables and behaviour as the SQLite ledger (``serving/ledger.py``; the shared
behaviour is ``serving/ledger_common.py``), with what many writers need.

- **Connections**: one per thread (psycopg 3, autocommit, explicit transactions), opened on
  first use, so a worker starts while the server is down and answers 503 until it is back.
  The tables are created if missing, once per process, under an advisory lock (two replicas
  starting together do not race on ``CREATE TABLE``); a ledger written by an earlier version
  gets the decisions' columns added since (``ADDED_COLUMNS``) under the same lock, or, when
  the service's user may not alter the table, a 503 saying which statement to run.
- **Idempotent feedback** with ``INSERT ... ON CONFLICT (event_id) DO NOTHING``: of two
  writers posting the same event at once, the second waits for the first's commit and then
  counts a duplicate. Feedback commits with ``synchronous_commit=on`` (on disk before 200),
  decisions with ``off`` (like SQLite's ``NORMAL``: a crash of the server may lose the last
  decisions, never acknowledged feedback), or ``on`` with ``durability="full"``.
- **Contact caps across replicas**: :meth:`LedgerBase.reserve_contacts` holds a transaction
  advisory lock per customer (taken in one order, so overlapping requests cannot deadlock)
  while it reads the contacts, decides and records: a second request for the same customer
  waits (at most ``LOCK_TIMEOUT``) and then sees the first one's decision. Customers share
  ``LOCK_BUCKETS`` locks by hash, so a transaction holds at most 1,024 whatever its size: the
  server's lock table (``max_locks_per_transaction`` x ``max_connections``, 6,400 by default)
  ran out with one lock per customer under two 12,000-customer audiences at once. Two
  requests for other customers of one bucket wait for each other (a pair of single-customer
  requests in flight: 1 in 1,024).
- **Errors**: a server that cannot be reached raises :class:`LedgerUnavailable` (a 503 in the
  service) naming the URL with its password elided; a connection that broke (a restarted
  server) is replaced and the work retried once.
- **Nothing hangs**: connecting gives up after ``CONNECT_TIMEOUT``; a statement after
  ``STATEMENT_TIMEOUT`` (server side); a server that vanished without closing its sockets is
  noticed by TCP keepalives and ``tcp_user_timeout`` within ``DEAD_PEER_SECONDS``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from serving.ledger_common import (
    ADDED_COLUMNS,
    DECISION_COLUMNS,
    TABLES,
    Decision,
    Decisions,
    LedgerBase,
    LedgerUnavailable,
    decision_row,
)
from training.ledger_tables import describe, unreachable_message

try:
    import psycopg
except ImportError:  # pragma: no cover - the scale extra installs it
    psycopg = None  # type: ignore[assignment]

T = TypeVar("T")
CONNECT_TIMEOUT = 5  # seconds to reach the server before a request gets its 503
STATEMENT_TIMEOUT = "30s"  # longest statement (a 10,000-event feedback batch takes ~0.1 s)
DEAD_PEER_SECONDS = 10  # a silent server (no RST): the connection is declared broken
LOCK_TIMEOUT = "10s"  # longest wait for another request's customer locks
LOCK_CLASS = 0x4C454447  # "LEDG": the first key of this ledger's advisory locks
LOCK_BUCKETS = 1024  # customers' locks: a transaction holds at most this many (key 0: schema)
_DDL = (
    """CREATE TABLE IF NOT EXISTS decisions (
        decision_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, offer_id TEXT,
        propensity DOUBLE PRECISION NOT NULL, explored INTEGER NOT NULL, channel TEXT,
        expected_value DOUBLE PRECISION, models TEXT NOT NULL, features_as_of TEXT,
        decided_at DOUBLE PRECISION NOT NULL, policy TEXT NOT NULL DEFAULT 'model',
        undelivered_at DOUBLE PRECISION)""",
    """CREATE TABLE IF NOT EXISTS feedback (
        event_id TEXT PRIMARY KEY, decision_id TEXT, customer_id TEXT NOT NULL, offer_id TEXT,
        event TEXT NOT NULL, revenue DOUBLE PRECISION, occurred_at DOUBLE PRECISION NOT NULL,
        received_at DOUBLE PRECISION NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS feedback_rejected (received_at DOUBLE PRECISION NOT NULL,
        event_id TEXT, reason TEXT NOT NULL, body TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS feedback_contacts ON feedback (customer_id, event, occurred_at)",
    "CREATE INDEX IF NOT EXISTS feedback_decision ON feedback (decision_id)",
    "CREATE INDEX IF NOT EXISTS decisions_customer ON decisions (customer_id, decided_at)",
)
_INSERT_DECISIONS = """
    INSERT INTO decisions (decision_id, customer_id, offer_id, propensity, explored,
        expected_value, channel, models, features_as_of, decided_at, policy)
    SELECT u.*, %(channel)s::text, %(models)s::text, %(as_of)s::text, %(at)s::float8,
        %(policy)s::text
    FROM unnest(%(ids)s::text[], %(customers)s::text[], %(offers)s::text[],
        %(propensity)s::float8[], %(explored)s::int4[], %(value)s::float8[]) AS u
    ON CONFLICT (decision_id) DO NOTHING"""
_INSERT_FEEDBACK = """
    INSERT INTO feedback (event_id, decision_id, customer_id, offer_id, event, revenue,
        occurred_at, received_at)
    SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
        %s::float8[], %s::float8[], %s::float8[])
    ON CONFLICT (event_id) DO NOTHING RETURNING 1"""
_SENT = """SELECT customer_id, offer_id, occurred_at AS at FROM feedback
    WHERE event = 'sent' AND customer_id = ANY(%(ids)s::text[])"""
_RESERVED = """SELECT customer_id, offer_id, decided_at FROM decisions AS d
    WHERE customer_id = ANY(%(ids)s::text[]) AND offer_id IS NOT NULL
      AND decided_at >= %(start)s AND undelivered_at IS NULL AND NOT EXISTS (SELECT 1
        FROM feedback AS f WHERE f.decision_id = d.decision_id AND f.event = 'sent')"""
_CONTACTS = """SELECT customer_id, offer_id, MAX(at), COUNT(*) FILTER (WHERE at >= %(start)s)
    FROM ({rows}) AS c GROUP BY customer_id, offer_id"""
_MARK_UNDELIVERED = """UPDATE decisions AS d SET undelivered_at = %(at)s
    WHERE decision_id = ANY(%(ids)s::text[]) AND undelivered_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM feedback AS f WHERE f.decision_id = d.decision_id)"""
_CLEAR_UNDELIVERED = """UPDATE decisions SET undelivered_at = NULL
    WHERE decision_id = ANY(%(ids)s::text[]) AND undelivered_at IS NOT NULL"""
_COLUMNS = """SELECT column_name FROM information_schema.columns
    WHERE table_schema = current_schema() AND table_name = 'decisions'"""
_LOCK = """SELECT pg_advisory_xact_lock(%(cls)s, k) FROM (SELECT DISTINCT
    1 + (hashtext(c) & %(mask)s) AS k FROM unnest(%(ids)s::text[]) AS c ORDER BY k) AS keys"""


_DEAD_PEER = {  # libpq: probe an idle connection after 3 s, every 2 s, give up after 3 misses;
    "keepalives": 1, "keepalives_idle": 3, "keepalives_interval": 2, "keepalives_count": 3,
    "tcp_user_timeout": DEAD_PEER_SECONDS * 1000,  # ms: sent data unacknowledged this long
}  # fmt: skip


# durable commits whatever the server's default (the tests' servers run with it off); decisions
# turn it off per transaction
_SESSION = f"-c synchronous_commit=on -c statement_timeout={STATEMENT_TIMEOUT}"


def connect(url: str, autocommit: bool = True) -> Any:
    """A psycopg connection to ``url``, or :class:`LedgerUnavailable` naming it."""
    if psycopg is None:
        raise LedgerUnavailable(f"the feedback ledger {describe(url)} needs psycopg: "
                                "pip install 'customer-lifecycle[scale]'")  # fmt: skip
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT,
                               application_name="lifecycle-ledger", **_DEAD_PEER,
                               options=_SESSION)  # fmt: skip
    except psycopg.OperationalError as err:
        raise unavailable(url, err) from None


def unavailable(url: str, err: Exception) -> LedgerUnavailable:
    return LedgerUnavailable(unreachable_message(url, err))


class PostgresLedger(LedgerBase):
    """The ledger in the PostgreSQL database at ``url`` (module docstring)."""

    def __init__(self, url: str, durability: str = "normal") -> None:
        self.location = url
        self.durable_decisions = durability == "full"  # else synchronous_commit=off for them
        self._local = threading.local()
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = connect(self.location)
            self._local.conn = conn
        if not self._schema_ready:
            try:
                self._create_tables(conn)
            except psycopg.OperationalError as err:  # the server went away meanwhile
                self.close()
                raise unavailable(self.location, err) from None
        return conn

    def _create_tables(self, conn: Any) -> None:
        with self._schema_lock, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (LOCK_CLASS,))
            for ddl in _DDL:
                conn.execute(ddl)
            self._add_columns(conn)
            self._schema_ready = True

    def _add_columns(self, conn: Any) -> None:
        """A ledger written by an earlier version gets the decisions' columns added since
        (checked first: ``ALTER TABLE`` locks the table even when there is nothing to add)."""
        found = {row[0] for row in conn.execute(_COLUMNS)}
        for name, (_, kind) in ADDED_COLUMNS.items():
            if name in found:
                continue
            statement = f"ALTER TABLE decisions ADD COLUMN IF NOT EXISTS {name} {kind}"
            try:
                with conn.transaction():  # a savepoint: the message below, not an aborted one
                    conn.execute(statement)
            except psycopg.errors.InsufficientPrivilege as err:
                raise LedgerUnavailable(
                    f"the feedback ledger {describe(self.location)} was written by an earlier "
                    f"version and its user may not add the column decisions.{name} ({err}); "
                    f"run once as the table's owner: {statement}"
                ) from None

    def ping(self) -> None:
        """Raise :class:`LedgerUnavailable` unless the server answers (readiness probes)."""
        self._run(lambda conn: conn.execute("SELECT 1").fetchone(), False)

    def close(self) -> None:
        """Close this thread's connection (other threads' close with them)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _run(self, work: Callable[[Any], T], durable: bool, lock: Sequence[str] = ()) -> T:
        """``work`` in one transaction; a connection found broken is replaced and the work
        retried once (every statement here may run twice: inserts skip what exists)."""
        for attempt in (1, 2):
            reused = getattr(self._local, "conn", None) is not None
            conn = self._conn()
            try:
                with conn.transaction():
                    if not (durable or self.durable_decisions):
                        conn.execute("SET LOCAL synchronous_commit = off")
                    if lock:
                        conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                        conn.execute(_LOCK, {"cls": LOCK_CLASS, "ids": list(lock),
                                             "mask": LOCK_BUCKETS - 1})  # fmt: skip
                    return work(conn)
            except psycopg.OperationalError as err:
                if not conn.broken:  # a lock or statement timeout: the server is there
                    raise unavailable(self.location, err) from None
                self.close()
                if attempt == 2 or not reused:
                    raise unavailable(self.location, err) from None
        raise AssertionError("unreachable")

    def _insert_decisions(self, conn: Any, decisions: Decisions, now: float) -> None:
        d = decisions
        value = [None] * len(d) if d.expected_value is None else _floats(d.expected_value)
        conn.execute(_INSERT_DECISIONS, {
            "ids": _texts(d.decision_id), "customers": _texts(d.customer_id),
            "offers": _texts(d.offer_id), "propensity": _floats(d.propensity),
            "explored": np.asarray(d.explored, bool).astype(int).tolist(), "value": value,
            "channel": d.channel, "models": d.models, "as_of": d.features_as_of, "at": now,
            "policy": d.policy,
        })  # fmt: skip

    def _select_decision(self, conn: Any, decision_id: str) -> Decision | None:
        sql = f"SELECT {DECISION_COLUMNS} FROM decisions WHERE decision_id = %s"
        row = conn.execute(sql, (decision_id,)).fetchone()
        return None if row is None else decision_row(row)

    def _insert_feedback(self, conn: Any, rows: list[tuple], rejected: list[tuple]) -> int:
        accepted = 0
        if rows:
            columns = [list(column) for column in zip(*rows, strict=True)]
            accepted = len(conn.execute(_INSERT_FEEDBACK, columns).fetchall())
        if rejected:
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO feedback_rejected VALUES (%s, %s, %s, %s)", rejected)
        return accepted

    def _select_contacts(self, conn: Any, ids: list[str], start: float, reserved: bool) -> list:
        rows = f"{_SENT} UNION ALL {_RESERVED}" if reserved else _SENT
        return conn.execute(_CONTACTS.format(rows=rows), {"ids": ids, "start": start}).fetchall()

    def _mark_undelivered(self, conn: Any, ids: list[str], at: float) -> int:
        return conn.execute(_MARK_UNDELIVERED, {"ids": ids, "at": at}).rowcount

    def _clear_undelivered(self, conn: Any, ids: list[str]) -> int:
        return conn.execute(_CLEAR_UNDELIVERED, {"ids": ids}).rowcount

    def _count(self, conn: Any, table: str) -> int:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def _texts(values: Sequence) -> list[str | None]:
    return [None if v is None else str(v) for v in values]


def _floats(values: Sequence) -> list[float | None]:
    """Floats with NaN as None (NULL), as the sqlite3 module stores NaN."""
    return [None if v is None or v != v else float(v) for v in values]


def postgres_problem(url: str) -> str | None:
    """Why the database at ``url`` cannot serve as the ledger (None: reachable, and its
    tables are all there or none is: the service creates them)."""
    try:
        conn = connect(url)
    except LedgerUnavailable as err:
        return str(err)
    with conn:
        found = {row[0] for row in conn.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema()")}  # fmt: skip
    missing = sorted(set(TABLES) - found)
    if missing and len(missing) < len(TABLES):
        return f"the feedback ledger {describe(url)} lacks the tables {missing}"
    return None
