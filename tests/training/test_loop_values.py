"""The closed loop's yardsticks: each policy's true value on a week's audience, by hand."""

import numpy as np
import pandas as pd
import pytest

from training import loop_values as lv

OFFERS = pd.DataFrame({"offer_id": ["a", "b"], "value": [10.0, 4.0], "cost": [1.0, 0.0]})


def test_true_increments_are_uplift_times_value_minus_cost():
    truth = pd.DataFrame({"p_control": [0.1, 0.2], "p_a": [0.3, 0.2], "p_b": [0.1, 0.7]})
    iv = lv.true_increments(truth, OFFERS, ["a", "b"])
    np.testing.assert_allclose(iv, [[0.2 * 10 - 1, 0.0], [0.0 - 1, 0.5 * 4]])
    np.testing.assert_allclose(lv.true_increments(truth, OFFERS, ["b"]), [[0.0], [2.0]])


def test_greedy_takes_the_best_eligible_positive_offer_else_none():
    expected = np.array([[1.0, 2.0], [1.0, 2.0], [-1.0, -0.5], [np.nan, 0.3], [0.0, 0.0]])
    eligible = np.array([[1, 1], [1, 0], [1, 1], [1, 1], [1, 1]], bool)
    np.testing.assert_array_equal(lv.greedy_arms(expected, eligible), [2, 1, 0, 2, 0])


def test_week_values_by_hand():
    iv = np.array([[2.0, -1.0], [0.5, 3.0], [-2.0, -1.0]])
    eligible = np.array([[1, 1], [1, 0], [0, 0]], bool)
    served = np.array([2, 1, 0])  # row 0 explored the worse offer
    model = np.array([[1.0, 0.0], [0.1, 9.0], [5.0, 5.0]])
    v = lv.week_values(iv, eligible, served, {"greedy": model})
    np.testing.assert_allclose(v["served"], [-1.0, 0.5, 0.0])
    np.testing.assert_allclose(v["greedy"], [2.0, 0.5, 0.0])  # row 1: offer b not eligible
    np.testing.assert_allclose(v["random"], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(v["oracle"], [2.0, 0.5, 0.0])


def test_the_ips_estimate_covers_the_truth_on_a_simulated_log():
    rng = np.random.default_rng(0)
    n = 20_000
    p_true = np.column_stack([np.full(n, 0.1), rng.uniform(0.1, 0.4, n), np.full(n, 0.3)])
    logging = np.full((n, 3), 1 / 3)
    arm = rng.integers(0, 3, n)
    y = rng.random(n) < p_true[np.arange(n), arm]
    target = np.eye(3)[np.where(p_true[:, 1] * 10 - 1 > p_true[:, 2] * 4, 1, 2)]
    iv = lv.true_increments(pd.DataFrame({"p_control": p_true[:, 0], "p_a": p_true[:, 1],
                                          "p_b": p_true[:, 2]}), OFFERS, ["a", "b"])  # fmt: skip
    truth = lv.value_of(target.argmax(axis=1), iv).mean()
    found = lv.ope_estimate(y, arm, logging[np.arange(n), arm], target, OFFERS, ["a", "b"])
    assert found["lo"] <= truth <= found["hi"]
    assert found["hi"] - found["lo"] < 0.3


def test_the_observable_bound_learns_a_value_from_features():
    rng = np.random.default_rng(1)
    x = pd.DataFrame({"f": rng.normal(size=3000), "g": rng.normal(size=3000)})
    iv = np.column_stack([x["f"].to_numpy(), -x["f"].to_numpy()])
    pred = lv.bound_predictions(x.iloc[:2500], iv[:2500], x.iloc[2500:])
    agree = np.sign(pred[:, 0]) == np.sign(iv[2500:, 0])
    assert agree.mean() > 0.9
    with pytest.raises(ValueError):
        lv.bound_predictions(x.iloc[:0], iv[:0], x)


def test_the_bound_fits_side_by_side_are_the_one_by_one_fits():
    import lightgbm as lgb

    rng = np.random.default_rng(2)
    x = pd.DataFrame(
        {"f": rng.normal(size=1500), "g": pd.Categorical(rng.choice(["u", "v"], 1500))}
    )
    iv = np.column_stack([x["f"] * k + rng.normal(size=1500) for k in (1.0, -2.0, 0.5)])
    pred = lv.bound_predictions(x.iloc[:1200], iv[:1200], x.iloc[1200:], seed=3)
    params = {"n_estimators": 200, "learning_rate": 0.05, "num_leaves": 31, "min_child_samples": 50,
              "subsample": 0.8, "subsample_freq": 1, "random_state": 3, "verbose": -1,
              "n_jobs": 1}  # fmt: skip
    for j in range(iv.shape[1]):
        one = lgb.LGBMRegressor(**params).fit(x.iloc[:1200], iv[:1200, j])
        np.testing.assert_array_equal(pred[:, j], one.predict(x.iloc[1200:]))


def test_values_not_in_is_setdiff1d_on_customer_ids():
    values = np.array(["c3", "c1", "c2", "c1", "c10", "c7"], dtype=object)
    excluded = np.array(["c2", "c9", "c7"], dtype=object)
    found = lv.values_not_in(values, excluded)
    assert found.tolist() == np.setdiff1d(values, excluded).tolist() == ["c1", "c10", "c3"]
