"""The models' trees compiled to native code (lleaves, through LLVM).

``Booster.predict`` walks each tree as data; a 1,000-id ``/batch`` runs every customer through
~1,800 trees (churn, stage, one outcome model per arm and the logging model), ~80 ms of the
request. lleaves turns each booster into a compiled function of the row, ~8x faster on the
same answers (to ~1e-15); one row takes a third of the time of LightGBM's single-row C API.
Compiling takes seconds per model (up to ~10 s for the 360-tree logging model), so the
service compiles in a child process (:func:`compile_elsewhere`: LLVM would hold the serving
process's GIL) waited on by a background thread after each load (the request path keeps
:class:`~serving.scoring.FastBooster` until then) and keeps the object code in a cache folder
keyed by the model's text, the prediction type and the CPU, so the next start of the same
models loads it in milliseconds.

:func:`compile_model` finds which boosters a model's answer calls and with which prediction
type (``raw_score``), compiles exactly those, and returns the compiled copy only if it answers
exactly like the model on probe rows (as :func:`~serving.scoring.fast_model` does).

lleaves 1.3 needs llvmlite < 0.45 (its pass manager API; lleaves issue #95): pinned in
pyproject.toml.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import lightgbm as lgb
import numpy as np

from serving.scoring import (
    PREDICT_RAW,
    FastBooster,
    answers_alike,
    probe_rows,
    with_boosters,
)

DEFAULT_CACHE = Path.home() / ".cache" / "lifecycle" / "trees"


class CompiledBooster(FastBooster):
    """A :class:`FastBooster` whose predictions run compiled code.

    ``compiled`` maps ``raw_score`` to a compiled ``lleaves.Model`` of this booster; a
    prediction type without one (or any extra option) goes to the :class:`FastBooster` path.
    Many rows go through ``lleaves.Model.predict``; one row calls the compiled function
    directly on this thread's buffers (``predict``'s own checks and conversions cost ~15 us,
    more than the trees: 6 us for a 100-tree model, 9 us for the 360-tree logging model,
    against 9 and 28 us through LightGBM's single-row C API).
    """

    def __init__(
        self, booster: lgb.Booster, compiled: dict, threads: int = 1, parallel_rows: int = 256
    ) -> None:
        super().__init__(booster, threads, parallel_rows)
        self.compiled = compiled

    def _single(self, row: np.ndarray, kind: int) -> np.ndarray:
        entry = getattr(self.compiled.get(kind == PREDICT_RAW), "_c_entry_func", None)
        if entry is None:  # not compiled for this type (or another lleaves): the C API
            return super()._single(row, kind)
        into, out, pointers = self._compiled_buffers()
        into[:] = row[0]
        out[:] = 0.0  # the compiled forest adds each tree block to it
        entry(*pointers, 0, 1)
        answer = out.copy()
        return answer if self.outputs == 1 else answer.reshape(1, self.outputs)

    def _compiled_buffers(self) -> tuple[np.ndarray, np.ndarray, tuple]:
        """As :meth:`FastBooster._buffers`, with the pointer type the compiled function takes."""
        buffers = getattr(self._local, "compiled_buffers", None)
        if buffers is None:
            into, out = np.empty(self.width), np.empty(self.outputs)
            as_double = ctypes.POINTER(ctypes.c_double)
            pointers = (into.ctypes.data_as(as_double), out.ctypes.data_as(as_double))
            buffers = self._local.compiled_buffers = (into, out, pointers)
        return buffers

    def predict(self, data, raw_score: bool = False, num_threads: int | None = None, **kwargs):
        model = self.compiled.get(bool(raw_score))
        if (
            kwargs
            or model is None
            or type(data) is not np.ndarray
            or data.ndim != 2
            or len(data) < 2
            or data.dtype != np.float64
        ):  # fmt: skip  (one row: FastBooster.predict -> _single, compiled above)
            return super().predict(data, raw_score, num_threads, **kwargs)
        return model.predict(data, n_jobs=self.threads if len(data) >= self.parallel_rows else 1)


def compile_model(
    model,
    answer: Callable[[object, np.ndarray], object],
    cache: Path = DEFAULT_CACHE,
    threads: int = 1,
    parallel_rows: int = 256,
):
    """A copy of ``model`` whose boosters are :class:`CompiledBooster` stand-ins, or None if
    it has no booster or the copy does not answer exactly like ``model`` on probe rows."""
    calls = used_predictions(model, answer)
    if not calls:
        return None
    compiled = {
        id(booster): {raw: compile_booster(booster, raw, cache) for raw in kinds}
        for booster, kinds in calls.values()
    }
    candidate = with_boosters(
        model, lambda b: CompiledBooster(b, compiled.get(id(b), {}), threads, parallel_rows)
    )
    return candidate if answers_alike(candidate, model, answer, parallel_rows) else None


def used_predictions(model, answer: Callable[[object, np.ndarray], object]) -> dict:
    """``{id(booster): (booster, {raw_score, ...})}``: the boosters ``answer(model, x)`` asks
    for predictions of many rows, with the prediction types it asks for."""
    calls: dict[int, tuple[lgb.Booster, set[bool]]] = {}

    class Recorder:
        def __init__(self, booster: lgb.Booster) -> None:
            self.booster = booster

        def predict(self, data, raw_score: bool = False, num_threads=None, **kwargs):
            calls.setdefault(id(self.booster), (self.booster, set()))[1].add(bool(raw_score))
            return self.booster.predict(data, raw_score=raw_score, num_threads=1, **kwargs)

    answer(with_boosters(model, Recorder), probe_rows(int(model.n_features_in_), 8))
    return calls


_locks: dict[str, threading.Lock] = {}


def compile_booster(booster: lgb.Booster, raw_score: bool, cache: Path):
    """``booster`` compiled by lleaves (``raw_score``: no objective transform), loaded from
    ``cache`` when compiled there before; written there atomically otherwise (several
    workers may compile the same model at once)."""
    from importlib.metadata import version

    import lleaves
    import llvmlite.binding as llvm

    text = booster.model_to_string()
    target = f"{llvm.get_host_cpu_name()} {llvm.get_host_cpu_features().flatten()}"
    versions = f"lleaves {version('lleaves')} llvmlite {version('llvmlite')}"
    key = hashlib.sha256(f"{versions}\n{target}\nraw={raw_score}\n{text}".encode()).hexdigest()
    cache.mkdir(parents=True, exist_ok=True)
    source, binary = cache / f"{key[:32]}.txt", cache / f"{key[:32]}.o"
    with _locks.setdefault(key, threading.Lock()):
        if not source.exists():
            _write_atomically(source, lambda path: path.write_text(text))
        if not binary.exists():  # compiled by a child process: LLVM holds this one's GIL
            _write_atomically(binary, lambda path: compile_elsewhere(source, path, raw_score))
        compiled = lleaves.Model(str(source))
        compiled.compile(cache=str(binary), raw_score=raw_score)  # loads the object code
    return compiled


_COMPILE = """import sys
import lleaves
lleaves.Model(sys.argv[1]).compile(cache=sys.argv[2], raw_score=sys.argv[3] == "1")"""


def compile_elsewhere(source: Path, binary: Path, raw_score: bool) -> None:
    """Compile the model in ``source`` to object code in ``binary``, in a child process:
    compiling takes seconds and, in the serving process, held the GIL the requests wait for
    (a champion swap's stall, issue 15). The calling thread only waits (without the GIL); a
    child that fails raises with its error output. The child runs at normal priority: niced
    (10 or 19) it starved on a saturated machine and a reload under the full test suite took
    more than 120 s."""
    command = [sys.executable, "-c", _COMPILE, str(source), str(binary), "1" if raw_score else "0"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not binary.exists():
        raise RuntimeError(f"compiling {source.name} failed in a child process "
                           f"(exit {done.returncode}): {done.stderr.strip()[-500:]}")  # fmt: skip


def _write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    partial = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
