"""What every feedback ledger backend shares (``serving/ledger.py``: SQLite;
``serving/ledger_postgres.py``: PostgreSQL): the row types, where a ledger lives (a file path,
``sqlite:///PATH`` or ``postgresql://...``: ``training/ledger_tables.py``, which the tools
read it with), and :class:`LedgerBase`, the ledger's behaviour
written once over a few backend primitives, so that the backends cannot drift.

Contacts, two ways (DESIGN sections 8, 9):

- :meth:`LedgerBase.contacts` counts the ``sent`` feedback campaign apps reported (today's
  policy: a decision is a contact once it was sent).
- :meth:`LedgerBase.reserve_contacts` also counts the offers decided in the window whose send
  is not reported yet (a decided offer reserves its contact), and reads, decides and records
  in one transaction holding each customer's lock: two requests for the same customer, from
  two threads, processes or replicas, cannot both pass a contact cap of 1.

Undelivered decisions: a decision logged for a caller who then left before its answer (it
disconnected, or the request timed out) is marked with :meth:`LedgerBase.mark_undelivered`
(``decisions.undelivered_at``, the time it was marked; NULL: delivered as far as the service
knows). It stays in the ledger, but reserves no contact and is no exposure for learning or
off-policy evaluation (``training/ledger_exposures.py``). Feedback naming a decision proves
its app got it (the id is only in the answer): a decision with feedback is never marked, and
feedback arriving for a marked one clears the mark. Ledgers written before the column
existed get it when a service opens them (:data:`ADDED_COLUMNS`); tools reading one read
every decision as delivered.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np

from training.ledger_tables import parse_location

try:  # in the service, a 503 naming the backend (BentoML maps its exceptions to statuses)
    from bentoml.exceptions import ServiceUnavailable as _Unavailable
except ImportError:  # tools without BentoML (training): a plain error
    _Unavailable = RuntimeError  # type: ignore[misc, assignment]

EVENTS = ("sent", "opened", "clicked", "converted")
TABLES = ("decisions", "feedback", "feedback_rejected")
# decisions' columns added after the first release, with their type (name: SQLite, PostgreSQL):
# a ledger that lacks one gets it when a service opens it
ADDED_COLUMNS = {
    "policy": ("TEXT NOT NULL DEFAULT 'model'", "TEXT NOT NULL DEFAULT 'model'"),
    "undelivered_at": ("REAL", "DOUBLE PRECISION"),
}
T = TypeVar("T")


class LedgerUnavailable(_Unavailable, ConnectionError):
    """The ledger's server cannot be reached (or timed out): a 503 in the service, an
    ``OSError`` for the command-line tools (which report those without a traceback)."""


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
    undelivered_at: float | None = None  # when it was marked undelivered (None: delivered)


@dataclass(frozen=True)
class Decisions:
    """One request's decisions as columns (entry ``i`` = customer ``i``) and what they share.

    The engine has its answers as whole arrays and the databases take rows of plain values,
    so the columns are zipped straight into rows; iterating gives :class:`Decision` rows.
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
                   repeat(self.features_as_of), repeat(self.policy), repeat(None),
                   strict=False)  # fmt: skip
        return map(Decision._make, rows)


@dataclass(frozen=True)
class FeedbackResult:
    accepted: int
    duplicates: int
    rejected: list[dict]


# ---- where a ledger lives ------------------------------------------------------------


def is_postgres(location: str | Path) -> bool:
    return parse_location(location)[0] == "postgresql"


# ---- behaviour shared by the backends ------------------------------------------------


