"""The BG/NBD model's formulas (Fader, Hardie & Lee 2005), vectorised over customers.

Notation as in the paper: ``x`` repeat purchases, ``tx`` the time of the last one and ``T`` the
length of the observation, all counted from the customer's first purchase, in days. The
parameters ``(r, alpha, a, b)``: purchase rate ``lambda ~ Gamma(r, rate alpha)`` while alive,
drop-out probability ``p ~ Beta(a, b)`` right after each repeat purchase.
Everything here is pure numpy/scipy; ``features.btyd`` validates inputs and owns the API.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.integrate import quad_vec
from scipy.special import betaln, digamma, expit, exprel, gammaln, hyp2f1

# the most terms of expected_given_alive's power series
_SERIES_TERMS = 400
# from this ``a`` on, the Beta(a, b + x) posterior of the drop-out probability is integrated by
# Gauss-Legendre over its mean +- 12 sd (the adaptive quadrature's p^a and (1-p)^b
# substitutions squash a narrow posterior to 0, e.g. a = 4, b = 1000); below it the density's
# mass near p = 0 (where the integrand is steep for long horizons) needs the quadrature
_NARROW_A = 2.0


@dataclass(frozen=True)
class Summaries:
    """Customers' ``x``, ``tx``, ``T`` with weights ``w``, and the distinct ``x_values`` (the
    likelihood's gamma functions are evaluated once per distinct x), each row's ``x_index``
    into them and the weight per distinct value ``x_weight``."""

    x: np.ndarray
    tx: np.ndarray
    T: np.ndarray
    w: np.ndarray
    x_values: np.ndarray
    x_index: np.ndarray
    x_weight: np.ndarray

    @classmethod
    def of(cls, x, tx, T, w=None) -> Summaries:
        w = np.ones(len(x)) if w is None else w
        values, index = np.unique(x, return_inverse=True)
        index = index.ravel()
        return cls(x, tx, T, w, values, index, np.bincount(index, w, minlength=len(values)))

    @classmethod
    def merged(cls, x, tx, T, w) -> Summaries:
        """Identical ``(x, tx, T)`` rows merged into one with the summed weight (rows of
        weight 0 dropped): real summaries in whole days repeat a lot."""
        order = np.lexsort((T, tx, x))
        x, tx, T, w = x[order], tx[order], T[order], w[order]
        new = np.r_[True, (np.diff(x) != 0) | (np.diff(tx) != 0) | (np.diff(T) != 0)]
        total = np.bincount(np.cumsum(new) - 1, weights=w)
        keep = total > 0
        return cls.of(x[new][keep], tx[new][keep], T[new][keep], total[keep])


def log_likelihood(params, data: Summaries) -> np.ndarray:
    """Per-customer log-likelihood ``log L(r, alpha, a, b | x, tx, T)`` (the paper's eq. 6,
    in log space); ``params`` is ``(r, alpha, a, b)``, all > 0."""
    return _terms(params, data)[0]


def _terms(params, d: Summaries):
    """The log-likelihood, the posterior weight ``pi4`` of "dropped out right after tx" and
    ``log(alpha + T)``, ``log(alpha + tx)``."""
    r, alpha, a, b = params
    xu = d.x_values
    per_x = gammaln(r + xu) - gammaln(r) + r * np.log(alpha) + gammaln(a + b)
    per_x += gammaln(b + xu) - gammaln(b) - gammaln(a + b + xu)
    log_odds = np.where(xu > 0, np.log(a) - np.log(b + np.maximum(xu, 1) - 1), -np.inf)
    log_T, log_tx = np.log(alpha + d.T), np.log(alpha + d.tx)
    a3 = -(r + d.x) * log_T
    a4 = log_odds[d.x_index] - (r + d.x) * log_tx
    diff = a4 - a3  # -inf where x == 0
    both = np.maximum(a3, a4) + np.log1p(np.exp(-np.abs(diff)))  # log(e^a3 + e^a4), stable
    return per_x[d.x_index] + both, expit(diff), log_T, log_tx


def neg_mean_ll_and_grad(log_params, d: Summaries, penalizer: float):
    """Weighted mean negative log-likelihood plus ``penalizer * sum(log_params**2)``, and its
    gradient with respect to the log-parameters (for ``scipy.optimize.minimize(jac=True)``)."""
    params = np.exp(log_params)
    r, alpha, a, b = params
    ll, pi4, log_T, log_tx = _terms(params, d)
    xu, w_pi4, w_pi3 = d.x_values, d.w * pi4, d.w * (1.0 - pi4)
    d_ab = digamma(a + b) - digamma(a + b + xu)
    by_x = np.stack([digamma(r + xu) - digamma(r) + np.log(alpha), d_ab,
                     d_ab + digamma(b + xu) - digamma(b)]) @ d.x_weight  # fmt: skip
    pi4_by_x = np.bincount(d.x_index, w_pi4, minlength=len(xu))
    total = d.x_weight.sum()
    grads = np.array([
        by_x[0] - w_pi3 @ log_T - w_pi4 @ log_tx,
        r / alpha * total - (r + d.x) @ (w_pi3 / (alpha + d.T) + w_pi4 / (alpha + d.tx)),
        by_x[1] + w_pi4.sum() / a,
        by_x[2] - pi4_by_x @ (1.0 / (b + np.maximum(xu, 1) - 1)),
    ]) / total  # fmt: skip
    value = -(ll @ d.w) / total + penalizer * np.sum(log_params**2)
    return value, -grads * params + 2.0 * penalizer * log_params


def p_alive(params, x, tx, T) -> np.ndarray:
    """P(alive at T | x, tx, T) (the paper's eq. 11); 1 where ``x == 0``."""
    r, alpha, a, b = params
    log_odds = np.log(a) - np.log(b + np.maximum(x, 1) - 1)
    log_odds = log_odds + (r + x) * (np.log(alpha + T) - np.log(alpha + tx))
    return np.where(x > 0, expit(-log_odds), 1.0)


def prob_purchase_within(params, t, x, tx, T) -> np.ndarray:
    """P(at least one purchase in (T, T + t] | x, tx, T).

    Given alive, ``lambda | data ~ Gamma(r + x, alpha + T)`` and a drop-out happens only right
    after a purchase, so P(no purchase | alive) = E[exp(-lambda t)] = ((alpha+T)/(alpha+T+t))^(r+x).
    """
    r, alpha = params[:2]
    none = np.exp(-(r + x) * np.log1p(t / (alpha + T)))
    return p_alive(params, x, tx, T) * (1.0 - none)


def expected_purchases(params, t, x, tx, T) -> np.ndarray:
    """E[purchases in (T, T + t] | x, tx, T] (the paper's eq. 10): P(alive) times
    ``expected_given_alive``."""
    return p_alive(params, x, tx, T) * expected_given_alive(params, t, x, T)


def expected_given_alive(params, t, x, T) -> np.ndarray:
    """E[purchases in (T, T + t] | alive at T, x, T] = ``c (1 - G) / (a - 1)`` with
    ``c = a + b + x - 1``, ``G = (1-z)^(r+x) 2F1(r+x, b+x; c; z)``, ``z = t / (alpha+T+t)``.

    Each row takes the first trusted of: the power series of Euler's transform
    ``G = (1-z)^(a-1) 2F1(a+b-1-r, a-1; c; z)``, rearranged so that ``a - 1`` cancels
    analytically (converges fast unless ``z`` is near 1 for an infrequent buyer; trusted
    when its tail bound is met); scipy's ``hyp2f1`` on both that and the printed form,
    trusted where the two agree (and ``a`` is not within 1e-6 of 1); adaptive quadrature
    over the posterior of ``p`` for ``a < 2`` or ``b + x < 1`` (slow, rare), else
    Gauss-Legendre around the posterior's mean (:func:`given_alive_narrow`; fits where the
    customers' drop-out probabilities hardly differ end with ``a`` in the thousands).
    """
    arrays = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (t, x, T)))
    t, x, T = (v.ravel() for v in arrays)
    r, alpha, a, b = params
    z, c = t / (alpha + T + t), a + b + x - 1
    ell = np.log1p(-z)
    with np.errstate(all="ignore"):
        likely = (z <= 1 - 40 / _SERIES_TERMS) | (x + r + 2 - a >= 12)  # else too slow
        series = _series(a + b - 1 - r, a, c, np.where(likely, z, np.nan))
        out = c * (-ell * exprel((a - 1) * ell) - np.exp((a - 1) * ell) * series)
        todo = np.isfinite(z + c) & ~np.isfinite(out) & (abs(a - 1) > 1e-6)
        out[todo] = c[todo] / (a - 1) * (1.0 - _two_scipy_forms(params, z[todo], x[todo]))
    slow = np.isfinite(z + c) & ~(np.isfinite(out) & (out >= 0))
    narrow = slow & (a >= _NARROW_A) & (b + x >= 1.0)  # no singular density at either end
    for rows, solve in ((narrow, given_alive_narrow), (slow & ~narrow, given_alive_by_quadrature)):
        if rows.any():
            out[rows] = solve(params, t[rows], x[rows], T[rows])
    return out.reshape(arrays[0].shape)


