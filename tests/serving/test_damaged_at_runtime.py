"""Readiness is the truth (issue 15, point 2): a real ``bentoml serve`` whose SQLite store or
ledger is damaged, replaced or locked while it runs. Every answer is a 200 or a 503 naming the
file (never a 500, never a hang: each within ``BOUND`` seconds), ``/readyz`` says why, and the
service recovers once the file is sound again."""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
import uuid

import httpx
import pytest

from features.store import OnlineStore
from serving.client import LocalService

pytestmark = pytest.mark.slow

BOUND = 12.0  # s: the ledger's 5 s lock time-out, with room for a busy 2-core machine
ROUTES = ("readyz", "models", "decide", "batch_ids", "batch_filter", "feedback")


@pytest.fixture
def files(world, tmp_path):
    """A copy of the world's store and an empty ledger, for a service of this test only."""
    store = tmp_path / "online.sqlite"
    shutil.copy(world["folder"] / "store" / "online.sqlite", store)
    return store, tmp_path / "ledger.sqlite"


def service(world, tmp_path, store, ledger) -> LocalService:
    config = {"compile_cache": str(world["folder"] / "trees"), "reload_seconds": 0}
    return LocalService(store, ledger, models=world["folder"] / "export", config=config,
                        workdir=tmp_path / "service")  # fmt: skip


def ids(world, n: int = 50) -> list[str]:
    return world["vectors"]["customer_id"].astype(str).head(n).tolist()


def ask(url: str, route: str, customers: list[str]) -> tuple[int, float, str]:
    """(status, seconds, body) of one call of ``route``; a transport error (a hang past the
    client's time-out) fails the test."""
    event = {"event_id": uuid.uuid4().hex, "event": "opened", "customer_id": customers[0]}
    calls = {
        "readyz": ("GET", "/readyz", None),
        "models": ("GET", "/models", None),
        "decide": ("POST", "/decide", {"customer_ids": customers[:2]}),
        "batch_ids": ("POST", "/batch", {"customer_ids": customers[:5]}),
        "batch_filter": ("POST", "/batch", {"filter": {"limit": 5}}),
        "feedback": ("POST", "/feedback", {"events": [event]}),
    }
    method, path, body = calls[route]
    start = time.monotonic()
    response = httpx.request(method, url + path, json=body, timeout=BOUND + 10)
    return response.status_code, time.monotonic() - start, response.text


def answers(url: str, customers: list[str], routes=ROUTES) -> dict[str, tuple[int, float, str]]:
    return {route: ask(url, route, customers) for route in routes}


def assert_503_naming(found: dict, routes, name: str, also: str = "") -> None:
    """``routes`` answered 503 naming ``name`` (and ``also``), the others 200; all in time."""
    for route, (status, seconds, body) in found.items():
        assert seconds < BOUND, (route, seconds)
        wanted = 503 if route in routes else 200
        if route == "models":  # GET /models answers 200 with the reason in "error"
            assert status == 200 and (route not in routes or name in body), (route, body)
            continue
        assert status == wanted, (route, status, body[:500])
        if wanted == 503:
            assert name in body and also in body, (route, body[:500])


def wait_ready(url: str, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if httpx.get(f"{url}/readyz", timeout=BOUND).status_code == 200:
            return
        time.sleep(0.25)
    raise AssertionError(f"/readyz not 200 within {limit} s")


def test_a_store_without_model_columns_or_garbage_gives_503s_naming_it_then_recovers(
    world, tmp_path, files
):
    store, ledger = files
    customers = ids(world)
    vectors, end, label = world["vectors"], world["tables"].end, world["label"]
    with service(world, tmp_path, store, ledger) as running:
        assert_503_naming(answers(running.url, customers), (), "-")
        dropped = [c for c in vectors.columns if c != "customer_id"][:3]
        OnlineStore(store).materialize(vectors.drop(columns=dropped), end, label)
        found = answers(running.url, customers)
        store_routes = ("readyz", "models", "decide", "batch_ids", "batch_filter")
        assert_503_naming(found, store_routes, str(store), also=dropped[0])
        assert "lifecycle features materialize" in found["decide"][2]

        for path in (store, store.with_name(store.name + "-wal")):  # garbage, while it runs
            if path.exists():
                path.write_bytes(os.urandom(path.stat().st_size))
        found = answers(running.url, customers)
        assert_503_naming(found, store_routes, str(store), also="damaged")
        assert "re-materialise" in found["readyz"][2]

        store.rename(store.with_name("damaged.sqlite"))  # the fix the message names
        for suffix in ("-wal", "-shm"):
            store.with_name(store.name + suffix).unlink(missing_ok=True)
        OnlineStore(store).materialize(vectors, end, label)
        wait_ready(running.url)
        assert_503_naming(answers(running.url, customers), (), "-")


def fill(url: str, customers: list[str]) -> None:
    """Decisions and feedback enough for the ledger to span many pages."""
    for _ in range(10):
        assert httpx.post(f"{url}/decide", json={"customer_ids": customers},
                          timeout=BOUND).status_code == 200  # fmt: skip
    events = [{"event_id": f"fill-{i}", "event": "opened", "customer_id": customers[i % 50]}
              for i in range(3000)]  # fmt: skip
    assert httpx.post(f"{url}/feedback", json={"events": events}, timeout=BOUND).status_code == 200


def test_a_ledger_damaged_while_serving_gives_503s_naming_it_never_500(world, tmp_path, files):
    store, ledger = files
    customers = ids(world)
    with service(world, tmp_path, store, ledger) as running:
        fill(running.url, customers)
        time.sleep(2)  # the background checkpoint copies the log into the file
        with ledger.open("r+b") as f:  # the header kept: pages damaged, not a foreign file
            f.seek(100)
            f.write(os.urandom(ledger.stat().st_size - 100))
        seen = [ask(running.url, route, customers) for _ in range(25)
                for route in ("feedback", "decide")]  # fmt: skip
        assert all(status in (200, 503) and seconds < BOUND for status, seconds, _ in seen)
        failed = [body for status, _, body in seen if status == 503]
        assert failed and all(str(ledger) in body and "damaged" in body for body in failed)
        found = answers(running.url, customers, ("readyz", "models", "decide", "feedback"))
        assert_503_naming(found, ("readyz", "models", "decide", "feedback"), str(ledger),
                          also="lifecycle ledger repair")  # fmt: skip


def test_a_ledger_locked_by_another_process_gives_a_bounded_wait_then_503s(world, tmp_path, files):
    store, ledger = files
    customers = ids(world)
    with service(world, tmp_path, store, ledger) as running:
        holder = sqlite3.connect(ledger, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # the write lock, held (a stuck tool, say)
        try:
            found = answers(running.url, customers, ("readyz", "decide", "feedback",
                                                     "batch_filter"))  # fmt: skip
            assert_503_naming(found, ("readyz", "decide", "feedback", "batch_filter"),
                              str(ledger), also="locked")  # fmt: skip
            assert all(seconds > 1.5 for _, seconds, _ in found.values())  # it did wait
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        wait_ready(running.url)
        assert_503_naming(answers(running.url, customers), (), "-")
