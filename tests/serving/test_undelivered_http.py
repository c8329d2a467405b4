"""A caller who leaves after its decisions were logged, against a real ``bentoml serve``
(uvicorn with httptools and uvloop, as deployed): its decisions stay in the ledger marked
undelivered, are no exposures for training or off-policy evaluation, and reserve no contact,
so the customer's next ``/decide`` under a contact cap of 1 gets the offer; ``/batch`` alike.
The server runs ``tests/serving/undelivered_service.py``: the service plus a slow answer,
after the ledger write, that a sentinel id triggers. Unit tests: test_undelivered.py."""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from tests.serving.test_http_server import free_port, wait_ready
from training.ledger_exposures import ledger_exposures

ROOT = Path(__file__).resolve().parents[2]
SLOW = "slow-answer-2"  # as in undelivered_service.py: the answer waits 2 s after the write


def start(world, folder: Path, extra: dict[str, str] | None = None):
    """A ``bentoml serve`` of undelivered_service.py in ``folder``; yields its address."""
    port = free_port()
    config = folder / "service.yaml"  # a cap of 1, reserved from the decision on, greedy
    config.write_text("seed: 1\ncompile_trees: false\nreserve_contacts: true\n"
                      "policy: {exploration: 0.0, contact_cap: 1}\n")  # fmt: skip
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": world["uri"],
        "LIFECYCLE_SERVICE_CONFIG": str(config),
        "LIFECYCLE_STORE": str(world["folder"] / "store" / "online.sqlite"),
        "LIFECYCLE_LEDGER": str(folder / "ledger.sqlite"),
        "LIFECYCLE_MODELS": str(world["folder"] / "export"),
        "BENTOML_HOME": str(folder / "bentoml"),
        **(extra or {}),
    }
    log = (folder / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "bentoml", "serve",
         "tests.serving.undelivered_service:LifecycleService",
         "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_ready(process, f"http://127.0.0.1:{port}", folder / "server.log")
        yield {"url": f"http://127.0.0.1:{port}", "port": port, "log": folder / "server.log",
               "ledger": folder / "ledger.sqlite"}  # fmt: skip
    finally:
        process.terminate()
        process.wait(30)


@pytest.fixture(scope="module")
def server(world, tmp_path_factory):
    yield from start(world, tmp_path_factory.mktemp("undelivered"))


@pytest.fixture(scope="module")
def impatient_server(world, tmp_path_factory):
    """The same with BentoML's traffic timeout at 1 s (120 s in the service's decorator)."""
    timeout = {"BENTOML_CONFIG_OPTIONS": "services.lifecycle.traffic.timeout=1"}
    yield from start(world, tmp_path_factory.mktemp("impatient"), timeout)


def rows(ledger: Path, customers: list[str]) -> pd.DataFrame:
    """The ledger's decisions for ``customers``, oldest first."""
    marks = ",".join("?" * len(customers))
    with sqlite3.connect(ledger) as conn:
        sql = ("SELECT decision_id, customer_id, offer_id, decided_at, undelivered_at "
               f"FROM decisions WHERE customer_id IN ({marks}) ORDER BY decided_at")  # fmt: skip
        return pd.read_sql_query(sql, conn, params=customers)


def until(check, seconds: float, what: str):
    """``check()`` once it is neither False nor None (polled), or fail after ``seconds``."""
    deadline = time.time() + seconds
    while True:
        found = check()
        done = found is not None and found is not False
        if done or time.time() > deadline:
            assert done, f"not within {seconds} s: {what}"
            return found
        time.sleep(0.05)


def leave_after_logging(server, path: str, body: dict, customers: list[str]) -> pd.DataFrame:
    """Send ``body`` on a raw connection, wait until its decisions are in the ledger (the
    answer then waits 2 s), close the connection before the answer: the caller left after
    the decisions were logged. Returns those decisions once they are marked (or fails)."""
    data = json.dumps(body).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode()  # fmt: skip
    before = len(rows(server["ledger"], customers))
    with socket.create_connection(("127.0.0.1", server["port"]), timeout=30) as caller:
        caller.sendall(head + data)
        until(lambda: len(rows(server["ledger"], customers)) == before + len(customers), 30,
              "the request's decisions logged")  # fmt: skip
        caller.setblocking(False)
        with pytest.raises(BlockingIOError):  # no answer yet: the caller leaves without one
            caller.recv(1)
    mine = rows(server["ledger"], customers).iloc[before:]
    return until(lambda: _all_marked(server["ledger"], customers, mine["decision_id"]), 30,
                 "its decisions marked undelivered")  # fmt: skip


def _all_marked(ledger: Path, customers: list[str], ids: pd.Series) -> pd.DataFrame | None:
    found = rows(ledger, customers).set_index("decision_id").loc[ids]
    return found.reset_index() if found["undelivered_at"].notna().all() else None


def offered(answer: httpx.Response) -> set[str]:
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    return {r["customer_id"] for r in results if r["decision"] and r["decision"]["offer_id"]}


def exposure_ids(server, world) -> set[str]:
    """The ledger's decisions as exposures, every offer counted without waiting for a send,
    every response window closed."""
    later = pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=60)
    found = ledger_exposures(server["ledger"], world["tables"].events, 14, as_of=later,
                             require_sent=False)  # fmt: skip
    return {e.removeprefix("ledger-") for e in found["exposure_id"]}


