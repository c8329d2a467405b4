"""LightGBM prediction for the hot path: the models' own methods, with less overhead.

``Booster.predict`` spends ~0.1 ms in Python per call (parameter strings, array checks, a
fresh C predictor) before it evaluates a tree; a decision for one customer makes a dozen such
calls (churn, stage, one outcome model per arm, the logging model). :class:`FastBooster`
stands in for a booster and answers one row through LightGBM's single-row fast C API
(``LGBM_BoosterPredictForMatSingleRowFast``: the predictor is set up once, a call costs a few
microseconds) and many rows through ``Booster.predict`` with ``threads`` threads from
``parallel_rows`` rows on (one thread below, where an OpenMP team's start-up costs more than
it saves). :func:`fast_model` gives a copy of a model whose boosters are such stand-ins, so
the model's own code (encoding checks, calibration, the uplift arithmetic) still computes the
answer, and keeps it only if it answers exactly like the model on probe rows.
"""

from __future__ import annotations

import copy
import ctypes
import threading
from collections.abc import Callable

import lightgbm as lgb
import numpy as np
from lightgbm.basic import _LIB, _safe_call

PREDICT_NORMAL, PREDICT_RAW = 0, 1  # LightGBM's C_API_PREDICT_* types
FLOAT64 = 1  # C_API_DTYPE_FLOAT64


def limit_lightgbm_threads(n: int = 1) -> None:
    """Cap every LightGBM routine in this process at ``n`` threads.

    A booster predicting without ``num_threads`` uses all cores via OpenMP; for a few rows the
    threads' start-up and barriers cost milliseconds (more on a busy machine), and
    multi-threaded LightGBM in forked workers can hang (DESIGN section 11). The cap is the
    most a :class:`FastBooster` asks for (large batches); everything else asks for one.
    """
    _safe_call(_LIB.LGBM_SetMaxThreads(ctypes.c_int(n)))


class FastBooster:
    """A ``lightgbm.Booster`` stand-in for ``predict`` with the same answers, faster.

    One float64 row: the single-row fast C API (one predictor per prediction type, made
    once; LightGBM locks it, so threads may share it; input and output buffers per thread).
    Otherwise ``Booster.predict`` with ``threads`` threads when there are at least
    ``parallel_rows`` rows, else one.
    """

    def __init__(self, booster: lgb.Booster, threads: int = 1, parallel_rows: int = 256) -> None:
        self.booster, self.threads, self.parallel_rows = booster, threads, parallel_rows
        self.width = booster.num_feature()
        self._row = (1, self.width)
        self.outputs = booster.num_model_per_iteration()
        self._configs = {kind: self._fast_config(kind) for kind in (PREDICT_NORMAL, PREDICT_RAW)}
        self._local = threading.local()

    def predict(
        self, data, raw_score: bool = False, num_threads: int | None = None, **kwargs
    ) -> np.ndarray:
        """``Booster.predict(data, raw_score=...)``; other options go to the booster as they
        are (``num_threads`` then defaults to one)."""
        if kwargs:
            return self.booster.predict(data, raw_score=raw_score, num_threads=num_threads or 1,
                                        **kwargs)  # fmt: skip
        if type(data) is np.ndarray and data.shape == self._row and data.dtype == np.float64:
            return self._single(data, PREDICT_RAW if raw_score else PREDICT_NORMAL)
        threads = self.threads if len(data) >= self.parallel_rows else 1
        return self.booster.predict(data, raw_score=raw_score, num_threads=threads)

    def _single(self, row: np.ndarray, kind: int) -> np.ndarray:
        into, out, pointers = self._buffers()
        into[:] = row[0]
        _safe_call(_LIB.LGBM_BoosterPredictForMatSingleRowFast(self._configs[kind], *pointers))
        answer = out.copy()
        return answer if self.outputs == 1 else answer.reshape(1, self.outputs)

    def _buffers(self) -> tuple[np.ndarray, np.ndarray, tuple]:
        """This thread's input row, output and the C call's pointers to them (numpy's
        ``ctypes`` conversions cost more than the call itself)."""
        buffers = getattr(self._local, "buffers", None)
        if buffers is None:
            into, out, written = np.empty(self.width), np.empty(self.outputs), ctypes.c_int64()
            pointers = (ctypes.c_void_p(into.ctypes.data), ctypes.byref(written),
                        ctypes.c_void_p(out.ctypes.data))  # fmt: skip
            buffers = self._local.buffers = (into, out, pointers, written)
        return buffers[:3]

    def _fast_config(self, kind: int) -> ctypes.c_void_p:
        handle = ctypes.c_void_p()
        _safe_call(_LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
            self.booster._handle, ctypes.c_int(kind), ctypes.c_int(0), ctypes.c_int(-1),
            ctypes.c_int(FLOAT64), ctypes.c_int32(self.width), b"num_threads=1",
            ctypes.byref(handle)))  # fmt: skip
        return handle

    def __del__(self) -> None:
        for handle in getattr(self, "_configs", {}).values():
            _LIB.LGBM_FastConfigFree(handle)


