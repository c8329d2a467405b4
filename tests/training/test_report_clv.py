"""The report's customer-lifetime-value summaries on tiny hand-made frames with hand-computed
answers: CLV by stage, value at risk by stage, who to save and their best retention offer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training import insights, plots
from training.models.clv import ProbabilisticCLV
from training.report import ReportModels, clv_estimator, clv_terms

STAGE = pd.Series(["retention", "at_risk", "retention", "churned"])
CHURN = [0.1, 0.5, 0.2, 0.9]
CLV = [100.0, 50.0, 300.0, 20.0]  # value at risk: 10, 25, 60, 18
OFFERS = pd.DataFrame({
    "offer_id": ["up", "ret", "wb"],
    "kind": ["upsell", "retention", "winback"],
    "value": [10.0, 5.0, 8.0],
    "cost": [1.0, 0.5, 2.0],
    "eligible_stages": ["retention", "at_risk|retention", "churned"],
    "exclude_if_owned": [False, False, False],
})  # fmt: skip


def test_clv_by_stage_counts_sums_and_averages_in_lifecycle_order():
    table = insights.clv_by_stage(STAGE, CLV)
    assert list(table.index) == ["retention", "at_risk", "churned"]
    assert table["customers"].tolist() == [2, 1, 1]
    np.testing.assert_allclose(table["clv_total"], [400.0, 50.0, 20.0])
    np.testing.assert_allclose(table["clv_mean"], [200.0, 50.0, 20.0])
    np.testing.assert_allclose(table["clv_median"], [200.0, 50.0, 20.0])
    np.testing.assert_allclose(table["clv_share"], [400 / 470, 50 / 470, 20 / 470])


def test_value_at_risk_is_churn_probability_times_clv_per_stage():
    table = insights.value_at_risk_by_stage(STAGE, CHURN, CLV)
    assert list(table.index) == ["retention", "at_risk", "churned"]
    np.testing.assert_allclose(table["mean_churn_probability"], [0.15, 0.5, 0.9])
    np.testing.assert_allclose(table["value_at_risk_total"], [70.0, 25.0, 18.0])
    np.testing.assert_allclose(table["value_at_risk_mean"], [35.0, 25.0, 18.0])
    np.testing.assert_allclose(table["value_at_risk_share"], [70 / 113, 25 / 113, 18 / 113])


def test_best_retention_offer_is_valued_as_the_service_values_it_and_ignores_other_kinds():
    uplift = pd.DataFrame({"up": [0.5, 0.5, 0.5, 0.5], "ret": [0.1, 0.005, 0.3, np.nan],
                           "wb": [0.02, 0.05, 0.1, 0.5]})  # fmt: skip
    eligible = pd.DataFrame(True, index=uplift.index, columns=uplift.columns)
    eligible.loc[1, "wb"] = False
    clv = [100.0, 50.0, np.nan, 20.0]  # NaN: the margin alone, as in the service
    best = insights.best_retention_offer(uplift, eligible, OFFERS, CHURN, clv)
    # worth = margin + churn / (1 - churn) x CLV; CHURN = 0.1, 0.5, 0.2, 0.9
    # row 0: ret 0.1 x (5 + 100 / 9) - 0.5 beats wb 0.02 x (8 + 100 / 9) - 2 < 0 ("up": no
    # retention offer); row 1: ret 0.005 x (5 + 50) - 0.5 < 0, wb is ineligible -> none
    # row 2: ret 0.3 x 5 - 0.5 = 1.0 beats wb 0.1 x 8 - 2; row 3: wb 0.5 x (8 + 9 x 20) - 2
    assert best["retention_offer"].tolist() == ["ret", "none", "ret", "wb"]
    np.testing.assert_allclose(best["offer_value"], [0.1 * (5 + 100 / 9) - 0.5, np.nan, 1.0,
                                                     92.0])  # fmt: skip
    np.testing.assert_allclose(best["offer_uplift"], [0.1, np.nan, 0.3, 0.5])
    assert (insights.best_retention_offer(uplift, None, None, CHURN, clv)["retention_offer"]
            == "none").all()  # fmt: skip


class StubUplift:
    """An uplift model reading its answers from the frame: ``u_<offer>``, ``s_<offer>``."""

    offers_ = ["up", "ret", "wb"]

    def predict_uplift(self, X):
        return pd.DataFrame({k: X[f"u_{k}"].to_numpy() for k in self.offers_}, index=X.index)

    def supported(self, X):
        return pd.DataFrame({k: X.get(f"s_{k}", True) for k in self.offers_}, index=X.index)


def test_who_to_save_ranks_by_value_at_risk_with_each_best_retention_offer():
    vectors = pd.DataFrame({
        "customer_id": ["a", "b", "c", "d", "e"], "stage": [*STAGE, "retention"],
        "u_up": 0.5, "u_ret": [0.2, 0.001, 0.3, 0.9, 0.5], "u_wb": [0.0, 0.9, 0.9, 0.5, 0.5],
        "s_ret": [True, True, True, True, False],
    })  # fmt: skip
    churn, clv = [*CHURN, 0.5], [*CLV, np.nan]  # e: value at risk unknown -> last
    table = insights.who_to_save(vectors, churn, clv, StubUplift(), OFFERS, top=4)
    assert table["customer_id"].tolist() == ["c", "b", "d", "a"]
    np.testing.assert_allclose(table["value_at_risk"], [60.0, 25.0, 18.0, 10.0])
    # worth = margin + churn / (1 - churn) x CLV. c (retention): ret 0.3 x (5 + 75) - 0.5;
    # b (at_risk): ret 0.001 x (5 + 50) - 0.5 < 0 and wb is for churned only -> none;
    # d (churned): wb 0.5 x (8 + 180) - 2 (ret not for churned); a: ret 0.2 x (5 + 100 / 9)
    assert table["retention_offer"].tolist() == ["ret", "none", "wb", "ret"]
    np.testing.assert_allclose(table["offer_value"], [23.5, np.nan, 92.0,
                                                      0.2 * (5 + 100 / 9) - 0.5])  # fmt: skip
    plain = insights.who_to_save(vectors, churn, clv, None, OFFERS, top=2)
    assert plain["retention_offer"].tolist() == ["none", "none"]
    assert list(plain.columns) == list(table.columns)


def test_clv_falls_back_to_the_buy_till_you_die_column_else_says_why():
    vectors = pd.DataFrame({"customer_id": ["a", "b"], "btyd_clv_90d": [12.5, np.nan]})
    models = ReportModels(None, None, {}, "test", clv=None, clv_absent="not trained: too short")
    estimator, note = clv_estimator(models, vectors, None)
    assert isinstance(estimator, ProbabilisticCLV) and estimator.column == "btyd_clv_90d"
    np.testing.assert_allclose(estimator.predict(vectors), [12.5, 0.0])
    assert "probabilistic" in note and "not trained: too short" in note
    assert clv_terms(estimator, None)["clv_horizon_days"] == 90
    estimator, note = clv_estimator(models, vectors.drop(columns="btyd_clv_90d"), None)
    assert estimator is None
    assert note.startswith("No customer lifetime value") and "not trained: too short" in note


def test_clv_by_stage_plot_draws_both_bars_per_stage():
    fig = plots.clv_by_stage_plot(
        insights.clv_by_stage(STAGE, CLV),
        insights.value_at_risk_by_stage(STAGE[:2], CHURN[:2], CLV[:2]),
    )
    ax = fig.axes[0]
    assert len(ax.containers) == 2 and len(ax.patches) == 6
    assert [t.get_text() for t in ax.get_xticklabels()] == ["retention", "at_risk", "churned"]


@pytest.mark.parametrize("top", [0, 10])
def test_who_to_save_takes_at_most_top_customers(top):
    vectors = pd.DataFrame({"customer_id": list("abcd"), "stage": STAGE})
    assert len(insights.who_to_save(vectors, CHURN, CLV, top=top)) == min(top, 4)
