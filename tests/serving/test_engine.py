"""The decision engine on hand-made models and rows: eligibility rules, the greedy choice,
exploration propensities, inputs from the store layout (no MLflow, no server)."""

from __future__ import annotations

import math
import uuid

import numpy as np
import pandas as pd
import pytest

from serving import engine as engines
from serving.bundle import ModelBundle, ModelInfo
from serving.config import PolicyConfig
from serving.engine import Contacts, DecisionEngine, decision_ids
from serving.inputs import FeatureRows, InputPlan

OFFERS = pd.DataFrame({
    "offer_id": ["up", "xs", "wb"], "kind": ["upsell", "cross_sell", "winback"],
    "product": ["premium", None, None], "value": [50.0, 10.0, 20.0], "cost": [1.0, 0.5, 2.0],
    "eligible_stages": ["retention|advocacy", None, "churned"],
    "exclude_if_owned": [True, False, False], "cooldown_days": [30, 7, 60],
    "channel": ["email", "app", None],
})  # fmt: skip


class Fixed:
    """A stand-in estimator: churn = x0, stage = one-hot of x1, uplift = x2 * (1, 2, 3)."""

    feature_names_in_ = np.array(["x0", "x1", "x2", "plan"], dtype=object)
    categories_ = {"plan": ["basic", "premium"]}
    classes_ = np.array(["retention", "churned"])
    offers_ = ["up", "wb", "xs"]

    def predict_proba(self, X):
        if X.shape[1] and np.all(X[:, 0] <= 1):
            p = X[:, 0]
            return np.column_stack([1 - p, p])
        raise AssertionError

    def uplift_and_support(self, X):
        return X[:, [2]] * np.array([[1.0, 3.0, 2.0]]), np.ones((len(X), 3), bool)


class Stage(Fixed):
    def predict_proba(self, X):
        return np.column_stack([1 - X[:, 1], X[:, 1]])


def engine(exploration: float = 0.0, cap: int = 3) -> DecisionEngine:
    info = {
        n: ModelInfo(n, f"lifecycle-{n}", "7", None, None) for n in ("churn", "stage", "offers")
    }
    bundle = ModelBundle(Fixed(), Stage(), Fixed(), info, "test")
    return DecisionEngine(bundle, OFFERS, PolicyConfig(exploration=exploration, contact_cap=cap))


def rows(x: list[list[float]], stage: list[str], owned: list[str], plan=None) -> FeatureRows:
    n = len(x)
    plan = plan or ["basic"] * n
    return FeatureRows(
        tuple(f"c{i}" for i in range(n)), np.array(x, float), ("x2", "x0", "x1"),
        {"stage": np.array(stage, object), "owned_products": np.array(owned, object),
         "plan": np.array(plan, object)},
        np.ones(n, bool), pd.Timestamp("2025-01-01", tz="UTC"), ("store", 1),
    )  # fmt: skip


