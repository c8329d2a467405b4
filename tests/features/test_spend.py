"""Gamma-Gamma spend: spend summaries by hand, parameter recovery on the model's own draws, the
conditional expectation by hand and as a property, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone

from features.btyd import DAY_US, purchase_summary
from features.spend import (
    PARAM_NAMES,
    GammaGamma,
    _neg_mean_ll_and_grad,
    log_likelihood,
    simulate_gamma_gamma,
    spend_summary,
)

HOUR_US = DAY_US // 24
CDNOW = {"p": 6.25, "q": 3.74, "v": 15.44}  # the paper's fit to CDNOW (mean spend ~ $35)
HEAVY = {"p": 1.5, "q": 2.5, "v": 40.0}  # spend varies a lot between customers
STEADY = {"p": 0.8, "q": 12.0, "v": 300.0}  # spend varies a lot within a customer


def at(day: int, hour: float = 0.0) -> int:
    return int(day * DAY_US + hour * HOUR_US)


def true_model(params: dict[str, float]) -> GammaGamma:
    model = GammaGamma()
    model.params_ = dict(params)
    return model


def repeat_frequencies(n: int, seed: int) -> np.ndarray:
    """Realistic repeat-purchase counts >= 1: 1 + negative binomial with mean ~3.3, long tail."""
    return 1.0 + np.random.default_rng(seed).negative_binomial(1, 0.3, n)


# --- spend summaries --------------------------------------------------------------------------


def test_spend_summary_by_hand():
    events = [  # (customer, timestamp, amount): unsorted, same-day purchases summed
        (0, at(5, 1), 20.0), (0, at(2, 17), 5.0), (3, at(10, 12), 3.0), (2, at(7, 23), 9.0),
        (0, at(2, 9), 10.0), (3, at(4, 6), 7.0), (4, -1, 8.0), (4, 0, 2.0), (0, at(9), 40.0),
        (2, at(7, 1), 1.0), (3, at(10, 2), 0.0),
    ]  # fmt: skip
    code, ts, amount = (np.array(v) for v in zip(*events, strict=True))
    x, m = spend_summary(code, ts.astype(np.int64), amount, as_of_us=at(10, 12), n=5)
    # 0: days 2 (15), 5 (20), 9 (40): the first day is left out -> (20 + 40) / 2; 1: none;
    # 2: one day only; 3: days 4 (7) and 10 (3 + 0); 4: day -1 (8) is the first, day 0 (2)
    np.testing.assert_array_equal(x, [2, np.nan, 0, 1, 1])
    np.testing.assert_array_equal(m, [30, np.nan, np.nan, 3, 2])


def test_spend_summary_agrees_with_purchase_summary_and_ignores_row_order():
    rng = np.random.default_rng(0)
    code, ts = rng.integers(0, 50, 2_000), rng.integers(0, 400 * DAY_US, 2_000)
    amount = rng.gamma(2.0, 10.0, 2_000).round(2)
    x, m = spend_summary(code, ts, amount, 400 * DAY_US, 60)
    np.testing.assert_array_equal(x, purchase_summary(code, ts, 400 * DAY_US, 60)[0])
    order = rng.permutation(len(code))
    shuffled = spend_summary(code[order], ts[order], amount[order], 400 * DAY_US, 60)
    np.testing.assert_array_equal(shuffled[0], x)
    np.testing.assert_allclose(shuffled[1], m, rtol=1e-12)  # summed in another order
    assert np.isnan(m[50:]).all() and (m[:50] > 0).all()
    empty = spend_summary(np.array([], dtype=int), np.array([], dtype=np.int64), [], 0, 3)
    assert all(np.isnan(v).all() and v.shape == (3,) for v in empty)


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ([1.0, -3.0], "amount must be finite and >= 0; got -3.0 in 1 rows \\(first: row 1\\)"),
        ([1.0, np.nan], "amount must be finite and >= 0; got nan"),
        ([1.0], "amount must have one value per event \\(2\\)"),
    ],
)
def test_spend_summary_rejects_bad_amounts(amount, message):
    with pytest.raises(ValueError, match=message):
        spend_summary(np.array([0, 1]), np.array([at(1), at(2)]), np.array(amount), at(5), 2)


# --- fitting ----------------------------------------------------------------------------------


def log_param_covariance(model: GammaGamma, x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Covariance of the fitted log-parameters from the observed information."""
    log_params, h, w = np.log([model.params_[k] for k in PARAM_NAMES]), 1e-5, np.ones(len(x))

    def grad(v):
        return _neg_mean_ll_and_grad(v, x, m, w, 0.0)[1] * len(x)

    hessian = np.array([(grad(log_params + h * e) - grad(log_params - h * e)) / (2 * h)
                        for e in np.eye(3)])  # fmt: skip
    return np.linalg.inv(hessian)


