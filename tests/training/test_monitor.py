"""Monitoring's pure parts (issue 14, point 4): PSI and the two-sample tests, realised
calibration, offer performance, ledger health and the outputs, on hand-computed examples."""

from __future__ import annotations

import json
import math
import sqlite3

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from serving.ledger import Decisions, FeedbackLedger
from training.monitoring.checks import Calibration, Check, MonitorResult, Thresholds, checks
from training.monitoring.drift import (
    EPSILON,
    bin_counts,
    feature_drift,
    psi,
    score_drift,
    two_sample_test,
)
from training.monitoring.inputs import Vectors
from training.monitoring.ledger_health import ledger_health
from training.monitoring.outcomes import offer_performance, realised_calibration
from training.monitoring.outputs import to_json, to_prometheus
from training.monitoring.page import render

TWO_BINS = 0.25 * math.log(2) + 0.25 * math.log(1.5)  # shares (.5, .5) -> (.25, .75)


def test_psi_by_hand_on_two_bins_numeric_and_categorical():
    # the reference's median 0.5 splits [0, 0, 1, 1] into two bins of 0.5 each
    assert psi([0.0, 0.0, 1.0, 1.0], [0.0, 1.0, 1.0, 1.0], bins=2) == pytest.approx(TWO_BINS)
    assert psi(["a", "a", "b", "b"], ["a", "b", "b", "b"]) == pytest.approx(TWO_BINS)
    # an empty bin counts as EPSILON: shares (1, 0) -> (.5, .5)
    by_hand = (0.5 - 1) * math.log(0.5) + (0.5 - EPSILON) * math.log(0.5 / EPSILON)
    assert psi(["a", "a"], ["a", "b"]) == pytest.approx(by_hand)


def test_psi_of_identical_samples_is_zero_and_of_shifted_ones_large():
    rng = np.random.default_rng(0)
    x = rng.gamma(2.0, 30.0, 4000)
    assert psi(x, x) == pytest.approx(0.0, abs=1e-12)
    assert psi(x, rng.permutation(x)) == pytest.approx(0.0, abs=1e-12)  # order-free
    assert psi(x, rng.gamma(2.0, 30.0, 4000)) < 0.02  # the same distribution
    assert psi(x, 3 * x) > 1.0  # amounts tripled


def test_bins_are_reference_quantiles_with_missing_apart():
    found = bin_counts(pd.Series([1.0, 2.0, 3.0, 4.0, np.nan]), pd.Series([0.5, 9.0, np.nan]), 2)
    assert found.index.tolist() == ["<= 2.5", "> 2.5", "<missing>"]
    assert found["reference"].tolist() == [2, 2, 1] and found["current"].tolist() == [1, 1, 1]
    # a store that widened ints to floats (and bools to 0/1) bins them the same
    same = bin_counts(pd.Series([1, 2, 2], dtype="int64"), pd.Series([1.0, 2.0, 2.0]))
    assert same["reference"].tolist() == same["current"].tolist() == [1, 2]
    assert psi(pd.Series([True, False]), pd.Series([1.0, 0.0])) == pytest.approx(0.0)


def test_two_sample_tests_are_scipys():
    x, y = np.arange(20.0), np.arange(20.0) + 10
    name, statistic, p = two_sample_test(x, y)
    assert (name, statistic) == ("ks", 0.5) and p == pytest.approx(stats.ks_2samp(x, y).pvalue)
    name, statistic, p = two_sample_test(["a"] * 30 + ["b"] * 10, ["a"] * 10 + ["b"] * 30)
    chi2 = stats.chi2_contingency([[30, 10], [10, 30]], correction=False)
    assert name == "chi2" and statistic == pytest.approx(chi2.statistic) and p == chi2.pvalue
    assert two_sample_test(["a", "a"], ["a"]) == ("chi2", 0.0, 1.0)  # nothing to differ


def test_feature_drift_ranks_features_by_psi():
    rng = np.random.default_rng(1)
    ref = pd.DataFrame({"customer_id": [f"c{i}" for i in range(500)],
                        "spend": rng.gamma(2, 20, 500), "visits": rng.poisson(4, 500),
                        "segment": pd.Categorical(rng.choice(["a", "b"], 500))})  # fmt: skip
    cur = ref.assign(spend=ref["spend"] * 3)
    drift = feature_drift(ref, cur)
    assert drift["feature"].tolist()[0] == "spend" and set(drift["feature"]) == {
        "spend", "visits", "segment"}  # fmt: skip
    assert drift.set_index("feature").loc[["visits", "segment"], "psi"].max() == 0.0
    row = drift.iloc[0]
    assert row["test"] == "ks" and row["p_value"] < 1e-6
    assert row["current_mean"] == pytest.approx(3 * row["reference_mean"])
    scores = score_drift([0.1, 0.2, 0.3], [0.1, 0.2, 0.3])
    assert scores["psi"] == 0.0 and scores["ks_statistic"] == 0.0 and scores["current_n"] == 3