class LedgerBase:
    """The ledger over seven backend primitives, each given an open connection inside the
    transaction :meth:`_run` opened: ``_insert_decisions(conn, decisions, now)``,
    ``_select_decision(conn, decision_id)``, ``_insert_feedback(conn, rows, rejected) ->
    accepted``, ``_select_contacts(conn, ids, start, reserved) -> [(customer, offer, last,
    recent)]``, ``_mark_undelivered(conn, ids, at) -> marked`` (decisions with feedback
    naming them excepted), ``_clear_undelivered(conn, ids) -> cleared`` and
    ``_count(conn, table)``."""

    location: str

    def _run(self, work: Callable[[Any], T], durable: bool, lock: Sequence[str] = ()) -> T:
        """``work(conn)`` in one transaction, committed on return (on disk first when
        ``durable``); ``lock``: customer ids whose locks the transaction holds."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the backend holds (threads, connections)."""

    def ping(self) -> None:
        """Raise :class:`LedgerUnavailable` unless the ledger can be written (a server
        backend asks its server; a SQLite file is always there: nothing to check)."""

    def record_decisions(self, decisions: Decisions, decided_at: float | None = None) -> None:
        """Log one request's decisions, all decided at ``decided_at`` (seconds since the
        epoch; default now, by the system clock), not waiting for the disk."""
        when = time.time() if decided_at is None else decided_at
        self._run(lambda conn: self._insert_decisions(conn, decisions, when), False)

    def decision(self, decision_id: str) -> Decision | None:
        return self._run(lambda conn: self._select_decision(conn, decision_id), False)

    def record_feedback(
        self, events: Iterable[dict], refused: Iterable[tuple[dict, str]] = ()
    ) -> FeedbackResult:
        """Store feedback events durably; each needs ``event_id``, ``event``, ``occurred_at``
        (epoch seconds) and a ``decision_id`` or a ``customer_id`` (+ ``offer_id``).

        Idempotent on ``event_id``: an event already stored (by any writer) is a duplicate.
        Events the caller already ``refused`` (event, reason) and events that match no
        decision are kept in ``feedback_rejected`` with their reason, in the same commit. An
        event naming a decision proves its app got it (the id is only in the answer): a mark
        of undelivered on that decision is cleared, in the same commit."""
        now, rows, refused = time.time(), [], list(refused)
        for event in events:
            resolved = self._resolve(event)
            if isinstance(resolved, str):
                refused.append((event, resolved))
                continue
            rows.append((event["event_id"], event.get("decision_id"), *resolved, event["event"],
                         event.get("revenue"), event["occurred_at"], now))  # fmt: skip
        kept = [(now, e.get("event_id"), why, _json(e)) for e, why in refused]
        named = sorted({row[1] for row in rows if row[1]})  # decisions their app got

        def work(conn: Any) -> int:
            accepted = self._insert_feedback(conn, rows, kept)
            if named:
                self._clear_undelivered(conn, named)
            return accepted

        accepted = self._run(work, True)
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
        ids, start = list(customer_ids), now - window_days * 86400.0
        found = self._run(lambda conn: self._select_contacts(conn, ids, start, False), False)
        return contact_arrays(found, ids, list(offer_ids), now)

    def reserve_contacts(
        self,
        customer_ids: Sequence[str],
        offer_ids: Sequence[str],
        now: float,
        window_days: int,
        decide: Callable[[np.ndarray, np.ndarray], tuple[T, Decisions | None]],
    ) -> T:
        """Read the contacts, let ``decide(sends, days_since)`` choose, record the decisions
        it returns with its answer (decided at ``now``), all in one transaction holding the
        customers' locks; returns the answer.

        Contacts here also count offers decided in the window whose ``sent`` is not reported
        yet (reported by decision id, a send replaces its reservation) and that were not
        marked undelivered: what one request decided is a contact for the next, whichever
        writer it comes from, unless its caller never got it."""
        ids, offers, start = list(customer_ids), list(offer_ids), now - window_days * 86400.0

        def work(conn: Any) -> T:
            found = self._select_contacts(conn, ids, start, True)
            answer, logged = decide(*contact_arrays(found, ids, offers, now))
            if logged:
                self._insert_decisions(conn, logged, now)
            return answer

        return self._run(work, False, lock=ids)

    def mark_undelivered(self, decision_ids: Sequence[str], at: float | None = None) -> int:
        """Mark decisions whose caller never got them (disconnected, timed out) undelivered
        at ``at`` (default now); returns how many were marked. Idempotent: a decision marked
        already keeps its first time; unknown ids, and decisions that feedback names (their
        app got them), are left as they are."""
        ids, when = [str(i) for i in decision_ids], time.time() if at is None else at
        if not ids:
            return 0
        return self._run(lambda conn: self._mark_undelivered(conn, ids, when), False)

    def counts(self) -> dict[str, int]:
        return self._run(lambda conn: {t: self._count(conn, t) for t in TABLES}, False)

    def undelivered(self) -> int:
        """How many decisions are marked undelivered (the same SQL on every backend)."""
        sql = "SELECT COUNT(*) FROM decisions WHERE undelivered_at IS NOT NULL"
        return self._run(lambda conn: conn.execute(sql).fetchone()[0], False)

    # the primitives (see the class docstring)
    def _insert_decisions(self, conn: Any, decisions: Decisions, now: float) -> None:
        raise NotImplementedError

    def _select_decision(self, conn: Any, decision_id: str) -> Decision | None:
        raise NotImplementedError

    def _insert_feedback(self, conn: Any, rows: list[tuple], rejected: list[tuple]) -> int:
        raise NotImplementedError

    def _select_contacts(self, conn: Any, ids: list[str], start: float, reserved: bool) -> list:
        raise NotImplementedError

    def _mark_undelivered(self, conn: Any, ids: list[str], at: float) -> int:
        raise NotImplementedError

    def _clear_undelivered(self, conn: Any, ids: list[str]) -> int:
        raise NotImplementedError

    def _count(self, conn: Any, table: str) -> int:
        raise NotImplementedError


def contact_arrays(
    found: Iterable[tuple], ids: list[str], offers: list[str], now: float
) -> tuple[np.ndarray, np.ndarray]:
    """Sends in the window per customer ``(n,)`` and days since each offer ``(n, offers)``
    from rows (customer_id, offer_id, last time, sends in the window); ids may repeat."""
    sends, days = np.zeros(len(ids)), np.full((len(ids), len(offers)), np.nan)
    row_of = {c: i for i, c in enumerate(ids)}  # duplicates share the last row
    col_of = {o: j for j, o in enumerate(offers)}
    for customer, offer, last, recent in found:
        i = row_of[customer]
        sends[i] += recent
        if offer in col_of:
            days[i, col_of[offer]] = (now - last) / 86400.0
    index = np.array([row_of[c] for c in ids], dtype=np.intp)
    return sends[index], days[index]


def decision_row(row: Sequence) -> Decision:
    """A :class:`Decision` from the columns ``DECISION_COLUMNS`` (explored stored as 0/1)."""
    return Decision(*row[:4], bool(row[4]), *row[5:])


DECISION_COLUMNS = ("decision_id, customer_id, offer_id, propensity, explored, channel, "
                    "expected_value, models, features_as_of, policy, undelivered_at")  # fmt: skip


def _json(event: dict) -> str:
    return json.dumps(event, default=str)
