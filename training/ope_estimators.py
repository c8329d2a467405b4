"""Off-policy estimators of a target policy's mean reward, as per-row terms (numpy only).

Notation, for logged rows ``i`` with context ``x_i``, logged action ``a_i``, reward ``r_i`` and
logging propensity ``mu_i = mu(a_i | x_i)``; ``pi(a | x)`` the target policy; ``q(x, a)`` a
reward model (fitted on other rows, e.g. :func:`training.ope_reward_model.cross_fitted_rewards`):

- importance weight ``w_i = pi(a_i | x_i) / mu_i``; with ``clip``, ``w_i = min(w_i, clip)``;
- direct term ``d_i = sum_a pi(a | x_i) q(x_i, a)``; residual ``e_i = r_i - q(x_i, a_i)``.

The estimators (Dudik et al. 2014; Swaminathan & Joachims 2015; Wang et al. 2017; the
definitions of Open Bandit Pipeline's ``obp.ope``):

- ``ips``:       ``mean(w r)``
- ``snips``:     ``sum(w r) / sum(w)``
- ``dm``:        ``mean(d)``
- ``dr``:        ``mean(d + w e)``
- ``sndr``:      ``mean(d) + sum(w e) / sum(w)``  (= ``mean(d + w e / mean(w))``)
- ``switch_dr``: ``mean(d + 1[w <= tau] w e)``: DR where the (unclipped) weight is at most
  ``tau``, the model alone where it is larger; ``tau = 0`` gives DM, ``tau = inf`` DR.

``clip`` applies to ``ips``, ``snips``, ``dr`` and ``sndr`` (``switch_dr`` has ``tau``
instead). Every estimator is ``sum(P) / n + sum(N) / sum(D)`` for per-row terms ``P``, ``N``,
``D``, which is what :func:`slot_stat` evaluates on any resample of rows.

Positions (slots), the independent-slot formulation (as OBP's position-wise estimators): each
row is one (request, slot) with the target's probabilities *at that slot*; every estimator is
computed within each slot and the per-slot values are **summed**, so the estimate is the
expected total reward per request over the slots (``sum_k V_k``; OBP reports the mean over
rows, which is this sum divided by the number of slots when all slots are filled).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np

ESTIMATORS = ("ips", "snips", "dm", "dr", "sndr", "switch_dr")
NEEDS_MODEL = frozenset({"dm", "dr", "sndr", "switch_dr"})
MIN_ESS_SHARE = 0.1  # warn when the effective sample size is below 10% of the rows
Stat = Callable[[np.ndarray], np.ndarray]
Terms = tuple[np.ndarray, np.ndarray, np.ndarray]


def importance_weights(pi: np.ndarray, actions: np.ndarray, propensities: np.ndarray) -> np.ndarray:
    """``w_i = pi(a_i | x_i) / mu_i`` from ``(n, k)`` target probabilities, ``(n,)`` logged
    action indices and ``(n,)`` logging propensities of the logged actions."""
    return pi[np.arange(len(actions)), actions] / propensities


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's effective sample size ``(sum w)^2 / sum w^2`` (``n`` for equal weights)."""
    w = np.asarray(weights, dtype=float)
    total = (w**2).sum()
    return float(w.sum() ** 2 / total) if total > 0 else 0.0


def check_overlap(weights: np.ndarray, slots: np.ndarray, labels: Sequence) -> None:
    """Raise when, in some slot, the target gives probability 0 to every logged action.

    Every importance weight is then 0: IPS would be a silent 0 and DR the reward model
    alone, so no estimate drawn from these logs means anything.
    """
    positive = np.bincount(slots, weights=(weights > 0).astype(float), minlength=len(labels))
    if (positive == 0).any():
        where = "" if len(labels) == 1 else f" at position {labels[int(np.argmin(positive))]!r}"
        raise ValueError(
            f"the target policy gives probability 0 to every logged action{where}: no overlap, "
            "the logs cannot evaluate it; check that target_probabilities and logged_actions "
            "use the same action columns, and that the logging policy ever took the actions "
            "the target takes"
        )


