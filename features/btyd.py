"""Buy-till-you-die: the BG/NBD model (Fader, Hardie & Lee 2005), fitted without labels.

Customers who buy without a contract leave silently. From each customer's purchase summary
(``frequency`` x = repeat purchase days, ``recency`` t_x = days from the first to the last
purchase day, ``T`` = days from the first purchase day to as_of) the model gives P(alive),
expected purchases over any horizon (also longer than the history) and P(a purchase within a
horizon). Units: days throughout. The formulas live in ``features._btyd_math``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from features import _btyd_math as bm

DAY_US = 86_400_000_000
PARAM_NAMES = ("r", "alpha", "a", "b")
# a fitted log-parameter beyond this is a run-away (the data does not pin the parameter down)
_MAX_ABS_LOG_PARAM = 15.0


def purchase_summary(
    code: np.ndarray, ts_us: np.ndarray, as_of_us: int, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-customer ``(frequency, recency, T)`` from flat purchase-event arrays.

    Parameters
    ----------
    code : int array, the customer code (0..n-1) of each purchase event, in any order.
    ts_us : int64 array, the event's UTC timestamp in microseconds since the epoch, all <= as_of.
    as_of_us : the as-of time in microseconds since the epoch.
    n : number of customers.

    Returns
    -------
    Three float64 arrays of length ``n``: ``frequency`` = distinct purchase days - 1 (several
    purchases on one UTC calendar day count once), ``recency`` = days between the first and the
    last purchase day, ``T`` = days from the first purchase day to as_of. Purchase times are
    floored to the start of their UTC day; as_of is kept exact (fractional days), so a purchase
    on the as-of day gives ``recency <= T``. Customers without a purchase get NaN in all three.
    """
    code, day = _checked_events(code, ts_us, as_of_us, n)
    count, first, last = np.zeros(n, dtype=np.int64), np.full(n, np.nan), np.full(n, np.nan)
    if len(day):
        lo, span = int(day.min()), int(day.max() - day.min()) + 1
        if n * span >= 2**62:
            raise ValueError(f"purchase_summary: n * days spanned = {n} * {span} overflows int64")
        keys = np.sort(code * span + (day - lo))  # (np.unique is much slower on numpy 2.4)
        keys = keys[np.r_[True, keys[1:] != keys[:-1]]]
        cust, offset = np.divmod(keys, span)  # one row per customer-day, in order
        count = np.bincount(cust, minlength=n)
        starts = np.flatnonzero(np.r_[True, cust[1:] != cust[:-1]])
        ends = np.r_[starts[1:], len(cust)] - 1
        first[cust[starts]], last[cust[ends]] = offset[starts] + lo, offset[ends] + lo
    frequency = np.where(count > 0, count - 1.0, np.nan)
    return frequency, last - first, as_of_us / DAY_US - first


