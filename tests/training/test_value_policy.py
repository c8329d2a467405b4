"""The value-aware offer policy's caution: it leaves the choice by margin (today's policy) only
where the gain beats the uplift model's noise (``training.policy.cautious_values``), with the
noise the offers model measured at training (``UpliftModel.measure_spread``) and the service
deciding the same way (``DecisionEngine.expected_values``). Hand-computed cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from serving.bundle import ModelBundle, ModelInfo
from serving.config import PolicyConfig
from serving.engine import DecisionEngine
from tests.serving.test_engine import Fixed, Stage, draws, no_contacts
from training.models.clv import ProbabilisticCLV
from training.models.uplift import UpliftModel
from training.offers_pipeline import OfferData, fit_uplift
from training.policy import cautious_values, greedy_offer

Z95 = 1.6448536269514722  # the one-sided 95 % normal quantile


def test_greedy_offer_is_the_eligible_positive_best_or_none():
    expected = np.array([[1.0, 3.0, 2.0], [-1.0, -0.5, np.nan], [2.0, 2.0, 5.0], [1.0, 1.0, 9.0]])
    eligible = np.array([[True] * 3, [True] * 3, [True] * 3, [True, True, False]])
    # row 2: a tie goes to the first; row 3: the ineligible 9 does not count
    np.testing.assert_array_equal(greedy_offer(expected, eligible), [1, -1, 2, 0])
    assert greedy_offer(np.empty((2, 0)), np.empty((2, 0), bool)).tolist() == [-1, -1]


def test_a_departure_from_the_baseline_needs_a_gain_beyond_the_noise():
    # two offers; the baseline (margin alone) chose offer 0 on every row
    expected = np.array([[1.5, 19.5], [1.5, 19.5], [1.5, 1.6]])
    worth = np.array([10.0, 71.0])
    baseline = np.array([0, 0, 0])
    se = np.array([0.05, 0.05])
    out = cautious_values(expected, worth, se, baseline)
    # offer 1 keeps its value less z x sqrt((0.05 x 71)^2 + (0.05 x 10)^2); the baseline's own
    # value is unchanged
    spread = Z95 * np.hypot(0.05 * 71, 0.05 * 10)
    np.testing.assert_allclose(out[:, 0], 1.5)
    np.testing.assert_allclose(out[:, 1], expected[:, 1] - spread)
    chosen = greedy_offer(out, np.ones((3, 2), bool))
    # 19.5 - 1.5 = 18 > 5.96: leave; 1.6 - 1.5 = 0.1 < 5.96: stay
    assert chosen.tolist() == [1, 1, 0]
    noisier = cautious_values(expected, worth, np.array([0.05, 0.2]), baseline)
    # sqrt((0.2 x 71)^2 + 0.5^2) x 1.645 = 23.4 > 18: the gain is within the noise
    assert greedy_offer(noisier, np.ones((3, 2), bool)).tolist() == [0, 0, 0]
    assert noisier[0, 1] == pytest.approx(19.5 - Z95 * np.hypot(0.2 * 71, 0.5))


def test_without_a_baseline_offer_a_send_needs_its_own_lower_bound_above_zero():
    expected = np.array([[2.0, 0.5], [-1.0, 0.5]])
    worth = np.array([[40.0, 10.0], [40.0, 10.0]])  # per row and offer
    out = cautious_values(expected, worth, np.array([0.01, 0.1]), np.array([-1, -1]))
    # no offer has s = 0: E - z x s alone; 2 - 1.645 x 0.4 = 1.34 > 0, 0.5 - 1.645 < 0
    np.testing.assert_allclose(out, [[2.0 - Z95 * 0.4, 0.5 - Z95], [-1.0 - Z95 * 0.4, 0.5 - Z95]])
    assert greedy_offer(out, np.ones((2, 2), bool)).tolist() == [0, -1]


def test_an_offer_of_unknown_noise_is_never_moved_to_nor_from_and_nan_stays_unknown():
    expected = np.array([[1.0, 50.0, np.nan], [1.0, 50.0, 3.0]])
    worth = np.array([10.0, 60.0, 10.0])
    out = cautious_values(expected, worth, np.array([0.01, np.nan, 0.01]), np.array([0, 1]))
    assert out[0, 1] == -np.inf and np.isnan(out[0, 2])  # NaN expected: explored only
    # row 1: the baseline is the offer of unknown noise: nothing is reliably better than it
    assert out[1, 1] == 50.0 and out[1, 0] == -np.inf and out[1, 2] == -np.inf
    assert greedy_offer(out, np.ones((2, 3), bool)).tolist() == [0, 1]


def test_a_higher_confidence_asks_more_of_a_departure():
    expected, worth = np.array([[1.0, 2.0]]), np.array([10.0, 10.0])
    se, baseline = np.array([0.0, 0.1]), np.array([0])
    # the gain 1 against a spread 1: a departure at 80 % (z 0.84), not at 95 % (z 1.64)
    assert greedy_offer(cautious_values(expected, worth, se, baseline, 0.8), [[True] * 2]) == 1
    assert greedy_offer(cautious_values(expected, worth, se, baseline), [[True] * 2]) == 0


# ---- the noise the offers model records -------------------------------------------------


def sends(n_a: int, n_b: int, seed: int = 0) -> OfferData:
    """A randomised log: control, offer "a" (``n_a`` sends) and "b" (``n_b``); constant rates
    (control 0.2, a 0.3, b 0.3), so every estimated heterogeneity is noise."""
    rng = np.random.default_rng(seed)
    arm = np.array(["control"] * 3000 + ["a"] * n_a + ["b"] * n_b, object)
    n = len(arm)
    y = (rng.random(n) < np.where(arm == "control", 0.2, 0.3)).astype(int)
    X = pd.DataFrame({"x": rng.random(n), "z": rng.normal(size=n)})
    exposures = pd.DataFrame({"propensity": np.full(n, 1 / 3),
                              "customer_id": [f"c{i % (n // 2)}" for i in range(n)]})  # fmt: skip
    return OfferData(X, exposures, y, pd.Series(arm))


def test_the_offers_model_records_a_larger_standard_error_for_the_thinner_arm():
    data = sends(6000, 600)
    model = fit_uplift(data, {"min_arm_size": 100, "min_support": 0.0})
    se = model.uplift_se_
    assert set(se) == {"a", "b"} and all(0 < v < 1 for v in se.values())
    # ten times fewer sends: a noisier estimate (sqrt(10) ~ 3 times, if the trees were OLS)
    assert se["b"] > 1.5 * se["a"]


def test_an_arm_too_small_to_model_in_a_half_has_no_standard_error():
    data = sends(3000, 300)
    model = UpliftModel(min_arm_size=200, min_support=0.0)
    args = (data.X, data.arm, data.y, data.exposures["propensity"])
    model.fit(*args)  # "b" has 300 sends: modelled in full, not in a half of ~150
    assert model.outcome_models_["b"] is not None
    se = model.measure_spread(*args, groups=data.exposures["customer_id"]).uplift_se_
    assert np.isfinite(se["a"]) and np.isnan(se["b"])


# ---- the service decides the same way ----------------------------------------------------

CATALOG = pd.DataFrame({
    "offer_id": ["up", "xs", "wb"], "kind": ["upsell", "cross_sell", "winback"],
    "product": [None, None, None], "value": [50.0, 10.0, 5.0], "cost": [1.0, 0.5, 2.0],
    "eligible_stages": ["retention", None, "churned"], "exclude_if_owned": [False] * 3,
    "cooldown_days": [30, 7, 60], "channel": [None, None, None],
})  # fmt: skip


class Recorded(Fixed):
    """Fixed's uplift (x2 x (1, 3, 2) for up, wb, xs), with recorded standard errors."""

    def __init__(self, se: dict[str, float]) -> None:
        self.uplift_se_ = se