def given_alive_narrow(params, t, x, T, nodes: int = 96) -> np.ndarray:
    """``E_p[(1 - (1 + w p)^-k) / p]`` for ``p ~ Beta(a, b + x)``, ``a >= 2``: Gauss-Legendre on
    the posterior's mean +- 12 standard deviations (clipped to (0, 1)), the density
    renormalised on the nodes; ``k = r + x``, ``w = t / (alpha + T)``."""
    r, alpha, a, b = params
    k, beta, w = (r + x)[:, None], (b + x)[:, None], (t / (alpha + T))[:, None]
    mean = a / (a + beta)
    sd = np.sqrt(a * beta / ((a + beta) ** 2 * (a + beta + 1)))
    lo, hi = np.maximum(mean - 12 * sd, 1e-300), np.minimum(mean + 12 * sd, 1.0 - 1e-16)
    u, weight = np.polynomial.legendre.leggauss(nodes)
    p = lo + (hi - lo) * (u + 1) / 2
    log_density = (a - 1) * np.log(p) + (beta - 1) * np.log1p(-p)
    density = np.exp(log_density - log_density.max(axis=1, keepdims=True)) * weight
    f = -np.expm1(-k * np.log1p(w * p)) / p
    return (density * f).sum(axis=1) / density.sum(axis=1)


