"""Business summaries on tiny hand-made frames with hand-computed answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training import insights
from training.report import registry_exists, split_run_metrics

OFFERS = pd.DataFrame({"offer_id": ["up", "ret"], "value": [10.0, 5.0], "cost": [1.0, 0.5]})


def test_risk_bands_count_customers_per_probability_band():
    table = insights.risk_bands([0.0, 0.03, 0.5, 0.9, 0.15], edges=(0, 0.1, 0.2, 1.0))
    assert list(table.index) == ["0-10%", "10-20%", "20-100%"]
    assert table["customers"].tolist() == [2, 1, 2]
    np.testing.assert_allclose(table["share"], [0.4, 0.2, 0.4])
    np.testing.assert_allclose(table["mean_probability"], [0.015, 0.15, 0.7])


def test_top_reasons_rank_features_by_how_many_customers_cite_them():
    reasons = [[("recency", 0.5), ("tickets", 0.2)], [("recency", 0.3)], [("nps", 0.9)], []]
    table = insights.top_reasons(reasons, top=2)
    assert list(table.index) == ["recency", "nps"]  # 2 customers; then 1 with the larger mean
    assert table.loc["recency", "customers"] == 2
    assert table.loc["recency", "share"] == pytest.approx(0.5)
    assert table.loc["recency", "mean_contribution"] == pytest.approx(0.4)
    assert insights.top_reasons([[], []]).empty


def test_mean_abs_contribution_leaves_out_the_bias():
    contrib = pd.DataFrame({"a": [1.0, -3.0], "b": [0.5, 0.5], "bias": [9.0, 9.0]})
    result = insights.mean_abs_contribution(contrib)
    assert result.to_dict() == {"a": 2.0, "b": 0.5}


STAGE = pd.Series(["retention", "at_risk", "retention", "retention", "churned"])
BEST = pd.Series(["up", "ret", None, "up", None], dtype=object)
VALUE = [2.0, 1.0, 0.0, 4.0, 0.0]


def test_policy_by_stage_summarises_offers_and_value_in_lifecycle_order():
    table = insights.policy_by_stage(STAGE, BEST, VALUE)
    assert list(table.index) == ["retention", "at_risk", "churned"]
    assert table["customers"].tolist() == [3, 1, 1]
    np.testing.assert_allclose(table["offered_share"], [2 / 3, 1.0, 0.0])
    assert table["top_offer"].tolist() == ["up", "ret", "no offer"]
    np.testing.assert_allclose(table["expected_value_mean"], [2.0, 1.0, 0.0])
    np.testing.assert_allclose(table["expected_value_total"], [6.0, 1.0, 0.0])


def test_offer_mix_by_stage_rows_sum_to_one_with_no_offer_last():
    mix = insights.offer_mix_by_stage(STAGE, BEST)
    assert list(mix.columns) == ["up", "ret", "no offer"]
    assert list(mix.index) == ["retention", "at_risk", "churned"]
    np.testing.assert_allclose(mix.loc["retention"], [2 / 3, 0.0, 1 / 3])
    np.testing.assert_allclose(mix.sum(axis=1), 1.0)


def test_offer_economics_explains_the_choice_per_stage():
    stage = pd.Series(["retention", "retention", "at_risk"])
    uplift = pd.DataFrame({"up": [0.2, 0.4, 0.1], "ret": [0.1, np.nan, 0.5]})
    eligible = pd.DataFrame({"up": [True, True, False], "ret": [True, True, True]})
    table = insights.offer_economics(stage, uplift, OFFERS, eligible)
    rows = {(r.stage, r.offer): r for r in table.itertuples()}
    assert set(rows) == {("retention", "up"), ("retention", "ret"), ("at_risk", "ret")}
    up = rows[("retention", "up")]
    assert up.mean_uplift == pytest.approx(0.3) and up.expected_value == pytest.approx(2.0)
    assert rows[("retention", "ret")].eligible_share == pytest.approx(0.5)  # NaN uplift: out
    assert rows[("at_risk", "ret")].expected_value == pytest.approx(0.5 * 5 - 0.5)
    assert table["stage"].tolist() == ["retention", "retention", "at_risk"]  # best first


def test_uplift_by_offer_weights_by_the_logged_propensity():
    arm = ["up", "up", "control", "control", "ret"]
    y = [1, 0, 1, 0, 1]
    propensity = [0.5, 0.25, 0.5, 0.5, 0.5]
    uplift = pd.DataFrame({"up": [0.1, 0.3, 0.2, 0.2, 9.0]})
    table = insights.uplift_by_offer(uplift, arm, y, propensity)
    assert table.loc["up", "sent"] == 2
    assert table.loc["up", "predicted"] == pytest.approx(0.2)  # over up and control sends
    # treated: weights 2 and 4 -> rate 2 / 6; control: 0.5
    assert table.loc["up", "observed"] == pytest.approx(1 / 3 - 0.5)
    assert table.loc["up", "se"] > 0
    eligible = pd.DataFrame({"up": [True, True, False, True, True]})  # 1st control send: no
    table = insights.uplift_by_offer(uplift, arm, y, propensity, eligible)
    assert table.loc["up", "observed"] == pytest.approx(1 / 3 - 0.0)
    assert table.loc["up", "predicted"] == pytest.approx(0.2)


def test_metrics_table_puts_the_model_first_beside_its_baselines():
    table = insights.metrics_table({"auc": 0.8, "brier": 0.1}, {"rfm": {"auc": 0.6}}, "churn")
    assert list(table.index) == ["churn", "baseline: rfm"]
    assert table.loc["baseline: rfm", "auc"] == 0.6 and np.isnan(
        table.loc["baseline: rfm", "brier"]
    )
    only = insights.metrics_table({"auc": 0.8, "brier": 0.1}, {}, "churn", columns=["x", "auc"])
    assert list(only.columns) == ["auc"]


def test_run_metrics_split_into_model_and_baselines():
    own, baselines = split_run_metrics(
        {
            "roc_auc": 0.8,
            "baseline_rfm.roc_auc": 0.6,
            "baseline_propensity.policy_value_dr": 1.0,
            "policy_value_dr.learned": 2.0,
        }  # fmt: skip
    )
    assert own == {"policy_value_dr.learned": 2.0, "roc_auc": 0.8}
    assert baselines == {"propensity": {"policy_value_dr": 1.0}, "rfm": {"roc_auc": 0.6}}


def test_a_missing_sqlite_registry_is_not_created(tmp_path):
    assert not registry_exists(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (tmp_path / "mlflow.db").touch()
    assert registry_exists(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert registry_exists("http://tracking:5000")
