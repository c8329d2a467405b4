"""Replicas that share state (issue 16, point 3; DESIGN section 9): two real ``bentoml serve``
processes on two ports, as on two hosts, against one online store on Redis and one feedback
ledger on PostgreSQL (the project's own servers, ``tests/services.py``).

- a contact cap of 1 holds across them under concurrent requests for the same customers
  (``reserve_contacts``, on by default for a PostgreSQL ledger): no customer gets two offers;
- feedback posted to both with one ``event_id`` is accepted once;
- a new store version and a new champion reach both while they serve, with no failed request.

The replicas start once for the module (a fresh Redis prefix and database of their own) and
the tests run in file order: the switch comes last.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import mlflow
import psycopg
import pytest
from mlflow.tracking import MlflowClient

from features.store import open_store
from serving.client import LocalService
from training.tracking import REGISTERED_NAMES

pytestmark = pytest.mark.slow

CUSTOMERS = 20  # the customers every request asks about
REQUESTS, THREADS, PER_REQUEST = 96, 8, 5
SWITCH_TIMEOUT = 60.0  # seconds for both replicas to serve a new store version or champion


@contextlib.contextmanager
def fresh_database(postgres_url: str) -> Iterator[str]:
    """A new, empty database on the session's PostgreSQL (dropped after, connections and
    all): ``postgres_db_url`` for a whole module."""
    name = f"test_replicas_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def fresh_prefix(redis_url: str) -> Iterator[str]:
    """An online-store URL under a key prefix of its own (its keys deleted after)."""
    import redis

    prefix = f"test-replicas-{uuid.uuid4().hex[:12]}"
    try:
        yield f"{redis_url}?prefix={prefix}"
    finally:
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def registry_copy(world, folder) -> str:
    """A copy of the world's MLflow registry (same artifacts), so promoting here changes
    nothing for the other tests; its tracking URI."""
    source, copy = sqlite3.connect(world["folder"] / "mlflow.db"), sqlite3.connect(
        folder / "mlflow.db")  # fmt: skip
    with copy:
        source.backup(copy)
    source.close(), copy.close()
    return f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture(scope="module")
def replicas(world, redis_url, postgres_url, tmp_path_factory):
    """Two services on one Redis store (the world's vectors materialised) and one ledger."""
    folder = tmp_path_factory.mktemp("replicas")
    uri = registry_copy(world, folder)
    config = {
        "seed": 7, "reload_seconds": 0.5, "compile_trees": False,
        "policy": {"exploration": 0.0, "contact_cap": 1, "contact_window_days": 30},
    }  # fmt: skip
    with fresh_prefix(redis_url) as store, fresh_database(postgres_url) as ledger:
        open_store(store).materialize(world["vectors"], world["tables"].end, world["label"])
        services = [
            LocalService(
                store,
                ledger,
                offers=world["folder"] / "data" / "offers.parquet",
                tracking_uri=uri,
                config=config,
                workdir=folder / name,
            )  # fmt: skip
            for name in ("a", "b")
        ]
        try:
            for service in services:
                service.start(wait=False)  # both load at once
            for service in services:
                service.wait_ready()
            with httpx.Client(timeout=60) as http:
                yield {"urls": [s.url for s in services], "store": store, "ledger": ledger,
                       "uri": uri, "http": http, "services": services}  # fmt: skip
        finally:
            for service in services:
                service.stop()


def offers_by_customer(ledger: str) -> dict[str, int]:
    """Offer decisions (not "no offer") per customer in the ledger."""
    sql = ("SELECT customer_id, COUNT(*) FROM decisions WHERE offer_id IS NOT NULL "
           "GROUP BY customer_id")  # fmt: skip
    with psycopg.connect(ledger) as conn:
        return dict(conn.execute(sql).fetchall())


def test_a_contact_cap_of_one_holds_across_replicas_under_concurrent_requests(replicas, world):
    customers = world["vectors"]["customer_id"].astype("str").head(CUSTOMERS).tolist()
    rng = random.Random(3)
    bodies = [{"customer_ids": rng.sample(customers, PER_REQUEST)} for _ in range(REQUESTS)]
    urls, http = itertools.cycle(replicas["urls"]), replicas["http"]
    jobs = [(next(urls), body) for body in bodies]  # alternating the replicas

    def decide(job):
        url, body = job
        return http.post(f"{url}/decide", json=body)

    started = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        responses = list(pool.map(decide, jobs))
    elapsed = time.perf_counter() - started
    assert [r.status_code for r in responses] == [200] * REQUESTS, responses[0].text
    answers = [result for r in responses for result in r.json()["results"]]
    offered = Counter(a["customer_id"] for a in answers if a["decision"]["offer_id"])
    none = sum(a["decision"]["offer_id"] is None for a in answers)
    print(f"\n{REQUESTS} requests in {elapsed:.2f} s: {sum(offered.values())} offers to "
          f"{len(offered)} customers, {none} without an offer")  # fmt: skip
    assert len(answers) == REQUESTS * PER_REQUEST == sum(offered.values()) + none
    assert offered and max(offered.values()) == 1  # an offer only to a customer who had none
    assert offers_by_customer(replicas["ledger"]) == dict(offered)  # the ledger agrees


def test_feedback_posted_to_both_replicas_is_accepted_once(replicas, world):
    customer = str(world["vectors"]["customer_id"].iloc[CUSTOMERS])  # not one of the above
    event = {"event_id": f"crm-{uuid.uuid4().hex}", "event": "opened", "customer_id": customer}
    http, barrier = replicas["http"], threading.Barrier(2)

    def post(url):
        barrier.wait()  # as close to at once as two threads get
        return http.post(f"{url}/feedback", json={"events": [event]}).json()

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(post, replicas["urls"]))
    assert sorted((r["accepted"], r["duplicates"]) for r in results) == [(0, 1), (1, 0)]
    again = http.post(f"{replicas['urls'][0]}/feedback", json={"events": [event]}).json()
    assert (again["accepted"], again["duplicates"]) == (0, 1)
    with psycopg.connect(replicas["ledger"]) as conn:
        stored = conn.execute("SELECT COUNT(*) FROM feedback WHERE event_id = %s",
                              (event["event_id"],)).fetchone()[0]  # fmt: skip
    assert stored == 1


