"""Durability of what the service acknowledges (issue 15, point 3; README, "Durability"): the
SQLite ledger's connections run at the configured ``synchronous`` level, and every decision
and feedback event answered 200 is in the ledger after the service is killed outright
(SIGKILL, no clean-up) under load. A power loss cannot be simulated here: with
``ledger_durability: normal`` the last decisions may be lost to one (README)."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import threading
import uuid

import httpx
import pytest

from serving.config import ServiceConfig, load_config
from serving.state import ServiceState

pytestmark = pytest.mark.slow

SYNCHRONOUS = {1: "NORMAL", 2: "FULL"}  # PRAGMA synchronous answers a number


def levels(state: ServiceState) -> tuple[str, str]:
    """(decisions' level, feedback's level) on the ledger's own connections."""
    query = lambda conn: SYNCHRONOUS[conn.execute("PRAGMA synchronous").fetchone()[0]]  # noqa: E731
    return state.ledger._run(query, False), state.ledger._run(query, True)


@pytest.mark.parametrize(("durability", "decisions"), [("normal", "NORMAL"), ("full", "FULL")])
def test_the_configured_synchronous_level_is_the_one_in_effect(tmp_path, durability, decisions):
    env = {"LIFECYCLE_LEDGER": str(tmp_path / "ledger.sqlite"),
           "LIFECYCLE_STORE": str(tmp_path / "online.sqlite"),
           "LIFECYCLE_LEDGER_DURABILITY": durability}  # fmt: skip
    state = ServiceState(load_config(env))
    try:
        assert levels(state) == (decisions, "FULL")  # feedback is always FULL
    finally:
        state.stop()


def test_an_unknown_durability_is_refused_naming_the_field(tmp_path):
    with pytest.raises(ValueError, match="ledger_durability"):
        load_config({"LIFECYCLE_LEDGER_DURABILITY": "sometimes"})
    assert ServiceConfig().ledger_durability == "normal"


class Load:
    """One thread posting ``/decide`` and ``/feedback`` in turn until the service dies,
    keeping what was acknowledged (answered 200): decision ids and feedback event ids."""

    def __init__(self, url: str, ids: list[str]) -> None:
        self.url, self.ids = url, ids
        self.decisions: list[str] = []
        self.events: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            for n in range(10**6):
                try:
                    self._once(client, n)
                except httpx.HTTPError:
                    return  # killed

    def _once(self, client: httpx.Client, n: int) -> None:
        picked = [self.ids[(n * 7 + k) % len(self.ids)] for k in range(5)]
        answer = client.post("/decide", json={"customer_ids": picked})
        if answer.status_code == 200:
            self.decisions += [r["decision"]["decision_id"] for r in answer.json()["results"]
                               if r.get("decision")]  # fmt: skip
        event = {"event_id": uuid.uuid4().hex, "event": "opened", "customer_id": picked[0]}
        if client.post("/feedback", json={"events": [event]}).status_code == 200:
            self.events.append(event["event_id"])


@pytest.mark.slow
def test_everything_acknowledged_is_in_the_ledger_after_a_kill_9(world, tmp_path):
    from serving.client import LocalService

    store, ledger = tmp_path / "online.sqlite", tmp_path / "ledger.sqlite"
    shutil.copy(world["folder"] / "store" / "online.sqlite", store)
    config = {
        "compile_cache": str(world["folder"] / "trees"),
        "reload_seconds": 0,
        "ledger_durability": "normal",
    }  # the weaker setting: a crash must not matter
    running = LocalService(store, ledger, models=world["folder"] / "export", config=config,
                           workdir=tmp_path / "service").start()  # fmt: skip
    load = Load(running.url, world["vectors"]["customer_id"].astype(str).head(100).tolist())
    load.thread.start()
    try:
        while len(load.events) < 100:  # under load, then killed mid-stream
            load.thread.join(0.05)
        os.killpg(running.process.pid, signal.SIGKILL)  # the whole group, no clean-up
        running.process.wait(10)
        load.thread.join(20)
    finally:
        running.stop()
    decisions, events = list(load.decisions), list(load.events)
    assert len(decisions) >= 100
    with sqlite3.connect(ledger) as conn:  # as the next start (or a tool) finds it
        found = {row[0] for row in conn.execute("SELECT decision_id FROM decisions")}
        got = {row[0] for row in conn.execute("SELECT event_id FROM feedback")}
    assert set(decisions) <= found and set(events) <= got
