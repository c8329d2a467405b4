"""Churn, stage and baseline models: the scikit-learn contract, quality on simulator data
against the baselines, calibration on a later snapshot, and invariances."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, roc_auc_score
from sklearn.utils.estimator_checks import (
    check_get_params_invariance,
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
    parametrize_with_checks,
)
from threadpoolctl import threadpool_limits

from features.contracts import STAGES
from features.loaders import load_customers, load_events, load_exposures, load_offers
from features.simulator import SimConfig, simulate
from training.datasets import DatasetConfig, Tables, build_training_set, time_split
from training.models import (
    ChurnModel,
    LogisticChurn,
    RFMChurnHeuristic,
    StageModel,
    StayInStage,
    feature_columns,
)
from training.models._lgbm import holdout_mask
from training.models.stage import PRIOR_POWERS, best_prior_power, prior_adjusted_argmax

SNAPSHOTS = 5
CALIBRATION_FOLD = (
    "calibration needs both classes in the held-out later fold (the last 25% of rows); "
    "the check's tiny data has a single class there, and fit raises a clear ValueError"
)
ONE_CLASS_FOLD_CHECKS = (
    "check_classifier_data_not_an_array", "check_dict_unchanged",
    "check_dont_overwrite_parameters", "check_f_contiguous_array_estimator",
    "check_fit2d_predict1d", "check_methods_sample_order_invariance",
    "check_methods_subset_invariance", "check_positive_only_tag_during_fit",
)  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread():
    """Multi-threaded BLAS on a busy machine makes the logistic baseline 10x slower."""
    with threadpool_limits(1):
        yield


def expected_failures(estimator) -> dict[str, str]:
    calibrated = isinstance(estimator, ChurnModel) and estimator.calibration is not None
    return dict.fromkeys(ONE_CLASS_FOLD_CHECKS, CALIBRATION_FOLD) if calibrated else {}


@parametrize_with_checks(
    [ChurnModel(n_estimators=30), ChurnModel(n_estimators=30, calibration=None),
     StageModel(n_estimators=30), LogisticChurn()],
    expected_failed_checks=expected_failures,
)  # fmt: skip
def test_sklearn_contract(estimator, check):
    check(estimator)


@pytest.mark.parametrize("estimator", [RFMChurnHeuristic(), StayInStage()])
def test_frame_only_baselines_keep_the_parameter_contract(estimator):
    # they read named columns, so the array-based checks cannot apply
    name = type(estimator).__name__
    check_parameters_default_constructible(name, estimator)
    check_no_attributes_set_in_init(name, estimator)
    check_get_params_invariance(name, estimator)


@pytest.fixture(scope="module")
def data() -> dict[str, pd.DataFrame]:
    sim = simulate(SimConfig(customers=4000, seed=1))
    offers = load_offers(sim.offers).data
    tables = Tables(load_events(sim.events).data, load_customers(sim.customers).data,
                    offers, load_exposures(sim.exposures, offers=offers).data)  # fmt: skip
    config = DatasetConfig(snapshots=SNAPSHOTS, validation_snapshots=0, test_snapshots=1)
    parts = time_split(build_training_set(tables, config), config)
    pop = {k: v[v["in_churn_population"]] for k, v in parts.items()}
    return {"train": parts["train"], "test": parts["test"],
            "churn_train": pop["train"], "churn_test": pop["test"]}  # fmt: skip


@pytest.fixture(scope="module")
def cols(data) -> list[str]:
    return feature_columns(data["train"])


def fit_churn(data, cols, **params) -> ChurnModel:
    train = data["churn_train"]
    return ChurnModel(**params).fit(train[cols], train["churned"], time=train["as_of"])


@pytest.fixture(scope="module")
def churn(data, cols) -> ChurnModel:
    return fit_churn(data, cols)


@pytest.fixture(scope="module")
def stage(data, cols) -> StageModel:
    train = data["train"]
    model = StageModel(learning_rate=0.1)  # half the rounds of the default, same quality here
    return model.fit(train[cols], train["stage_next"], time=train["as_of"])


def churn_risk(model, frame: pd.DataFrame) -> np.ndarray:
    return model.predict_proba(frame)[:, 1]


def expected_calibration_error(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Row-weighted |mean p - churn rate| over ``bins`` quantile bins of ``p``."""
    edges = np.quantile(p, np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
    return sum(
        (which == b).mean() * abs(p[which == b].mean() - y[which == b].mean())
        for b in np.unique(which)
    )


def test_holdout_is_the_latest_whole_snapshots():
    time = np.repeat([1, 2, 3, 4], [30, 30, 20, 20])
    assert holdout_mask(100, time, 0.25).tolist() == (time == 4).tolist()  # 20% beats 40%
    assert holdout_mask(100, time, 0.4).tolist() == (time >= 3).tolist()
    assert holdout_mask(8, None, 0.25).tolist() == [False] * 6 + [True] * 2
    dates = pd.Series(pd.to_datetime(["2025-02-01", "2025-01-01", "2025-02-01"], utc=True))
    assert holdout_mask(3, dates, 0.5).tolist() == [True, False, True]
    with pytest.raises(ValueError, match="two distinct values"):
        holdout_mask(3, [5, 5, 5], 0.25)


def test_churn_beats_logistic_baseline_on_a_later_snapshot(data, cols, churn):
    train, test = data["churn_train"], data["churn_test"]
    logistic = LogisticChurn().fit(train[cols], train["churned"])
    auc = roc_auc_score(test["churned"], churn_risk(churn, test[cols]))
    baseline = roc_auc_score(test["churned"], churn_risk(logistic, test[cols]))
    rfm = RFMChurnHeuristic().fit(train[cols], train["churned"])
    heuristic = roc_auc_score(test["churned"], churn_risk(rfm, test[cols]))
    print(f"churn ROC-AUC {auc:.3f}, logistic {baseline:.3f}, RFM heuristic {heuristic:.3f}")
    assert auc > 0.65 and auc > baseline - 0.02 and auc > heuristic


def test_churn_is_calibrated_on_a_later_snapshot(data, cols, churn):
    test = data["churn_test"]
    p = churn_risk(churn, test[cols])
    ece = expected_calibration_error(p, test["churned"].to_numpy())
    print(f"churn ECE {ece:.4f}; mean p {p.mean():.4f} vs rate {test['churned'].mean():.4f}")
    assert ece < 0.05


def test_churn_is_reproducible_with_a_fixed_seed(data, cols, churn):
    again = fit_churn(data, cols)
    test = data["churn_test"][cols]
    np.testing.assert_array_equal(churn_risk(again, test), churn_risk(churn, test))


def test_predictions_ignore_customer_ids_row_order_and_extra_columns(data, cols, churn):
    test = data["churn_test"]
    shuffled = test.sample(frac=1.0, random_state=3).iloc[:, ::-1]
    shuffled = shuffled.assign(customer_id="renamed_" + shuffled["customer_id"])
    expected = pd.Series(churn_risk(churn, test[cols]), index=test.index)
    got = pd.Series(churn_risk(churn, shuffled), index=shuffled.index)
    pd.testing.assert_series_equal(got.sort_index(), expected.sort_index())


def test_unseen_category_is_treated_as_missing(data, cols, churn):
    rows = data["churn_test"][cols].head(50)
    unseen = rows.assign(plan="platinum-2031")
    missing = rows.assign(plan=pd.Series(pd.NA, index=rows.index, dtype="str"))
    assert set(churn.categories_) >= {"plan", "region", "acquisition_channel", "stage"}
    np.testing.assert_array_equal(churn_risk(churn, unseen), churn_risk(churn, missing))


def test_missing_column_is_named(data, cols, churn):
    with pytest.raises(ValueError, match="recency_days"):
        churn.predict_proba(data["churn_test"][cols].drop(columns="recency_days"))


def test_the_array_hot_path_matches_the_frame_path(data, cols, churn):
    rows = data["churn_test"][cols].head(20)
    np.testing.assert_array_equal(churn_risk(churn, churn.encode(rows)), churn_risk(churn, rows))


def test_a_lapsing_copy_of_a_customer_scores_higher(data, cols, churn):
    active = data["churn_test"].query("purchases_90d > 0")[cols].head(20)
    probe = active.assign(recency_days=active["recency_days"] + 200, purchases_90d=0.0)
    raw, raw_probe = churn.raw_score(active), churn.raw_score(probe)
    assert (raw_probe >= raw).all() and (raw_probe > raw).mean() >= 0.9  # trees may not split
    assert (churn_risk(churn, probe) >= churn_risk(churn, active)).all()


def test_a_long_lapsed_customer_scores_above_the_median(data, cols, churn):
    test = data["churn_test"][cols]
    row = test[test["purchases_total"] >= 2].head(1)
    quiet = {f"{m}_{w}d{u}": 0.0 for m, u in (("purchases", ""), ("spend", "_amount"))
             for w in (7, 30, 90)}  # fmt: skip
    lapsed = row.assign(recency_days=300.0, purchase_recency_days=300.0, **quiet)
    assert churn_risk(churn, lapsed)[0] > np.median(churn_risk(churn, test))


def test_reasons_are_the_largest_positive_contributions(data, cols, churn):
    rows = data["churn_test"][cols].head(30)
    contrib = churn.contributions(rows)
    np.testing.assert_allclose(contrib.sum(axis=1), churn.raw_score(rows), rtol=1e-6, atol=1e-9)
    for reasons, (_, row) in zip(churn.reasons(rows), contrib.iterrows(), strict=True):
        expected = row.drop("bias").nlargest(3)
        assert reasons == [(f, v) for f, v in expected.items() if v > 0]
    assert list(churn.contributions(rows, top=5).columns[-1:]) == ["bias"]
    assert churn.feature_importance().index[0] in cols


def test_stage_model_is_no_worse_than_staying_in_stage(data, cols, stage):
    test = data["test"]
    proba = stage.predict_proba(test[cols])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert list(stage.classes_) == [s for s in STAGES if s in set(data["train"]["stage_next"])]
    model = f1_score(test["stage_next"], stage.predict(test[cols]), average="macro")
    stay = f1_score(test["stage_next"], StayInStage().fit(test).predict(test), average="macro")
    print(f"stage macro-F1 {model:.3f}, stay-in-stage {stay:.3f}")
    assert model >= stay - 0.05


def test_stage_decision_favours_rare_stages_for_macro_f1(data, cols, stage):
    # prior_power="auto" picks k on the later fold; predict is argmax(p / prior**k)
    test = data["test"]
    proba = stage.predict_proba(test[cols])
    assert stage.prior_power_ in PRIOR_POWERS and stage.prior_power_ > 0
    np.testing.assert_allclose(stage.class_prior_.sum(), 1.0)
    decided = stage.predict(test[cols])
    weights = stage.class_prior_**stage.prior_power_
    np.testing.assert_array_equal(decided, stage.classes_[np.argmax(proba / weights, axis=1)])
    argmax = stage.classes_[proba.argmax(axis=1)]
    macro = {name: f1_score(test["stage_next"], pred, average="macro")
             for name, pred in (("decided", decided), ("argmax", argmax))}  # fmt: skip
    print(f"stage macro-F1 with k={stage.prior_power_}: {macro}")
    assert macro["decided"] > macro["argmax"]
    legacy = pickle.loads(pickle.dumps(stage))  # a model saved before the decision rule
    del legacy.prior_power_, legacy.class_prior_
    np.testing.assert_array_equal(legacy.predict(test[cols]), argmax)


def small_stage_data(n: int = 400) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    y = np.where(X["a"] > 1.2, "churned", np.where(X["b"] > 0, "retention", "at_risk"))
    return X, y


def test_stage_prior_power_zero_is_the_plain_argmax_and_bad_values_are_refused():
    X, y = small_stage_data()
    model = StageModel(n_estimators=20, prior_power=0).fit(X, y)
    assert model.prior_power_ == 0.0
    expected = model.classes_[model.predict_proba(X).argmax(axis=1)]
    np.testing.assert_array_equal(model.predict(X), expected)
    for bad in (-0.5, "big", float("nan")):
        with pytest.raises(ValueError, match="prior_power must be 'auto' or a number >= 0"):
            StageModel(n_estimators=5, prior_power=bad).fit(X, y)


def test_best_prior_power_by_hand():
    # class 1 (10 % of rows) never wins the plain argmax; k = 0.25 picks out its one row,
    # k >= 0.5 labels every row 1
    proba = np.tile([[0.7, 0.3]], (10, 1))
    codes = np.array([1] + [0] * 9)
    proba[0] = [0.55, 0.45]
    prior = np.array([0.9, 0.1])
    np.testing.assert_array_equal(prior_adjusted_argmax(proba, prior, 0.0), np.zeros(10))
    assert prior_adjusted_argmax(proba, prior, 1.0)[0] == 1
    assert best_prior_power(proba, codes, prior) == 0.25  # the smallest k that separates row 0
    assert best_prior_power(proba[1:], codes[1:], prior) == 0.0  # nothing to gain: plain


def test_stage_contributions_sum_to_raw_scores(data, cols, stage):
    rows = data["test"][cols].head(20)
    contrib = stage.contributions(rows)
    totals = contrib.T.groupby(level="class", sort=False).sum().T[list(stage.classes_)]
    np.testing.assert_allclose(totals.to_numpy(), stage.raw_score(rows), rtol=1e-6, atol=1e-9)
    top = stage.contributions(rows, top=4).columns.get_level_values("feature")
    assert top.nunique() == 5 and "bias" in set(top)


def test_stage_model_without_a_class_never_predicts_it(data, cols):
    train = data["train"].query("stage_next != 'awareness'")
    model = StageModel(n_estimators=20).fit(train[cols], train["stage_next"])
    proba = model.predict_proba(data["test"][cols])
    assert "awareness" not in model.classes_ and proba.shape[1] == len(model.classes_)
    assert "awareness" not in set(model.predict(data["test"][cols]))


def test_stay_in_stage_puts_all_mass_on_the_current_stage():
    frame = pd.DataFrame({"stage": ["retention", "churned", "awareness"]})
    model = StayInStage().fit(frame)
    assert list(model.classes_) == list(STAGES)
    assert model.predict(frame).tolist() == frame["stage"].tolist()
    assert model.predict_proba(frame).sum(axis=1).tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="dormant"):
        model.predict(pd.DataFrame({"stage": ["dormant"]}))


