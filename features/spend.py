"""The Gamma-Gamma spend model (Fader, Hardie & Lee 2005, "RFM and CLV"), fitted without labels.

The companion of the BG/NBD model (``features.btyd``) for customer lifetime value: BG/NBD
forecasts how many purchases, this model how much each is worth. A customer's transaction
values are ``z ~ Gamma(p, rate nu)`` around a customer-level ``nu ~ Gamma(q, rate v)``; given
``x`` repeat transactions with mean value ``m`` it gives the expected value of the customer's
future transactions. A transaction is a purchase day (as in BG/NBD). Units: ``monetary_value``,
``v`` and every spend are in the currency of the purchase amounts; ``p`` and ``q`` have none.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.optimize import minimize
from scipy.special import digamma, gammaln

from features.btyd import (
    _MAX_ABS_LOG_PARAM,
    PenalisedMLE,
    _checked_events,
    _checked_weights,
    _require,
)

PARAM_NAMES = ("p", "q", "v")


def spend_summary(
    code: np.ndarray, ts_us: np.ndarray, amount: np.ndarray, as_of_us: int, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-customer ``(frequency, monetary_value)`` from flat purchase-event arrays.

    Parameters
    ----------
    code : int array, the customer code (0..n-1) of each purchase event, in any order.
    ts_us : int64 array, the event's UTC timestamp in microseconds since the epoch, all <= as_of.
    amount : float array, the event's purchase amount (>= 0, currency units).
    as_of_us : the as-of time in microseconds since the epoch.
    n : number of customers.

    Returns
    -------
    Two float64 arrays of length ``n``: ``frequency`` = distinct purchase days - 1 (as in
    ``features.btyd.purchase_summary``) and ``monetary_value`` = the mean amount of the repeat
    purchase days (the first purchase day left out), where one UTC day's purchases are one
    transaction worth their summed amount. ``monetary_value`` is NaN where frequency is 0;
    customers without a purchase get NaN in both.
    """
    code, day = _checked_events(code, ts_us, as_of_us, n)
    amount = np.asarray(amount, dtype=np.float64)
    if amount.shape != code.shape:
        raise ValueError(f"amount must have one value per event ({len(code)}); got {amount.shape}")
    ok = np.isfinite(amount) & (amount >= 0)
    _require(bool(ok.all()), "amount", "finite and >= 0", amount, ~ok)
    days, repeat = np.zeros(n, dtype=np.int64), np.zeros(n)
    if len(day):
        lo, span = int(day.min()), int(day.max() - day.min()) + 1
        if n * span >= 2**62:
            raise ValueError(f"spend_summary: n * days spanned = {n} * {span} overflows int64")
        keys = code * span + (day - lo)
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])  # one per customer-day
        day_amount = np.add.reduceat(amount[order], starts)
        cust = keys[starts] // span
        later = np.r_[False, cust[1:] == cust[:-1]]  # not the customer's first purchase day
        days = np.bincount(cust, minlength=n)
        repeat = np.bincount(cust[later], weights=day_amount[later], minlength=n)
    frequency = np.where(days > 0, days - 1.0, np.nan)
    monetary = np.divide(repeat, days - 1.0, out=np.full(n, np.nan), where=days > 1)
    return frequency, monetary


def simulate_gamma_gamma(
    params: Mapping[str, float], frequency: np.ndarray, seed: int = 0
) -> np.ndarray:
    """Mean transaction values drawn from the model itself, one per customer: ``nu ~ Gamma(q,
    rate v)``, then the mean of ``frequency`` draws ``z ~ Gamma(p, rate nu)`` (drawn at once as
    ``Gamma(p x, rate x nu)``). NaN where ``frequency`` is 0."""
    p, q, v = (float(params[k]) for k in PARAM_NAMES)
    x, _ = _checked(frequency, 0.0)
    _require(not np.isnan(x).any(), "frequency", "not NaN", x, np.isnan(x))
    rng = np.random.default_rng(seed)
    nu = rng.gamma(q, 1.0 / v, size=x.shape)
    mean = rng.gamma(p * x, 1.0 / (np.maximum(x, 1.0) * nu))  # shape 0 draws 0
    return np.where(x > 0, mean, np.nan)