@pytest.mark.parametrize(("params", "seed"), [(CDNOW, 1), (HEAVY, 2), (STEADY, 3)])
def test_fit_recovers_the_parameters(params, seed):
    x = repeat_frequencies(10_000, seed)
    m = simulate_gamma_gamma(params, x, seed=seed)
    model = GammaGamma().fit(x, m)
    cov = log_param_covariance(model, x, m)
    for name, s in zip(PARAM_NAMES, np.sqrt(np.diag(cov)), strict=True):
        fitted, true = model.params_[name], params[name]
        assert abs(np.log(fitted / true)) < 4 * s, (name, fitted, true, s)  # within 4 SEs
        assert abs(fitted / true - 1) < 0.3, (name, fitted, true)
    # log(p v / (q - 1)): its standard error by the delta method, and within a few percent
    q = model.params_["q"]
    slope = np.array([1.0, -q / (q - 1), 1.0])
    fitted, true = model.population_mean_spend(), true_model(params).population_mean_spend()
    assert abs(np.log(fitted / true)) < 4 * np.sqrt(slope @ cov @ slope)
    assert fitted == pytest.approx(true, rel=0.05)
    assert model.n_customers_ == 10_000
    assert log_likelihood(params, x, m) <= model.log_likelihood_


def test_fit_leaves_out_customers_without_repeat_spend():
    x = repeat_frequencies(2_000, 4)
    m = simulate_gamma_gamma(CDNOW, x, seed=4)
    plain = GammaGamma().fit(x, m)
    extra = GammaGamma().fit(np.r_[x, 0, 0, np.nan, 3], np.r_[m, np.nan, 12.0, np.nan, 0.0])
    assert extra.params_ == plain.params_ and extra.n_customers_ == 2_000


def test_fit_with_weights_equals_fit_on_repeated_rows():
    x = repeat_frequencies(5_000, 5)
    m = simulate_gamma_gamma(CDNOW, x, seed=5).round(0)  # whole currency units repeat a lot
    distinct, counts = np.unique(np.stack([x, m], axis=1), axis=0, return_counts=True)
    assert len(distinct) < len(x) / 2
    full, weighted = GammaGamma().fit(x, m), GammaGamma().fit(*distinct.T, weights=counts)
    for name in PARAM_NAMES:
        assert weighted.params_[name] == pytest.approx(full.params_[name], rel=1e-6)
    assert weighted.log_likelihood_ == pytest.approx(full.log_likelihood_, rel=1e-9)
    assert weighted.n_customers_ == full.n_customers_ == 5_000


def test_penalizer_shrinks_the_log_parameters():
    x = repeat_frequencies(3_000, 6)
    m = simulate_gamma_gamma(CDNOW, x, seed=6)
    plain, shrunk = GammaGamma().fit(x, m), GammaGamma(penalizer=0.1).fit(x, m)

    def size(model: GammaGamma) -> float:
        return float(np.sum(np.log(list(model.params_.values())) ** 2))

    assert size(shrunk) < size(plain) and shrunk.log_likelihood_ < plain.log_likelihood_


# --- predictions ------------------------------------------------------------------------------


def test_conditional_expected_average_profit_by_hand():
    model = true_model({"p": 6.0, "q": 4.0, "v": 15.0})
    assert model.population_mean_spend() == 30.0  # 6 * 15 / 3
    # x = 2, m = 50: 6 (15 + 100) / (12 + 3) = 46 = 0.8 * 50 + 0.2 * 30 (weight px / (px+q-1))
    # x = 1, m = 50: 6 (15 + 50) / 9; x = 0 or m missing: the population mean; no purchase: NaN
    got = model.conditional_expected_average_profit(
        [2, 1, 0, 3, np.nan], [50, 50, np.nan, np.nan, 7]
    )
    np.testing.assert_allclose(got, [46.0, 390 / 9, 30.0, 30.0, np.nan], rtol=1e-14)
    by_x = model.conditional_expected_average_profit(np.array([1, 2, 5, 20, 100, 10_000]), 50.0)
    assert (np.diff(by_x) > 0).all() and by_x[0] > 30 and by_x[-1] == pytest.approx(50, rel=1e-3)


