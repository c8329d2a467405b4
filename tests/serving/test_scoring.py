"""Fast LightGBM prediction for the hot path: the same answers as ``Booster.predict`` and as
the models' own methods, one row at a time (single-row C API), in threaded batches and from
several threads at once; models whose fast copy would answer differently are kept as they
are."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from serving.scoring import FastBooster, fast_model, probe_rows, same, with_fast_boosters
from training.models.churn import ChurnModel
from training.models.uplift import UpliftModel


def booster(objective: str, seed: int = 0, **params) -> tuple[lgb.Booster, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.where(rng.random((600, 6)) < 0.1, np.nan, rng.normal(size=(600, 6)))
    y = (np.nan_to_num(x[:, 0]) > 0) + (np.nan_to_num(x[:, 1]) > 0.5)
    if objective == "binary":
        y = y > 0
    params = {"objective": objective, "verbosity": -1, "num_leaves": 7, **params}
    return lgb.train(params, lgb.Dataset(x, y.astype(float)), 30), x


@pytest.mark.parametrize("objective", ["binary", "multiclass"])
def test_single_rows_and_threaded_batches_equal_booster_predict(objective):
    extra = {"num_class": 3} if objective == "multiclass" else {}
    b, x = booster(objective, **extra)
    fast = FastBooster(b, threads=2, parallel_rows=100)
    for raw in (False, True):
        whole = b.predict(x, raw_score=raw, num_threads=1)
        one_by_one = np.concatenate([fast.predict(x[i : i + 1], raw_score=raw) for i in range(50)])
        assert fast.predict(x[:1], raw_score=raw).shape == whole[:1].shape
        np.testing.assert_array_equal(one_by_one, whole[:50])
        np.testing.assert_array_equal(fast.predict(x, raw_score=raw), whole)  # 2 threads
        np.testing.assert_array_equal(fast.predict(x[:99], raw_score=raw), whole[:99])  # 1


def test_other_options_and_inputs_go_to_the_booster():
    b, x = booster("binary")
    fast = FastBooster(b)
    contrib = fast.predict(x[:3], pred_contrib=True)
    np.testing.assert_array_equal(contrib, b.predict(x[:3], pred_contrib=True, num_threads=1))
    as_float32 = x[:1].astype(np.float32)  # not the fast path's dtype: Booster.predict
    np.testing.assert_array_equal(fast.predict(as_float32), b.predict(as_float32))


def test_threads_share_a_fast_booster_without_mixing_answers():
    b, x = booster("multiclass", num_class=3)
    fast, expected = FastBooster(b), b.predict(x, num_threads=1)

    def row(i: int) -> np.ndarray:
        return fast.predict(x[i : i + 1])[0]

    with ThreadPoolExecutor(4) as pool:
        got = np.vstack(list(pool.map(row, range(len(x)))))
    np.testing.assert_array_equal(got, expected)


def churn_and_uplift() -> tuple[ChurnModel, UpliftModel, pd.DataFrame]:
    rng = np.random.default_rng(3)
    n = 3000
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.exponential(2.0, n),
                      "plan": pd.Series(rng.choice(["x", "y"], n), dtype="category")})  # fmt: skip
    y = (X["a"] + rng.normal(size=n) > 0.5).astype(int)
    arm = rng.choice(["control", "o1", "o2"], n)
    churn = ChurnModel(n_estimators=20, early_stopping_rounds=None).fit(X, y)
    uplift = UpliftModel(n_estimators=20, min_child_samples=20).fit(X, arm, y)
    return churn, uplift, X


def test_fast_models_answer_like_the_models():
    churn, uplift, X = churn_and_uplift()
    data = churn.encode(X.iloc[:300])
    fast_churn = fast_model(churn, lambda m, x: m.predict_proba(x), threads=2, parallel_rows=64)
    fast_uplift = fast_model(uplift, lambda m, x: m.uplift_and_support(x), parallel_rows=64)
    assert isinstance(fast_churn.booster_, FastBooster)
    assert all(isinstance(b, FastBooster) for b in fast_uplift.outcome_models_.values())
    assert isinstance(fast_uplift.logging_model_, FastBooster)
    assert isinstance(uplift.logging_model_, lgb.Booster)  # the original is untouched
    for rows in (data[:1], data[7:8], data):
        np.testing.assert_array_equal(fast_churn.predict_proba(rows), churn.predict_proba(rows))
        assert same(fast_uplift.uplift_and_support(rows), uplift.uplift_and_support(rows))


def test_a_fast_copy_that_answers_differently_is_not_used(monkeypatch):
    churn, _, _ = churn_and_uplift()
    exact = FastBooster.predict
    monkeypatch.setattr(FastBooster, "predict", lambda *a, **k: exact(*a, **k) + 1e-7)
    assert fast_model(churn, lambda m, x: m.predict_proba(x)) is churn
    stand_in = object()  # no n_features_in_: kept as it is
    assert fast_model(stand_in, lambda m, x: m.predict_proba(x)) is stand_in


def test_with_fast_boosters_leaves_other_attributes_alone():
    _, uplift, _ = churn_and_uplift()
    copy = with_fast_boosters(uplift)
    assert copy.arms_ is uplift.arms_ and copy.categories_ is uplift.categories_
    assert copy.outcome_models_ is not uplift.outcome_models_


def test_probe_rows_and_same():
    probe = probe_rows(5, 20)
    assert probe.shape == (20, 5) and np.isnan(probe[0]).all() and (probe[1] == 0).all()
    assert probe.flags.c_contiguous and np.isnan(probe[4:]).any()
    a = np.array([1.0, np.nan])
    assert same((a, np.array([True])), (a + 1e-12, np.array([True])))
    assert not same((a,), (a + 1e-6,))
    assert not same(np.array([True]), np.array([1.0]))
    assert not same(a, a[:1])