def engine(offers, retention_value: str = "clv") -> DecisionEngine:
    clv = ProbabilisticCLV("btyd_clv_365d").fit(pd.DataFrame({"btyd_clv_365d": [1.0]}))
    info = {n: ModelInfo(n, f"lifecycle-{n}", "7", None, None) for n in ("churn", "stage")}
    bundle = ModelBundle(Fixed(), Stage(), offers, info, "test", clv=clv)
    return DecisionEngine(
        bundle, CATALOG, PolicyConfig(exploration=0.0, retention_value=retention_value)
    )


def churned_customer():
    from serving.inputs import FeatureRows

    return FeatureRows(
        ("c0",), np.array([[0.1, 0.4, 0.0, 100.0]]), ("x2", "x0", "x1", "btyd_clv_365d"),
        {"stage": np.array(["churned"], object), "owned_products": np.array([""], object),
         "plan": np.array(["basic"], object)},
        np.ones(1, bool), pd.Timestamp("2025-01-01", tz="UTC"), ("store", 1),
    )  # fmt: skip


def decide(e: DecisionEngine) -> tuple[str | None, dict]:
    out, _ = e.decide(churned_customer(), no_contacts(1), draws(1))
    return out[0]["decision"]["offer_id"], {o["offer_id"]: o for o in out[0]["offers"]}


