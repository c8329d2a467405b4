"""The offers gate's shared outcome model (training.promotion.shared_outcome_model): one
conversion model, cross-fitted on the recent sends, values both sides of the comparison."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.promotion import shared_outcome_model


def sends(n: int = 3000, seed: int = 0):
    rng = np.random.default_rng(seed)
    segment = pd.Series(rng.choice(["a", "b", None], n), dtype="category")
    X = pd.DataFrame({"spend": rng.gamma(2.0, 10.0, n), "segment": segment,
                      "member": pd.array(rng.random(n) < 0.5, dtype="boolean")})  # fmt: skip
    arm = rng.integers(0, 3, n)
    p = 0.05 + 0.10 * (arm == 1) + 0.25 * (arm == 2) * (segment == "a").to_numpy()
    return X, arm, (rng.random(n) < p).astype(int), p


def test_each_send_is_predicted_by_a_model_that_did_not_see_it():
    X, arm, y, _ = sends()
    q = shared_outcome_model(X, arm, y, 3)
    flipped = y.copy()
    flipped[7] = 1 - flipped[7]
    again = shared_outcome_model(X, arm, flipped, 3)
    np.testing.assert_array_equal(q[7], again[7])  # its own outcome did not move it
    assert not np.array_equal(q, again)  # it moved the other fold's predictions


def test_the_outcome_model_learns_each_arm_from_mixed_feature_types():
    X, arm, y, p = sends()
    q = shared_outcome_model(X, arm, y, 3)
    assert q.shape == (len(X), 3) and ((q >= 0) & (q <= 1)).all()
    seg_a = (X["segment"] == "a").to_numpy()
    truth = {0: 0.05, 1: 0.15}
    for k, rate in truth.items():
        assert abs(q[:, k].mean() - rate) < 0.03, (k, q[:, k].mean())
    assert q[seg_a, 2].mean() - q[~seg_a, 2].mean() > 0.15  # the arm works in segment a only


def test_older_sends_teach_the_arms_the_recent_ones_rarely_took():
    X, arm, y, _ = sends(3000, seed=1)
    recent = arm != 2  # the recent sends never took arm 2 (the champion's choices)
    older_X, older_arm, older_y, _ = sends(3000, seed=2)
    seg_a = (X["segment"] == "a").to_numpy()[recent]
    alone = shared_outcome_model(X[recent], arm[recent], y[recent], 3)
    taught = shared_outcome_model(X[recent], arm[recent], y[recent], 3,
                                  older=(older_X, older_arm, older_y))  # fmt: skip
    # arm 2 works in segment a only (+0.25): only the older sends can tell
    assert taught[seg_a, 2].mean() - taught[~seg_a, 2].mean() > 0.15
    assert alone[seg_a, 2].mean() - alone[~seg_a, 2].mean() < 0.05
    # the recent rows stay out of fold: a row's own outcome does not move its prediction
    flipped = y[recent].copy()
    flipped[3] = 1 - flipped[3]
    again = shared_outcome_model(X[recent], arm[recent], flipped, 3,
                                 older=(older_X, older_arm, older_y))  # fmt: skip
    np.testing.assert_array_equal(taught[3], again[3])


def test_extra_rows_must_have_the_contexts_columns():
    from training.ope_reward_model import cross_fitted_rewards

    x, a, r = np.zeros((10, 2)), np.zeros(10, np.intp), np.zeros(10)
    with pytest.raises(ValueError, match="extra rows must have the 2 columns of X; got 3"):
        cross_fitted_rewards(x, a, r, 2, extra=(np.zeros((4, 3)), a[:4], r[:4]))