def republish(uri: str) -> dict[str, str]:
    """Register each champion's model again as a new version (same artifacts) and move
    ``champion`` to it; the new versions by registered name."""
    client = MlflowClient(tracking_uri=uri)
    with pytest.MonkeyPatch.context() as mp:  # the registry finds the logged models there
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        try:
            return _republish(client)
        finally:
            mlflow.set_tracking_uri(None)


def _republish(client: MlflowClient) -> dict[str, str]:
    versions: dict[str, str] = {}
    for registered in REGISTERED_NAMES.values():
        try:
            old = client.get_model_version_by_alias(registered, "champion")
        except Exception:  # noqa: BLE001 - no champion for this model: nothing to move
            continue
        new = client.create_model_version(registered, old.source, run_id=old.run_id)
        client.set_registered_model_alias(registered, "champion", new.version)
        versions[registered] = str(new.version)
    return versions


class Load:
    """A thread looping ``/decide`` over both replicas until stopped; what each answered."""

    def __init__(self, http: httpx.Client, urls: list[str], ids: list[str]) -> None:
        self.http, self.urls, self.body = http, urls, {"customer_ids": ids}
        self.seen: dict[str, tuple] = {}  # url -> (store_version, models) of its last 200
        self.failures: list[str] = []
        self.requests = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for url in itertools.cycle(self.urls):
            if self._stop.is_set():
                return
            try:
                response = self.http.post(f"{url}/decide", json=self.body)
            except httpx.HTTPError as err:
                self.failures.append(f"{url}: {err!r}")
                continue
            self.requests += 1
            if response.status_code != 200:
                self.failures.append(f"{url}: {response.status_code} {response.text[:200]}")
                continue
            body = response.json()
            self.seen[url] = (body["store_version"], body["models"])

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)

    def wait_for(self, done, what: str) -> None:
        """Until ``done(store_version, models)`` holds for both replicas' latest answers."""
        deadline = time.monotonic() + SWITCH_TIMEOUT
        while not all(url in self.seen and done(*self.seen[url]) for url in self.urls):
            assert time.monotonic() < deadline, f"{what} did not reach both: {self.seen}"
            time.sleep(0.1)


def test_a_new_store_version_and_champion_reach_both_replicas_without_a_failed_request(
    replicas, world
):
    ids = world["vectors"]["customer_id"].astype("str").iloc[-5:].tolist()  # not capped above
    store = open_store(replicas["store"])
    before = store.current().version
    with Load(replicas["http"], replicas["urls"], ids) as load:
        load.wait_for(lambda version, models: version == before, "the first version")
        store.materialize(world["vectors"], world["tables"].end, world["label"])
        load.wait_for(lambda version, models: version == before + 1, "the new store version")
        new = republish(replicas["uri"])
        wanted = {name: new[registered] for name, registered in REGISTERED_NAMES.items()
                  if registered in new}  # fmt: skip
        load.wait_for(lambda version, models: models == wanted, "the new champion")
    print(f"\n{load.requests} requests during the switches")
    assert load.failures == [] and load.requests > 0