def _series(A: float, a: float, C: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``(2F1(A, a-1; C; z) - 1) / (a - 1)`` by its power series, the sum over n >= 1 of
    ``(A)_n (a)_(n-1) z^n / ((C)_n n!)``; NaN where the tail bound is not met in time.

    Past ``m0`` (and past ``-A``, where the terms stop changing sign) the term ratio
    ``(A+n)(a-1+n) z / ((C+n)(n+1))`` stays below ``z`` when ``C + 1 > A + a - 1``, so the
    tail is below ``|term| q / (1 - q)`` with ``q = max(ratio, z)``. Rows leave the working
    set once converged.
    """
    total = np.full(z.shape, np.nan)
    rows = np.flatnonzero(np.isfinite(z + C))
    term, acc = A * z[rows] / C[rows], A * z[rows] / C[rows]
    slack = C + 2 - A - a  # C + 1 - A - (a - 1); where <= 0 the bound fails: leave to scipy
    m0 = np.maximum(np.where(slack > 0, (A * (a - 1) - C) / np.abs(slack), np.inf), -A)
    for n in range(1, _SERIES_TERMS):
        ratio = (A + n) * (a - 1 + n) * z[rows] / ((C[rows] + n) * (n + 1))
        term = term * ratio
        acc = acc + term
        q = np.maximum(abs(ratio), z[rows])
        done = (n >= m0[rows]) & (q < 1) & (abs(term) * q <= 1e-16 * (1 - q) * abs(acc))
        total[rows[done]] = acc[done]
        rows, term, acc = rows[~done], term[~done], acc[~done]
        if not len(rows):
            break
    return total


def _two_scipy_forms(params, z, x) -> np.ndarray:
    """G by scipy's hyp2f1 on Euler's transform and on the printed form; NaN where they
    disagree (beyond 1e-9 relative) or are negative."""
    r, alpha, a, b = params
    with np.errstate(all="ignore"):
        euler = np.exp((a - 1) * np.log1p(-z)) * hyp2f1(a + b - 1 - r, a - 1, a + b + x - 1, z)
        paper = np.exp((r + x) * np.log1p(-z)) * hyp2f1(r + x, b + x, a + b + x - 1, z)
    agree = abs(euler - paper) <= 1e-9 * np.maximum(abs(paper), 1e-300)
    return np.where(agree & (paper >= 0), paper, np.nan)


def given_alive_by_quadrature(params, t, x, T) -> np.ndarray:
    """E[purchases in (T, T+t] | alive at T] = E_p[(1 - E_lambda[exp(-lambda p t)]) / p] with
    ``p ~ Beta(a, b + x)`` and ``lambda ~ Gamma(r + x, alpha + T)``, by adaptive quadrature.

    The integrand is ``(1 - (1 + w p)^-k) / p`` with ``k = r + x``, ``w = t / (alpha + T)``;
    it is bounded by ``k w``. The Beta density's end points are smoothed away by integrating
    ``p <= 1/2`` over ``v = p^a`` and ``p > 1/2`` over ``s = (1 - p)^(b + x)``; rows go in
    chunks sorted by ``w`` (where the integrand bends).
    """
    r, alpha, a, b = params
    k, beta, w = r + x, b + x, t / (alpha + T)
    out = np.empty(t.shape)
    order = np.argsort(w, kind="stable")
    for rows in np.array_split(order, max(1, len(order) // 256)):
        f = _integrand(a, k[rows], beta[rows], w[rows])
        out[rows] = quad_vec(f, 0.0, 1.0, epsabs=1e-13, epsrel=1e-11, norm="max", limit=4000)[0]
    return out * k * w


def _integrand(a: float, k, beta, w):
    """f(y) over (0, 1) whose integral is E_p[(1 - (1 + w p)^-k) / (k w p)]: the left half
    at ``p = y^(1/a) / 2``, the right half at ``1 - p = y^(1/beta) / 2`` (Jacobians included)."""
    log_left = -a * np.log(2.0) - np.log(a) - betaln(a, beta)  # dp p^(a-1) = 2^-a / a dy
    log_right = -beta * np.log(2.0) - np.log(beta) - betaln(a, beta)

    def bounded(p):
        kwp = k * w * p
        return np.where(kwp > 0, -np.expm1(-k * np.log1p(w * p)) / np.where(kwp > 0, kwp, 1), 1)

    def f(y: float) -> np.ndarray:
        left, right = y ** (1 / a) / 2, y ** (1 / beta) / 2
        dens_left = np.exp((beta - 1) * np.log1p(-left) + log_left)
        dens_right = np.exp((a - 1) * np.log1p(-right) + log_right)
        return dens_left * bounded(left) + dens_right * bounded(1 - right)

    return f


def simulate(params, T, seed: int, holdout_days: float = 0.0) -> dict[str, np.ndarray]:
    """Draw customers from the BG/NBD model itself.

    Parameters
    ----------
    params : ``(r, alpha, a, b)``.
    T : float array of observation lengths in days, one per customer.
    seed : seed of ``numpy.random.default_rng``.
    holdout_days : length of a holdout period ``(T, T + holdout_days]`` to simulate as well.

    Returns
    -------
    dict of float arrays ``frequency``, ``recency``, ``T`` and ``holdout_purchases``.
    """
    r, alpha, a, b = params
    T = np.asarray(T, dtype=np.float64)
    rng = np.random.default_rng(seed)
    lam = rng.gamma(r, 1.0 / alpha, size=T.shape)
    p = np.clip(rng.beta(a, b, size=T.shape), 1e-12, 1.0)
    n_cal = rng.poisson(lam * T)
    lifetime = rng.geometric(p)  # the repeat purchase after which the customer drops out
    x = np.minimum(n_cal, lifetime)
    # given n purchases uniform on (0, T], the x-th one is at T * Beta(x, n - x + 1)
    tx = np.where(x > 0, T * rng.beta(np.maximum(x, 1), n_cal - x + 1), 0.0)
    n_hold = rng.poisson(lam * holdout_days)
    hold = np.minimum(n_hold, np.maximum(lifetime - n_cal, 0))
    as_float = {"frequency": x, "recency": tx, "T": T, "holdout_purchases": hold}
    return {k: np.asarray(v, dtype=np.float64) for k, v in as_float.items()}
