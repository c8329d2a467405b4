"""A training run never loses every model because one cannot be fitted (issue 12, point 7)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from features.loaders import load_mapped
from features.project import DatasetConfig, ProjectConfig
from tests.shops import transaction_log
from training.calendar import CalendarError
from training.datasets import Tables, build_training_set, time_split
from training.pipeline import TrainConfig, fit_and_evaluate, fit_stage, resolved

FAST = {"churn": {"n_estimators": 30}, "stage": {"n_estimators": 20}}


@pytest.fixture(scope="module")
def shop() -> Tables:
    return Tables(events=transaction_log(seed=2))


def test_a_model_that_cannot_be_fitted_is_skipped_with_its_reason(shop):
    # a transaction log has no cancel events: the cancel label is 0 for everyone
    config = TrainConfig(dataset=DatasetConfig(churn_definition="cancel"), **FAST)
    result = fit_and_evaluate(shop, config)
    assert set(result.reports) == {"stage", "clv"}
    assert "churn" in result.skipped and "1 class(es) of the churn label" in result.skipped["churn"]
    assert "purchases_total" not in result.dropped and "visits_7d" in result.dropped


def test_no_model_at_all_is_an_error_naming_each_reason(shop, monkeypatch):
    import training.pipeline as pipeline

    def broken(*args, **kwargs):
        raise ValueError("nothing to learn")

    monkeypatch.setattr(pipeline, "fit_stage", broken)
    monkeypatch.setattr(pipeline, "fit_clv", broken)
    config = TrainConfig(dataset=DatasetConfig(churn_definition="cancel"), **FAST)
    with pytest.raises(
        pipeline.ModelSkipped,
        match="churn: .*class.*; stage: ValueError: nothing.*; clv: ValueError: ",
    ):
        fit_and_evaluate(shop, config)


def test_a_stage_first_seen_in_the_holdout_is_not_an_error(shop):
    config = resolved(shop, ProjectConfig(**FAST))
    parts = time_split(build_training_set(shop, config.dataset), config.dataset)
    fit_part = parts["train"][parts["train"]["stage"] != "at_risk"]
    holdout = parts["test"]
    assert (holdout["stage"] == "at_risk").any()
    report = fit_stage(fit_part, holdout, config)
    assert 0 < report.metrics["macro_f1"] <= 1
    assert 0 < report.baselines["stay_in_stage"]["macro_f1"] <= 1


def test_the_bgnbd_model_is_a_churn_baseline_beside_the_model(shop):
    config = TrainConfig(dataset=DatasetConfig(churn_horizon_days=90), **FAST)
    result = fit_and_evaluate(shop, config)
    assert result.config.dataset.btyd_features == "on"
    assert result.config.dataset.churn_definition == "rhythm"  # a transaction log
    baselines = result.reports["churn"].baselines
    assert {"logistic", "rfm", "bgnbd"} <= set(baselines)
    assert 0.5 < baselines["bgnbd"]["roc_auc"] < 1.0


def labels_table(shop: Tables, dates: list[pd.Timestamp], all_stay: pd.Timestamp) -> pd.DataFrame:
    """A user's labels table: random 0/1 labels for the customers seen by each date, but
    nobody churns at ``all_stay``."""
    rng = np.random.default_rng(0)
    rows = []
    for when in dates:
        seen = shop.events.loc[shop.events["timestamp"] <= when, "customer_id"].unique()
        label = (rng.uniform(size=len(seen)) < 0.3).astype(int) * (when != all_stay)
        rows.append(pd.DataFrame({"customer_id": seen, "as_of": when, "label": label}))
    return load_mapped("labels", pd.concat(rows, ignore_index=True)).data


def test_a_calibration_fold_with_one_class_fails_before_any_work_naming_a_fraction_that_works(
    shop, monkeypatch
):
    import training.pipeline as pipeline

    dates = list(pd.date_range("2025-03-01", periods=7, freq="60D", tz="UTC"))
    # the fitting dates are the first six; the latest of them is the calibration fold
    tables = Tables(events=shop.events, labels=labels_table(shop, dates, all_stay=dates[-2]))
    config = TrainConfig(dataset=DatasetConfig(churn_definition="labels"), **FAST)

    def no_work(*args, **kwargs):
        raise AssertionError("the training set was built before the check")

    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "build_training_set", no_work)
        with pytest.raises(CalendarError) as err:
            fit_and_evaluate(tables, config)
    message = str(err.value)
    assert "churn.calibration_fraction=0.25" in message and f"['{dates[-2]:%Y-%m-%d}']" in message
    assert "the data spans 20" in message and "none of the" in message
    assert "churn: {calibration: null}" in message
    share = float(re.search(r"calibration_fraction: ([0-9.]+) would", message).group(1))
    assert 0.25 < share < 0.6  # the latest two fitting dates: the fold has both classes
    working = config.model_copy(update={"churn": {**FAST["churn"], "calibration_fraction": share}})
    assert "churn" in fit_and_evaluate(tables, working).reports  # the named value works
    no_calibration = config.model_copy(update={"churn": {**FAST["churn"], "calibration": None}})
    assert "churn" in fit_and_evaluate(tables, no_calibration).reports


def test_an_offers_log_with_too_small_a_control_arm_is_skipped_naming_it():
    from training.offers_pipeline import OfferData, fit_uplift

    rng = np.random.default_rng(0)
    n = 600
    arm = pd.Series(["control"] * 50 + ["x"] * 550)
    data = OfferData(pd.DataFrame({"f": rng.random(n)}), pd.DataFrame({"propensity": [0.5] * n}),
                     rng.integers(0, 2, n), arm)  # fmt: skip
    with pytest.raises(ValueError, match=r"control arm has 50 training sends.*min_arm_size=200"):
        fit_uplift(data, {"n_estimators": 5})


def test_an_offer_first_sent_in_the_test_period_is_valued_not_a_failure():
    """The closed loop's new offer: explored by the service, so its sends are all recent and
    land in the test split only. The policies (which never take it) are still valued (before,
    "logged actions must index the 4 action columns; got [-1]" skipped the offers model)."""
    from training.offers_pipeline import OfferData, fit_uplift, policy_table

    rng = np.random.default_rng(1)

    def log(n: int, arms: list[str]) -> OfferData:
        arm = pd.Series(rng.choice(arms, n), dtype=object)
        y = (rng.random(n) < np.where(arm == "control", 0.2, 0.3)).astype(int)
        X = pd.DataFrame({"x": rng.random(n)})
        exposures = pd.DataFrame({"propensity": np.full(n, 1 / len(arms)),
                                  "customer_id": [f"c{i}" for i in range(n)]})  # fmt: skip
        return OfferData(X, exposures, y, arm)

    train, test = log(3000, ["control", "a", "b"]), log(900, ["control", "a", "b", "new"])
    offers = pd.DataFrame({"offer_id": ["a", "b", "new"], "kind": ["upsell"] * 3,
                           "value": [10.0, 20.0, 30.0], "cost": [1.0, 1.0, 1.0],
                           "eligible_stages": [None] * 3})  # fmt: skip
    model = fit_uplift(train, {"n_estimators": 10, "min_arm_size": 100, "min_support": 0.0})
    assert "new" not in model.offers_
    arms = ["control", *model.offers_]
    always_a = np.zeros((len(test.y), len(arms)))
    always_a[:, arms.index("a")] = 1.0
    proba = model.predict_arm_proba(test.X)[arms]
    table = policy_table(model, test, offers, {"learned": always_a}, proba)
    assert np.isfinite(table.to_numpy(dtype=float)).all(), table
    assert len(table) > 0