def test_realised_calibration_by_hand():
    # two bins split at the median prediction 0.5: (0.1, 0.1) -> observed 1/2, (0.9, 0.9) -> 1
    table, ece = realised_calibration([0.1, 0.9, 0.1, 0.9], [0, 1, 1, 1], bins=2)
    assert table["mean_predicted"].tolist() == pytest.approx([0.1, 0.9])
    assert table["observed_rate"].tolist() == [0.5, 1.0] and table["count"].tolist() == [2, 2]
    assert table["gap"].tolist() == pytest.approx([0.4, 0.1])
    assert ece == pytest.approx((0.4 * 2 + 0.1 * 2) / 4)
    p = np.linspace(0.05, 0.95, 100)
    deciles, _ = realised_calibration(p, np.arange(100) % 2)
    assert deciles["decile"].tolist() == list(range(1, 11)) and (deciles["count"] == 10).all()


def test_offer_performance_against_control_by_hand():
    exposures = pd.DataFrame({"offer_id": [None] * 10 + ["x"] * 10,
                              "converted": [1, 1] + [0] * 8 + [1] * 5 + [0] * 5,
                              "revenue": [10.0] * 20})  # fmt: skip
    table = offer_performance(exposures).set_index("arm")
    assert table.index.tolist() == ["control", "x"] and np.isnan(table.loc["control", "lift"])
    x = table.loc["x"]
    assert (x["sends"], x["conversions"], x["conversion_rate"]) == (10, 5, 0.5)
    se = math.sqrt(0.5 * 0.5 / 10 + 0.2 * 0.8 / 10)
    assert x["lift"] == pytest.approx(0.3)
    assert (x["lift_lo"], x["lift_hi"]) == pytest.approx((0.3 - 1.959964 * se, 0.3 + 1.959964 * se))
    no_control = offer_performance(exposures.dropna(subset=["offer_id"]))
    assert no_control["lift"].isna().all()


T0 = pd.Timestamp("2026-03-01", tz="UTC")


def at(days: float, hours: float = 0.0) -> float:
    return (T0 + pd.Timedelta(days=days, hours=hours)).timestamp()


@pytest.fixture
def ledger(tmp_path):
    """Four decisions: x to a (explored, day 9.5), no offer to b (day 8.25), y to c (cold
    start, day 5.5), x to a (day 1, before the window); a sent 2 h and a conversion 10 h after
    the first, an open 6 h after the third, a send of the fourth; one refused event. Every
    event arrives 1 h after it happened."""
    path = tmp_path / "ledger.sqlite"
    book = FeedbackLedger(path)
    book.record_decisions(Decisions(["d1", "d2", "d4"], ["a", "b", "a"], ["x", None, "x"],
                                    [0.1, 0.8, 0.5], [True, False, False], None, None, "{}",
                                    None))  # fmt: skip
    book.record_decisions(Decisions(["d3"], ["c"], ["y"], [0.5], [False], None, None, "{}",
                                    None, "cold_start"))  # fmt: skip
    events = [("s1", "d1", "sent", at(9.5, 2)), ("c1", "d1", "converted", at(9.5, 10)),
              ("o3", "d3", "opened", at(5.5, 6)), ("s4", "d4", "sent", at(1, 1))]  # fmt: skip
    book.record_feedback([{"event_id": e, "decision_id": d, "event": kind, "occurred_at": when}
                          for e, d, kind, when in events]
                         + [{"event_id": "z", "decision_id": "nope", "event": "sent",
                             "occurred_at": at(9)}])  # fmt: skip
    book.close()
    with sqlite3.connect(path) as conn:
        for decision, day in (("d1", 9.5), ("d2", 8.25), ("d3", 5.5), ("d4", 1)):
            conn.execute("UPDATE decisions SET decided_at = ? WHERE decision_id = ?",
                         (at(day), decision))  # fmt: skip
        conn.execute("UPDATE feedback SET received_at = occurred_at + 3600")
        conn.execute("UPDATE feedback_rejected SET received_at = ?", (at(9.6),))
    return path