def with_boosters(model, wrap: Callable[[lgb.Booster], object]):
    """A shallow copy of ``model`` whose ``lightgbm.Booster`` attributes (and boosters held
    in dict attributes, e.g. one per arm) are replaced by ``wrap(booster)``."""

    def swap(value):
        if isinstance(value, lgb.Booster):
            return wrap(value)
        if isinstance(value, dict) and any(isinstance(v, lgb.Booster) for v in value.values()):
            return {k: swap(v) for k, v in value.items()}
        return value

    out = copy.copy(model)
    for name, value in vars(model).items():
        setattr(out, name, swap(value))
    return out


def with_fast_boosters(model, threads: int = 1, parallel_rows: int = 256):
    """``model`` with :class:`FastBooster` stand-ins (see :func:`with_boosters`)."""
    return with_boosters(model, lambda b: FastBooster(b, threads, parallel_rows))


def fast_model(
    model, answer: Callable[[object, np.ndarray], object], threads: int = 1,
    parallel_rows: int = 256,
):  # fmt: skip
    """``model`` with :class:`FastBooster` stand-ins if ``answer(copy, x)`` equals
    ``answer(model, x)`` (to 1e-9) on probe rows, one at a time and ``parallel_rows`` at
    once; else ``model`` itself (answers never change, at worst they come slower)."""
    try:
        fast = with_fast_boosters(model, threads, parallel_rows)
        ok = answers_alike(fast, model, answer, parallel_rows)
    except (AttributeError, TypeError, ValueError, lgb.basic.LightGBMError):
        return model
    return fast if ok else model


def answers_alike(
    candidate, model, answer: Callable[[object, np.ndarray], object], rows: int = 256
) -> bool:
    """``answer(candidate, x) == answer(model, x)`` (:func:`same`) on probe rows, eight one
    at a time and ``rows`` (at least 8) at once."""
    probe = probe_rows(int(model.n_features_in_), max(rows, 8))
    singles = [probe[i : i + 1] for i in range(8)]
    return all(same(answer(candidate, x), answer(model, x)) for x in [*singles, probe])


def probe_rows(width: int, n: int) -> np.ndarray:
    """``n`` rows to compare answers on: missing, zeros, small counts, large amounts."""
    rng = np.random.default_rng(0)
    rows = [np.full(width, np.nan), np.zeros(width), rng.integers(0, 3, width).astype(float),
            rng.exponential(50.0, width)]  # fmt: skip
    mixed = np.where(rng.random((n, width)) < 0.2, np.nan, rng.exponential(20.0, (n, width)))
    return np.ascontiguousarray(np.vstack([*rows, mixed])[:n])


def same(a, b) -> bool:
    """Equal answers: arrays (or tuples of them) of one shape, equal to 1e-9, NaN = NaN."""
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(map(same, a, b))
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype == bool or b.dtype == bool:
        return a.dtype == b.dtype and np.array_equal(a, b)
    return a.shape == b.shape and np.allclose(a, b, rtol=1e-9, atol=1e-12, equal_nan=True)
