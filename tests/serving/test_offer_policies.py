"""The offer policies without an offers model (hand-made models and rows, no MLflow): the
cold-start policy's propensities and eligibility, the service without a catalog, what the
ledger records, and the config keys."""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pytest

from serving.bundle import ModelBundle, ModelInfo
from serving.config import PolicyConfig, load_config
from serving.engine import Contacts, DecisionEngine
from serving.ledger import Decision, FeedbackLedger
from serving.policies import cold_start_proba, draw, offers_status
from tests.serving.test_engine import OFFERS, Fixed, Stage, draws, no_contacts, rows

NO_MODEL = "no offers model: 'lifecycle-offers' has no 'champion' version in the registry"


def engine(offers: pd.DataFrame | None = OFFERS, share: float = 0.2, cap: int = 3,
           exploration: float = 0.0) -> DecisionEngine:  # fmt: skip
    """Churn and stage models, no offers model (as on a business without campaign logs)."""
    info = {n: ModelInfo(n, f"lifecycle-{n}", "7", None, None) for n in ("churn", "stage")}
    bundle = ModelBundle(Fixed(), Stage(), None, info, "test", {"offers": NO_MODEL})
    policy = PolicyConfig(cold_start_control_share=share, contact_cap=cap, exploration=exploration)
    return DecisionEngine(bundle, offers, policy)


def test_offers_status_names_the_policy_and_why():
    assert offers_status(None, None, 0.2) == {"available": True, "policy": "model", "reason": None}
    cold = offers_status(NO_MODEL, None, 0.25)
    assert cold["policy"] == "cold_start" and cold["available"]
    assert (
        cold["reason"].startswith(NO_MODEL)
        and "0.25 of the decisions as control" in (cold["reason"])
    )
    none = offers_status(NO_MODEL, "no offer catalog configured", 0.2)
    assert none == {"available": False, "policy": None, "reason": "no offer catalog configured"}
    unused = offers_status(None, "no offer catalog configured", 0.2)["reason"]
    assert "cannot decide without it" in unused


def test_cold_start_propensities_are_the_chosen_frequencies_and_sum_to_one():
    """Three kinds of customer, 6,000 decisions each: two offers eligible (m = 2), one (an
    owned product rules "up" out), none (contact cap reached). Every logged propensity is c,
    (1 - c) / m or 1, each action's frequency matches it, and over the actions open to a
    customer they sum to 1."""
    n, c = 6000, 0.2
    kinds = {
        "two": (["retention", ""], 0.0),
        "one": (["retention", "premium"], 0.0),
        "none": (["retention", ""], 3.0),
    }  # (stage, owned), sends in the cap window
    stage, owned, sends = (np.repeat([v[0][0] for v in kinds.values()], n),
                           np.repeat([v[0][1] for v in kinds.values()], n),
                           np.repeat([v[1] for v in kinds.values()], n))  # fmt: skip
    r = rows([[0.1, 0.4, 0.0]] * 3 * n, stage.tolist(), owned.tolist())
    contacts = Contacts(sends, np.full((3 * n, 3), np.nan))
    out, logged = engine(share=c).decide(r, contacts, draws(3 * n, seed=3), max_offers=20)
    frame = pd.DataFrame({
        "kind": np.repeat(list(kinds), n),
        "action": [o or "none" for o in logged.offer_id], "propensity": logged.propensity,
        "explored": logged.explored,
    })  # fmt: skip
    open_to = {"two": {"none": c, "up": (1 - c) / 2, "xs": (1 - c) / 2},
               "one": {"none": c, "xs": 1 - c}, "none": {"none": 1.0}}  # fmt: skip
    for kind, actions in open_to.items():
        got = frame[frame["kind"] == kind]
        assert set(got["action"]) == set(actions)  # only open actions, every one of them
        assert sum(actions.values()) == pytest.approx(1.0, abs=1e-12)
        for action, p in actions.items():
            taken = got[got["action"] == action]
            assert (taken["propensity"] == p).all(), (kind, action)  # logged exactly
            assert abs(len(taken) / n - p) <= 4 * np.sqrt(p * (1 - p) / n), (kind, action)
        assert (got["explored"] == (kind != "none")).all()  # random unless nothing is open
    assert logged.policy == "cold_start" and logged.expected_value is None


def test_cold_start_probabilities_sum_to_one_for_any_eligibility():
    rng = np.random.default_rng(0)
    eligible = rng.random((500, 6)) < rng.random((500, 1))  # 0 to 6 eligible offers
    for share in (0.05, 0.2, 0.9):
        proba = cold_start_proba(eligible, share)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
        assert not (proba[:, 1:][~eligible]).any()  # never an ineligible offer
        m = eligible.sum(axis=1)
        np.testing.assert_array_equal(proba[:, 0], np.where(m > 0, share, 1.0))


