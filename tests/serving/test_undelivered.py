"""Decisions whose caller left after they were logged (issue 15, point 4): marked undelivered
in the ledger on each backend (kept, but no contact and no exposure), ledgers of the earlier
schema upgraded or read as they are, and ``serving.traffic`` marking them when a request ends
undelivered (disconnect, timeout, error), in process. Through a real ``bentoml serve``:
test_undelivered_http.py."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time

import anyio.to_thread
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from serving.cli_ledger import app as ledger_cli
from serving.cli_ledger import copy_readable
from serving.ledger import Decisions, FeedbackLedger, open_ledger
from serving.traffic import RequestLog, decisions_logged, patch_bentoml_timeout
from training.ledger_exposures import ledger_exposures, read_ledger

DAY = 86400.0
NOW = 1_000 * DAY
OLD_DECISIONS = """CREATE TABLE decisions (
    decision_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, offer_id TEXT,
    propensity {real} NOT NULL, explored INTEGER NOT NULL, channel TEXT,
    expected_value {real}, models TEXT NOT NULL, features_as_of TEXT,
    decided_at {real} NOT NULL)"""  # the first release's table: no policy, no undelivered_at


def three(ledger, at: float = NOW) -> None:
    """d1: offer up to c1, d2: up to c2, d3: no offer to c3."""
    ledger.record_decisions(Decisions(["d1", "d2", "d3"], ["c1", "c2", "c3"], ["up", "up", None],
                                      [0.9, 0.9, 0.1], [False] * 3, None, "email", "{}", None),
                            at)  # fmt: skip


# ---- the ledger, on each backend (ledger_location: tests/ledgers.py) ------------------


def test_marking_is_kept_idempotent_and_counted(ledger_location):
    ledger = open_ledger(ledger_location)
    three(ledger)
    assert ledger.mark_undelivered(["d1", "d3", "unknown"], at=NOW + 1) == 2
    assert ledger.mark_undelivered(["d1"], at=NOW + 9) == 0  # marked once, its first time kept
    assert ledger.mark_undelivered([]) == 0
    assert ledger.decision("d1").undelivered_at == NOW + 1
    assert ledger.decision("d2").undelivered_at is None
    assert ledger.undelivered() == 2
    assert ledger.counts()["decisions"] == 3  # nothing is lost


def test_an_undelivered_offer_reserves_no_contact_but_a_reported_send_still_counts(
    ledger_location,
):
    ledger = open_ledger(ledger_location)
    three(ledger)
    ledger.mark_undelivered(["d1"], at=NOW + 1)
    sends, days = ledger.reserve_contacts(["c1", "c2"], ["up"], NOW + DAY, 30,
                                          lambda s, d: ((s, d), None))  # fmt: skip
    np.testing.assert_array_equal(sends, [0, 1])  # c1's decision never reached anyone
    assert np.isnan(days[0, 0]) and days[1, 0] == pytest.approx(1.0)  # no cooldown for c1
    ledger.record_feedback([{"event_id": "s1", "event": "sent", "decision_id": "d1",
                             "occurred_at": NOW + 60}])  # fmt: skip
    sends, _ = ledger.reserve_contacts(["c1"], ["up"], NOW + DAY, 30, lambda s, d: ((s, d), None))
    np.testing.assert_array_equal(sends, [1])  # an app reported it sent: it was a contact


def test_feedback_naming_a_decision_proves_it_was_delivered(ledger_location):
    """Only the answer carries a decision id: feedback naming one clears its mark (in the
    same commit), and a decision with feedback is never marked."""
    ledger = open_ledger(ledger_location)
    three(ledger)
    ledger.mark_undelivered(["d1", "d2"], at=NOW + 1)
    ledger.record_feedback([{"event_id": "o1", "event": "opened", "decision_id": "d1",
                             "occurred_at": NOW + 60}])  # fmt: skip
    assert ledger.decision("d1").undelivered_at is None  # its app got it after all
    assert ledger.decision("d2").undelivered_at == NOW + 1  # no word from its app
    assert ledger.mark_undelivered(["d1"], at=NOW + 99) == 0  # feedback names it: delivered
    assert ledger.decision("d1").undelivered_at is None and ledger.undelivered() == 1


def test_training_reads_only_delivered_decisions(ledger_location):
    ledger = open_ledger(ledger_location)
    three(ledger)
    ledger.mark_undelivered(["d2", "d3"])
    decisions, _ = read_ledger(ledger_location)
    assert decisions["decision_id"].tolist() == ["d1"]


def test_a_sqlite_ledger_of_the_earlier_schema_is_read_as_it_is_and_upgraded_on_open(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute(OLD_DECISIONS.format(real="REAL"))
        conn.execute("INSERT INTO decisions VALUES ('d0', 'c0', 'up', 0.9, 0, NULL, NULL, '{}', "
                     "NULL, ?)", (NOW,))  # fmt: skip
        conn.execute("CREATE TABLE feedback (event_id TEXT PRIMARY KEY, decision_id TEXT, "
                     "customer_id TEXT NOT NULL, offer_id TEXT, event TEXT NOT NULL, revenue "
                     "REAL, occurred_at REAL NOT NULL, received_at REAL NOT NULL)")  # fmt: skip
    decisions, _ = read_ledger(path)  # a tool reads it without changing it: all delivered
    assert decisions["decision_id"].tolist() == ["d0"]
    assert "undelivered_at" not in _columns(path)
    repaired = tmp_path / "repaired.sqlite"  # `lifecycle ledger repair` copies its rows
    FeedbackLedger(repaired).close()
    assert copy_readable(path, repaired)["decisions"] == (1, 0)
    for location in (path, repaired):
        ledger = open_ledger(location)  # the service (or `ledger check`) adds the columns
        assert {"policy", "undelivered_at"} <= _columns(location)
        assert ledger.decision("d0").policy == "model"
        assert ledger.mark_undelivered(["d0"]) == 1 and ledger.undelivered() == 1


def test_a_postgresql_ledger_of_the_earlier_schema_is_upgraded_on_first_use(postgres_db_url):
    import psycopg

    from serving.ledger_postgres import _DDL

    with psycopg.connect(postgres_db_url, autocommit=True) as admin:
        admin.execute(OLD_DECISIONS.format(real="DOUBLE PRECISION"))
        for ddl in _DDL[1:3]:  # feedback and feedback_rejected: unchanged
            admin.execute(ddl)
        admin.execute("INSERT INTO decisions VALUES ('d0', 'c0', 'up', 0.9, 0, NULL, NULL, '{}', "
                      "NULL, %s)", (NOW,))  # fmt: skip
    assert read_ledger(postgres_db_url)[0]["decision_id"].tolist() == ["d0"]  # as it is
    ledger = open_ledger(postgres_db_url)
    assert ledger.mark_undelivered(["d0"], at=NOW + 1) == 1  # the columns were added first
    assert ledger.decision("d0").policy == "model"
    assert read_ledger(postgres_db_url)[0].empty


def _columns(path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[1] for row in conn.execute("PRAGMA table_info(decisions)")}


def test_ledger_check_shows_the_undelivered_decisions(tmp_path):
    path = tmp_path / "ledger.sqlite"
    ledger = FeedbackLedger(path)
    three(ledger)
    ledger.mark_undelivered(["d1"])
    ledger.close()
    result = CliRunner().invoke(ledger_cli, ["check", str(path)])
    assert result.exit_code == 0, result.output
    assert "decisions 3" in result.output and "1 decision(s) marked undelivered" in result.output


# ---- the exposures export ---------------------------------------------------------------


def test_undelivered_decisions_are_no_exposures(tmp_path):
    """d1 (offer, sent) and d3 (no offer) count; d4 (no offer) and d5 (offer, never
    reported) were marked undelivered: neither counts, whether sends are required or not;
    d2 was marked, then its app reported it sent: delivered after all, it counts."""
    path = tmp_path / "ledger.sqlite"
    ledger = FeedbackLedger(path)
    t0 = pd.Timestamp("2026-03-01", tz="UTC").timestamp()
    ids = ["d1", "d2", "d3", "d4", "d5"]
    ledger.record_decisions(Decisions(ids, ["a", "b", "c", "d", "e"], ["x", "x", None, None, "x"],
                                      [0.9, 0.9, 0.1, 0.1, 0.9], [False] * 5, None, "email",
                                      "{}", None), t0)  # fmt: skip
    ledger.mark_undelivered(["d2", "d4", "d5"])
    ledger.record_feedback([{"event_id": f"s{d}", "event": "sent", "decision_id": d,
                             "occurred_at": t0 + 60} for d in ("d1", "d2")])  # fmt: skip
    bought = pd.to_datetime([t0 + DAY] * 3, unit="s", utc=True)  # a, b and e convert
    events = pd.DataFrame({"customer_id": ["a", "b", "e"], "role": ["purchase"] * 3,
                           "amount": [5.0, 7.0, 9.0], "timestamp": bought})  # fmt: skip
    for require_sent in (True, False):
        found = ledger_exposures(path, events, 14, as_of=pd.Timestamp("2026-06-01", tz="UTC"),
                                 require_sent=require_sent)  # fmt: skip
        assert sorted(found["exposure_id"]) == ["ledger-d1", "ledger-d2", "ledger-d3"], require_sent


# ---- serving.traffic: marking when a request ends undelivered (in process) -------------


class Marks:
    """A ``mark`` callable recording what it was asked to mark (from any thread)."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail
        self.done = threading.Event()

    def __call__(self, ids) -> int:
        self.calls.append(list(ids))
        self.done.set()
        if self.fail:
            raise ConnectionError("the ledger's server is down")
        return len(ids)


