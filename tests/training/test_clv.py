"""Customer lifetime value in training (issue 13, point 1): the realised label, the value
metrics, both estimators on one later holdout, the champion tracked in MLflow."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

from features.labels import future_margin
from features.loaders import load_events
from features.project import DatasetConfig
from tests.shops import transaction_log
from training import registry
from training.clv_pipeline import clv_dates
from training.datasets import Tables
from training.metrics import value_metrics
from training.models.clv import CLVModel, ProbabilisticCLV
from training.pipeline import PRIMARY, TrainConfig, fit_and_evaluate

FAST = {"churn": {"n_estimators": 30}, "stage": {"n_estimators": 20},
        "clv": {"n_estimators": 60}}  # fmt: skip


def test_future_margin_by_hand():
    t0 = pd.Timestamp("2025-01-01", tz="UTC")
    rows = [("a", t0 - pd.Timedelta(days=1), "purchase", 50.0),  # before as_of: not counted
            ("a", t0 + pd.Timedelta(days=73), "purchase", 100.0),
            ("a", t0 + pd.Timedelta(days=365), "purchase", 10.0),  # the horizon's last day
            ("a", t0 + pd.Timedelta(days=366), "purchase", 999.0),  # after it
            ("b", t0 + pd.Timedelta(days=10), "login", None)]  # fmt: skip
    events = load_events(pd.DataFrame(rows, columns=["customer_id", "timestamp", "event_type",
                                                     "amount"])).data  # fmt: skip
    got = future_margin(events, ["a", "b", "nobody"], t0, 365, annual_rate=0.1, margin_share=0.5)
    want_a = 0.5 * (100 * 1.1 ** (-73 / 365) + 10 / 1.1)
    np.testing.assert_allclose(got, [want_a, 0.0, 0.0])


def test_value_metrics_by_hand():
    y = np.array([0.0, 0.0, 10.0, 30.0, 60.0])
    perfect = value_metrics(y, y)
    assert perfect["normalized_gini"] == pytest.approx(1.0)
    assert perfect["top_decile_capture"] == pytest.approx(0.5 * 60 / 100)  # half a customer
    assert value_metrics(y, -y)["normalized_gini"] < 0
    flat = value_metrics(y, np.ones(5))  # one tie block: random order, pro rata
    assert flat["normalized_gini"] == pytest.approx(0.0, abs=1e-12)
    assert flat["top_decile_capture"] == pytest.approx(0.1)
    assert value_metrics(y, y + 1)["mae"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="y_true must be finite"):
        value_metrics([-1.0, 2.0], [1.0, 1.0])


def test_clv_model_predicts_non_negative_values_and_learns_the_signal():
    rng = np.random.default_rng(0)
    n = 4_000
    X = pd.DataFrame({"past": rng.gamma(1.0, 50.0, n), "noise": rng.normal(size=n)})
    buys = rng.uniform(size=n) < 0.6
    y = np.where(buys, X["past"] * rng.gamma(4.0, 0.25, n), 0.0)
    time = np.repeat(np.arange(4), n // 4)
    model = CLVModel(n_estimators=200).fit(X, y, time=time)
    pred = model.predict(X)
    assert (pred >= 0).all() and value_metrics(y, pred)["normalized_gini"] > 0.5
    assert value_metrics(y, pred)["normalized_gini"] > value_metrics(y, X["noise"])[
        "normalized_gini"] + 0.4  # fmt: skip
    with pytest.raises(ValueError, match="y must be finite and >= 0"):
        CLVModel().fit(X, -np.ones(n))


def test_probabilistic_clv_reads_its_column_and_says_what_is_missing():
    frame = pd.DataFrame({"btyd_clv_365d": [12.5, np.nan]})
    assert ProbabilisticCLV().fit(frame).predict(frame).tolist() == [12.5, 0.0]
    with pytest.raises(ValueError, match="btyd_features: on"):
        ProbabilisticCLV().fit(pd.DataFrame({"x": [1.0]}))


@pytest.fixture(scope="module")
def shop() -> Tables:
    return Tables(events=transaction_log(seed=6))


@pytest.fixture(scope="module")
def trained(shop):
    return fit_and_evaluate(shop, TrainConfig(**FAST))


def test_both_estimators_on_one_later_holdout_the_better_is_the_model(shop, trained):
    report = trained.reports["clv"]
    dates = clv_dates(shop, trained.config.dataset)
    assert dates[-1] == (shop.end - pd.Timedelta(days=365)).floor("D") and len(dates) == 5
    champion = report.params["estimator"]
    other = {"learned": "probabilistic", "probabilistic": "learned"}[champion]
    assert set(report.baselines) == {other, "past_spend"}
    gini = report.metrics[PRIMARY["clv"]]
    assert gini >= report.baselines[other][PRIMARY["clv"]]
    assert gini > report.baselines["past_spend"][PRIMARY["clv"]]  # beats the textbook baseline
    assert 0.3 < gini < 1 and report.metrics["n"] == report.baselines["past_spend"]["n"] > 500
    assert "value_gains.png" in report.figures
    print({name: round(m["normalized_gini"], 4) for name, m in
           {"model": report.metrics, **report.baselines}.items()})  # fmt: skip


def test_a_history_shorter_than_the_clv_horizon_skips_clv_with_its_reason(shop):
    recent = shop.events[shop.events["timestamp"] > shop.end - pd.Timedelta(days=300)]
    config = TrainConfig(dataset=DatasetConfig(churn_horizon_days=30), **FAST)
    result = fit_and_evaluate(Tables(events=recent.reset_index(drop=True)), config)
    assert "clv" not in result.reports and "churn" in result.reports
    assert "CLV horizon (365 days)" in result.skipped["clv"]


def test_the_clv_model_is_registered_and_answers_through_mlflow(trained, tmp_path, monkeypatch):
    from training.tracking import log_run

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        registry.setup("clv-test")
        logged = log_run(trained, source=str(tmp_path))
        assert logged.registered["clv"].name == "lifecycle-clv"
        model = mlflow.pyfunc.load_model("models:/lifecycle-clv@challenger")
        X = trained.reports["clv"].X_example
        out = model.predict(X)
        assert list(out.columns) == ["clv"] and (out["clv"] >= 0).all()
    finally:
        mlflow.set_tracking_uri(None)


def test_the_learned_model_boosts_from_the_probabilistic_clv():
    """With the probabilistic CLV among its inputs the trees start from it (log link): with
    no round at all the estimate is that column (the labels' mean where it is missing)."""
    rng = np.random.default_rng(1)
    n = 3_000
    prob = rng.gamma(1.0, 80.0, n)
    X = pd.DataFrame({"btyd_clv_365d": np.where(rng.uniform(size=n) < 0.1, np.nan, prob),
                      "noise": rng.normal(size=n)})  # fmt: skip
    y = prob * rng.gamma(5.0, 0.2, n)
    plain = dict(n_estimators=1, learning_rate=1e-9, early_stopping_rounds=None)
    model = CLVModel(**plain).fit(X, y)
    assert model.base_column_ == "btyd_clv_365d"
    pred = model.predict(X)
    known = X["btyd_clv_365d"].notna().to_numpy()
    np.testing.assert_allclose(pred[known], X["btyd_clv_365d"][known], rtol=1e-6)
    np.testing.assert_allclose(pred[~known], y.mean(), rtol=1e-6)
    np.testing.assert_allclose(model.predict(X.to_numpy()), pred)  # the serving hot path
    assert CLVModel(base=None, **plain).fit(X, y).base_column_ is None
    with pytest.raises(ValueError, match="base must be 'auto' or None"):
        CLVModel(base="yes").fit(X, y)


def test_early_stopping_holds_out_whole_customers_so_memorising_them_does_not_pay():
    """Snapshots of one customer share most of their label window: a fold of the same
    customers rewards memorising each one's future (here: an id-like column that predicts a
    customer's own noise) and never stops; holding out whole customers stops it."""
    rng = np.random.default_rng(0)
    customers, snapshots = 800, 4
    who = np.repeat(np.arange(customers), snapshots)
    own = rng.normal(0, 1.0, customers)  # each customer's future, shared by their snapshots
    x = rng.normal(size=len(who))
    X = pd.DataFrame({"x": x, "customer_code": rng.permutation(customers)[who].astype(float)})
    y = rng.gamma(2.0, np.exp(0.5 * x + own[who]) / 2.0)
    time = pd.Series(pd.Timestamp("2025-01-01") + pd.to_timedelta(np.tile(
        np.arange(snapshots) * 30, customers), unit="D"))  # fmt: skip
    params = {"n_estimators": 400, "learning_rate": 0.1, "min_child_samples": 5, "base": None}
    same = CLVModel(**params).fit(X, y, time=time)
    held = CLVModel(**params).fit(X, y, time=time, groups=who)
    assert held.n_iter_ < same.n_iter_ / 2, (held.n_iter_, same.n_iter_)
    with pytest.raises(ValueError, match="groups has 3 values but X has 3200 rows"):
        CLVModel(**params).fit(X, y, time=time, groups=[1, 2, 3])
