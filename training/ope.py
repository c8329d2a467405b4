"""Off-policy evaluation: the value a new policy would have had, estimated from logged data.

Works on any log of (context, action, reward) with the logging policy's probability of each
logged action. ``off_policy_value`` estimates the mean reward of a target policy;
``incremental_policy_value`` the mean *incremental* value of an offers policy over sending
nothing (DESIGN section 6). Intervals are bootstrap percentiles over rows (the outcome model
is held fixed: fit it on other data, e.g. earlier campaigns, or cross-fit it with
:func:`training.ope_reward_model.cross_fitted_rewards`). The estimators themselves (clipped,
self-normalised, switch, per slot), the overlap check and the effective-sample-size warning
live in :mod:`training.ope_estimators`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from training import ope_estimators as est
from training.ope_estimators import MIN_ESS_SHARE

COLUMNS = ["estimate", "lo", "hi", "se", "n"]
Stat = Callable[[np.ndarray], np.ndarray]


def off_policy_value(
    rewards: np.ndarray,
    logged_actions: np.ndarray,
    logged_propensities: np.ndarray,
    target_probabilities: np.ndarray,
    reward_model: np.ndarray | None = None,
    n_bootstrap: int = 200,
    alpha: float = 0.05,
    random_state: int = 0,
    *,
    estimators: Sequence[str] | None = None,
    clip: float | None = None,
    tau: float | None = None,
    positions: np.ndarray | None = None,
    min_ess_share: float = MIN_ESS_SHARE,
) -> pd.DataFrame:
    """Estimate the mean reward per row the target policy would get.

    With importance weights ``w_i = pi(a_i | x_i) / mu(a_i | x_i)`` (target over logging
    probability of the logged action):

    - ``ips``: ``mean(w r)``; unbiased when the logging policy covers the target's actions.
    - ``snips``: ``sum(w r) / sum(w)``; slightly biased, lower variance, equivariant to a
      shift of the rewards.
    - ``dr``: ``mean(sum_a pi(a|x) q(x, a) + w (r - q(x, a_i)))`` with ``q = reward_model``;
      unbiased if either the propensities or the reward model are right.

    ``estimators`` adds ``dm``, ``sndr`` and ``switch_dr`` (formulas, and how ``clip``,
    ``tau`` and ``positions`` enter, in :mod:`training.ope_estimators`).

    Raises ``ValueError`` when the target gives probability 0 to every logged action (no
    overlap); warns (``UserWarning``) with the effective sample size ``(sum w)^2 / sum w^2``
    when it is below ``min_ess_share`` of the rows.

    Parameters
    ----------
    rewards : (n,) observed rewards.
    logged_actions : (n,) int index of the logged action into the action columns.
    logged_propensities : (n,) logging probability of the logged action, in (0, 1].
    target_probabilities : (n, n_actions) the target policy's action probabilities (rows sum
        to 1).
    reward_model : optional (n, n_actions) predicted expected reward of every action.
    n_bootstrap, alpha, random_state : percentile bootstrap over rows (0 = no interval).
    estimators : names among ``ips, snips, dm, dr, sndr, switch_dr`` (default: ``ips``,
        ``snips``, and ``dr`` with a ``reward_model``); all but the first two need the model.
    clip : optional maximum importance weight for ``ips``, ``snips``, ``dr``, ``sndr``.
    tau : weight threshold of ``switch_dr`` (model alone above it); required by it.
    positions : optional (n,) integer slot of each row; ``target_probabilities`` are then
        the target's at the row's slot, and the estimates are summed over slots.
    min_ess_share : warn below this effective-sample-size share of the rows (per slot).

    Returns
    -------
    DataFrame indexed by estimator (``ips``, ``snips``, ``dr`` if ``reward_model``) with
    ``estimate``, ``lo``, ``hi`` (the ``1 - alpha`` interval), ``se`` (bootstrap standard
    deviation) and ``n`` (rows).
    """
    r = _vector(rewards, "rewards")
    n = len(r)
    a, p, pi = _logged(logged_actions, logged_propensities, target_probabilities, n)
    q = None if reward_model is None else _matrix(reward_model, "reward_model", pi.shape)
    default = ("ips", "snips") + (() if q is None else ("dr",))
    names = est.check_options(default if estimators is None else estimators, q is not None,
                              clip, tau)  # fmt: skip
    slots, labels = est.slot_index(positions, n)
    w = est.importance_weights(pi, a, p)
    est.check_overlap(w, slots, labels)
    est.warn_if_extreme(w, slots, labels, min_ess_share)
    terms = est.estimator_terms(names, r, w, a, pi, q, clip, tau)
    stat = est.slot_stat(terms, slots, len(labels))
    return summarise(stat, list(names), n, n_bootstrap, alpha, random_state)


def incremental_policy_value(
    y: np.ndarray,
    logged_arm: np.ndarray,
    logged_propensity: np.ndarray,
    target_probabilities: np.ndarray,
    values: np.ndarray,
    costs: np.ndarray,
    outcome_model: np.ndarray | None = None,
    control: int = 0,
    n_bootstrap: int = 200,
    alpha: float = 0.05,
    random_state: int = 0,
    min_ess_share: float = MIN_ESS_SHARE,
) -> pd.DataFrame:
    """Estimate a policy's mean incremental value per row over sending nothing.

    As :func:`off_policy_value`: a ``ValueError`` when the target gives probability 0 to
    every logged arm (no overlap), a ``UserWarning`` with the effective sample size when it
    is below ``min_ess_share`` of the rows.

    With ``mu_a(x) = P(Y=1 | x, arm a)``, the incremental value of arm a is
    ``IV_a(x) = (mu_a(x) - mu_c(x)) v_a - c_a`` (0 for the control arm c), so

        V(pi) = E_x[ sum_a pi(a|x) IV_a(x) ] = E_x[ sum_a C_a(x) mu_a(x) - K(x) ]

    with ``C_a = pi(a|x) v_a`` for offers, ``C_c = -sum_a pi(a|x) v_a`` for the control and
    the known cost ``K = sum_a pi(a|x) c_a``. The value is linear in the ``mu_a``, so any
    unbiased per-row estimate of them gives an unbiased estimate of V:

    - ``dr``: ``mu_a = m_a + 1[A=a] (Y - m_a) / p`` (``m = outcome_model``, ``p`` the logged
      propensity), so the row term is ``sum_a C_a m_a + C_A (Y - m_A) / p - K``;
    - ``ips``: the same with ``m = 0``: ``C_A Y / p - K``;
    - ``snips``: each arm's term ``E[C_a mu_a]`` as ``mean(C_a)`` times the ``C_a / p``-
      weighted mean of Y over the rows logged with arm a. The ``C_a`` sum to 0 per row, so
      it is invariant to a shift of Y, as the incremental value is.

    Parameters
    ----------
    y : (n,) 0/1 (or real) outcomes.
    logged_arm : (n,) int index of the logged arm.
    logged_propensity : (n,) logging probability of the logged arm, in (0, 1].
    target_probabilities : (n, n_arms) target policy probabilities (rows sum to 1).
    values, costs : (n_arms,) value if converted and cost per contact (control's ignored).
    outcome_model : optional (n, n_arms) predicted ``mu_a(x)``, fit on other data.
    control : column of the control (no offer) arm.
    n_bootstrap, alpha, random_state : as in :func:`off_policy_value`.

    Returns
    -------
    DataFrame like :func:`off_policy_value`'s (rows ``ips``, ``snips``, ``dr``).
    """
    yv = _vector(y, "y")
    n = len(yv)
    a, p, pi = _logged(logged_arm, logged_propensity, target_probabilities, n)
    v, c = _arm_vector(values, "values", pi, control), _arm_vector(costs, "costs", pi, control)
    m = None if outcome_model is None else _matrix(outcome_model, "outcome_model", pi.shape)
    _check_weights(pi, a, p, min_ess_share)
    stat = _incremental_stat(yv, a, p, _coefficients(pi, v, control), pi @ c, m)
    names = ["ips", "snips"] + ([] if m is None else ["dr"])
    return summarise(stat, names, n, n_bootstrap, alpha, random_state)


def incremental_dr_terms(
    y: np.ndarray,
    logged_arm: np.ndarray,
    logged_propensity: np.ndarray,
    target_probabilities: np.ndarray,
    values: np.ndarray,
    costs: np.ndarray,
    outcome_model: np.ndarray,
    control: int = 0,
) -> np.ndarray:
    """The doubly robust row terms of :func:`incremental_policy_value` ``(n,)``: their mean is
    its ``dr`` estimate. Two policies' terms on the same rows give a paired comparison
    (:func:`paired_difference`)."""
    yv = _vector(y, "y")
    n = len(yv)
    a, p, pi = _logged(logged_arm, logged_propensity, target_probabilities, n)
    v, c = _arm_vector(values, "values", pi, control), _arm_vector(costs, "costs", pi, control)
    m = _matrix(outcome_model, "outcome_model", pi.shape)
    _check_weights(pi, a, p, MIN_ESS_SHARE)
    coef, rows = _coefficients(pi, v, control), np.arange(n)
    return (coef * m).sum(1) + coef[rows, a] * (yv - m[rows, a]) / p - pi @ c


def paired_difference(
    a: np.ndarray, b: np.ndarray, n_bootstrap: int = 1000, alpha: float = 0.05,
    random_state: int = 0,
) -> pd.DataFrame:  # fmt: skip
    """Means of two estimators' row terms on the SAME rows (e.g. :func:`incremental_dr_terms`
    of a challenger and a champion) and of their difference, with a paired percentile
    bootstrap (each resample draws the same rows for both). Rows ``a``, ``b``, ``a - b``."""
    a, b = _vector(a, "a"), _vector(b, "b")
    if len(a) != len(b):
        raise ValueError(f"a and b must be terms of the same rows; got {len(a)} and {len(b)}")
    terms = np.column_stack([a, b, a - b])
    return summarise(lambda idx: terms[idx].mean(axis=0), ["a", "b", "a - b"], len(a),
                     n_bootstrap, alpha, random_state)  # fmt: skip


def policy_value_table(
    policies: Mapping[str, np.ndarray],
    estimator: Callable[..., pd.DataFrame] = off_policy_value,
    **inputs: object,
) -> pd.DataFrame:
    """Evaluate several named target policies on the same log.

    ``policies`` maps a name to its ``target_probabilities``; ``inputs`` are the other
    arguments of ``estimator`` (:func:`off_policy_value` or :func:`incremental_policy_value`).
    The bootstrap resamples the same rows for every policy (same ``random_state``).
    Returns the estimators' rows indexed by (``policy``, ``estimator``).
    """
    frames = {
        name: estimator(target_probabilities=probs, **inputs) for name, probs in policies.items()
    }
    return pd.concat(frames, names=["policy", "estimator"])


# ---- estimators as functions of a row sample ------------------------------------------


def _incremental_stat(y, a, p, coef, cost, m) -> Stat:
    rows = np.arange(len(y))
    c_logged = coef[rows, a]
    ips_terms = c_logged * y / p - cost
    dr_terms = None if m is None else (coef * m).sum(1) + c_logged * (y - m[rows, a]) / p - cost

    def stat(idx: np.ndarray) -> np.ndarray:
        out = [ips_terms[idx].mean(), _snips_incremental(y, a, p, coef, cost, c_logged, idx)]
        return np.array(out + ([] if dr_terms is None else [dr_terms[idx].mean()]))

    return stat


def _check_weights(pi: np.ndarray, a: np.ndarray, p: np.ndarray, min_ess_share: float) -> None:
    """No overlap is an error, extreme importance weights a warning (one slot)."""
    slots, labels = est.slot_index(None, len(a))
    w = est.importance_weights(pi, a, p)
    est.check_overlap(w, slots, labels)
    est.warn_if_extreme(w, slots, labels, min_ess_share)


def _coefficients(pi: np.ndarray, v: np.ndarray, control: int) -> np.ndarray:
    """``C_a = pi(a|x) v_a`` for offers, ``C_c = -sum_a C_a`` for the control arm."""
    coef = pi * v
    coef[:, control] = -coef.sum(axis=1)
    return coef


def _snips_incremental(y, a, p, coef, cost, c_logged, idx) -> float:
    k = coef.shape[1]
    num = np.bincount(a[idx], weights=c_logged[idx] * y[idx] / p[idx], minlength=k)
    den = np.bincount(a[idx], weights=c_logged[idx] / p[idx], minlength=k)
    mean_y = np.divide(num, den, out=np.zeros(k), where=den != 0)
    return float(coef[idx].mean(axis=0) @ mean_y - cost[idx].mean())


# ---- bootstrap ------------------------------------------------------------------------


def summarise(
    stat: Stat, names: list[str], n: int, n_bootstrap: int, alpha: float, random_state: int
) -> pd.DataFrame:
    """Point estimates on all rows and percentile intervals over ``n_bootstrap`` resamples."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1); got {alpha}")
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0; got {n_bootstrap}")
    estimate = stat(np.arange(n))[: len(names)]
    rng = np.random.default_rng(random_state)
    draws = np.array([stat(rng.integers(0, n, n)) for _ in range(n_bootstrap)])
    draws = draws.reshape(n_bootstrap, len(names))
    nan = np.full(len(names), np.nan)
    lo, hi = np.quantile(draws, [alpha / 2, 1 - alpha / 2], axis=0) if n_bootstrap else (nan, nan)
    se = draws.std(axis=0, ddof=1) if n_bootstrap > 1 else nan
    data = {"estimate": estimate, "lo": lo, "hi": hi, "se": se, "n": n}
    return pd.DataFrame(data, index=pd.Index(names, name="estimator"))[COLUMNS]