def handler(marks: Marks, before: float = 0.0, after: float = 0.0, status: int = 200):
    """An ASGI app like a decision API: the body read, then, in a worker thread (the request's
    context copied, as BentoML runs a sync API), ``before`` s, two decisions logged,
    ``after`` s; then the answer (``status``; 0: raise instead)."""

    def work() -> None:
        time.sleep(before)
        decisions_logged(["d1", "d2"], marks)
        time.sleep(after)

    async def app(scope, receive, send) -> None:
        await receive()
        await anyio.to_thread.run_sync(work)
        if not status:
            raise RuntimeError("a bug after the decisions were logged")
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


def body_then_leave(after: float):
    """An ASGI receive: the whole body, then a disconnect ``after`` s later."""
    parts = iter([{"type": "http.request", "body": b"{}", "more_body": False}])

    async def receive() -> dict:
        for part in parts:
            return part
        await asyncio.sleep(after)
        return {"type": "http.disconnect"}

    return receive


async def call(app, receive) -> dict:
    out: dict = {"status": None}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            out["status"] = message["status"]

    await app({"type": "http", "method": "POST", "path": "/decide", "headers": []}, receive,
              send)  # fmt: skip
    return out


def wait_for(event: threading.Event, seconds: float = 5.0) -> bool:
    return event.wait(seconds)