@settings(max_examples=200, deadline=None)
@given(
    p=st.floats(0.05, 50.0),
    q=st.floats(1.001, 100.0),
    v=st.floats(0.01, 1e4),
    x=st.integers(1, 5_000),
    m=st.floats(0.0, 1e6),
)
def test_conditional_expectation_lies_between_population_and_own_mean(p, q, v, x, m):
    model = true_model({"p": p, "q": q, "v": v})
    pop = model.population_mean_spend()
    got = model.conditional_expected_average_profit(x, m)[0]
    assert got > 0
    assert min(pop, m) * (1 - 1e-12) <= got <= max(pop, m) * (1 + 1e-12)
    own, prior = p * x / (p * x + q - 1), (q - 1) / (p * x + q - 1)  # the weights
    assert got == pytest.approx(own * m + prior * pop, rel=1e-9)


def test_sample_draws_from_the_fitted_model():
    model, x = true_model(CDNOW), np.array([0.0, 1, 3, 50])
    first = model.sample(x, seed=7)
    np.testing.assert_array_equal(first, model.sample(x, seed=7))
    assert np.isnan(first[0]) and (first[1:] > 0).all()


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "m", "message"),
    [
        ([], [], "no customers"),
        ([1, -1], [5, 5], "frequency must be >= 0; got -1.0 in 1 rows \\(first: row 1\\)"),
        ([1.5], [5], "frequency must be a whole number; got 1.5"),
        ([1, 2], [5, -3], "monetary_value must be >= 0; got -3.0 in 1 rows"),
        ([1], [np.inf], "monetary_value must be finite"),
        ([1, 2, 3], [5, 5], "must have one length"),
        ([0, 0, 3, np.nan], [np.nan, 4, 0, np.nan], "needs repeat buyers: none of the 4"),
    ],
)
def test_fit_rejects_bad_input(x, m, message):
    with pytest.raises(ValueError, match=message):
        GammaGamma().fit(np.array(x, dtype=float), np.array(m, dtype=float))


def test_fit_that_does_not_converge_says_what_to_try():
    x = repeat_frequencies(1_000, 8)
    m = simulate_gamma_gamma(CDNOW, x, seed=8)
    with pytest.raises(ValueError, match="did not converge.*penalizer.*max_iter"):
        GammaGamma(max_iter=2).fit(x, m)
    with pytest.raises(ValueError, match="did not converge.*parameters reached"):
        GammaGamma().fit(x, np.full_like(x, 20.0))  # no spread at all: p and q run away
    with pytest.raises(ValueError, match="weights must be finite and >= 0"):
        GammaGamma().fit([1, 2], [3, 4], weights=[1, -1])
    with pytest.raises(ValueError, match="penalizer must be >= 0"):
        GammaGamma(penalizer=-1).fit(x, m)


def test_heavy_tailed_spend_has_no_mean():
    x = repeat_frequencies(5_000, 9)
    model = GammaGamma().fit(x, simulate_gamma_gamma({"p": 2.0, "q": 0.7, "v": 10.0}, x, seed=9))
    assert model.params_["q"] < 1
    with pytest.raises(
        ValueError, match="mean spend is infinite.*q must be > 1; got q = 0\\.\\d+ "
    ):
        model.conditional_expected_average_profit([2], [30.0])
    with pytest.raises(ValueError, match="mean spend is infinite"):
        model.population_mean_spend()


def test_predictions_need_a_fit():
    with pytest.raises(ValueError, match="not fitted yet"):
        GammaGamma().conditional_expected_average_profit([1], [10.0])


def test_estimator_contract():
    model = GammaGamma(penalizer=0.01)
    assert model.get_params() == {"penalizer": 0.01, "max_iter": 2000, "tol": 1e-10}
    assert model.set_params(tol=1e-6) is model and model.tol == 1e-6
    copy = clone(model.fit([1, 2, 3, 4], [10.0, 30.0, 20.0, 12.0]))
    assert copy.get_params() == model.get_params() and not hasattr(copy, "params_")
    with pytest.raises(ValueError, match="no parameter \\['tolerance'\\]"):
        model.set_params(tolerance=1)