# ---- input checks ---------------------------------------------------------------------


def _vector(values: object, name: str) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or len(v) == 0:
        raise ValueError(f"{name} must be a non-empty 1-d array; got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError(f"{name} must be finite; got {int((~np.isfinite(v)).sum())} bad rows")
    return v


def _matrix(values: object, name: str, shape: tuple[int, int]) -> np.ndarray:
    m = np.asarray(values, dtype=float)
    if m.shape != shape:
        raise ValueError(f"{name} must have shape {shape} (rows, actions); got {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError(f"{name} must be finite; got {int((~np.isfinite(m)).sum())} bad cells")
    return m


def _logged(actions, propensities, target, n) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked logged actions (int), propensities and target probabilities."""
    pi = np.asarray(target, dtype=float)
    if pi.ndim != 2 or pi.shape[0] != n:
        raise ValueError(f"target_probabilities must have shape ({n}, n_actions); got {pi.shape}")
    pi = _matrix(pi, "target_probabilities", pi.shape)
    sums = pi.sum(axis=1)
    if (pi < 0).any() or not np.allclose(sums, 1.0, atol=1e-6):
        bad = int(np.flatnonzero(~np.isclose(sums, 1.0, atol=1e-6) | (pi < 0).any(1))[0])
        raise ValueError(f"target_probabilities rows must be >= 0 and sum to 1; "
                         f"row {bad} sums to {sums[bad]:.6g}")  # fmt: skip
    a = _actions(actions, n, pi.shape[1])
    p = _vector(propensities, "logged_propensities")
    if len(p) != n or not ((p > 0) & (p <= 1)).all():
        bad = p[(p <= 0) | (p > 1)][:3].tolist() if len(p) == n else f"{len(p)} rows, not {n}"
        raise ValueError(f"logged_propensities must be {n} values in (0, 1]; got {bad}")
    return a, p, pi


def _actions(actions: object, n: int, k: int) -> np.ndarray:
    a = np.asarray(actions)
    if a.shape != (n,) or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"logged actions must be {n} integer indices; got {a.dtype} {a.shape}")
    if ((a < 0) | (a >= k)).any():
        raise ValueError(f"logged actions must index the {k} action columns; "
                         f"got {sorted(set(a[(a < 0) | (a >= k)].tolist()))[:5]}")  # fmt: skip
    return a.astype(np.intp)


def _arm_vector(values: object, name: str, pi: np.ndarray, control: int) -> np.ndarray:
    v = np.asarray(values, dtype=float).copy()
    if v.shape != (pi.shape[1],) or not np.isfinite(v).all():
        raise ValueError(f"{name} must be {pi.shape[1]} finite numbers (one per arm)")
    if not 0 <= control < len(v):
        raise ValueError(f"control must index an arm (0..{len(v) - 1}); got {control}")
    v[control] = 0.0
    return v