def test_a_decide_whose_caller_left_after_the_write_is_marked_and_blocks_nobody(server, world):
    customers = world["vectors"]["customer_id"].astype("str").iloc[100:140].tolist()
    gone = leave_after_logging(server, "/decide", {"customer_ids": [*customers, SLOW]},
                               customers)  # fmt: skip
    left_with_offer = set(gone.loc[gone["offer_id"].notna(), "customer_id"])
    assert left_with_offer  # some were offered something: the cap below is at stake
    assert not exposure_ids(server, world) & set(gone["decision_id"])  # nothing learns from them
    url = f"{server['url']}/decide"
    again = httpx.post(url, json={"customer_ids": customers}, timeout=30)
    assert left_with_offer <= offered(again)  # the undelivered offers reserved no contact
    delivered = rows(server["ledger"], customers).iloc[-len(customers) :]
    assert delivered["undelivered_at"].isna().all()  # an answer received is not marked
    assert set(delivered["decision_id"]) <= exposure_ids(server, world)
    third = httpx.post(url, json={"customer_ids": customers}, timeout=30)
    assert offered(third) == set()  # the delivered offers do count against the cap of 1
    log = server["log"].read_text()
    assert re.search(rf"never reached the caller .*: {len(customers)} logged decision", log)


def test_a_batch_whose_caller_left_has_all_its_decisions_marked(server, world):
    customers = world["vectors"]["customer_id"].astype("str").iloc[200:500].tolist()
    gone = leave_after_logging(server, "/batch", {"customer_ids": [*customers, SLOW]},
                               customers)  # fmt: skip
    assert len(gone) == len(customers) and gone["undelivered_at"].notna().all()
    metrics = httpx.get(f"{server['url']}/metrics").text
    found = re.search(r"^lifecycle_decisions_undelivered_total (\S+)$", metrics, re.M)
    assert found and float(found.group(1)) >= len(customers), metrics[-2000:]


def test_decisions_logged_before_a_traffic_timeout_are_marked(impatient_server, world):
    """BentoML answers 504 after 1 s and cancels the request; its handler had logged the
    decisions and was still preparing the answer (2 s)."""
    customers = world["vectors"]["customer_id"].astype("str").iloc[600:620].tolist()
    answer = httpx.post(f"{impatient_server['url']}/decide",
                        json={"customer_ids": [*customers, SLOW]}, timeout=30)  # fmt: skip
    assert answer.status_code == 504, answer.text
    found = until(lambda: _all_marked(impatient_server["ledger"], customers,
                                      rows(impatient_server["ledger"], customers)["decision_id"]),
                  10, "the decisions marked undelivered")  # fmt: skip
    assert len(found) == len(customers)