def test_rfm_heuristic_ranks_lapsed_low_spenders_riskiest():
    frame = pd.DataFrame({
        "purchase_recency_days": [5.0, 40.0, 200.0, np.nan],
        "purchases_90d": [6.0, 2.0, 0.0, 0.0], "spend_90d_amount": [300.0, 80.0, 0.0, 0.0],
    })  # fmt: skip
    model = RFMChurnHeuristic().fit(frame, [0, 0, 1, 1])
    score = model.risk_score(frame)
    assert score[0] < score[1] < score[2] <= score[3]
    assert np.all(np.diff(churn_risk(model, frame)) >= 0)


def test_calibration_fold_with_one_class_is_a_clear_error():
    X, y = np.arange(40.0).reshape(-1, 1), np.r_[np.zeros(20), np.ones(10), np.zeros(10)]
    with pytest.raises(ValueError, match="calibration fold"):
        ChurnModel(n_estimators=5).fit(X, y)


def test_refit_trains_the_final_booster_on_the_latest_snapshots_too():
    """Only the latest snapshot shows the churners' range of x: the fold booster never sees
    it, the refitted one learns it; the rounds are the fold's, scaled to all rows."""
    rng = np.random.default_rng(0)
    time = np.repeat([1, 2, 3, 4], 500)
    x = np.where(time < 4, rng.uniform(0, 1, 2000), rng.uniform(2, 3, 2000))
    y = (rng.uniform(size=2000) < np.where(x > 2.5, 0.8, 0.2)).astype(int)
    X = pd.DataFrame({"x": x})
    params = {"calibration": None, "min_child_samples": 20, "early_stopping_rounds": 5}
    fold = ChurnModel(refit=False, **params).fit(X, y, time=time)
    final = ChurnModel(**params).fit(X, y, time=time)
    later = pd.DataFrame({"x": rng.uniform(2, 3, 1000)})
    truth = (later["x"] > 2.5).astype(int)
    assert roc_auc_score(truth, churn_risk(fold, later)) == pytest.approx(0.5)  # one score
    assert roc_auc_score(truth, churn_risk(final, later)) > 0.95
    assert final.n_iter_ == round(fold.n_iter_ / 0.75)
    fixed = ChurnModel(early_stopping_rounds=None, n_estimators=7, calibration="sigmoid")
    assert fixed.fit(X, y, time=time).n_iter_ == 7  # no early stopping: n_estimators as set


@pytest.mark.parametrize("kind", ["churn", "stage"])
def test_models_pickle_with_identical_predictions(data, cols, churn, stage, kind):
    model = churn if kind == "churn" else stage
    rows = data["test"][cols].head(100)
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict_proba(rows), model.predict_proba(rows))
