"""Compiled trees (lleaves): the same answers as ``Booster.predict`` and as the models' own
methods for many rows and for one (called directly, from any thread), a compile cache that the
next start loads instead of compiling, and a compiled copy that would answer differently is
not used."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import lightgbm as lgb
import numpy as np
import pytest

from serving import compiled as compiled_trees
from serving.compiled import CompiledBooster, compile_booster, compile_model, used_predictions
from serving.scoring import FastBooster, same
from tests.serving.test_scoring import booster, churn_and_uplift


@pytest.mark.parametrize("objective", ["binary", "multiclass"])
def test_compiled_booster_answers_like_booster_predict(objective, tmp_path):
    extra = {"num_class": 3} if objective == "multiclass" else {}
    b, x = booster(objective, **extra)
    kinds = {raw: compile_booster(b, raw, tmp_path) for raw in (False, True)}
    fast = CompiledBooster(b, kinds, threads=2, parallel_rows=100)
    for raw in (False, True):
        whole = b.predict(x, raw_score=raw, num_threads=1)
        got = fast.predict(x, raw_score=raw)  # 600 rows: compiled, 2 threads
        assert got.shape == whole.shape
        np.testing.assert_allclose(got, whole, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(fast.predict(x[:5], raw_score=raw), whole[:5], rtol=1e-12)
        one_by_one = np.concatenate([fast.predict(x[i : i + 1], raw_score=raw) for i in range(50)])
        assert fast.predict(x[:1], raw_score=raw).shape == whole[:1].shape
        np.testing.assert_allclose(one_by_one, whole[:50], rtol=1e-12, atol=1e-13)
    assert len(list(tmp_path.glob("*.o"))) == 2 and not list(tmp_path.glob("*.partial"))


def test_one_row_runs_the_compiled_function_from_any_thread(tmp_path, monkeypatch):
    b, x = booster("multiclass", num_class=3)
    fast = CompiledBooster(b, {False: compile_booster(b, False, tmp_path)})

    def no_c_api(*args):
        raise AssertionError("went to LightGBM's single-row C API")

    monkeypatch.setattr(FastBooster, "_single", no_c_api)
    with ThreadPoolExecutor(4) as pool:
        rows = list(pool.map(lambda i: fast.predict(x[i : i + 1])[0], range(len(x))))
    np.testing.assert_allclose(np.vstack(rows), b.predict(x, num_threads=1), rtol=1e-12)
    with pytest.raises(AssertionError, match="C API"):  # raw scores were not compiled
        fast.predict(x[:1], raw_score=True)


def test_prediction_types_not_compiled_go_to_lightgbm(tmp_path):
    b, x = booster("binary")
    fast = CompiledBooster(b, {False: compile_booster(b, False, tmp_path)})
    fast.compiled[False] = None  # a compiled model would fail if it were asked
    raw = fast.predict(x, raw_score=True)
    np.testing.assert_array_equal(raw, b.predict(x, raw_score=True, num_threads=1))
    contrib = fast.predict(x[:3], pred_contrib=True)
    np.testing.assert_array_equal(contrib, b.predict(x[:3], pred_contrib=True, num_threads=1))


def test_used_predictions_records_boosters_and_prediction_types():
    churn, uplift, _ = churn_and_uplift()
    calls = used_predictions(churn, lambda m, x: m.predict_proba(x))
    assert [(b, kinds) for b, kinds in calls.values()] == [(churn.booster_, {True})]  # raw
    calls = used_predictions(uplift, lambda m, x: m.uplift_and_support(x))
    expected = {id(b) for b in [*uplift.outcome_models_.values(), uplift.logging_model_]}
    assert set(calls) == expected and all(k == {False} for _, k in calls.values())


def test_compiled_models_answer_like_the_models(tmp_path):
    churn, uplift, X = churn_and_uplift()
    data = churn.encode(X.iloc[:300])
    fast_churn = compile_model(churn, lambda m, x: m.predict_proba(x), tmp_path, 2, 64)
    fast_uplift = compile_model(uplift, lambda m, x: m.uplift_and_support(x), tmp_path)
    assert isinstance(fast_churn.booster_, CompiledBooster)
    assert fast_churn.booster_.compiled.keys() == {True}
    assert all(isinstance(b, CompiledBooster) for b in fast_uplift.outcome_models_.values())
    assert isinstance(uplift.logging_model_, lgb.Booster)  # the original is untouched
    for rows in (data[:1], data[7:9], data):
        assert same(fast_churn.predict_proba(rows), churn.predict_proba(rows))
        assert same(fast_uplift.uplift_and_support(rows), uplift.uplift_and_support(rows))


def test_the_cache_is_loaded_not_compiled_again(tmp_path, monkeypatch):
    b, x = booster("binary", seed=4)
    first = compile_booster(b, False, tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    import lleaves.compiler

    def no_compiling(*args, **kwargs):
        raise AssertionError("compiled again instead of loading the cache")

    monkeypatch.setattr(lleaves.compiler, "compile_to_module", no_compiling)
    again = compile_booster(b, False, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == files  # nothing new written
    np.testing.assert_array_equal(again.predict(x, n_jobs=1), first.predict(x, n_jobs=1))
    # another prediction type is not cached: compiled, by a child process (this process's
    # compiler is patched to fail), and only loaded here
    raw = compile_booster(b, True, tmp_path)
    assert len(list(tmp_path.glob("*.o"))) == 2
    np.testing.assert_allclose(raw.predict(x, n_jobs=1), b.predict(x, raw_score=True),
                               rtol=1e-12, atol=1e-13)  # fmt: skip


def test_a_compile_that_fails_in_the_child_says_why(tmp_path):
    source = tmp_path / "model.txt"
    source.write_text("not a model")
    with pytest.raises(RuntimeError, match="compiling model.txt failed in a child process"):
        compiled_trees.compile_elsewhere(source, tmp_path / "model.o", False)


def test_a_compiled_copy_that_answers_differently_is_not_used(tmp_path, monkeypatch):
    churn, _, _ = churn_and_uplift()
    exact = CompiledBooster.predict
    monkeypatch.setattr(CompiledBooster, "predict", lambda *a, **k: exact(*a, **k) + 1e-7)
    assert compile_model(churn, lambda m, x: m.predict_proba(x), tmp_path) is None


def test_a_model_without_boosters_has_nothing_to_compile(tmp_path):
    class Rule:
        n_features_in_ = 3

        def predict(self, x):
            return x.sum(axis=1)

    assert compile_model(Rule(), lambda m, x: m.predict(x), tmp_path) is None


def test_default_cache_is_per_user():
    assert compiled_trees.DEFAULT_CACHE.parts[-3:] == (".cache", "lifecycle", "trees")
