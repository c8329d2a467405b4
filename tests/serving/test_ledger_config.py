"""The feedback ledger (idempotent, durable, contacts), the service config and the token
middleware, without a server."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref

import numpy as np
import pytest

from serving.config import ServiceConfig, load_config
from serving.ledger import Decision, Decisions, FeedbackLedger, open_ledger
from serving.middleware import TokenAuth
from serving.state import settle_heap

# ledger_location (tests/ledgers.py): the ledger tests run on each backend
DAY = 86400.0


def decision(i: int, customer: str = "c1", offer: str | None = "up") -> Decisions:
    return Decisions([f"d{i}"], [customer], [offer], [0.9], [False], [1.0], None, "{}", None)


def test_feedback_is_idempotent_on_event_id_and_survives_a_reopen(ledger_location):
    ledger = open_ledger(ledger_location)
    ledger.record_decisions(decision(1))
    event = {"event_id": "e1", "event": "sent", "decision_id": "d1", "occurred_at": time.time()}
    first = ledger.record_feedback([event, {**event, "event_id": "e2", "event": "converted",
                                            "revenue": 12.5}])  # fmt: skip
    again = ledger.record_feedback([event])
    assert (first.accepted, first.duplicates, again.accepted, again.duplicates) == (2, 0, 0, 1)
    reopened = open_ledger(ledger_location)  # another process would see the same
    assert reopened.counts() == {"decisions": 1, "feedback": 2, "feedback_rejected": 0}


def test_decisions_are_written_from_columns_and_read_back_as_rows(ledger_location):
    ledger = open_ledger(ledger_location)
    for channel in (None, "email"):
        logged = Decisions([f"{channel}1", f"{channel}2"], ["c1", "c2"], ["up", None],
                           [0.9, 0.05], [False, True], [4.0, 0.0], channel, '{"churn": "7"}',
                           "2025-01-01T00:00:00+00:00")  # fmt: skip
        ledger.record_decisions(logged)
        rows = list(logged)
        assert rows[1] == Decision(f"{channel}2", "c2", None, 0.05, True, channel, 0.0,
                                   '{"churn": "7"}', "2025-01-01T00:00:00+00:00")  # fmt: skip
        assert [ledger.decision(d.decision_id) for d in rows] == rows
        assert type(ledger.decision(rows[0].decision_id).explored) is bool
    assert ledger.counts()["decisions"] == 4


def many(start: int, n: int = 2000) -> Decisions:
    ids = [f"d{i}" for i in range(start, start + n)]
    return Decisions(ids, ids, ["up"] * n, [0.9] * n, [False] * n, [1.0] * n, None, "{}" * 400,
                     None)  # fmt: skip


def test_background_checkpoints_move_the_log_into_the_database(tmp_path):
    """With ``checkpoint_seconds`` no commit checkpoints (the log grows past SQLite's
    1,000-page threshold untouched) until the background thread copies it."""
    quiet = FeedbackLedger(tmp_path / "quiet.sqlite", checkpoint_seconds=3600)
    background = FeedbackLedger(tmp_path / "bg.sqlite", checkpoint_seconds=0.2)
    for ledger in (quiet, background):
        pragma = ledger._conn("NORMAL").execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        assert pragma == 0
        for k in range(4):
            ledger.record_decisions(many(k * 2000))
    wal = (tmp_path / "quiet.sqlite-wal").stat().st_size
    assert wal > 1000 * 4096 and (tmp_path / "quiet.sqlite").stat().st_size < wal / 10
    deadline = time.time() + 10
    while (tmp_path / "bg.sqlite").stat().st_size < wal / 2 and time.time() < deadline:
        time.sleep(0.1)
    assert (tmp_path / "bg.sqlite").stat().st_size >= wal / 2  # copied into the database
    assert background.counts()["decisions"] == 8000
    quiet.close(), background.close()


def test_unmatched_and_refused_events_are_kept_with_their_reason(ledger_location):
    ledger = open_ledger(ledger_location)
    ledger.record_decisions(decision(1))
    now = time.time()
    result = ledger.record_feedback(
        [{"event_id": "e1", "event": "sent", "decision_id": "nope", "occurred_at": now},
         {"event_id": "e2", "event": "sent", "decision_id": "d1", "customer_id": "c9",
          "occurred_at": now}],
        refused=[({"event_id": "e3"}, "needs decision_id")],
    )  # fmt: skip
    assert result.accepted == 0
    assert [r["event_id"] for r in result.rejected] == ["e3", "e1", "e2"]
    assert "unknown to this ledger" in result.rejected[1]["error"]
    assert "customer_id 'c9' does not match decision 'd1'" in result.rejected[2]["error"]
    assert ledger.counts()["feedback_rejected"] == 3


def test_contacts_count_sends_in_the_window_and_days_since_each_offer(ledger_location):
    ledger = open_ledger(ledger_location)
    now = 1_000 * DAY
    sends = [("c1", "up", now - 2 * DAY), ("c1", "up", now - 40 * DAY), ("c1", "xs", now - DAY),
             ("c2", "xs", now - 50 * DAY)]  # fmt: skip
    ledger.record_feedback(
        [{"event_id": f"e{i}", "event": "sent", "customer_id": c, "offer_id": o, "occurred_at": t}
         for i, (c, o, t) in enumerate(sends)]
        + [{"event_id": "open", "event": "opened", "customer_id": "c1", "offer_id": "up",
            "occurred_at": now}]
    )  # fmt: skip
    count, days = ledger.contacts(["c1", "c3", "c2", "c1"], ["up", "xs", "wb"], now, 30)
    np.testing.assert_array_equal(count, [2, 0, 0, 2])
    np.testing.assert_allclose(days[0], [2.0, 1.0, np.nan])
    assert np.isnan(days[1]).all()
    np.testing.assert_allclose(days[2], [np.nan, 50.0, np.nan])


def test_config_from_env_overrides_yaml_and_names_bad_fields(tmp_path):
    path = tmp_path / "service.yaml"
    path.write_text("store: s.sqlite\npolicy:\n  contact_cap: 5\n")
    cfg = load_config({"LIFECYCLE_SERVICE_CONFIG": str(path), "LIFECYCLE_EXPLORATION": "0.1"})
    assert cfg.store.name == "s.sqlite" and cfg.policy.contact_cap == 5 and cfg.exploration == 0.1
    path.write_text("stor: s.sqlite\n")
    with pytest.raises(ValueError, match=r"service.yaml: invalid ServiceConfig: stor"):
        load_config({"LIFECYCLE_SERVICE_CONFIG": str(path)})
    with pytest.raises(ValueError, match="churn_bands must satisfy"):
        ServiceConfig(policy={"churn_bands": (0.6, 0.3)})
    with pytest.raises(ValueError, match=r"LIFECYCLE_EXPLORATION.*less than or equal to 0.5"):
        load_config({"LIFECYCLE_EXPLORATION": "0.9"})


def call(app, path: str, headers: dict[str, str]) -> int:
    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "path": path,
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}  # fmt: skip
    asyncio.run(app(scope, None, send))
    return sent[0]["status"]


async def ok(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/decide", {}, 401),
        ("/decide", {"Authorization": "Bearer wrong"}, 401),
        ("/decide", {"Authorization": "Bearer s3cret"}, 200),
        ("/decide", {"X-API-Key": "s3cret"}, 200),
        ("/livez", {}, 200),
        ("/readyz", {}, 200),
        ("/metrics", {}, 200),
    ],
)
def test_token_middleware(path, headers, status):
    assert call(TokenAuth(ok, token="s3cret"), path, headers) == status


def test_an_empty_token_means_open_and_a_service_not_started_refuses():
    assert call(TokenAuth(ok, token=""), "/decide", {}) == 200
    assert call(TokenAuth(ok), "/decide", {"Authorization": "Bearer x"}) == 401


def test_settle_heap_collects_cycles_then_freezes_what_lives():
    class Node:
        pass

    cycle = Node()
    cycle.self = cycle
    gone = weakref.ref(cycle)
    del cycle
    settle_heap()
    assert gone() is None and gc.get_freeze_count() > 0


def test_the_feedback_window_is_configured_from_the_environment():
    config = load_config({"LIFECYCLE_FEEDBACK_MAX_AGE_DAYS": "30",
                          "LIFECYCLE_FEEDBACK_MAX_FUTURE_SECONDS": "0"})  # fmt: skip
    assert config.feedback_max_age_days == 30 and config.feedback_max_future_seconds == 0
    assert ServiceConfig().feedback_max_age_days == 400
    with pytest.raises(ValueError, match="feedback_max_age_days"):
        load_config({"LIFECYCLE_FEEDBACK_MAX_AGE_DAYS": "-1"})