def log_likelihood(params: Mapping[str, float], frequency, monetary_value, weights=None) -> float:
    """Total log-likelihood of the usable customers (see ``GammaGamma.fit``), weighted."""
    x, m, w = _usable(frequency, monetary_value, weights)
    return float(_log_likelihood(tuple(params[k] for k in PARAM_NAMES), x, m) @ w)


class GammaGamma(PenalisedMLE):
    """The Gamma-Gamma spend model, fitted by maximum likelihood (scikit-learn contract).

    Parameters
    ----------
    penalizer : L2 penalty ``penalizer * sum(log(params)**2)`` added to the mean negative
        log-likelihood per customer (shrinks the parameters towards 1; 0 = plain MLE).
    max_iter : most L-BFGS-B iterations.
    tol : convergence tolerance of L-BFGS-B (``ftol`` and ``gtol``).

    Attributes
    ----------
    params_ : dict ``p``, ``q``, ``v`` (currency units).
    log_likelihood_ : the total log-likelihood at ``params_`` (without the penalty).
    n_customers_ : number of customers fitted (the sum of their weights).
    """

    def fit(self, frequency, monetary_value, weights=None) -> GammaGamma:
        """Fit on per-customer ``frequency`` (repeat transactions) and ``monetary_value`` (their
        mean value; see ``spend_summary``). Customers with frequency 0 or NaN, or a monetary
        value that is NaN or 0, are left out. ``weights`` count identical rows."""
        x, m, w = _usable(frequency, monetary_value, weights)
        params = np.exp(self._minimize(x, m, w))
        self.params_ = dict(zip(PARAM_NAMES, params.tolist(), strict=True))
        self.log_likelihood_ = float(_log_likelihood(params, x, m) @ w)
        self.n_customers_ = float(w.sum())
        return self

    def _minimize(self, x: np.ndarray, m: np.ndarray, w: np.ndarray) -> np.ndarray:
        if self.penalizer < 0:
            raise ValueError(f"penalizer must be >= 0; got {self.penalizer}")
        start = np.log([1.0, 2.0, float(m @ w) / w.sum()])  # population mean = mean of m
        with np.errstate(all="ignore"):  # far line-search steps overflow; judged below
            result = minimize(_neg_mean_ll_and_grad, start, args=(x, m, w, self.penalizer),
                              jac=True, method="L-BFGS-B", tol=self.tol,
                              options={"maxiter": self.max_iter})  # fmt: skip
        stuck = np.abs(result.x) > _MAX_ABS_LOG_PARAM
        if not result.success or not np.isfinite(result.fun) or stuck.any():
            found = dict(zip(PARAM_NAMES, np.exp(result.x).round(6).tolist(), strict=True))
            raise ValueError(
                f"GammaGamma.fit did not converge ({result.message}; parameters reached {found}):"
                " try a small penalizer (e.g. 0.001), a larger max_iter, or more repeat buyers"
                " (if monetary_value barely varies, p, q and v are not pinned down)"
            )
        return result.x

    def population_mean_spend(self) -> float:
        """E[Z] = p v / (q - 1): the mean transaction value of a customer not yet seen."""
        p, q, v = self._params(finite_mean=True)
        return p * v / (q - 1.0)

    def conditional_expected_average_profit(self, frequency, monetary_value) -> np.ndarray:
        """E[Z | x, m] = p (v + x m) / (p x + q - 1) per customer: the expected value of the
        customer's future transactions, a weighted average of the population mean (weight
        ``(q - 1) / (p x + q - 1)``) and the observed mean ``m`` (weight ``p x / (p x + q - 1)``).
        The population mean where frequency is 0 or monetary_value NaN; NaN where frequency is
        NaN (no purchase)."""
        p, q, v = self._params(finite_mean=True)
        x, m = _checked(frequency, monetary_value)
        seen = (x > 0) & ~np.isnan(m)
        xs, ms = np.where(seen, x, 0.0), np.where(seen, m, 0.0)
        return np.where(np.isnan(x), np.nan, p * (v + xs * ms) / (p * xs + q - 1.0))

    def sample(self, frequency, seed: int = 0) -> np.ndarray:
        """Mean transaction values drawn from the fitted model; see ``simulate_gamma_gamma``."""
        return simulate_gamma_gamma(dict(zip(PARAM_NAMES, self._params(), strict=True)),
                                    frequency, seed)  # fmt: skip

    def _params(self, finite_mean: bool = False) -> tuple[float, float, float]:
        if not hasattr(self, "params_"):
            raise ValueError(
                "this GammaGamma is not fitted yet: call fit(frequency, monetary_value)"
            )
        p, q, v = (self.params_[k] for k in PARAM_NAMES)
        if finite_mean and q <= 1:
            raise ValueError(
                f"the mean spend is infinite under the fitted parameters: q must be > 1; got "
                f"q = {q:.6g} (spend too heavy-tailed: check monetary_value for outliers)"
            )
        return p, q, v


