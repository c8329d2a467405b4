"""Customer lifetime value from BG/NBD x Gamma-Gamma (issue 13, points 1 and 6)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.btyd import BGNBD
from features.btyd_features import BTYDFeatures
from features.builder import build_features
from features.clv import discount_steps, discounted_purchases, expected_clv
from features.spend import GammaGamma
from tests.shops import transaction_log


def fitted(params: dict) -> object:
    model = BGNBD() if "r" in params else GammaGamma()
    model.params_ = params
    return model


BG = fitted({"r": 0.25, "alpha": 4.4, "a": 0.8, "b": 2.4})
GG = fitted({"p": 6.25, "q": 3.74, "v": 15.44})


def test_discount_steps_cover_the_horizon_with_falling_weights():
    ends, weights = discount_steps(365, 0.1)
    assert ends[0] == 30 and ends[-1] == 365 and np.all(np.diff(ends) > 0)
    assert np.all(np.diff(weights) < 0) and weights[0] < 1
    assert weights[-1] == pytest.approx(1.1 ** (-(360 + 365) / 2 / 365))
    ends, weights = discount_steps(20, 0.0)
    assert ends.tolist() == [20.0] and weights.tolist() == [1.0]
    with pytest.raises(ValueError, match="annual_discount_rate"):
        discount_steps(365, -0.1)


def test_without_discount_the_purchases_are_bg_nbd_expected_purchases():
    x, tx, age = np.array([0.0, 2, 10]), np.array([0.0, 30, 200]), np.array([40.0, 100, 210])
    plain = discounted_purchases(BG, 365, 0.0, x, tx, age)
    np.testing.assert_allclose(plain, BG.expected_purchases(365, x, tx, age), rtol=1e-9)
    assert np.all(discounted_purchases(BG, 365, 0.1, x, tx, age) < plain)


def test_clv_by_hand_for_one_customer():
    x, tx, age, m = np.array([3.0]), np.array([90.0]), np.array([100.0]), np.array([20.0])
    per_purchase = 6.25 * (15.44 + 3 * 20) / (6.25 * 3 + 3.74 - 1)
    ends, w = discount_steps(365, 0.1)
    cumulative = [BG.expected_purchases(t, x, tx, age)[0] for t in ends]
    purchases = w @ np.diff(np.r_[0.0, cumulative])
    got = expected_clv(BG, GG, x, tx, age, m, 365, 0.1, 0.3)
    assert got[0] == pytest.approx(0.3 * per_purchase * purchases, rel=1e-9)


customers = st.tuples(
    st.integers(0, 30), st.floats(0.0, 1.0), st.floats(1.0, 700.0), st.floats(0.5, 500.0)
)


@settings(max_examples=200, deadline=None)
@given(customers, st.integers(1, 1000), st.integers(1, 1000), st.floats(0.0, 0.5),
       st.floats(0.0, 0.5))  # fmt: skip
def test_clv_is_non_negative_grows_with_the_horizon_and_falls_with_the_discount_rate(
    customer, h1, h2, rate1, rate2
):
    freq, share, age, spend = customer
    x, age_a = np.array([float(freq)]), np.array([age])
    tx = np.array([share * age if freq else 0.0])
    m = np.array([spend if freq else np.nan])

    def clv(h: float, rate: float) -> float:
        return float(expected_clv(BG, GG, x, tx, age_a, m, h, rate, 1.0)[0])

    assert clv(h1, rate1) >= 0
    short, long = sorted((h1, h2))
    assert clv(long, rate1) >= clv(short, rate1) * (1 - 1e-9)
    low, high = sorted((rate1, rate2))
    assert clv(h1, high) <= clv(h1, low) * (1 + 1e-9)


@pytest.fixture(scope="module")
def shop_events():
    return transaction_log(seed=4)


def test_clv_features_on_a_transaction_log_and_served_with_the_recorded_parameters(shop_events):
    as_of = shop_events["timestamp"].max()
    training = BTYDFeatures(90, clv_horizon_days=365, clv_margin_share=0.4)
    built = build_features(shop_events, as_of, "default", btyd=training)
    clv, spend = built["btyd_clv_365d"], built["btyd_expected_spend"]
    buyers = built["purchases_total"] > 0
    assert clv[buyers].notna().all() and (clv[buyers] >= 0).all()
    assert clv[~buyers].isna().all()
    assert set(training.fitted) == {"r", "alpha", "a", "b", "p", "q", "v"}
    # a higher expected spend per purchase, with the purchases alike, means a higher CLV
    assert np.corrcoef(np.log1p(clv[buyers]), np.log1p(spend[buyers]))[0, 1] > 0
    serving = BTYDFeatures(90, training.fitted, refit=False, clv_horizon_days=365,
                           clv_margin_share=0.4)  # fmt: skip
    served = build_features(shop_events, as_of, "default", btyd=serving)
    np.testing.assert_allclose(served["btyd_clv_365d"], clv, rtol=1e-5)
    assert serving.fitted is None  # scored with the recorded parameters, nothing refitted
