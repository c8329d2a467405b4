"""An offer added to the catalog file reaches a running service without a restart: the
reloader compares the file's stamp as well as the registry's versions (serving/state.py)."""

from __future__ import annotations

import os

import pandas as pd

from serving import state as states
from serving.config import ServiceConfig


def test_a_changed_catalog_file_reloads_and_an_unchanged_one_does_not(tmp_path, monkeypatch):
    offers = tmp_path / "offers.csv"
    pd.DataFrame({"offer_id": ["a"], "kind": ["upsell"], "value": [5.0], "cost": [1.0]}).to_csv(
        offers, index=False
    )
    config = ServiceConfig(store=tmp_path / "online.sqlite", ledger=tmp_path / "ledger.sqlite",
                           offers=offers)  # fmt: skip
    state = states.ServiceState(config)
    versions = {"churn": "1"}
    loads = []

    class Engine:
        def __init__(self):
            self.versions = dict(versions)

    def load():
        state.catalog()  # reads the file and its stamp, as load() does
        loads.append(1)
        state.engine = Engine()

    monkeypatch.setattr(state, "load", load)
    monkeypatch.setattr(states.bundles, "registry_versions", lambda *a: dict(versions))
    state.try_load()
    assert not state.reload_if_changed()  # same versions, same file
    pd.DataFrame({"offer_id": ["a", "b"], "kind": ["upsell", "upsell"], "value": [5.0, 9.0],
                  "cost": [1.0, 1.0]}).to_csv(offers, index=False)  # fmt: skip
    stat = offers.stat()
    os.utime(offers, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert state.reload_if_changed() and len(loads) == 2  # the new offer: reloaded
    assert not state.reload_if_changed() and len(loads) == 2
    versions["churn"] = "2"
    assert state.reload_if_changed() and len(loads) == 3  # a new champion, as before
    state.stop()


def test_the_reloader_survives_any_failure_and_says_why(tmp_path, monkeypatch, caplog):
    config = ServiceConfig(store=tmp_path / "online.sqlite", ledger=tmp_path / "ledger.sqlite",
                           reload_seconds=0.01)  # fmt: skip
    state = states.ServiceState(config)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:  # e.g. the registry's SQLite locked by a retrain's writes
            raise RuntimeError("database is locked")
        state._stop.set()
        return False

    monkeypatch.setattr(state, "reload_if_changed", flaky)
    with caplog.at_level("WARNING", logger="serving.state"):
        state._poll()  # returns once stopped: it kept polling after two failures
    assert len(calls) == 3
    assert "reloading the models failed (retrying): RuntimeError('database is locked')" in (
        state.error
    )
    assert "database is locked" in caplog.text
    state.ledger.close()