def test_the_service_leaves_the_margins_choice_only_beyond_the_noise():
    # a churned customer, churn 0.4, CLV 100: xs (uplift 0.2) and wb (0.3) are eligible; by
    # margin xs 0.2 x 10 - 0.5 = 1.5 beats wb 0.3 x 5 - 2 = -0.5; keeping them saves
    # 0.4 x 100 / 0.6, so wb is worth 0.3 x (5 + 66.67) - 2 = 19.5 by value
    worth = 5 + 0.4 * 100 / 0.6
    assert decide(engine(Fixed()))[0] == "wb"  # no recorded noise: the plain values
    assert decide(engine(Recorded({"up": 0.05, "wb": 0.05, "xs": 0.05}), "catalog"))[0] == "xs"
    chosen, shown = decide(engine(Recorded({"up": 0.05, "wb": 0.05, "xs": 0.05})))
    assert chosen == "wb"  # the gain 18 beats 1.645 x sqrt((0.05 x 71.7)^2 + (0.05 x 10)^2)
    assert shown["wb"]["expected_value"] == pytest.approx(
        0.3 * worth - 2 - Z95 * np.hypot(0.05 * worth, 0.05 * 10), abs=1e-6
    )
    assert shown["xs"]["expected_value"] == pytest.approx(1.5)  # the margin's choice: as is
    chosen, shown = decide(engine(Recorded({"up": 0.05, "wb": 0.2, "xs": 0.05})))
    assert chosen == "xs"  # 1.645 x sqrt((0.2 x 71.7)^2 + 0.5^2) = 23.6 > 18: within noise


def test_the_standard_error_is_half_the_root_mean_square_gap_of_the_halves(monkeypatch):
    from training.models import uplift

    data = sends(1000, 1000)
    model = UpliftModel(min_arm_size=100, min_support=0.0)
    args = (data.X, data.arm, data.y, data.exposures["propensity"])
    model.fit(*args)

    class Half:  # each half's estimates: a 0.1 / 0.3 everywhere, b 0.2 / (0.2 or 0.6)
        def __init__(self, first: bool) -> None:
            self.first = first

        def fit(self, X, *rest):
            return self

        def predict_uplift(self, X):
            b = 0.2 if self.first else np.where(np.arange(len(X)) % 2 == 0, 0.2, 0.6)
            return pd.DataFrame({"a": 0.1 if self.first else 0.3, "b": b}, index=X.index)

    halves = iter([Half(True), Half(False)])
    monkeypatch.setattr(uplift, "clone", lambda estimator: next(halves))
    se = model.measure_spread(*args).uplift_se_
    # a: sqrt(0.2^2 / 4) = 0.1; b: half the rows differ by 0.4: sqrt(0.5 x 0.16 / 4)
    assert se["a"] == pytest.approx(0.1) and se["b"] == pytest.approx(np.sqrt(0.02))


def test_a_half_that_cannot_be_fitted_leaves_every_standard_error_unknown():
    rng = np.random.default_rng(0)
    arm = np.array(["control"] * 300 + ["a"] * 300, object)
    y, X = (rng.random(600) < 0.3).astype(int), pd.DataFrame({"x": rng.random(600)})
    model = UpliftModel(min_arm_size=50, min_support=0.0).fit(X, arm, y)
    # two customers, one per arm: each half holds a single arm, no uplift can be fitted
    groups = np.where(arm == "control", "c0", "c1")
    se = model.measure_spread(X, arm, y, groups=groups).uplift_se_
    assert list(se) == ["a"] and np.isnan(se["a"])  # unknown: the policy never departs
