"""The uplift model's answers for the hot path, on numpy arrays only.

``UpliftModel.predict_uplift`` and ``.supported`` answer pandas frames (string-labelled
columns, an index, a frame subtraction): right for training and reports, but for one customer
that costs ~10x the LightGBM work itself. :class:`UpliftScorer` calls the model's fitted
boosters directly (``Booster.predict(..., num_threads=1)``, DESIGN sections 8 and 11) and
returns plain arrays in the model's ``offers_`` order. It checks itself against the model's own
methods when it is built and falls back to them when the model's layout is not one it knows or
the answers differ, so a change of the model cannot make the service answer differently, only
slower.
"""

from __future__ import annotations

import ctypes

import lightgbm as lgb
import numpy as np

CONTROL = "control"


def limit_lightgbm_threads(n: int = 1) -> None:
    """Cap every LightGBM routine in this process at ``n`` threads.

    A booster predicting without ``num_threads`` uses all cores via OpenMP; for a few rows the
    threads' start-up and barriers cost milliseconds (more on a busy machine), and
    multi-threaded LightGBM in forked workers can hang (DESIGN section 11). A service worker
    is one thread of LightGBM work; scale out with workers.
    """
    from lightgbm.basic import _LIB, _safe_call

    _safe_call(_LIB.LGBM_SetMaxThreads(ctypes.c_int(n)))


class UpliftScorer:
    """``(uplift, supported)`` arrays ``(n, offers_)`` of an uplift model for a float matrix
    already in the model's input form (``InputPlan``)."""

    def __init__(self, model) -> None:
        self.model = model
        self.fast = False
        try:
            self._plan(model)
            probe = _probe(int(model.n_features_in_))
            self.fast = _same(self._fast(probe), self._slow(probe))
        except (AttributeError, KeyError, TypeError, ValueError):
            self.fast = False

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._fast(x) if self.fast else self._slow(x)

    def _plan(self, model) -> None:
        arms, offers = list(model.arms_), list(model.offers_)
        if model.learner == "t":
            self.boosters = [model.outcome_models_[a] for a in arms]
            self.control, self.offer_cols = arms.index(CONTROL), [arms.index(o) for o in offers]
        elif model.learner == "dr":
            self.boosters = [model.effect_models_[o] for o in offers]
            self.control, self.offer_cols = None, list(range(len(offers)))
        else:
            raise ValueError(f"unknown learner {model.learner!r}")
        if not all(b is None or isinstance(b, lgb.Booster) for b in self.boosters):
            raise TypeError("not LightGBM boosters")
        if not isinstance(model.logging_model_, lgb.Booster):
            raise TypeError("logging model is not a LightGBM booster")
        self.logging, self.n_arms = model.logging_model_, len(arms)
        self.support_cols = [arms.index(o) for o in offers]
        self.min_support = float(model.min_support)

    def _fast(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(x)
        p = np.column_stack([
            np.full(n, np.nan) if b is None else b.predict(x, num_threads=1)
            for b in self.boosters
        ])  # fmt: skip
        uplift = p[:, self.offer_cols]
        if self.control is not None:
            uplift = uplift - p[:, [self.control]]
        logged = self.logging.predict(x, num_threads=1).reshape(n, self.n_arms)
        return uplift, logged[:, self.support_cols] >= self.min_support

    def _slow(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (
            self.model.predict_uplift(x).to_numpy(dtype=float),
            self.model.supported(x).to_numpy(dtype=bool),
        )


def _probe(width: int) -> np.ndarray:
    """A few rows to compare both paths on: missing, zeros, small and large values."""
    rng = np.random.default_rng(0)
    rows = [np.full(width, np.nan), np.zeros(width), rng.integers(0, 3, width).astype(float),
            rng.exponential(50.0, width)]  # fmt: skip
    return np.vstack(rows)


def _same(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> bool:
    return (
        a[0].shape == b[0].shape
        and np.allclose(a[0], b[0], rtol=1e-9, atol=1e-12, equal_nan=True)
        and np.array_equal(a[1], b[1])
    )
