"""Preparing a new engine beside the serving one (a reload, ``serving.state``): the store
scored in chunks behind the requests, the heap frozen without a full collection, and the
key the precomputed scores are kept under."""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, fields

import numpy as np

from serving.engine import DecisionEngine, Scores
from serving.inputs import FeatureRows


def scores_key(store_version: int, engine: DecisionEngine) -> tuple:
    """What precomputed scores depend on: the store version and the model versions."""
    return store_version, tuple(sorted(engine.versions.items()))


STORE_CHUNK = 5_000  # rows scored at a time when scoring the whole store
PREPARING_SWITCH_INTERVAL = 0.0005  # s; Python's default is 0.005


@contextmanager
def behind_requests() -> Iterator[None]:
    """Background work (a reload's preparation) with Python's thread switch interval cut to
    ``PREPARING_SWITCH_INTERVAL``: a request thread waiting for the GIL gets it after that
    long, not after 5 ms each time (it waits at every I/O call)."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, PREPARING_SWITCH_INTERVAL))
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


def score_in_chunks(engine: DecisionEngine, rows: FeatureRows, size: int = STORE_CHUNK) -> Scores:
    """``engine.score(rows)``, ``size`` rows at a time with a pause between chunks, so the
    requests served meanwhile wait for one chunk at most, not for the whole store."""
    n = len(rows.customer_ids)
    if n <= size:
        return engine.score(rows)
    parts = []
    for start in range(0, n, size):
        end = min(start + size, n)
        parts.append(engine.score(rows.take(np.arange(start, end),
                                            rows.customer_ids[start:end])))  # fmt: skip
        time.sleep(0)  # hand the GIL to the threads waiting for it
    return Scores(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Scores)))


@dataclass(frozen=True)
class StoreScores:
    """Every stored customer's rows and scores for one (store version, model versions)."""

    key: tuple
    rows: FeatureRows
    scores: Scores
    position: dict[str, int]  # customer id -> row


def settle_heap() -> None:
    """Collect garbage once, then exempt everything alive from later full collections.

    A worker holds ~400k objects (MLflow, pandas, the models); Python's full (oldest
    generation) collection walks them all, ~230 ms during which no request is served, every
    few thousand requests: the HTTP p99. They live as long as the worker, so they are
    frozen (``gc.freeze``) after each load; request garbage is still collected as usual.
    """
    gc.unfreeze()  # what an earlier call froze may be garbage now (uncompiled models...)
    gc.collect()
    gc.freeze()


def lower_priority() -> None:
    """The calling thread at nice 10 (Linux sets it per thread; elsewhere unchanged): behind
    the requests, but not starved when they saturate the cores (nice 19 gets ~1.5 % of a
    core there, and a reload took minutes under a full test suite)."""
    with suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


def freeze_heap() -> None:
    """Collect the garbage outside the frozen heap and freeze what is alive (a reload: the
    new engine), without :func:`settle_heap`'s full collection: that walks every object
    (~250 ms holding the GIL, measured with a 50,000-customer store: a stall of every
    request). The replaced engine is freed by reference counting when its last request
    ends, except its reference cycles, which stay frozen: measured, ~70 objects a reload
    (dicts, lleaves' LLVM module handles; 0.06 MB shallow after 5 reloads, the worker's RSS
    flat within 813-831 MB over them)."""
    gc.collect()
    gc.freeze()
