"""A champion swap without a stall (issue 15, point 6): a reload prepares the new engine beside
the serving one (trees compiled, the store's scores precomputed) and installs the engine and
its scores in one step (serving/state.py)."""

from __future__ import annotations

import dataclasses
import gc
import sys
import threading
import time

import numpy as np
import pytest

from serving import bundle as bundles
from serving import state as states
from serving.config import ServiceConfig
from serving.engine import DecisionEngine

FROM_FOLDER = bundles.from_folder


def newer(folder) -> bundles.ModelBundle:
    """The export's models under the next version numbers: the reload of a new champion."""
    bundle = FROM_FOLDER(folder)
    info = {n: dataclasses.replace(i, version=str(int(i.version) + 1)) for n, i in
            bundle.info.items()}  # fmt: skip
    return dataclasses.replace(bundle, info=info)


@pytest.fixture
def serving(world, tmp_path, monkeypatch):
    """A state on the world's export folder and store, its first engine loaded and its store
    scores precomputed; compiling records which engine served meanwhile instead of compiling."""
    compiled = []

    def compile_trees(engine, cache):
        compiled.append((engine, state.engine, state._scored))
        engine.compiled = {name: True for name in engine.models}

    monkeypatch.setattr(DecisionEngine, "compile_trees", compile_trees)
    config = ServiceConfig(models=str(world["folder"] / "export"),
                           store=world["folder"] / "store" / "online.sqlite",
                           ledger=tmp_path / "ledger.sqlite", reload_seconds=0)  # fmt: skip
    state = states.ServiceState(config)
    state.try_load()
    version = state.store.current().version
    deadline = time.time() + 30
    while state._scored is None or state._scored.key != states.scores_key(version, state.engine):
        assert time.time() < deadline, f"first scores not precomputed: {state.precompute_error}"
        time.sleep(0.05)
    yield state, compiled, version
    state.stop()


def some_ids(world, n: int) -> list[str]:
    return world["vectors"]["customer_id"].astype("str").head(n).tolist()


def test_a_new_champion_is_compiled_and_scored_before_it_serves(serving, world, monkeypatch):
    """While the new engine is prepared the old one answers from its precomputed scores; the
    new one serves only with its trees compiled and the store's scores of its own: from the
    first request on no request scores live. Catches an install before the preparation."""
    state, compiled, version = serving
    old, ids = state.engine, some_ids(world, 20)
    monkeypatch.setattr(states.bundles, "from_folder", newer)
    during, score = [], DecisionEngine.score

    def scoring(engine, rows):  # the new engine scoring the store
        if engine is not old and not during:
            answered = state.lookup_scored(ids, state.engine)[1]  # a request meanwhile
            during.append((engine, state.engine, answered is not None, dict(engine.compiled)))
        return score(engine, rows)

    monkeypatch.setattr(DecisionEngine, "score", scoring)
    seen, stop = [], threading.Event()

    def watch():  # what a request could read at any moment
        while not stop.is_set():
            with state._lock:
                engine, scored = state.engine, state._scored
            current = scored is not None and scored.key == states.scores_key(version, engine)
            seen.append(engine is old or current)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        state.try_load()
    finally:
        stop.set()
        watcher.join()
    new = state.engine
    assert new is not old and state.error is None and new.versions != old.versions
    compiling, serving_then, scored_then = compiled[-1]
    assert compiling is new and serving_then is old  # compiled while the old one served
    assert scored_then.key == states.scores_key(version, old)
    assert during == [(new, old, True, {n: True for n in new.models})]  # then scored
    assert state._scored.key == states.scores_key(version, new)
    assert seen and all(seen)  # never the new engine without its scores
    calls = []
    monkeypatch.setattr(DecisionEngine, "score",
                        lambda self, rows: calls.append(1) or score(self, rows))  # fmt: skip
    rows, scores = state.lookup_scored(ids, new)
    assert calls == [] and scores is not None
    live = score(new, state.lookup(ids))
    np.testing.assert_array_equal(scores.churn, live.churn)


def test_a_failed_preparation_leaves_the_old_champion_serving(serving, world, monkeypatch):
    """A new champion that cannot be loaded: the old engine and its scores keep serving and
    ``error`` says why; a compile or scoring failure is not fatal (recorded, engine swapped)."""
    state, compiled, version = serving
    old, scored = state.engine, state._scored

    def broken(folder):
        raise bundles.ModelsUnavailable("churn.joblib is half-written")

    monkeypatch.setattr(states.bundles, "from_folder", broken)
    state.try_load()
    assert state.engine is old and state._scored is scored
    assert state.error == "churn.joblib is half-written"
    assert state.lookup_scored(some_ids(world, 3), old)[1] is not None  # still precomputed

    def no_compile(engine, cache):
        raise RuntimeError("llvm says no")

    monkeypatch.setattr(states.bundles, "from_folder", newer)
    monkeypatch.setattr(DecisionEngine, "compile_trees", no_compile)
    state.try_load()
    assert state.engine is not old and state.error is None
    assert "llvm says no" in state.compile_error
    assert state._scored.key == states.scores_key(version, state.engine)


def test_a_replaced_engine_never_overwrites_the_new_scores(serving):
    """A whole-store scoring still running for the replaced engine when the swap lands (its
    background precompute, a ``/batch`` filter) answers its caller but is not kept."""
    state, _, version = serving
    old = state.engine
    state.try_load()
    new, scored = state.engine, state._scored
    assert new is not old and scored.key == states.scores_key(version, new)
    state._scored = None  # make the old engine's scoring run again
    late = state._store_scores(old, version)
    assert late.key == states.scores_key(version, old) and state._scored is None
    state._scored = scored


def test_a_reload_freezes_the_new_engine_without_a_full_collection(serving, monkeypatch):
    """A full collection (``settle_heap``: every object walked, ~250 ms holding the GIL)
    stalls every request: a reload only collects and freezes what is not frozen yet, and
    gives back Python's thread switch interval it shortened while preparing."""
    state, _, _ = serving
    full, interval = [], sys.getswitchinterval()
    monkeypatch.setattr(states, "settle_heap", lambda: full.append(1))
    monkeypatch.setattr(states.bundles, "from_folder", newer)
    frozen = gc.get_freeze_count()
    state.try_load()
    assert state.error is None and full == []
    assert gc.get_freeze_count() > frozen  # the new engine's objects
    assert sys.getswitchinterval() == interval


def test_the_store_scored_in_chunks_equals_scored_at_once(serving):
    state, _, version = serving
    rows = state._scored.rows
    whole = state.engine.score(rows)
    chunked = states.score_in_chunks(state.engine, rows, size=128)
    for field in dataclasses.fields(whole):
        a, b = getattr(whole, field.name), getattr(chunked, field.name)
        assert a.shape == b.shape
        if a.dtype == object:
            assert a.tolist() == b.tolist()
        else:
            np.testing.assert_array_equal(a, b)