def draws(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(n)


def no_contacts(n: int, k: int = 3) -> Contacts:
    return Contacts(np.zeros(n), np.full((n, k), np.nan))


def test_input_plan_maps_store_columns_and_training_categories():
    r = rows([[0.1, 0.2, 0.3]], ["retention"], [""], plan=["premium"])
    x = InputPlan(Fixed(), r).matrix(r)
    # store order is (x2, x0, x1); the model wants (x0, x1, x2, plan) with plan as its code
    np.testing.assert_array_equal(x, [[0.2, 0.3, 0.1, 1.0]])
    several = rows([[0.1, 0.2, 0.3]] * 4, ["retention"] * 4, [""] * 4,
                   plan=["gold", None, "basic", "premium"])  # fmt: skip
    codes = InputPlan(Fixed(), several).matrix(several)[:, 3]  # unseen, missing: NaN
    np.testing.assert_array_equal(codes, [np.nan, np.nan, 0.0, 1.0])


def test_input_plan_names_columns_the_store_lacks():
    r = FeatureRows(("c",), np.zeros((1, 1)), ("x0",), {}, np.ones(1, bool), None, ("store", 1))
    with pytest.raises(ValueError, match=r"lacks 3 column\(s\).*x1"):
        InputPlan(Fixed(), r)


def test_greedy_choice_is_the_best_eligible_positive_value_and_reasons_name_the_rule():
    # uplift x2=0.1: up 0.1*50-1=4, wb 0.3*20-2=4 (stage churned only), xs 0.2*10-.5=1.5
    r = rows([[0.1, 0.4, 0.0], [0.1, 0.4, 0.0], [0.1, 0.4, 0.0]],
             ["retention", "retention", "churned"], ["", "premium", ""])  # fmt: skip
    out, logged = engine().decide(r, no_contacts(3), draws(3))
    assert [o["decision"]["offer_id"] for o in out] == ["up", "xs", "wb"]
    assert all(o["decision"]["propensity"] == 1.0 for o in out)  # no exploration
    assert out[0]["decision"]["expected_value"] == pytest.approx(4.0)
    offers = {o["offer_id"]: o for o in out[1]["offers"]}
    assert offers["up"]["ineligible_reason"] == "already owns premium"
    assert "stage retention not in churned" in offers["wb"]["ineligible_reason"]
    assert out[0]["churn"]["probability"] == pytest.approx(0.4)
    assert out[0]["churn"]["risk_band"] == "medium"
    assert [d.offer_id for d in logged] == ["up", "xs", "wb"]
    assert len({d.decision_id for d in logged}) == 3


def test_decide_uses_scores_at_hand_instead_of_scoring_again(monkeypatch):
    r = rows([[0.1, 0.4, 0.0], [0.1, 0.2, 0.0], [0.3, 0.1, 0.0]],
             ["retention", "retention", "churned"], ["", "premium", ""])  # fmt: skip
    e = engine()
    scored = e.score(r)
    expected, _ = e.decide(r, no_contacts(3), draws(3))
    picked = np.array([2, 0])
    assert np.array_equal(scored.take(picked).churn, scored.churn[picked])

    def refuse(_rows):
        raise AssertionError("scored again")

    monkeypatch.setattr(e, "score", refuse)
    got, _ = e.decide(r, no_contacts(3), draws(3), scores=scored)

    def same(out):
        return [{k: v for k, v in o.items() if k != "decision"} | {
            "offer": o["decision"]["offer_id"]} for o in out]  # fmt: skip

    assert same(got) == same(expected)


def test_no_offer_when_nothing_has_positive_value():
    r = rows([[0.01, 0.1, 0.0]], ["retention"], [""])  # up .5-1<0, xs .2-.5<0
    out, _ = engine().decide(r, no_contacts(1), draws(1))
    assert out[0]["decision"]["offer_id"] is None and out[0]["decision"]["expected_value"] == 0.0


def test_channel_cooldown_and_contact_cap():
    r = rows([[0.1, 0.4, 0.0]] * 3, ["retention"] * 3, [""] * 3)
    days = np.full((3, 3), np.nan)
    days[1, 0] = 5.0  # "up" sent 5 days ago: cooldown 30
    contacts = Contacts(np.array([0.0, 0.0, 3.0]), days)
    out, _ = engine(cap=3).decide(r, contacts, draws(3), channel="email")
    assert out[0]["decision"]["offer_id"] == "up"
    up = {o["offer_id"]: o for o in out[1]["offers"]}["up"]
    assert up["ineligible_reason"].startswith("sent 5.0 days ago")
    xs = {o["offer_id"]: o for o in out[1]["offers"]}["xs"]
    assert xs["ineligible_reason"] == "offer goes by app, not email"
    assert out[1]["decision"]["offer_id"] is None
    assert out[2]["decision"]["offer_id"] is None
    capped = {o["offer_id"]: o for o in out[2]["offers"]}["up"]  # first failing rule is shown
    assert capped["ineligible_reason"] == "contact cap 3 per 30 days reached"


def test_exploration_propensities_match_the_draws():
    n, eps = 4000, 0.3
    r = rows([[0.1, 0.4, 0.0]] * n, ["retention"] * n, [""] * n)  # eligible: up, xs (+ none)
    out, _ = engine(exploration=eps).decide(r, no_contacts(n), draws(n, seed=1))
    chosen = pd.Series([o["decision"]["offer_id"] or "none" for o in out])
    propensity = pd.Series([o["decision"]["propensity"] for o in out])
    expected = {"up": 1 - eps + eps / 3, "xs": eps / 3, "none": eps / 3}
    for arm, p in expected.items():
        np.testing.assert_allclose(propensity[chosen == arm], p)
        assert abs((chosen == arm).mean() - p) < 4 * np.sqrt(p * (1 - p) / n)
    explored = pd.Series([o["decision"]["explored"] for o in out])
    assert explored[chosen != "up"].all() and not explored[chosen == "up"].any()


def test_models_with_the_same_inputs_share_one_input_plan():
    e, r = engine(), rows([[0.1, 0.4, 0.0]], ["retention"], [""])
    assert e._plan("churn", r) is e._plan("stage", r) is e._plan("offers", r)

    class Narrow(Fixed):
        feature_names_in_ = np.array(["x0", "x1", "x2"], dtype=object)

    info = {
        n: ModelInfo(n, f"lifecycle-{n}", "7", None, None) for n in ("churn", "stage", "offers")
    }
    narrow = DecisionEngine(ModelBundle(Fixed(), Stage(), Narrow(), info, "test"), OFFERS,
                            PolicyConfig(exploration=0.0))  # fmt: skip
    assert narrow._plan("offers", r) is not narrow._plan("churn", r)
    assert narrow.inputs("offers", r).shape == (1, 3)
    np.testing.assert_array_equal(narrow.score(r).uplift, e.score(r).uplift)


def test_decision_ids_are_distinct_time_ordered_uuid7_hex():
    ids = decision_ids(5000)
    assert len(set(ids)) == 5000 and decision_ids(0) == []
    for text in ids:
        parsed = uuid.UUID(hex=text)
        assert parsed.hex == text and parsed.version == 7 and parsed.variant == uuid.RFC_4122
    at = 1_767_225_600.123  # 2026-01-01T00:00:00.123Z
    assert {int(i[:12], 16) for i in decision_ids(100, now=at)} == {1_767_225_600_123}
    earlier, later = decision_ids(50, now=at), decision_ids(50, now=at + 0.01)
    assert max(earlier) < min(later)  # the ledger's index takes new ids at its end


def test_logged_decisions_are_the_answers_columns():
    r = rows([[0.1, 0.4, 0.0], [0.1, 0.4, 0.0]], ["retention", "churned"], ["", ""])
    out, logged = engine().decide(r, no_contacts(2), draws(2), channel="email")
    assert len(logged) == 2 and list(logged.customer_id) == ["c0", "c1"]
    for answer, row in zip(out, logged, strict=True):
        assert row.decision_id == answer["decision"]["decision_id"]
        assert (row.offer_id, row.propensity, row.explored, row.expected_value) == tuple(
            answer["decision"][k] for k in ("offer_id", "propensity", "explored", "expected_value")
        )
        assert (row.channel, row.features_as_of) == ("email", "2025-01-01T00:00:00+00:00")


def test_offer_values_are_rounded_and_unknown_uplift_is_none():
    class Unknown(Fixed):  # "wb" has no uplift model
        def uplift_and_support(self, X):
            uplift, supported = super().uplift_and_support(X)
            uplift[:, 1] = np.nan
            return uplift, supported

    info = {
        n: ModelInfo(n, f"lifecycle-{n}", "7", None, None) for n in ("churn", "stage", "offers")
    }
    e = DecisionEngine(ModelBundle(Fixed(), Stage(), Unknown(), info, "test"), OFFERS,
                       PolicyConfig(exploration=0.0))  # fmt: skip
    x2 = 0.123456789
    out, _ = e.decide(rows([[x2, 0.4, 0.0]], ["churned"], [""]), no_contacts(1), draws(1))
    offers = {o["offer_id"]: o for o in out[0]["offers"]}
    assert offers["up"]["uplift"] == round(x2, 6) == 0.123457
    assert offers["up"]["expected_value"] == round(x2 * 50 - 1, 6)
    assert offers["xs"]["uplift"] == round(2 * x2, 6)
    assert offers["wb"]["uplift"] is None and offers["wb"]["expected_value"] is None
    assert offers["wb"]["eligible"] and offers["wb"]["ineligible_reason"] is None  # explored only
    assert not math.isnan(out[0]["decision"]["expected_value"])


def test_an_offer_new_to_the_model_is_explored_never_chosen_greedily():
    class WithoutXs(Fixed):  # an offers model that never saw "xs" (added to the catalog since)
        offers_ = ["up", "wb"]

        def uplift_and_support(self, X):
            return X[:, [2]] * np.array([[1.0, 3.0]]), np.ones((len(X), 2), bool)

    info = {
        n: ModelInfo(n, f"lifecycle-{n}", "7", None, None) for n in ("churn", "stage", "offers")
    }
    n = 4000
    r = rows([[0.1, 0.0, 0.4]] * n, ["retention"] * n, [""] * n)  # up and xs eligible
    for exploration in (0.0, 0.3):
        e = DecisionEngine(ModelBundle(Fixed(), Stage(), WithoutXs(), info, "test"), OFFERS,
                           PolicyConfig(exploration=exploration))  # fmt: skip
        assert e.catalog.ids == ["up", "xs", "wb"] and e.catalog.model_column.tolist() == [0, -1, 1]
        out, logged = e.decide(r, no_contacts(n), draws(n, 1))
        offer = np.array([d["decision"]["offer_id"] for d in out], object)
        xs = offer == "xs"
        shown = {o["offer_id"]: o for o in out[0]["offers"]}
        assert shown["xs"]["eligible"] and shown["xs"]["expected_value"] is None
        if exploration == 0:
            assert not xs.any() and (offer == "up").all()  # greedy: the best known offer
            continue
        # three actions (no offer, up, xs): xs only by exploration, with e/3 each
        assert abs(xs.mean() - 0.1) < 0.02
        assert all(d["decision"]["explored"] for d in np.array(out, object)[xs])
        assert {round(p, 6) for p in np.array(logged.propensity)[xs]} == {0.1}
        assert {v for v in np.array(logged.expected_value, object)[xs]} == {None}
        assert all(d["decision"]["expected_value"] is None for d in np.array(out, object)[xs])


@pytest.mark.parametrize(
    ("definition", "which", "up_keeps"),
    [("inactivity", "auto", True), ("rhythm", "auto", True), ("contract", "auto", False),
     ("labels", "auto", False), (None, "auto", False), ("contract", "every", True),
     ("inactivity", "retention", False)],
)  # fmt: skip
def test_which_conversions_keep_a_customer_follows_the_churn_the_models_learnt(
    definition, which, up_keeps
):
    from features.project import ProjectConfig
    from training.models.clv import ProbabilisticCLV

    class Churn(Fixed):
        if definition is not None:
            lifecycle_config_ = ProjectConfig.model_validate(
                {"dataset": {"churn_definition": definition}}).model_dump_json()  # fmt: skip

    clv_model = ProbabilisticCLV("btyd_clv_365d").fit(pd.DataFrame({"btyd_clv_365d": [1.0]}))
    info = {n: ModelInfo(n, f"lifecycle-{n}", "7", None, None) for n in ("churn", "stage")}
    bundle = ModelBundle(Churn(), Stage(), Fixed(), info, "test", clv=clv_model)
    r = FeatureRows(
        ("loyal",), np.array([[0.1, 0.4, 0.0, 100.0]]), ("x2", "x0", "x1", "btyd_clv_365d"),
        {"stage": np.array(["retention"], object), "owned_products": np.array([""], object),
         "plan": np.array(["basic"], object)},
        np.ones(1, bool), pd.Timestamp("2025-01-01", tz="UTC"), ("store", 1),
    )  # fmt: skip
    e = DecisionEngine(bundle, OFFERS, PolicyConfig(exploration=0.0, keeping_offers=which))
    out, _ = e.decide(r, no_contacts(1), draws(1))
    up = {o["offer_id"]: o for o in out[0]["offers"]}["up"]
    # an upsell's conversion (a purchase) keeps a customer at churn risk 0.4 of CLV 100 where
    # churn is inactivity: it saves 0.4 x 100 / 0.6 beside its margin 50
    worth = 50 + 0.4 * 100 / 0.6 if up_keeps else 50
    assert up["expected_value"] == pytest.approx(0.1 * worth - 1)
    assert ("up" in e.clv_status["offers_that_keep"]) is up_keeps
    assert "wb" in e.clv_status["offers_that_keep"]  # win-back keeps under every definition


def test_owned_products_are_parsed_once_per_distinct_value(monkeypatch):
    parsed = []

    def parse(value):
        parsed.append(value)
        return frozenset(value.split("|")) if value else frozenset()

    monkeypatch.setattr(engines, "parse_owned", parse)
    catalog = engine().catalog  # only "up" excludes an owned product: premium
    owned = np.array(["premium", "", None, "basic|premium", "basic", "premium", None], object)
    expected = np.zeros((7, 3), bool)
    expected[[0, 3, 5], 0] = True
    np.testing.assert_array_equal(catalog.owned_fails(owned, 7), expected)
    np.testing.assert_array_equal(catalog.owned_fails(owned[::-1], 7), expected[::-1])
    assert sorted(parsed, key=str) == sorted(set(owned), key=str)  # each once, then kept

    monkeypatch.setattr(engines, "OWNED_MASKS_KEPT", 2)  # clients' values: not kept for ever
    others = np.array(["a", "b|premium", "c"], object)
    np.testing.assert_array_equal(catalog.owned_fails(others, 3)[:, 0], [False, True, False])
    assert set(catalog._owned_masks) == {"a", "b|premium", "c"}
    np.testing.assert_array_equal(catalog.owned_fails(None, 2), np.zeros((2, 3), bool))


def test_retention_offers_also_save_the_value_at_risk_others_are_worth_their_margin():
    from training.models.clv import ProbabilisticCLV

    clv_model = ProbabilisticCLV("btyd_clv_365d").fit(pd.DataFrame({"btyd_clv_365d": [1.0]}))
    info = {n: ModelInfo(n, f"lifecycle-{n}", "7", None, None) for n in ("churn", "stage")}
    bundle = ModelBundle(Fixed(), Stage(), Fixed(), info, "test", clv=clv_model)
    # uplift (x2 = 0.1): up 0.1, wb 0.3, xs 0.2; churned customers: only wb is eligible
    r = FeatureRows(
        ("rich", "unknown", "loyal"), np.array([[0.1, 0.4, 0.0, 100.0], [0.1, 0.4, 0.0, np.nan],
                                                 [0.1, 0.4, 0.0, 100.0]]),
        ("x2", "x0", "x1", "btyd_clv_365d"),
        {"stage": np.array(["churned", "churned", "retention"], object),
         "owned_products": np.array(["", "", ""], object),
         "plan": np.array(["basic"] * 3, object)},
        np.ones(3, bool), pd.Timestamp("2025-01-01", tz="UTC"), ("store", 1),
    )  # fmt: skip
    by_clv = DecisionEngine(bundle, OFFERS, PolicyConfig(exploration=0.0))
    assert by_clv.clv_status["estimator"] == "probabilistic"
    assert by_clv.clv_status["retention_offers_valued_by"] == "clv"
    out, _ = by_clv.decide(r, no_contacts(3), draws(3))
    wb = [{o["offer_id"]: o for o in answer["offers"]}["wb"] for answer in out]
    # a customer of CLV 100 at churn risk 0.4 is worth 100 / 0.6 kept: keeping them saves
    # 0.4 x 100 / 0.6 beside the offer's margin 20
    assert wb[0]["expected_value"] == pytest.approx(0.3 * (20 + 0.4 * 100 / 0.6) - 2)
    assert wb[1]["expected_value"] == pytest.approx(0.3 * 20 - 2)  # no CLV: the catalog value
    up = {o["offer_id"]: o for o in out[2]["offers"]}["up"]
    assert up["expected_value"] == pytest.approx(0.1 * 50 - 1)  # an upsell: its own margin
    assert out[0]["clv"]["value"] == 100 and out[0]["clv"]["value_at_risk"] == pytest.approx(40)
    assert out[1]["clv"] is None
    catalog = DecisionEngine(bundle, OFFERS, PolicyConfig(exploration=0.0,
                                                          retention_value="catalog"))  # fmt: skip
    assert catalog.clv_status["retention_offers_valued_by"] == "catalog value"
    out, _ = catalog.decide(r, no_contacts(3), draws(3))
    wb = {o["offer_id"]: o for o in out[0]["offers"]}["wb"]
    assert wb["expected_value"] == pytest.approx(0.3 * 20 - 2)