def test_a_caller_who_leaves_after_the_decisions_were_logged_gets_them_marked():
    marks = Marks()
    asyncio.run(call(RequestLog(handler(marks, after=0.3)), body_then_leave(0.1)))
    assert marks.calls == [["d1", "d2"]]  # marked before the request ended


def test_a_delivered_answer_marks_nothing():
    marks = Marks()
    answered = asyncio.run(call(RequestLog(handler(marks)), body_then_leave(5)))
    assert answered["status"] == 200 and marks.calls == []


def test_decisions_logged_after_the_caller_left_are_marked_by_the_handler_at_once():
    """The caller leaves between the handler's last check and its ledger write."""
    marks = Marks()
    asyncio.run(call(RequestLog(handler(marks, before=0.3)), body_then_leave(0.05)))
    assert marks.calls == [["d1", "d2"]]


def test_decisions_of_a_failed_request_are_marked():
    marks = Marks()
    answered = asyncio.run(call(RequestLog(handler(marks, status=0)), body_then_leave(5)))
    assert answered["status"] == 500 and marks.calls == [["d1", "d2"]]
    marks = Marks()
    asyncio.run(call(RequestLog(handler(marks, status=503)), body_then_leave(5)))
    assert marks.calls == [["d1", "d2"]]


@pytest.mark.parametrize(("before", "after"), [(0.0, 0.4), (0.3, 0.0)])
def test_a_timed_out_request_gets_its_decisions_marked(before, after):
    """BentoML's traffic timeout (504 at 0.1 s) cancels the request but not its handler's
    thread: decisions logged before the timeout are marked as the request ends, those
    logged after it by the handler itself."""
    from bentoml._internal.server.http.traffic import TimeoutMiddleware

    patch_bentoml_timeout()
    marks = Marks()
    app = TimeoutMiddleware(RequestLog(handler(marks, before, after)), timeout=0.1)
    answered = asyncio.run(call(app, body_then_leave(5)))
    assert answered["status"] == 504
    assert wait_for(marks.done) and marks.calls == [["d1", "d2"]]


def test_a_failure_to_mark_is_a_warning_naming_the_decisions(caplog):
    marks = Marks(fail=True)
    with caplog.at_level(logging.INFO, logger="serving.requests"):
        asyncio.run(call(RequestLog(handler(marks, after=0.3)), body_then_leave(0.1)))
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "could not be marked undelivered" in warning.getMessage()
    assert "d1 d2" in warning.getMessage() and "server is down" in warning.getMessage()
