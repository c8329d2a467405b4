"""Failure behaviour (issue 16, point 6): a real ``bentoml serve`` on a Redis online store and
a PostgreSQL ledger, under a bounded load, while one server is stopped for a few seconds and
started again. Every answer is a 200 or a 503 naming the backend that is down (never a 500,
never a hang), ``/readyz`` says so meanwhile and recovers by itself, and every feedback event
acknowledged with a 200 is in the ledger afterwards.

The servers are this module's own (``dedicated_services``): other tests use the shared ones
concurrently. Redis persists its data (as a production server would), so a restart keeps the
store; PostgreSQL is stopped as if it crashed (``pg_ctl stop -m immediate``).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx
import psycopg
import pytest

from features.store import open_store
from serving.client import LocalService

pytestmark = pytest.mark.slow

CLIENT_TIMEOUT = 10.0  # s: longer than this is a hang
DOWN_SECONDS = 4.0  # how long a server stays stopped
RECOVERY_LIMIT = 30.0  # s from the restart until /readyz must be 200 again
PASSWORD = "s3cret-never-shown"  # trust auth ignores it; messages must elide it


@dataclass
class Load:
    """A bounded load on a running service: one thread posting ``/decide``, one posting
    ``/feedback`` (a new event id each), one polling ``/readyz``; every answer is kept as
    (monotonic time, status, body) per route, and a transport error (a time-out) too."""

    url: str
    ids: list[str]
    seen: dict[str, list[tuple[float, int, str]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    acknowledged: list[str] = field(default_factory=list)  # event ids answered 200
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Load:
        for name, pause in (("decide", 0.03), ("feedback", 0.03), ("readyz", 0.2)):
            self.seen[name] = []
            thread = threading.Thread(target=self._loop, args=(name, pause), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(CLIENT_TIMEOUT + 5)

    def _loop(self, name: str, pause: float) -> None:
        with httpx.Client(base_url=self.url, timeout=CLIENT_TIMEOUT) as client:
            n = 0
            while not self._stop.is_set():
                n += 1
                try:
                    self._once(client, name, n)
                except httpx.HTTPError as err:
                    self.errors.append(f"{name}: {err!r}")
                time.sleep(pause)

    def _once(self, client: httpx.Client, name: str, n: int) -> None:
        if name == "readyz":
            response = client.get("/readyz")
        elif name == "decide":
            picked = [self.ids[(n * 7 + k) % len(self.ids)] for k in range(2)]
            response = client.post("/decide", json={"customer_ids": picked})
        else:
            event_id = f"failover-{uuid.uuid4().hex}"
            event = {"event_id": event_id, "event": "opened", "customer_id": self.ids[n % 50]}
            response = client.post("/feedback", json={"events": [event]})
            if response.status_code == 200 and response.json()["accepted"] == 1:
                self.acknowledged.append(event_id)
        self.seen[name].append((time.monotonic(), response.status_code, response.text[:500]))

    def between(self, name: str, start: float, end: float) -> list[tuple[float, int, str]]:
        return [s for s in self.seen[name] if start <= s[0] <= end]


@pytest.fixture(scope="module")
def backends(dedicated_services, world) -> dict[str, str]:
    """The store materialised into the dedicated Redis; the ledger URL (with a password)."""
    urls = dedicated_services.urls
    store = f"{urls['REDIS_URL']}?prefix=failover"
    open_store(store).materialize(world["vectors"], world["tables"].end, world["label"])
    ledger = urls["POSTGRES_URL"].replace("lifecycle@", f"lifecycle:{PASSWORD}@", 1)
    return {"store": store, "ledger": ledger, "ledger_shown": ledger.replace(PASSWORD, "***")}


@pytest.fixture(scope="module")
def service(backends, world, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("failover")
    config = {"compile_cache": str(world["folder"] / "trees"), "reload_seconds": 0}
    with LocalService(backends["store"], backends["ledger"], models=world["folder"] / "export",
                      config=config, workdir=workdir) as running:  # fmt: skip
        yield running


def _ids(world) -> list[str]:
    return world["vectors"]["customer_id"].astype("str").head(200).tolist()


def _outage(service, world, stop, start) -> tuple[Load, dict[str, float]]:
    """Run the load; stop a server after 3 s, start it again DOWN_SECONDS later, wait for
    /readyz to be 200 again, keep the load 3 s more; the load and the times it saw."""
    _wait_ready(service.url, RECOVERY_LIMIT)
    load = Load(service.url, _ids(world)).start()
    try:
        time.sleep(3)
        times = {"down": time.monotonic()}
        stop()
        time.sleep(DOWN_SECONDS)
        times["restart"] = time.monotonic()
        start()
        times["up"] = time.monotonic()
        times["ready"] = _wait_ready(service.url, RECOVERY_LIMIT)
        time.sleep(3)
    finally:
        load.stop()
    times["end"] = time.monotonic()
    return load, times


def _wait_ready(url: str, limit: float) -> float:
    """Poll /readyz until 200; the monotonic time it first was (fails after ``limit`` s)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=CLIENT_TIMEOUT).status_code == 200:
                return time.monotonic()
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"/readyz not 200 within {limit} s")


