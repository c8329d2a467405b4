"""BG/NBD: purchase summaries by hand, parameter recovery on the model's own draws, forecasts
against Monte Carlo and simulated holdouts, numerical robustness, and clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import _btyd_math as bm
from features.btyd import (
    BGNBD,
    DAY_US,
    PARAM_NAMES,
    log_likelihood,
    purchase_summary,
    rfm_summary,
    simulate_bgnbd,
)

HOUR_US = DAY_US // 24
# occasional buyers (a < 1: many never drop out) and frequent, loyal buyers
OCCASIONAL = {"r": 0.25, "alpha": 4.0, "a": 0.8, "b": 2.5}
FREQUENT = {"r": 1.5, "alpha": 20.0, "a": 0.6, "b": 8.0}


def at(day: int, hour: float = 0.0) -> int:
    return int(day * DAY_US + hour * HOUR_US)


def summary_frame(d: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return d["frequency"].to_numpy(), d["recency"].to_numpy(), d["T"].to_numpy()


@pytest.fixture(scope="module")
def occasional_draws() -> pd.DataFrame:
    ages = np.random.default_rng(11).uniform(180, 720, 20_000)
    return simulate_bgnbd(OCCASIONAL, ages, seed=12, holdout_days=180)


@pytest.fixture(scope="module")
def occasional_model(occasional_draws) -> BGNBD:
    return BGNBD().fit(*summary_frame(occasional_draws))


def true_model(params: dict[str, float]) -> BGNBD:
    model = BGNBD()
    model.params_ = dict(params)
    return model


# --- purchase summaries ---------------------------------------------------------------------


def test_purchase_summary_by_hand():
    events = [  # (customer, timestamp): unsorted, two purchases on one day
        (0, at(5, 1)), (0, at(2, 17)), (3, at(10, 12)), (2, at(7, 23.99)), (0, at(2, 9)),
        (3, at(4, 6)), (4, -1), (4, 0),
    ]  # fmt: skip
    code = np.array([c for c, _ in events])
    ts = np.array([t for _, t in events], dtype=np.int64)
    x, tx, age = purchase_summary(code, ts, as_of_us=at(10, 12), n=5)
    # 0: days {2, 5}; 1: none; 2: day 7 only; 3: days {4, 10} (10 = the as-of day);
    # 4: one microsecond before the epoch is day -1 (floored, not truncated), then day 0
    np.testing.assert_array_equal(x, [1, np.nan, 0, 1, 1])
    np.testing.assert_array_equal(tx, [3, np.nan, 0, 6, 1])
    np.testing.assert_array_equal(age, [8.5, np.nan, 3.5, 6.5, 11.5])


def test_purchase_summary_ignores_row_order_and_handles_no_events():
    rng = np.random.default_rng(0)
    code = rng.integers(0, 50, 2_000)
    ts = rng.integers(0, 400 * DAY_US, 2_000)
    expected = purchase_summary(code, ts, 400 * DAY_US, 60)
    order = rng.permutation(len(code))
    shuffled = purchase_summary(code[order], ts[order], 400 * DAY_US, 60)
    for got, want in zip(shuffled, expected, strict=True):
        np.testing.assert_array_equal(got, want)
    assert np.isnan(expected[0][50:]).all()
    empty = purchase_summary(np.array([], dtype=int), np.array([], dtype=np.int64), 0, 3)
    assert all(np.isnan(v).all() and v.shape == (3,) for v in empty)


@pytest.mark.parametrize(
    ("code", "ts", "message"),
    [
        ([0, 1], [at(1), at(12)], "ts_us must be <= as_of_us"),
        ([0, 5], [at(1), at(2)], "code must be in 0..2"),
        ([0.0, 1.0], [at(1), at(2)], "code must be an integer array"),
        ([0, 1], [at(1)], "one length"),
    ],
)
def test_purchase_summary_rejects_bad_input(code, ts, message):
    with pytest.raises(ValueError, match=message):
        purchase_summary(np.array(code), np.array(ts, dtype=np.int64), at(10), 3)


def test_rfm_summary_counts_purchases_up_to_as_of():
    stamp = pd.Timestamp("2025-01-01", tz="UTC")
    events = pd.DataFrame({
        "customer_id": ["b", "a", "a", "a", "c", "b", "a"],
        "timestamp": [stamp + pd.Timedelta(hours=h) for h in (30, 0, 5, 72, 10, 960, 24 * 9 + 13)],
        "role": pd.Categorical(["purchase", "purchase", "purchase", "purchase", "visit",
                                "purchase", "purchase"]),
    })  # fmt: skip
    out = rfm_summary(events, "2025-01-10 12:00")  # naive as_of is UTC; a's day-9 buy is later
    assert out["customer_id"].tolist() == ["a", "b"]  # c only visited
    np.testing.assert_array_equal(out["frequency"], [1, 0])  # a: days 0 and 3
    np.testing.assert_array_equal(out["recency"], [3, 0])
    np.testing.assert_array_equal(out["T"], [9.5, 8.5])
    with pytest.raises(ValueError, match="missing \\['role'\\]"):
        rfm_summary(events.drop(columns="role"), stamp)


# --- fitting ----------------------------------------------------------------------------------


def log_param_standard_errors(model: BGNBD, d: pd.DataFrame) -> np.ndarray:
    """Standard errors of the fitted log-parameters from the observed information."""
    data = bm.Summaries.of(*summary_frame(d))
    log_params, h = np.log([model.params_[k] for k in PARAM_NAMES]), 1e-5

    def grad(v):
        return bm.neg_mean_ll_and_grad(v, data, 0.0)[1] * len(d)

    hessian = np.array([(grad(log_params + h * e) - grad(log_params - h * e)) / (2 * h)
                        for e in np.eye(4)])  # fmt: skip
    return np.sqrt(np.diag(np.linalg.inv(hessian)))


@pytest.mark.parametrize(("params", "seed"), [(OCCASIONAL, 1), (FREQUENT, 2)])
def test_fit_recovers_the_parameters(params, seed):
    ages = np.random.default_rng(seed).uniform(180, 720, 10_000)
    d = simulate_bgnbd(params, ages, seed=seed)
    model = BGNBD().fit(*summary_frame(d))
    se = log_param_standard_errors(model, d)
    for name, s in zip(PARAM_NAMES, se, strict=True):
        fitted, true = model.params_[name], params[name]
        # within 4 standard errors (from the observed information) and within 20%
        assert abs(np.log(fitted / true)) < 4 * s, (name, fitted, true, s)
        assert abs(fitted / true - 1) < 0.2, (name, fitted, true)
    assert model.converged_ and model.n_customers_ == 10_000
    assert log_likelihood(params, *summary_frame(d)) <= model.log_likelihood_


def test_fit_with_weights_equals_fit_on_repeated_rows():
    d = simulate_bgnbd(OCCASIONAL, np.random.default_rng(3).integers(180, 720, 5_000), seed=3)
    rows = np.stack([d["frequency"], np.floor(d["recency"]), d["T"]], axis=1)
    distinct, counts = np.unique(rows, axis=0, return_counts=True)
    full = BGNBD().fit(*rows.T)
    weighted = BGNBD().fit(*distinct.T, weights=counts)
    for name in PARAM_NAMES:
        assert weighted.params_[name] == pytest.approx(full.params_[name], rel=1e-6)
    assert weighted.log_likelihood_ == pytest.approx(full.log_likelihood_, rel=1e-9)
    assert weighted.n_customers_ == full.n_customers_ == 5_000


def test_penalizer_shrinks_the_log_parameters(occasional_draws):
    x, tx, age = summary_frame(occasional_draws.iloc[:3_000])
    plain, shrunk = BGNBD().fit(x, tx, age), BGNBD(penalizer=0.1).fit(x, tx, age)

    def size(m: BGNBD) -> float:
        return float(np.sum(np.log(list(m.params_.values())) ** 2))

    assert size(shrunk) < size(plain)
    assert shrunk.log_likelihood_ < plain.log_likelihood_


# --- predictions ------------------------------------------------------------------------------


def test_p_alive_properties(occasional_model, occasional_draws):
    alive = occasional_model.p_alive(*summary_frame(occasional_draws))
    assert ((alive >= 0) & (alive <= 1)).all()
    assert (alive[occasional_draws["frequency"].to_numpy() == 0] == 1).all()
    ages = np.linspace(60, 1_000, 50)
    by_age = occasional_model.p_alive(3, 60, ages)
    assert (np.diff(by_age) < 0).all()  # the longer the silence, the less alive
    assert np.isnan(occasional_model.p_alive([np.nan, 0], [np.nan, 0], [np.nan, 5])).tolist() == [
        True,
        False,
    ]  # customers without a purchase stay NaN


def test_expected_purchases_grow_with_horizon_and_match_new_customers(occasional_model):
    m, horizons = occasional_model, np.array([0.0, 1, 30, 90, 365, 1_000, 5_000])
    for x, tx, age in [(0, 0, 100), (2, 100, 300), (10, 380, 400)]:
        forecast = m.expected_purchases(horizons, x, tx, age)
        assert forecast[0] == 0 and (np.diff(forecast) > 0).all()
        chance = m.prob_purchase_within(horizons, x, tx, age)
        assert (
            chance[0] == 0
            and (np.diff(chance) > 0).all()
            and (chance <= m.p_alive(x, tx, age)).all()
        )
    new = m.expected_purchases_new(horizons)
    np.testing.assert_allclose(new, m.expected_purchases(horizons, 0, 0, 0), rtol=1e-12)
    rate = m.params_["r"] / m.params_["alpha"]  # early on, nobody has dropped out yet
    assert m.expected_purchases_new(0.01) == pytest.approx(rate * 0.01, rel=1e-3)


def posterior_monte_carlo(params, x, tx, age, t, n=200_000, seed=0):
    """E[purchases in (T, T+t]] and P(>= 1) given the history, by importance sampling: draw
    (lambda, p) from the prior, weight by the likelihood of the history (alive or dropped out
    after tx), and simulate the holdout only for the alive part: Poisson purchases, dropping out
    after a Geometric(p) number of them."""
    rng = np.random.default_rng(seed)
    lam, p = rng.gamma(params["r"], 1 / params["alpha"], n), rng.beta(params["a"], params["b"], n)
    log_alive = x * (np.log1p(-p) + np.log(lam)) - lam * age
    log_dead = np.log(p) + (x - 1) * np.log1p(-p) + x * np.log(lam) - lam * tx
    log_dead = log_dead if x > 0 else np.full(n, -np.inf)
    top = max(log_alive.max(), log_dead.max())
    w_alive, w = np.exp(log_alive - top), np.exp(log_alive - top) + np.exp(log_dead - top)
    future = np.minimum(rng.poisson(lam * t), rng.geometric(p))
    out = []
    for f in (future, future > 0):
        value = np.divide(w_alive * f, w, out=np.zeros(n), where=w > 0)
        mean = (w * value).sum() / w.sum()
        out.append((mean, np.sqrt(((w * (value - mean)) ** 2).sum()) / w.sum()))
    return out


@pytest.mark.parametrize(("x", "tx", "age"), [(0, 0, 200), (2, 100, 300), (8, 350, 400)])
@pytest.mark.parametrize("t", [90.0, 1_000.0])  # also beyond the history
def test_forecasts_match_posterior_monte_carlo(x, tx, age, t):
    model = true_model(OCCASIONAL)
    (mc_mean, mc_se), (mc_share, share_se) = posterior_monte_carlo(OCCASIONAL, x, tx, age, t)
    assert model.expected_purchases(t, x, tx, age)[0] == pytest.approx(mc_mean, abs=4 * mc_se)
    assert model.prob_purchase_within(t, x, tx, age)[0] == pytest.approx(
        mc_share, abs=4 * share_se + 1e-4
    )


def test_population_forecasts_match_simulated_holdout(occasional_model, occasional_draws):
    x, tx, age = summary_frame(occasional_draws)
    real = occasional_draws["holdout_purchases"].to_numpy()
    expected = occasional_model.expected_purchases(180, x, tx, age)
    chance = occasional_model.prob_purchase_within(180, x, tx, age)
    se = np.std(real - expected) / np.sqrt(len(real))
    assert abs(expected.mean() - real.mean()) < max(4 * se, 0.03 * real.mean())
    assert abs(chance.mean() - (real > 0).mean()) < 0.01
    for rows in np.array_split(np.argsort(chance, kind="stable"), 10):  # by decile
        share, p = (real[rows] > 0).mean(), chance[rows].mean()
        assert abs(share - p) < 4 * np.sqrt(p * (1 - p) / len(rows)) + 0.01, (p, share)
        spread = np.std(real[rows]) / np.sqrt(len(rows))
        assert abs(expected[rows].mean() - real[rows].mean()) < 4 * spread + 0.01


@pytest.mark.parametrize(
    "params",
    [(0.25, 4.0, 0.8, 2.5), (2.0, 10.0, 1.5, 6.0), (10.0, 1.0, 20.0, 40.0), (1.0, 1.0, 1.0, 2.0),
     (0.1, 100.0, 0.05, 0.5), (3.0, 0.5, 0.2, 0.3)],
)  # fmt: skip
def test_expected_given_alive_agrees_with_quadrature_everywhere(params):
    """The closed form (series / scipy hyp2f1) against direct integration over the posterior,
    over frequent buyers, a = 1 and horizons far beyond the history."""
    x, age, t = (v.ravel() for v in np.meshgrid([0, 1, 5, 50, 700, 3_000], [0, 30, 2_000],
                                                [0.1, 30, 365, 36_500]))  # fmt: skip
    x, age, t = x.astype(float), age.astype(float), t.astype(float)
    closed = bm.expected_given_alive(params, t, x, age)
    np.testing.assert_allclose(closed, bm.given_alive_by_quadrature(params, t, x, age), rtol=1e-8)


def test_sample_draws_from_the_fitted_model(occasional_model):
    first = occasional_model.sample(500, 365.0, seed=4)
    again = occasional_model.sample(500, 365.0, seed=4)
    pd.testing.assert_frame_equal(first, again)
    assert list(first.columns) == ["frequency", "recency", "T", "holdout_purchases"]
    assert len(first) == 500 and (first["recency"] <= first["T"]).all()


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "tx", "age", "message"),
    [
        ([], [], [], "no customers"),
        ([1, -1], [1, 0], [5, 5], "frequency must be >= 0; got -1.0 in 1 rows \\(first: row 1\\)"),
        ([1, 2], [1, 9], [5, 5], "recency must be <= T; got 9.0 in 1 rows"),
        ([1.5], [1], [5], "frequency must be a whole number"),
        ([0], [2], [5], "recency must be 0 where frequency is 0"),
        ([1, np.nan], [1, 0], [5, 5], "not NaN \\(drop customers without a purchase\\)"),
        ([1], [1], [np.inf], "T must be finite"),
        ([0, 0], [0, 0], [5, 9], "needs repeat buyers"),
    ],
)
def test_fit_rejects_bad_input(x, tx, age, message):
    with pytest.raises(ValueError, match=message):
        BGNBD().fit(np.array(x, dtype=float), np.array(tx, dtype=float), np.array(age, dtype=float))


def test_fit_that_does_not_converge_says_what_to_try(occasional_draws):
    with pytest.raises(ValueError, match="did not converge.*penalizer.*max_iter"):
        BGNBD(max_iter=2).fit(*summary_frame(occasional_draws.iloc[:1_000]))
    with pytest.raises(ValueError, match="weights must be finite and >= 0"):
        BGNBD().fit([1, 2], [1, 2], [3, 3], weights=[1, -1])
    with pytest.raises(ValueError, match="penalizer must be >= 0"):
        BGNBD(penalizer=-1).fit([1, 2], [1, 2], [3, 3])


def test_predictions_need_a_fit_and_a_valid_horizon(occasional_model):
    with pytest.raises(ValueError, match="not fitted yet"):
        BGNBD().p_alive([1], [1], [2])
    with pytest.raises(ValueError, match="t must be finite and >= 0 \\(days\\); got -5.0"):
        occasional_model.expected_purchases(-5, [1], [1], [2])


def test_estimator_contract():
    model = BGNBD(penalizer=0.01)
    assert model.get_params() == {"penalizer": 0.01, "max_iter": 2000, "tol": 1e-10}
    assert model.set_params(tol=1e-6) is model and model.tol == 1e-6
    assert not hasattr(BGNBD(**model.get_params()), "params_")  # learned state ends in _
    with pytest.raises(ValueError, match="no parameter \\['tolerance'\\]"):
        model.set_params(tolerance=1)


@pytest.mark.parametrize("a", [10.0, 20.0, 1_000.0, 8.4e4])
def test_expected_given_alive_for_a_narrow_drop_out_distribution(a):
    """Fits can end with a and b in the thousands (drop-out probabilities alike): the forecast
    is E_p[(1 - (1 + w p)^-k) / p] over p ~ Beta(a, b + x), checked by Monte Carlo, never 0."""
    from features import _btyd_math as bm

    r, alpha, b = 0.8, 100.0, 20 * a
    x, age, t = np.array([0.0, 1, 3, 10]), np.array([50.0, 200, 300, 400]), 365.0
    got = bm.expected_given_alive((r, alpha, a, b), t, x, age)
    p = np.random.default_rng(0).beta(a, b + x[:, None], size=(4, 400_000))
    k, w = (r + x)[:, None], (t / (alpha + age))[:, None]
    want = (-np.expm1(-k * np.log1p(w * p)) / p).mean(axis=1)
    np.testing.assert_allclose(got, want, rtol=2e-3)
    wide = (r, alpha, 2.0, 100.0)  # where both methods work, Gauss-Legendre = the quadrature
    np.testing.assert_allclose(bm.given_alive_narrow(wide, np.full(4, t), x, age),
                               bm.given_alive_by_quadrature(wide, np.full(4, t), x, age),
                               rtol=1e-6)  # fmt: skip
