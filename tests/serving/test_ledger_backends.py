"""The feedback ledger behind one interface (SQLite file, PostgreSQL URL): contact reservations
that hold a cap of 1 under concurrent writers, idempotent feedback from many writers, what
training reads, where a ledger lives, and a PostgreSQL server that is down or restarted."""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
import pytest

from serving.ledger import Decisions, LedgerUnavailable, open_ledger, read_tables
from serving.preflight import problems
from training.ledger_exposures import read_ledger
from training.ledger_tables import describe, parse_location
from training.monitoring.ledger_health import ledger_health

DAY = 86400.0
NOW = 1_000 * DAY
DOWN = "postgresql://lifecycle:s3cret@127.0.0.1:9/lifecycle"  # port 9: nothing listens


def offer_to_all(prefix: str, offer: str = "up", cap: int = 1):
    """A ``decide`` for ``reserve_contacts``: the offer to every customer under the cap."""

    def decide(ids):
        def choose(sends: np.ndarray, days: np.ndarray):
            chosen = [offer if s < cap else None for s in sends]
            ids_ = [f"{prefix}-{i}" for i in range(len(ids))]
            n = len(ids)
            return chosen, Decisions(ids_, ids, chosen, [1.0] * n, [False] * n, None, None,
                                     "{}", None)  # fmt: skip

        return choose

    return decide


def run_together(writer, n: int, seconds: float) -> None:
    """``writer(k)`` for k in 0..n-1, each on its own thread; wait at most ``seconds`` each."""
    threads = [threading.Thread(target=writer, args=(k,)) for k in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds)


def test_a_reserved_offer_is_a_contact_until_its_send_replaces_it(ledger_location):
    ledger = open_ledger(ledger_location)
    decide = offer_to_all("first")
    chosen = ledger.reserve_contacts(["c1", "c2"], ["up", "xs"], NOW, 30, decide(["c1", "c2"]))
    assert chosen == ["up", "up"]
    sends, days = ledger.reserve_contacts(["c1", "c2", "c3"], ["up", "xs"], NOW + DAY, 30,
                                          lambda s, d: ((s, d), None))  # fmt: skip
    np.testing.assert_array_equal(sends, [1, 1, 0])
    np.testing.assert_allclose(days[:2, 0], [1.0, 1.0])
    assert np.isnan(days[:, 1]).all() and np.isnan(days[2]).all()
    # reported sent (by decision id): the send replaces the reservation, never counted twice
    ledger.record_feedback([{"event_id": "s1", "event": "sent", "decision_id": "first-0",
                             "occurred_at": NOW + 2 * DAY}])  # fmt: skip
    sends, days = ledger.reserve_contacts(["c1"], ["up"], NOW + 3 * DAY, 30,
                                          lambda s, d: ((s, d), None))  # fmt: skip
    assert sends.tolist() == [1] and days[0, 0] == pytest.approx(1.0)
    assert ledger.contacts(["c1", "c2"], ["up"], NOW + 3 * DAY, 30)[0].tolist() == [1, 0]
    # outside the window a reservation no longer counts
    later = ledger.reserve_contacts(["c2"], ["up"], NOW + 31 * DAY, 30, lambda s, d: (s, None))
    assert later.tolist() == [0]


def test_a_cap_of_one_holds_under_eight_concurrent_writers(ledger_location):
    """8 threads (each its own connection: for PostgreSQL, as many sessions as 8 replicas'
    requests) decide for the same 20 customers at once: each customer gets one offer."""
    ledger = open_ledger(ledger_location)
    customers = [f"c{i}" for i in range(20)]
    ledger.reserve_contacts(["warm-up"], ["up"], NOW, 30, lambda s, d: (None, None))
    start, offered, errors = threading.Barrier(8), [], []

    def writer(k: int) -> None:
        try:
            start.wait()
            for r, batch in enumerate((customers[:10], customers[5:], customers)):
                chosen = ledger.reserve_contacts(
                    batch, ["up"], NOW, 30, offer_to_all(f"w{k}-{r}")(batch)
                )
                offered.extend(c for c, o in zip(batch, chosen, strict=True) if o)
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    run_together(writer, 8, 60)
    assert not errors
    assert sorted(offered) == sorted(customers)  # exactly one offer each
    sends, _ = ledger.contacts(customers, ["up"], NOW, 30)  # none reported sent yet
    assert sends.sum() == 0
    assert ledger.counts()["decisions"] == 8 * (10 + 15 + 20)  # every decision logged


def test_two_large_reservations_at_once_fit_the_servers_lock_table(ledger_location):
    """Two replicas' /batch audiences of 12,000 customers reserved at the same time: with a
    lock per customer, PostgreSQL's shared lock table (max_locks_per_transaction x
    max_connections: 64 x 200 here) ran out ("out of shared memory") and both failed."""
    ledger = open_ledger(ledger_location)
    ledger.reserve_contacts(["warm-up"], ["up"], NOW, 30, lambda s, d: (None, None))
    start, chosen, errors = threading.Barrier(2), {}, []

    def writer(k: int) -> None:
        batch = [f"big{k}-{i}" for i in range(12_000)]
        try:
            start.wait()
            chosen[k] = ledger.reserve_contacts(batch, ["up"], NOW, 30,
                                                offer_to_all(f"b{k}")(batch))  # fmt: skip
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    run_together(writer, 2, 120)
    assert not errors, errors
    assert [sum(o == "up" for o in chosen[k]) for k in range(2)] == [12_000, 12_000]
    assert ledger.counts()["decisions"] == 24_000


