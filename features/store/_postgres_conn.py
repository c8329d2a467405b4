"""PostgreSQL connections of the online store: one per thread and per process, bounded waits.

psycopg 3 in autocommit mode (transactions are explicit), opened on first use, so a reader
starts while the server is down and answers 503 until it is back. A connection must not cross
``fork()``: each remembers the pid that opened it; a thread that finds another pid opens a new
one, and the inherited one's socket is first pointed at /dev/null, so dropping it never sends
the parent's session a goodbye (libpq's ``PQfinish``) that would end it.

Nothing hangs: connecting gives up after ``CONNECT_TIMEOUT_S``, a statement after
``STATEMENT_TIMEOUT`` (writers lift it for their transaction), and a server that vanished
without closing its sockets is noticed by TCP keepalives and ``tcp_user_timeout``.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from features.store._types import StoreUnavailableError

CONNECT_TIMEOUT_S = 5
STATEMENT_TIMEOUT = "60s"  # reads (customer_ids of 1M customers takes ~1 s)
_DEAD_PEER = {  # libpq: probe an idle connection after 3 s, every 2 s, give up after 3 misses
    "keepalives": 1, "keepalives_idle": 3, "keepalives_interval": 2, "keepalives_count": 3,
    "tcp_user_timeout": 10_000,  # ms: sent data unacknowledged this long
}  # fmt: skip


def psycopg_module(address: str) -> Any:
    """The psycopg module (imported on first use), or StoreUnavailableError naming the store."""
    try:
        import psycopg
    except ImportError as err:  # the [scale] extra
        raise StoreUnavailableError(
            f"the online store {address} needs the psycopg package: "
            "pip install 'customer-lifecycle[scale]'"
        ) from err
    return psycopg


def reason(err: Exception) -> str:
    """``err`` on one line, for messages."""
    return " ".join(str(err).split()) or type(err).__name__


def unreachable(address: str, err: Exception) -> StoreUnavailableError:
    """The error for a server that cannot be reached (``address`` has no password)."""
    return StoreUnavailableError(
        f"the online store {address} is unreachable ({reason(err)}); start PostgreSQL "
        "(`make services`) or fix the store URL"
    )


class _Handle:
    """A connection and the pid that opened it; in another process, released onto /dev/null."""

    def __init__(self, conn: Any) -> None:
        self.conn, self.pid = conn, os.getpid()

    def __del__(self) -> None:
        if self.pid != os.getpid() and not self.conn.closed:
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, self.conn.fileno())
            os.close(null)
        self.conn.close()


class Connections:
    """Per-thread, per-process connections to one database, opened on first use.

    Parameters
    ----------
    conninfo : str
        What libpq reads (the store URL without ``prefix``).
    address : str
        The store URL with any password masked, for messages.
    """

    def __init__(self, conninfo: str, address: str) -> None:
        self.conninfo, self.address = conninfo, address
        self._local = threading.local()

    def get(self) -> Any:
        """This thread's connection, opened if absent, closed, or opened before a fork.

        Raises
        ------
        StoreUnavailableError
            If the server cannot be reached (within ``CONNECT_TIMEOUT_S``).
        """
        handle: _Handle | None = getattr(self._local, "handle", None)
        if handle is None or handle.pid != os.getpid() or handle.conn.closed:
            self._local.handle = None  # an inherited one is released (onto /dev/null) here
            self._local.handle = handle = _Handle(self._connect())
        return handle.conn

    def opened(self) -> bool:
        """Whether this thread of this process already has a connection."""
        handle: _Handle | None = getattr(self._local, "handle", None)
        return handle is not None and handle.pid == os.getpid()

    def close(self) -> None:
        """Close this thread's connection (other threads keep theirs)."""
        self._local.handle = None

    def _connect(self) -> Any:
        psycopg = psycopg_module(self.address)
        try:
            return psycopg.connect(self.conninfo, autocommit=True,
                                   connect_timeout=CONNECT_TIMEOUT_S,
                                   application_name="lifecycle-store",
                                   options=f"-c statement_timeout={STATEMENT_TIMEOUT}",
                                   **_DEAD_PEER)  # fmt: skip
        except psycopg.OperationalError as err:
            raise unreachable(self.address, err) from None