def warn_if_extreme(
    weights: np.ndarray, slots: np.ndarray, labels: Sequence, min_share: float = MIN_ESS_SHARE
) -> None:
    """``UserWarning`` when the effective sample size of the weights (in the worst slot) is
    below ``min_share`` of its rows: a few rows carry the estimate and its interval."""
    for k, label in enumerate(labels):
        w = weights[slots == k]
        ess = effective_sample_size(w)
        if ess < min_share * len(w):
            where = "" if len(labels) == 1 else f" at position {label!r}"
            warnings.warn(
                f"extreme importance weights{where}: effective sample size {ess:.1f} of "
                f"{len(w)} rows ({ess / len(w):.1%}, below {min_share:.0%}; max weight "
                f"{w.max():.3g}); the estimate rests on a few rows: consider clip=, "
                "switch_dr or a logging policy that explores more",
                UserWarning,
                stacklevel=3,
            )
            return


def estimator_terms(
    names: Sequence[str],
    r: np.ndarray,
    w: np.ndarray,
    a: np.ndarray,
    pi: np.ndarray,
    q: np.ndarray | None,
    clip: float | None = None,
    tau: float | None = None,
) -> Terms:
    """Per-row terms ``(P, N, D)``, each ``(len(names), n)``, of the estimators ``names``:
    estimate = ``sum(P) / n + sum(N) / sum(D)`` (module docstring for the formulas)."""
    n = len(r)
    wc = w if clip is None else np.minimum(w, clip)
    zero, one = np.zeros(n), np.ones(n)
    d = e = None
    if q is not None:
        d, e = (pi * q).sum(axis=1), r - q[np.arange(n), a]
    terms = {
        "ips": lambda: (wc * r, zero, one),
        "snips": lambda: (zero, wc * r, wc),
        "dm": lambda: (d, zero, one),
        "dr": lambda: (d + wc * e, zero, one),
        "sndr": lambda: (d, wc * e, wc),
        "switch_dr": lambda: (d + np.where(w <= tau, w * e, 0.0), zero, one),
    }
    rows = [terms[name]() for name in names]
    return tuple(np.array([row[j] for row in rows]) for j in range(3))  # type: ignore[return-value]


def slot_stat(terms: Terms, slots: np.ndarray, n_slots: int) -> Stat:
    """The estimates on a resample of rows (an index array), summed over slots.

    Per slot ``s``: ``sum_{i in s} P_i / n_s + sum_{i in s} N_i / sum_{i in s} D_i`` (a ratio
    with a zero denominator counts 0, as a resample without overlap would give; a slot
    missing from the resample makes the estimates NaN).
    """
    P, N, D = terms

    def stat(idx: np.ndarray) -> np.ndarray:
        s = slots[idx]
        count = np.bincount(s, minlength=n_slots).astype(float)
        out = np.empty(len(P))
        for j in range(len(P)):
            total = np.bincount(s, weights=P[j, idx], minlength=n_slots)
            mean = np.divide(total, count, out=np.full(n_slots, np.nan), where=count > 0)
            num = np.bincount(s, weights=N[j, idx], minlength=n_slots)
            den = np.bincount(s, weights=D[j, idx], minlength=n_slots)
            out[j] = (mean + np.divide(num, den, out=np.zeros(n_slots), where=den != 0)).sum()
        return out

    return stat


def check_options(
    names: Sequence[str], has_model: bool, clip: float | None, tau: float | None
) -> tuple[str, ...]:
    """The estimator names, checked against the options they need."""
    names = tuple(names)
    unknown = [x for x in names if x not in ESTIMATORS]
    if unknown or len(set(names)) != len(names) or not names:
        raise ValueError(f"estimators must be distinct names among {ESTIMATORS}; got {names}")
    if not has_model and NEEDS_MODEL.intersection(names):
        need = sorted(NEEDS_MODEL.intersection(names))
        raise ValueError(f"estimators {need} need reward_model (n, n_actions); got None")
    if clip is not None and not clip > 0:
        raise ValueError(f"clip must be a maximum importance weight > 0; got {clip}")
    if "switch_dr" in names and (tau is None or not tau >= 0):
        raise ValueError(f"switch_dr needs tau >= 0 (weights above it use the model); got {tau}")
    return names


def slot_index(positions: object, n: int) -> tuple[np.ndarray, list]:
    """``(n,)`` slot codes ``0..S-1`` and the slot labels, from ``positions`` (None: one)."""
    if positions is None:
        return np.zeros(n, dtype=np.intp), [None]
    p = np.asarray(positions)
    if p.shape != (n,) or not np.issubdtype(p.dtype, np.integer):
        raise ValueError(f"positions must be {n} integer slot labels; got {p.dtype} {p.shape}")
    labels, codes = np.unique(p, return_inverse=True)
    return codes.astype(np.intp), labels.tolist()