def test_ledger_health_by_hand(ledger):
    health = ledger_health(ledger, now=T0 + pd.Timedelta(days=10), days=7)
    s = health.summary
    assert (s["decisions"], s["decisions_total"]) == (3, 4)
    assert s["decisions_per_day"] == pytest.approx(3 / 7)
    for share in ("exploration_share", "no_offer_share", "cold_start_share"):
        assert s[share] == pytest.approx(1 / 3)
    assert (s["feedback_share"], s["sent_share"]) == (1.0, 0.5)  # d1 and d3; only d1 sent
    assert s["feedback_lag_median_hours"] == pytest.approx(4.0)  # 2 h and 6 h
    assert s["report_delay_median_hours"] == pytest.approx(1.0)
    assert s["rejected_feedback"] == 1 and s["hours_since_last_decision"] == pytest.approx(12)
    assert health.daily["decisions"].tolist() == [0, 0, 1, 0, 0, 1, 1]
    assert health.daily["until"].iloc[-1] == "2026-03-11 00:00"
    exactly = ledger_health(ledger, now=T0 + pd.Timedelta(days=8), days=7)  # d4 at the start
    assert exactly.summary["decisions"] == 2 and exactly.daily["decisions"].iloc[0] == 1


def test_offers_the_offers_model_never_saw_sent_are_counted_by_hand(ledger):
    """In the window: x to a (explored) and y to c; the model was trained on x only."""
    health = ledger_health(ledger, now=T0 + pd.Timedelta(days=10), days=7,
                           trained={"control": 10, "x": 5})  # fmt: skip
    s = health.summary
    assert s["offers_without_training_support"] == 1 and s["unsupported_decision_share"] == 0.5
    support = health.offers.set_index("offer_id")
    assert support.index.tolist() == ["y", "x"]  # unsupported first
    assert support.loc["y"].to_dict() == {"decisions": 1.0, "explored": 0.0,
                                          "training_sends": 0.0, "supported": False}  # fmt: skip
    assert support.loc["x"].to_dict() == {"decisions": 1.0, "explored": 1.0,
                                          "training_sends": 5.0, "supported": True}  # fmt: skip
    unknown = ledger_health(ledger, now=T0 + pd.Timedelta(days=10), days=7)
    assert unknown.offers is None and "offers_without_training_support" not in unknown.summary


def test_ledger_health_of_an_empty_window_and_a_missing_ledger(ledger, tmp_path):
    quiet = ledger_health(ledger, now=T0 + pd.Timedelta(days=100), days=7).summary
    assert quiet["decisions"] == 0 and math.isnan(quiet["exploration_share"])
    with pytest.raises(FileNotFoundError, match="nope.sqlite does not exist"):
        ledger_health(tmp_path / "nope.sqlite", now=T0)


@pytest.fixture
def result():
    frame = pd.DataFrame({"customer_id": ["a", "b"], 'odd"name': [1.0, 2.0]})
    drift = feature_drift(frame, frame.assign(**{'odd"name': [5.0, 9.0]}))
    cal = Calibration(T0, 60, realised_calibration([0.1, 0.9], [0, 1], bins=2)[0], 0.1, 2,
                      0.5, 0.5)  # fmt: skip
    out = MonitorResult("lifecycle-churn v1", Vectors(frame, T0, "ref"), Vectors(frame, T0, "cur"),
                        drift, score_drift([0.1, 0.2], [0.1, 0.2]),
                        (np.array([0.1, 0.2]), np.array([0.1, 0.2])), cal, None, None,
                        Thresholds(psi=0.25, ece=0.05), notes=["a note"])  # fmt: skip
    out.checks = checks(out)
    return out


def test_checks_cross_only_above_their_thresholds(result):
    by_name = {c.name: c for c in result.checks}
    assert by_name["feature_psi"].crossed and 'odd"name' in by_name["feature_psi"].detail
    assert not by_name["score_psi"].crossed and by_name["churn_ece"].crossed
    assert not Check("churn_ece", float("nan"), 0.1).crossed  # no cohort crosses nothing


def test_outputs_json_prometheus_and_html(result):
    now = T0 + pd.Timedelta(days=1)
    body = json.dumps(to_json(result, now), allow_nan=False)
    assert json.loads(body)["crossed"] == ["feature_psi", "churn_ece"]
    prom = to_prometheus(result, now)
    assert 'lifecycle_feature_psi{feature="odd\\"name"} ' in prom  # label escaped
    assert "# TYPE lifecycle_score_psi gauge\nlifecycle_score_psi 0.0\n" in prom
    assert 'lifecycle_monitor_threshold_crossed{check="churn_ece"} 1.0' in prom
    assert "lifecycle_ledger_" not in prom and "lifecycle_offer_" not in prom
    page = render(result, now)
    assert page.startswith("<!DOCTYPE html>") and page.count("data:image/png;base64") == 3
    assert "CROSSED" in page and "a note" in page