def _log_likelihood(params, x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Per-customer ``log L(p, q, v | x, m)`` (x >= 1, m > 0): the density of the mean of x
    Gamma(p, nu) values, ``Gamma(p x, rate x nu)``, integrated over ``nu ~ Gamma(q, rate v)``."""
    p, q, v = params
    px = p * x
    return (gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(v) + (px - 1) * np.log(m)
            + px * np.log(x) - (px + q) * np.log(v + m * x))  # fmt: skip


def _neg_mean_ll_and_grad(log_params, x, m, w, penalizer: float):
    """Weighted mean negative log-likelihood plus ``penalizer * sum(log_params**2)``, and its
    gradient with respect to the log-parameters (for ``scipy.optimize.minimize(jac=True)``)."""
    params = np.exp(log_params)
    p, q, v = params
    px, log_vmx = p * x, np.log(v + m * x)
    d_total = digamma(px + q)
    grads = np.stack([x * (d_total - digamma(px) + np.log(m * x) - log_vmx),
                      d_total - digamma(q) + np.log(v) - log_vmx,
                      q / v - (px + q) / (v + m * x)]) @ w  # fmt: skip
    total = w.sum()
    value = -(_log_likelihood(params, x, m) @ w) / total + penalizer * np.sum(log_params**2)
    return value, -grads * params / total + 2.0 * penalizer * log_params


def _checked(frequency, monetary_value) -> tuple[np.ndarray, np.ndarray]:
    """Both as 1-d float arrays (scalars broadcast; NaN kept) after checking their rules."""
    values = [np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in (frequency, monetary_value)]
    try:
        x, m = (np.ravel(v) for v in np.broadcast_arrays(*values))
    except ValueError:
        raise ValueError("frequency and monetary_value must have one length (or be scalars); "
                         f"got shapes {values[0].shape}, {values[1].shape}") from None  # fmt: skip
    if not len(x):
        raise ValueError("no customers: frequency and monetary_value are empty")
    for name, v in (("frequency", x), ("monetary_value", m)):
        _require(not (v < 0).any(), name, ">= 0", v, v < 0)
        _require(not np.isinf(v).any(), name, "finite", v, np.isinf(v))
    fractional = np.abs(x - np.round(x)) > 0  # NaN passes
    _require(not fractional.any(), "frequency", "a whole number", x, fractional)
    return x, m


def _usable(frequency, monetary_value, weights) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The customers a fit uses (frequency >= 1, monetary_value > 0, weight > 0)."""
    x, m = _checked(frequency, monetary_value)
    w = _checked_weights(weights, len(x))
    keep = (x >= 1) & (m > 0) & (w > 0)
    if not keep.any():
        raise ValueError(
            f"GammaGamma needs repeat buyers: none of the {len(x)} customers has frequency >= 1,"
            " monetary_value > 0 and a positive weight"
        )
    return x[keep], m[keep], w[keep]