def _only_200_or_named_503(load: Load, names: dict[str, str]) -> Counter:
    """Every answer is a 200 or a 503 whose body contains ``names[route]``; the counts."""
    assert not load.errors, load.errors[:5]  # no time-out, no dropped connection
    counts: Counter = Counter()
    for route, seen in load.seen.items():
        for _, status, body in seen:
            counts[(route, status)] += 1
            assert status in (200, 503), (route, status, body)
            if status == 503:
                assert names[route] in body, (route, body)
                assert PASSWORD not in body
    return counts


def _ledger_holds(ledger: str, event_ids: list[str]) -> int:
    """How many of ``event_ids`` the ledger's feedback table holds."""
    with psycopg.connect(ledger, connect_timeout=10) as conn:
        sql = "SELECT COUNT(*) FROM feedback WHERE event_id = ANY(%s)"
        return conn.execute(sql, (event_ids,)).fetchone()[0]


def _report(what: str, counts: Counter, times: dict[str, float]) -> None:
    recovery = times["ready"] - times["up"]
    print(f"\n{what}: {dict(sorted(counts.items()))}; ready {recovery:.2f} s after the restart")


def test_redis_down_and_back_503_names_it_and_the_service_recovers(
    service, backends, dedicated_services, world
):
    load, times = _outage(service, world, dedicated_services.stop_redis, dedicated_services.start)
    store = backends["store"].split("?")[0]  # the message shows the URL (prefix and all)
    counts = _only_200_or_named_503(load, {"decide": store, "readyz": store, "feedback": "-"})
    _report("redis outage", counts, times)
    down = load.between("decide", times["down"] + 0.5, times["restart"])
    assert down and all(status == 503 for _, status, _ in down)
    assert any(s == 503 for _, s, _ in load.between("readyz", times["down"] + 0.5,
                                                     times["restart"]))  # fmt: skip
    assert counts[("feedback", 503)] == 0  # feedback needs the ledger only
    after = load.between("decide", times["ready"] + 0.5, times["end"])
    assert after and all(status == 200 for _, status, _ in after)
    assert _ledger_holds(backends["ledger"], load.acknowledged) == len(load.acknowledged)


def test_postgres_down_and_back_503_names_it_and_no_acknowledged_feedback_is_lost(
    service, backends, dedicated_services, world
):
    load, times = _outage(service, world, dedicated_services.stop_postgres,
                          dedicated_services.start)  # fmt: skip
    ledger = f"the feedback ledger {backends['ledger_shown']}"
    counts = _only_200_or_named_503(load, dict.fromkeys(("decide", "feedback", "readyz"), ledger))
    _report("postgresql outage", counts, times)
    for route in ("decide", "feedback", "readyz"):
        down = load.between(route, times["down"] + 0.5, times["restart"])
        assert down and all(status == 503 for _, status, _ in down), route
        after = load.between(route, times["ready"] + 0.5, times["end"])
        assert after and all(status == 200 for _, status, _ in after), route
    assert counts[("feedback", 200)] > 0 and load.acknowledged
    assert _ledger_holds(backends["ledger"], load.acknowledged) == len(load.acknowledged)
