"""The offers gate's shared outcome model (training.promotion.shared_outcome_model): one
conversion model, cross-fitted on the recent sends, values both sides of the comparison."""

from __future__ import annotations

import numpy as np
import pandas as pd

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