def _checked_events(code, ts_us, as_of_us: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``code`` as int64 and the UTC day number of each event, after checking the arrays."""
    code, ts_us = np.asarray(code), np.asarray(ts_us)
    if code.shape != ts_us.shape or code.ndim != 1:
        raise ValueError(
            f"code and ts_us must be 1-d of one length; got {code.shape}, {ts_us.shape}"
        )
    for name, values in (("code", code), ("ts_us", ts_us)):
        if not np.issubdtype(values.dtype, np.integer):
            raise ValueError(f"{name} must be an integer array; got dtype {values.dtype}")
    _require(code.size == 0 or (code.min() >= 0 and code.max() < n), "code", f"in 0..{n - 1}",
             code, (code < 0) | (code >= n))  # fmt: skip
    _require(bool((ts_us <= as_of_us).all()), "ts_us", f"<= as_of_us ({as_of_us})",
             ts_us, ts_us > as_of_us)  # fmt: skip
    return code.astype(np.int64), np.floor_divide(ts_us.astype(np.int64), DAY_US)


def rfm_summary(
    events: pd.DataFrame, as_of: object, purchase_roles: Sequence[str] = ("purchase",)
) -> pd.DataFrame:
    """``purchase_summary`` of a validated events frame.

    Parameters
    ----------
    events : columns ``customer_id``, ``timestamp`` (UTC; naive is read as UTC), ``role``.
    as_of : timestamp (naive is UTC); only events with ``timestamp <= as_of`` count.
    purchase_roles : the roles that count as a purchase.

    Returns
    -------
    DataFrame with columns ``customer_id``, ``frequency``, ``recency``, ``T`` (float, days),
    one row per customer with at least one purchase up to as_of, sorted by ``customer_id``.
    """
    missing = sorted({"customer_id", "timestamp", "role"} - set(events.columns))
    if missing:
        raise ValueError(
            f"events must have columns customer_id, timestamp, role; missing {missing}"
        )
    when = pd.Timestamp(as_of)
    when = when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")
    as_of_us = int(np.datetime64(when.tz_convert(None), "us").astype(np.int64))
    ts = pd.to_datetime(events["timestamp"], utc=True).dt.as_unit("us").array.asi8
    keep = events["role"].isin(list(purchase_roles)).to_numpy() & (ts <= as_of_us)
    codes, labels = pd.factorize(events["customer_id"].to_numpy()[keep], sort=True)
    x, tx, age = purchase_summary(codes, ts[keep], as_of_us, len(labels))
    return pd.DataFrame({"customer_id": labels, "frequency": x, "recency": tx, "T": age})


def simulate_bgnbd(
    params: Mapping[str, float], T: np.ndarray | float, seed: int = 0, holdout_days: float = 0.0
) -> pd.DataFrame:
    """Customers drawn from the BG/NBD model itself (for parameter-recovery and forecast tests).

    ``lambda ~ Gamma(r, scale 1/alpha)``, ``p ~ Beta(a, b)``; Poisson purchases at rate lambda
    after the first purchase at time 0; right after each repeat purchase the customer drops out
    with probability p.

    Parameters
    ----------
    params : ``{"r", "alpha", "a", "b"}``.
    T : observation length in days per customer (array), or one value for all.
    seed : seed of the random generator.
    holdout_days : also count purchases in ``(T, T + holdout_days]``.

    Returns
    -------
    DataFrame with float columns ``frequency``, ``recency``, ``T``, ``holdout_purchases``.
    """
    values = tuple(float(params[name]) for name in PARAM_NAMES)
    return pd.DataFrame(bm.simulate(values, np.atleast_1d(T), seed, holdout_days))


def log_likelihood(params: Mapping[str, float], frequency, recency, T, weights=None) -> float:
    """Total BG/NBD log-likelihood of the customers (weighted by ``weights``, default 1)."""
    x, tx, age, _ = _checked(frequency, recency, T, allow_missing=False)
    data = bm.Summaries.of(x, tx, age, _checked_weights(weights, len(x)))
    return float(bm.log_likelihood(tuple(params[k] for k in PARAM_NAMES), data) @ data.w)


class PenalisedMLE:
    """The constructor parameters shared by the maximum-likelihood models (``BGNBD``,
    ``features.spend.GammaGamma``) and the scikit-learn ``get_params``/``set_params`` on them."""

    def __init__(self, penalizer: float = 0.0, max_iter: int = 2000, tol: float = 1e-10):
        self.penalizer = penalizer
        self.max_iter = max_iter
        self.tol = tol

    def get_params(self, deep: bool = True) -> dict[str, float]:
        """The constructor parameters (scikit-learn's ``clone`` and searches use these)."""
        return {"penalizer": self.penalizer, "max_iter": self.max_iter, "tol": self.tol}

    def set_params(self, **params: float):
        unknown = sorted(set(params) - set(self.get_params()))
        if unknown:
            raise ValueError(f"{type(self).__name__} has no parameter {unknown}; it has "
                             f"{list(self.get_params())}")  # fmt: skip
        vars(self).update(params)
        return self


class BGNBD(PenalisedMLE):
    """The BG/NBD model, fitted by maximum likelihood (scikit-learn estimator contract).

    Parameters
    ----------
    penalizer : L2 penalty ``penalizer * sum(log(params)**2)`` added to the mean negative
        log-likelihood per customer (shrinks the parameters towards 1; 0 = plain MLE).
    max_iter : most L-BFGS-B iterations.
    tol : convergence tolerance of L-BFGS-B (``ftol`` and ``gtol``).

    Attributes
    ----------
    params_ : dict ``r``, ``alpha`` (days), ``a``, ``b``.
    log_likelihood_ : the total log-likelihood at ``params_`` (without the penalty).
    n_customers_ : number of customers fitted (the sum of the weights).
    converged_ : whether the optimiser converged (a fit that does not, raises).
    """

    def fit(self, frequency, recency, T, weights=None) -> BGNBD:
        """Fit on per-customer summaries (days; see ``purchase_summary``).

        ``weights`` are counts of identical ``(frequency, recency, T)`` rows; identical rows
        are also merged here, so passing one row per customer is just as fast.
        """
        x, tx, age, _ = _checked(frequency, recency, T, allow_missing=False)
        data = bm.Summaries.merged(x, tx, age, _checked_weights(weights, len(x)))
        if not (data.x > 0).any():
            raise ValueError("BGNBD.fit needs repeat buyers: every frequency is 0")
        params = tuple(np.exp(self._minimize(data)))
        self.params_ = {k: float(v) for k, v in zip(PARAM_NAMES, params, strict=True)}
        self.log_likelihood_ = float(bm.log_likelihood(params, data) @ data.w)
        self.n_customers_ = float(data.w.sum())
        self.converged_ = True
        return self

    def _minimize(self, data: bm.Summaries) -> np.ndarray:
        if self.penalizer < 0:
            raise ValueError(f"penalizer must be >= 0; got {self.penalizer}")
        rate = float(data.x @ data.w) / max(float(data.T @ data.w), 1e-9)  # r / alpha a day
        start = np.log([1.0, 1.0 / max(rate, 1e-6), 1.0, 1.0])
        with np.errstate(all="ignore"):  # far line-search steps overflow; judged below
            result = minimize(bm.neg_mean_ll_and_grad, start, args=(data, self.penalizer),
                              jac=True, method="L-BFGS-B", tol=self.tol,
                              options={"maxiter": self.max_iter})  # fmt: skip
        stuck = np.abs(result.x) > _MAX_ABS_LOG_PARAM
        if not result.success or not np.isfinite(result.fun) or stuck.any():
            found = dict(zip(PARAM_NAMES, np.exp(result.x).round(6).tolist(), strict=True))
            raise ValueError(
                f"BGNBD.fit did not converge ({result.message}; parameters reached {found}): "
                "try a small penalizer (e.g. 0.001), a larger max_iter, or more customers with "
                "repeat purchases and a longer history"
            )
        return result.x

    def p_alive(self, frequency, recency, T) -> np.ndarray:
        """P(alive at T | frequency, recency, T) per customer; 1 where frequency is 0, NaN
        where an input is NaN."""
        x, tx, age, missing = _checked(frequency, recency, T)
        return np.where(missing, np.nan, bm.p_alive(self._params(), x, tx, age))

    def expected_purchases(self, t, frequency, recency, T) -> np.ndarray:
        """E[purchases in (T, T + t] | frequency, recency, T] per customer; ``t`` in days
        (one horizon or one per customer), any length (also beyond the history)."""
        x, tx, age, missing = _checked(frequency, recency, T)
        out = bm.expected_purchases(self._params(), _checked_horizon(t), x, tx, age)
        return np.where(missing, np.nan, out)

    def prob_purchase_within(self, t, frequency, recency, T) -> np.ndarray:
        """P(at least one purchase in (T, T + t] | frequency, recency, T) per customer:
        ``P(alive) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + frequency))``."""
        x, tx, age, missing = _checked(frequency, recency, T)
        out = bm.prob_purchase_within(self._params(), _checked_horizon(t), x, tx, age)
        return np.where(missing, np.nan, out)

    def expected_purchases_new(self, t) -> np.ndarray | float:
        """E[X(t)]: expected repeat purchases in the first ``t`` days after a new customer's
        first purchase (the paper's eq. 9)."""
        out = bm.expected_given_alive(self._params(), _checked_horizon(t), 0.0, 0.0)
        return float(out) if np.ndim(out) == 0 else out

    def sample(
        self, n_customers: int, T: np.ndarray | float, seed: int = 0, holdout_days: float = 0.0
    ) -> pd.DataFrame:
        """``n_customers`` drawn from the fitted model; see ``simulate_bgnbd``."""
        age = np.broadcast_to(np.asarray(T, dtype=np.float64), (n_customers,))
        return simulate_bgnbd(self.params_, age, seed, holdout_days)

    def _params(self) -> tuple[float, float, float, float]:
        if not hasattr(self, "params_"):
            raise ValueError("this BGNBD is not fitted yet: call fit(frequency, recency, T)")
        return tuple(self.params_[k] for k in PARAM_NAMES)


def _require(ok: bool, field: str, rule: str, values: np.ndarray, bad: np.ndarray) -> None:
    """Raise ``<field> must be <rule>; got <value> in <k> rows (first: row <i>)`` unless ok."""
    if not ok:
        rows = np.flatnonzero(np.broadcast_to(bad, np.shape(values)))
        first = np.ravel(values)[rows[0]]
        raise ValueError(f"{field} must be {rule}; got {first} in {len(rows)} rows "
                         f"(first: row {rows[0]})")  # fmt: skip


def _checked(frequency, recency, T, allow_missing: bool = True) -> tuple[np.ndarray, ...]:
    """The three summaries as 1-d float arrays (scalars broadcast) and the mask of rows with
    a NaN (rejected unless ``allow_missing``), after checking the model's rules."""
    arrays = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, dtype=np.float64))
                                   for v in (frequency, recency, T)))  # fmt: skip
    x, tx, age = (np.ravel(v) for v in arrays)
    missing = np.isnan(x) | np.isnan(tx) | np.isnan(age)
    if not allow_missing:
        _require(not missing.any(), "frequency, recency and T", "not NaN (drop customers "
                 "without a purchase)", x + tx + age, missing)  # fmt: skip
    if not len(x):
        raise ValueError("no customers: frequency, recency and T are empty")
    for name, v in (("frequency", x), ("recency", tx), ("T", age)):
        _require(bool(np.all((v >= 0) | np.isnan(v))), name, ">= 0", v, v < 0)
        _require(not np.isinf(v).any(), name, "finite", v, np.isinf(v))
    _require(bool(np.all((x == np.round(x)) | missing)), "frequency", "a whole number", x,
             x != np.round(x))  # fmt: skip
    _require(not (tx > age).any(), "recency", "<= T", tx, tx > age)
    _require(not ((x == 0) & (tx != 0)).any(), "recency", "0 where frequency is 0", tx,
             (x == 0) & (tx != 0))  # fmt: skip
    return x, tx, age, missing


def _checked_weights(weights: Iterable[float] | None, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n)
    w = np.ravel(np.asarray(weights, dtype=np.float64))
    if w.shape != (n,):
        raise ValueError(f"weights must have one value per customer ({n}); got {w.shape}")
    _require(bool(np.all(np.isfinite(w) & (w >= 0))), "weights", "finite and >= 0", w,
             ~(np.isfinite(w) & (w >= 0)))  # fmt: skip
    if w.sum() <= 0:
        raise ValueError("no customers: the weights sum to 0")
    return w


def _checked_horizon(t) -> np.ndarray:
    t = np.asarray(t, dtype=np.float64)
    _require(bool(np.all(np.isfinite(t) & (t >= 0))), "t", "finite and >= 0 (days)", t,
             ~(np.isfinite(t) & (t >= 0)))  # fmt: skip
    return t