def test_draw_never_takes_an_action_without_a_chance():
    proba = np.array([[0.0, 0.5, 0.0, 0.5, 0.0]] * 5 + [[0.3, 0.0, 0.7, 0.0, 0.0]] * 3)
    u = np.array([0.0, 0.4999, 0.5, 0.9999999, np.nextafter(1.0, 0), 0.0, 0.3, 0.9999])
    np.testing.assert_array_equal(draw(proba, u), [1, 1, 3, 3, 3, 0, 2, 2])
    below_one = np.array([[0.1] * 10])  # sums to 0.9999999999999999 in floating point
    assert np.cumsum(below_one)[-1] < 1.0
    assert draw(below_one, np.array([np.nextafter(1.0, 0)])) == [9]


def test_cold_start_applies_the_eligibility_rules_and_shows_no_values():
    r = rows([[0.1, 0.4, 0.0]] * 3, ["retention", "retention", "churned"], ["", "premium", ""])
    days = np.full((3, 3), np.nan)
    days[2, 1] = 3.0  # "xs" sent 3 days ago: cooldown 7
    out, logged = engine().decide(r, Contacts(np.zeros(3), days), draws(3), channel=None,
                                  max_offers=20)  # fmt: skip
    reasons = [{o["offer_id"]: o["ineligible_reason"] for o in one["offers"]} for one in out]
    assert reasons[0] == {"up": None, "xs": None, "wb": "stage retention not in churned"}
    assert reasons[1]["up"] == "already owns premium"
    assert reasons[2]["xs"].startswith("sent 3.0 days ago") and reasons[2]["wb"] is None
    for one in out:
        assert all(o["uplift"] is None and o["expected_value"] is None for o in one["offers"])
        assert [o["eligible"] for o in one["offers"]] == sorted(
            (o["eligible"] for o in one["offers"]), reverse=True)  # fmt: skip
        decision = one["decision"]
        assert decision["policy"] == "cold_start" and decision["expected_value"] is None
        assert decision["decision_id"] in logged.decision_id
    emailed, _ = engine().decide(r, no_contacts(3), draws(3), channel="email", max_offers=20)
    xs = {o["offer_id"]: o for o in emailed[0]["offers"]}["xs"]
    assert xs["ineligible_reason"] == "offer goes by app, not email"


def test_without_a_catalog_there_is_no_decision_and_nothing_to_log():
    e = engine(offers=None)
    assert e.offers_status["policy"] is None and not e.offers_status["available"]
    assert "no offer catalog configured" in e.offers_status["reason"]
    r = rows([[0.1, 0.4, 0.0], [0.3, 0.1, 0.0]], ["retention", "churned"], ["", ""])
    out, logged = e.decide(r, Contacts(np.zeros(2), np.zeros((2, 0))), np.zeros(2))
    assert logged is None and e.catalog.ids == [] and e.models == ("churn", "stage")
    assert [o["decision"] for o in out] == [None, None] and [o["offers"] for o in out] == [[], []]
    assert [o["churn"]["probability"] for o in out] == [pytest.approx(0.4), pytest.approx(0.1)]
    assert out[1]["stage"]["current"] == "churned"
    assert out[0]["models"] == {"churn": "7", "stage": "7"}


def test_the_ledger_records_the_policy_and_reads_old_ledgers(tmp_path):
    old = tmp_path / "old.sqlite"
    with sqlite3.connect(old) as conn:  # a ledger written before decisions had a policy
        conn.execute("""CREATE TABLE decisions (decision_id TEXT PRIMARY KEY,
            customer_id TEXT NOT NULL, offer_id TEXT, propensity REAL NOT NULL,
            explored INTEGER NOT NULL, channel TEXT, expected_value REAL, models TEXT NOT NULL,
            features_as_of TEXT, decided_at REAL NOT NULL)""")  # fmt: skip
        conn.execute("INSERT INTO decisions VALUES ('d0','c0','up',0.9,0,NULL,4.0,'{}',NULL,0)")
    ledger = FeedbackLedger(old)
    assert ledger.decision("d0") == Decision("d0", "c0", "up", 0.9, False, None, 4.0, "{}", None,
                                             "model")  # fmt: skip
    r = rows([[0.1, 0.4, 0.0]] * 2, ["retention"] * 2, ["", ""])
    _, logged = engine().decide(r, no_contacts(2), draws(2), channel="email")
    ledger.record_decisions(logged)
    for row in logged:
        assert ledger.decision(row.decision_id) == row
        assert row.policy == "cold_start" and row.expected_value is None
    assert ledger.counts()["decisions"] == 3


def test_the_control_share_is_a_policy_key_and_an_env_var(tmp_path):
    assert PolicyConfig().cold_start_control_share == 0.2
    path = tmp_path / "service.yaml"
    path.write_text("policy:\n  cold_start_control_share: 0.3\n  exploration: 0.1\n")
    config = load_config({"LIFECYCLE_SERVICE_CONFIG": str(path)})
    assert config.policy.cold_start_control_share == 0.3
    env = {"LIFECYCLE_SERVICE_CONFIG": str(path), "LIFECYCLE_COLD_START_CONTROL_SHARE": "0.5"}
    assert load_config(env).policy.cold_start_control_share == 0.5
    assert load_config(env).policy.exploration == 0.1  # the YAML's other policy keys stay
    with pytest.raises(ValueError, match="LIFECYCLE_COLD_START_CONTROL_SHARE.*less than 1"):
        load_config({"LIFECYCLE_COLD_START_CONTROL_SHARE": "1"})