def test_duplicate_feedback_from_many_writers_is_acknowledged_once(ledger_location):
    ledger = open_ledger(ledger_location)
    events = [{"event_id": f"e{i}", "event": "sent", "customer_id": f"c{i % 7}",
               "offer_id": "up", "occurred_at": NOW} for i in range(50)]  # fmt: skip
    start, accepted, duplicates = threading.Barrier(8), [], []

    def writer() -> None:
        start.wait()
        result = ledger.record_feedback(events)
        accepted.append(result.accepted)
        duplicates.append(result.duplicates)

    run_together(lambda k: writer(), 8, 60)
    assert sum(accepted) == 50 and sum(duplicates) == 7 * 50
    assert ledger.counts()["feedback"] == 50


def test_training_reads_the_same_ledger_from_either_backend(ledger_location, tmp_path):
    """What ``lifecycle train --ledger`` and ``lifecycle monitor --ledger`` read, compared
    with the same records in a SQLite file."""
    frames = []
    for location in (ledger_location, str(tmp_path / "reference.sqlite")):
        ledger = open_ledger(location)
        ledger.record_decisions(
            Decisions(
                ["d1", "d2"],
                ["c1", "c2"],
                ["up", None],
                [0.9, 0.1],
                [False, True],
                None,
                "email",
                "{}",
                None,
            ),
            NOW,
        )
        ledger.record_feedback([
            {"event_id": "s1", "event": "sent", "decision_id": "d1", "occurred_at": NOW + 60},
            {"event_id": "x", "event": "sent", "decision_id": "nope", "occurred_at": NOW},
        ])  # fmt: skip
        health = ledger_health(location, pd.Timestamp(NOW + DAY, unit="s", tz="UTC"), 7)
        frames.append((*read_ledger(location), health.summary))
    (decisions, sent, summary), (want_decisions, want_sent, want_summary) = frames
    pd.testing.assert_frame_equal(decisions, want_decisions, check_dtype=False)
    pd.testing.assert_frame_equal(sent, want_sent, check_dtype=False)
    assert summary == pytest.approx(want_summary, nan_ok=True)
    assert summary["sent_share"] == 1.0 and summary["decisions"] == 2.0


def test_where_a_ledger_lives_is_read_from_a_path_or_a_url(tmp_path):
    assert parse_location(tmp_path / "l.sqlite") == ("sqlite", str(tmp_path / "l.sqlite"))
    assert parse_location("sqlite:///store/l.sqlite") == ("sqlite", "store/l.sqlite")
    assert parse_location("sqlite:////abs/l.sqlite") == ("sqlite", "/abs/l.sqlite")
    assert parse_location("postgres://u@h:1/db") == ("postgresql", "postgresql://u@h:1/db")
    assert describe(DOWN) == "postgresql://lifecycle:***@127.0.0.1:9/lifecycle"
    with pytest.raises(ValueError, match=r"unknown backend 'mysql' in 'mysql://u:\*\*\*@h/db'"):
        parse_location("mysql://u:pw@h/db")
    assert type(open_ledger(f"sqlite:///{tmp_path}/u.sqlite")).__name__ == "FeedbackLedger"


def test_a_server_that_is_down_is_named_without_its_password(tmp_path):
    ledger = open_ledger(DOWN)  # connects on first use: a worker starts while it is down
    with pytest.raises(LedgerUnavailable) as caught:
        ledger.contacts(["c1"], ["up"], NOW, 30)
    message = str(caught.value)
    assert "postgresql://lifecycle:***@127.0.0.1:9/lifecycle is unavailable" in message
    assert "s3cret" not in message and caught.value.error_code == 503
    with pytest.raises(ConnectionError, match=r"\*\*\*@127.0.0.1:9"):
        read_tables(DOWN, {"d": "SELECT 1"})
    (found,) = problems(tmp_path / "online.sqlite", DOWN)  # lifecycle serve stops there
    assert "is unavailable" in found and "s3cret" not in found


def test_a_restarted_connection_is_replaced_and_preflight_checks_the_tables(
    postgres_db_url, tmp_path
):
    import psycopg

    ledger = open_ledger(postgres_db_url)
    assert ledger.counts() == {"decisions": 0, "feedback": 0, "feedback_rejected": 0}
    with psycopg.connect(postgres_db_url, autocommit=True) as admin:  # as a server restart
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                      "application_name = 'lifecycle-ledger'")  # fmt: skip
        time.sleep(0.2)
        ledger.record_feedback([{"event_id": "e1", "event": "sent", "customer_id": "c1",
                                 "offer_id": "up", "occurred_at": NOW}])  # fmt: skip
        assert ledger.counts()["feedback"] == 1
        assert problems(tmp_path / "online.sqlite", postgres_db_url) == []
        admin.execute("DROP TABLE feedback_rejected")
    (found,) = problems(tmp_path / "online.sqlite", postgres_db_url)
    assert "lacks the tables ['feedback_rejected']" in found
