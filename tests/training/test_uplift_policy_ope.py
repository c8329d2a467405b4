"""Uplift model, next-best-offer policy and off-policy evaluation.

OPE is checked on a synthetic bandit with known values; the policy rules on hand-computed
frames; the uplift model and the learned policy on simulator data against its ground truth.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from features.builder import build_features
from features.loaders import load_customers, load_events, load_exposures, load_offers
from features.simulator import SimConfig, simulate
from features.simulator.truth import incremental_values, policy_values
from training.exposure_features import exposure_features
from training.models.uplift import UpliftModel
from training.ope import (
    incremental_dr_terms,
    incremental_policy_value,
    off_policy_value,
    paired_difference,
    policy_value_table,
)
from training.policy import (
    conversion_worth,
    eligibility,
    next_best_offer,
    policy_probabilities,
    propensity_policy,
    random_policy,
)


def test_a_conversion_that_keeps_a_customer_saves_what_their_leaving_would_cost():
    value, keeps = [10.0, 20.0], [False, True]  # an upsell's margin 10, a win-back's 20
    churn = np.array([0.5, 0.1, np.nan, 0.9, 1.0])
    clv = np.array([100.0, 100.0, 50.0, np.nan, 2.0])
    worth = conversion_worth(value, keeps, churn, clv)
    # kept, a customer is worth CLV / (1 - churn); keeping one saves churn x that
    np.testing.assert_allclose(
        worth, [[10, 20 + 100], [10, 20 + 100 / 9], [10, 20], [10, 20], [10, 20 + 99 * 2]]
    )  # churn 1 is capped at 0.99
    np.testing.assert_allclose(conversion_worth(value, keeps), [[10, 20]])  # no CLV: margins


# ---- a synthetic bandit with known values ------------------------------------------------


def bandit(seed: int, n: int = 3000, noise: bool = True) -> dict[str, np.ndarray]:
    """Three actions; the logging policy and the mean rewards depend on a context x in [0, 1)."""
    x = np.random.default_rng(0).random(n)  # the same contexts for every seed
    rng = np.random.default_rng(seed)
    mu = np.column_stack([0.2 + 0.3 * x, 0.6 - 0.4 * x, np.full(n, 0.35)])
    logging = np.column_stack([0.2 + 0.4 * x, 0.5 - 0.3 * x, 0.3 - 0.1 * x])
    a = (rng.random(n)[:, None] >= np.cumsum(logging, axis=1)).sum(axis=1)
    mean = mu[np.arange(n), a]
    r = (rng.random(n) < mean).astype(float) if noise else mean
    target = np.column_stack([x, 1 - x, np.zeros(n)]) * 0.9 + 0.1 / 3
    return {"rewards": r, "logged_actions": a, "logged_propensities": logging[np.arange(n), a],
            "target_probabilities": target, "mu": mu,
            "truth": float((target * mu).sum(axis=1).mean())}  # fmt: skip


def ope(data: dict, **kwargs) -> pd.DataFrame:
    keys = ("rewards", "logged_actions", "logged_propensities", "target_probabilities")
    return off_policy_value(**{k: data[k] for k in keys}, **kwargs)


def test_ope_estimators_are_unbiased_and_cover_the_truth():
    runs = [(d["truth"], ope(d, reward_model=d["mu"] * 0.7, n_bootstrap=100))
            for d in (bandit(seed) for seed in range(40))]  # fmt: skip
    for name in ("ips", "snips", "dr"):
        est = np.array([t[1].loc[name, "estimate"] for t in runs])
        truth = np.array([t[0] for t in runs])
        covered = np.mean([r.loc[name, "lo"] <= t <= r.loc[name, "hi"] for t, r in runs])
        assert covered >= 0.8, (name, covered)
        assert abs((est - truth).mean()) < 3 * est.std() / np.sqrt(len(est)), name


def test_snips_is_equivariant_to_a_reward_shift_and_ips_is_not():
    data = bandit(1)
    shifted = dict(data, rewards=data["rewards"] + 5.0)
    base, moved = ope(data, n_bootstrap=50), ope(shifted, n_bootstrap=50)
    diff = moved - base
    np.testing.assert_allclose(diff.loc["snips", ["estimate", "lo", "hi"]], 5.0, atol=1e-9)
    assert abs(diff.loc["ips", "estimate"] - 5.0) > 1e-3


def test_dr_with_a_perfect_reward_model_has_no_logging_variance():
    runs = [bandit(seed, noise=False) for seed in range(5)]
    dr = [ope(d, reward_model=d["mu"], n_bootstrap=50) for d in runs]
    estimates = np.array([r.loc["dr", "estimate"] for r in dr])
    np.testing.assert_allclose(estimates, runs[0]["truth"], atol=1e-12)
    assert dr[0].loc["dr", "se"] < dr[0].loc["ips", "se"] / 3  # only the contexts vary


def test_ope_table_shape_and_reproducibility():
    data = bandit(2)
    first = ope(data, reward_model=data["mu"])
    assert list(first.index) == ["ips", "snips", "dr"]
    assert list(first.columns[[0, 1, 2]]) == ["estimate", "lo", "hi"]
    assert (first["n"] == 3000).all() and (first["lo"] <= first["hi"]).all()
    pd.testing.assert_frame_equal(first, ope(data, reward_model=data["mu"]))
    keys = ("rewards", "logged_actions", "logged_propensities")
    table = policy_value_table(
        {"target": data["target_probabilities"], "uniform": np.full((3000, 3), 1 / 3)},
        **{k: data[k] for k in keys},
    )
    assert table.index.names == ["policy", "estimator"] and len(table) == 4


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"logged_propensities": np.zeros(3)}, "logged_propensities must be 3 values in"),
        ({"logged_propensities": np.ones(2)}, "logged_propensities"),
        ({"target_probabilities": np.full((3, 2), 0.4)}, "sum to 1"),
        ({"target_probabilities": np.ones(3)}, "target_probabilities must have shape"),
        ({"logged_actions": np.array([0, 1, 2])}, "must index the 2 action columns"),
        ({"logged_actions": np.array([0.0, 1.0, 0.0])}, "integer indices"),
        ({"rewards": np.array([1.0, np.nan, 0.0])}, "rewards must be finite"),
        ({"reward_model": np.zeros((3, 3))}, "reward_model must have shape"),
        ({"alpha": 1.5}, "alpha"),
    ],
)
def test_ope_rejects_bad_inputs_clearly(change, message):
    args = {"rewards": np.array([1.0, 0.0, 1.0]), "logged_actions": np.array([0, 1, 0]),
            "logged_propensities": np.full(3, 0.5), "target_probabilities": np.full((3, 2), 0.5),
            } | change  # fmt: skip
    with pytest.raises(ValueError, match=message):
        off_policy_value(**args)


def test_incremental_value_hand_computed():
    # arms: control, A (value 10, cost 1); the target always sends A.
    # row 1 got A (p=.5) and converted; row 2 was control (p=.5) and did not convert.
    # IPS rows: 10*1/.5 - 1 = 19 and -10*0/.5 - 1 = -1 -> 9; DR with m = (.5, .7):
    # 2 + 10*.3/.5 - 1 = 7 and 2 - 10*(-.5)/.5 - 1 = 11 -> 9; SNIPS: 10*1 - 10*0 - 1 = 9.
    out = incremental_policy_value(
        y=[1, 0], logged_arm=np.array([1, 0]), logged_propensity=[0.5, 0.5],
        target_probabilities=[[0, 1], [0, 1]], values=[0, 10], costs=[0, 1],
        outcome_model=[[0.5, 0.7], [0.5, 0.7]], n_bootstrap=0,
    )  # fmt: skip
    np.testing.assert_allclose(out["estimate"], 9.0)
    nothing = incremental_policy_value(
        [1, 0], np.array([1, 0]), [0.5, 0.5], [[1, 0], [1, 0]], [0, 10], [0, 1], n_bootstrap=0
    )
    np.testing.assert_allclose(nothing["estimate"], 0.0)


def test_incremental_snips_is_invariant_to_a_shift_of_y():
    data = bandit(3)
    args = {"logged_arm": data["logged_actions"], "logged_propensity": data["logged_propensities"],
            "target_probabilities": data["target_probabilities"], "values": [0, 8, 5],
            "costs": [0, 1, 0.5], "n_bootstrap": 20}  # fmt: skip
    base = incremental_policy_value(data["rewards"], **args)
    moved = incremental_policy_value(data["rewards"] + 3.0, **args)
    np.testing.assert_allclose(moved.loc["snips"], base.loc["snips"], atol=1e-9)


def test_incremental_value_refuses_no_overlap_and_warns_on_extreme_weights():
    # every row logged arm 1; the target only ever sends arm 2: no logged action to learn from
    no_overlap = {"y": [1, 0, 1], "logged_arm": np.array([1, 1, 1]),
                  "logged_propensity": [0.5] * 3, "target_probabilities": [[0, 0, 1]] * 3,
                  "values": [0, 5, 5], "costs": [0, 1, 1]}  # fmt: skip
    with pytest.raises(ValueError, match="no overlap"):
        incremental_policy_value(**no_overlap, n_bootstrap=0)
    with pytest.raises(ValueError, match="no overlap"):
        incremental_dr_terms(**no_overlap, outcome_model=np.full((3, 3), 0.2))
    # 100 rows, one logged with a tiny propensity carries almost all the weight
    n = 100
    arm = np.r_[2, np.ones(n - 1, int)]
    p = np.r_[0.001, np.full(n - 1, 0.5)]
    target = np.tile([0.0, 0.01, 0.99], (n, 1))
    with pytest.warns(UserWarning, match="effective sample size"):
        incremental_policy_value(np.ones(n), arm, p, target, [0, 5, 5], [0, 1, 1],
                                 n_bootstrap=0)  # fmt: skip


def test_paired_dr_terms_compare_two_policies_on_the_same_rows():
    """The row terms of the hand-computed example above (7 and 11) and a paired bootstrap:
    two policies' values and their difference on the same resampled rows."""
    args = {
        "y": [1, 0],
        "logged_arm": np.array([1, 0]),
        "logged_propensity": [0.5, 0.5],
        "values": [0, 10],
        "costs": [0, 1],
        "outcome_model": [[0.5, 0.7], [0.5, 0.7]],
    }
    send = incremental_dr_terms(target_probabilities=[[0, 1], [0, 1]], **args)
    np.testing.assert_allclose(send, [7.0, 11.0])
    none = incremental_dr_terms(target_probabilities=[[1, 0], [1, 0]], **args)
    np.testing.assert_allclose(none, [0.0, 0.0])
    data = bandit(5)
    log = {
        "y": data["rewards"],
        "logged_arm": data["logged_actions"],
        "logged_propensity": data["logged_propensities"],
        "values": [0, 8, 5],
        "costs": [0, 1, 0.5],
        "outcome_model": np.full((len(data["rewards"]), 3), 0.3),
    }
    a = incremental_dr_terms(target_probabilities=data["target_probabilities"], **log)
    full = incremental_policy_value(target_probabilities=data["target_probabilities"],
                                    n_bootstrap=0, **log)  # fmt: skip
    assert a.mean() == pytest.approx(full.loc["dr", "estimate"])
    uniform = np.full_like(data["target_probabilities"], 1 / 3)
    b = incremental_dr_terms(target_probabilities=uniform, **log)
    table = paired_difference(a, b, n_bootstrap=300)
    diff = table.loc["a - b"]
    assert diff["estimate"] == pytest.approx(a.mean() - b.mean())
    assert diff["lo"] <= diff["estimate"] <= diff["hi"]
    unpaired = np.hypot(table.loc["a", "se"], table.loc["b", "se"])
    assert diff["se"] < unpaired  # the same rows: the shared noise cancels
    same = paired_difference(a, a, n_bootstrap=50).loc["a - b"]
    assert same["estimate"] == same["lo"] == same["hi"] == 0  # no better than itself
    with pytest.raises(ValueError, match="same rows"):
        paired_difference(a, b[:-1])


# ---- policy rules, hand-computed --------------------------------------------------------

OFFERS = pd.DataFrame({
    "offer_id": ["A", "B", "C"], "kind": ["upsell", "cross_sell", "retention"],
    "product": ["premium_plan", "case", None], "value": [10.0, 50.0, 5.0],
    "cost": [1.0, 2.0, 0.5], "eligible_stages": ["retention|advocacy", None, "churned"],
    "exclude_if_owned": [True, True, False], "cooldown_days": [30, 0, 10],
    "channel": ["email", "app", None],
})  # fmt: skip


def test_next_best_offer_hand_computed():
    uplift = pd.DataFrame({"A": [0.2, 0.05, 0.3], "B": [0.05, 0.01, 0.2],
                           "C": [0.5, np.nan, 0.1]}, index=[7, 8, 9])  # fmt: skip
    eligible = pd.DataFrame({"A": True, "B": [True, True, False], "C": True}, index=[7, 8, 9])
    out = next_best_offer(uplift, OFFERS, eligible, max_offers=2)
    # EVs: row 7: A 1.0, B 0.5, C 2.0; row 8: A -0.5, B -1.5, C -inf; row 9: A 2.0, B -inf, C 0
    assert out["best_offer"].tolist() == ["C", None, "A"]
    np.testing.assert_allclose(out["best_value"], [2.0, 0.0, 2.0])
    assert out[["offer_1", "offer_2"]].values.tolist() == [["C", "A"], ["A", "B"], ["A", "C"]]
    np.testing.assert_allclose(out["value_2"], [1.0, -1.5, 0.0])
    np.testing.assert_allclose(out["ev_B"], [0.5, -1.5, -np.inf])
    assert list(out.index) == [7, 8, 9]


def test_eligibility_hand_computed():
    stage = pd.Series(["retention", "churned", "advocacy"], index=["x", "y", "z"])
    owned = pd.Series([{"premium_plan"}, set(), None], index=stage.index)
    got = eligibility(stage, owned, OFFERS)
    # A: stage ok for x, z; x owns premium_plan. B: any stage, none owns a case. C: churned only
    assert got.to_dict("list") == {"A": [False, False, True], "B": [True] * 3,
                                   "C": [False, True, False]}  # fmt: skip
    by_email = eligibility(stage, None, OFFERS, channel="email")
    assert by_email.to_dict("list") == {"A": [True, False, True], "B": [False] * 3,
                                        "C": [False, True, False]}  # fmt: skip
    days = pd.DataFrame({"C": [np.nan, 3.0, np.nan]}, index=stage.index)
    assert not eligibility(stage, None, OFFERS, days_since_offer=days)["C"].any()


def test_policy_probabilities_epsilon_greedy():
    eligible = pd.DataFrame({"A": [True, True, False], "B": [True, False, True]})
    probs = policy_probabilities(pd.Series(["A", None, "B"]), ["control", "A", "B"], 0.3, eligible)
    np.testing.assert_allclose(probs, [[0.1, 0.8, 0.1], [0.85, 0.15, 0.0], [0.15, 0.0, 0.85]])
    with pytest.raises(ValueError, match="not in arms"):
        policy_probabilities(pd.Series(["Z"]), ["control", "A"])


def test_baseline_policies():
    proba = pd.DataFrame({"control": [0.9, 0.9], "A": [0.1, 0.3], "B": [0.2, 0.1], "C": 0.0})
    eligible = pd.DataFrame({"A": [True, False], "B": [True, False], "C": [True, True]})
    assert propensity_policy(proba, OFFERS, eligible).tolist() == ["B", "C"]
    probs = random_policy(eligible, ["control", "A", "B", "C"])
    np.testing.assert_allclose(probs, [[0, 1 / 3, 1 / 3, 1 / 3], [0, 0, 0, 1]])


# ---- the simulator: uplift model and learned policy vs the ground truth -------------------

ARMS_PARAMS = {"num_leaves": 4, "min_child_samples": 100, "n_estimators": 100,
               "learning_rate": 0.03}  # fmt: skip


@pytest.fixture(scope="module")
def world():
    """12k simulated customers: train on the first 60% of campaign days, test on the rest."""
    sim = simulate(SimConfig(customers=12_000, seed=0))
    events, offers = load_events(sim.events).data, load_offers(sim.offers).data
    exposures = load_exposures(sim.exposures, offers=offers).data
    X = exposure_features(events, exposures, load_customers(sim.customers).data, offers=offers)
    truth = sim.truth_exposures.set_index("exposure_id").loc[exposures["exposure_id"]]
    days = exposures["sent_at"].dt.floor("D")
    train = (days < np.sort(days.unique())[int(0.6 * days.nunique())]).to_numpy()
    y = exposures["converted"].astype(bool).to_numpy().astype(int)
    model = UpliftModel(**ARMS_PARAMS).fit(
        X[train], exposures["offer_id"][train], y[train], exposures["propensity"][train]
    )
    test = ~train
    return {"sim": sim, "events": events, "X": X, "exposures": exposures, "offers": offers,
            "model": model, "train": train, "y": y, "Xt": X[test].reset_index(drop=True),
            "ex_t": exposures[test].reset_index(drop=True),
            "truth_t": truth[test].reset_index()}  # fmt: skip


def test_exposure_features_are_as_of_the_day_before_the_send(world):
    X, ex = world["X"], world["exposures"]
    assert X.index.equals(ex.index) and "customer_id" not in X.columns
    row = ex.index[5000]
    day = ex.loc[row, "sent_at"].floor("D")
    direct = build_features(world["events"], day - pd.Timedelta(microseconds=1))
    one = direct.set_index("customer_id").loc[ex.loc[row, "customer_id"]]
    assert X.loc[row, "purchases_365d"] == one["purchases_365d"]
    earlier = ex["sent_at"].dt.floor("D").groupby(ex["customer_id"]).rank(method="min") - 1
    known = X["contacts_total"].notna()  # customers with no events before the send day: NaN
    assert known.mean() > 0.99
    assert (X.loc[known, "contacts_total"] == earlier[known]).all()  # not the send itself


def test_exposure_features_equal_a_full_build_on_the_day_before(world):
    """Building per send day from the exposed customers' rows only changes nothing."""
    X, ex = world["X"], world["exposures"]
    day = ex["sent_at"].dt.floor("D").unique()[3]
    rows = ex.index[ex["sent_at"].dt.floor("D") == day]
    full = build_features(world["events"], day - pd.Timedelta(microseconds=1),
                          customers=load_customers(world["sim"].customers).data,
                          exposures=ex, offers=world["offers"])  # fmt: skip
    expected = full.set_index("customer_id").reindex(ex.loc[rows, "customer_id"].astype("str"))
    pd.testing.assert_frame_equal(X.loc[rows], expected.set_axis(rows), check_names=False)


def test_support_excludes_offers_the_logging_policy_never_sends(world):
    supported = world["model"].supported(world["Xt"])
    truth = world["truth_t"]
    sendable = np.column_stack([truth[f"pi_{k}"].to_numpy() > 0 for k in supported.columns])
    agree = (supported.to_numpy() == sendable).mean()
    assert agree > 0.95, agree  # small false negatives: rare arms near min_support
    assert supported.to_numpy()[~sendable].mean() < 0.03  # rarely vouches for a never-sent arm


def test_t_learner_uplift_tracks_the_true_uplift(world):
    model, truth = world["model"], world["truth_t"]
    uplift = model.predict_uplift(world["Xt"])
    corr = {}
    for k in world["offers"]["offer_id"]:
        eligible = truth[f"pi_{k}"].to_numpy() > 0
        true = (truth[f"p_{k}"] - truth["p_control"])[eligible]
        corr[k] = np.corrcoef(uplift[k][eligible], true)[0, 1]
    print("uplift correlation with truth per offer:", {k: round(v, 3) for k, v in corr.items()})
    assert min(model.arm_counts_.values()) >= model.min_arm_size
    assert np.mean(list(corr.values())) > 0.03
    assert sum(v > 0 for v in corr.values()) >= 6


def learned_policies(world) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """Target probabilities over the arms of the learned, propensity and logging policies."""
    offers, truth, model = world["offers"], world["truth_t"], world["model"]
    arms = ["control", *offers["offer_id"]]
    # the campaign's own eligibility rules: where the logging policy could send the offer
    eligible = pd.DataFrame({k: truth[f"pi_{k}"].to_numpy() > 0 for k in offers["offer_id"]})
    proba = model.predict_arm_proba(world["Xt"])
    nbo = next_best_offer(model.predict_uplift(world["Xt"]), offers, eligible)
    return {
        "learned": policy_probabilities(nbo["best_offer"], arms, 0.0, eligible),
        "propensity": policy_probabilities(propensity_policy(proba, offers, eligible), arms),
        "logging": truth[[f"pi_{a}" for a in arms]].to_numpy(),
    }, proba[arms]


def true_value(probs: np.ndarray, truth: pd.DataFrame, offers: pd.DataFrame) -> float:
    iv = incremental_values(truth, offers)
    return float(np.where(probs > 0, probs * np.where(np.isfinite(iv), iv, 0.0), 0.0).sum(1).mean())


def test_learned_policy_beats_propensity_and_logging_on_the_truth(world):
    policies, _ = learned_policies(world)
    values = {n: true_value(p, world["truth_t"], world["offers"]) for n, p in policies.items()}
    reference = policy_values(world["truth_t"], world["offers"])
    print("true incremental value per exposure:", values, "reference:", reference)
    assert values["learned"] > values["propensity"] + 0.3
    assert values["learned"] > values["logging"] + 0.3
    assert abs(values["logging"] - reference["logging"]) < 1e-9


def test_dr_estimates_the_learned_policy_value(world):
    policies, proba = learned_policies(world)
    ex, offers = world["ex_t"], world["offers"]
    arms = ["control", *offers["offer_id"]]
    table = policy_value_table(
        policies, estimator=incremental_policy_value, y=world["y"][~world["train"]],
        logged_arm=pd.Index(arms).get_indexer(ex["offer_id"].astype(object).fillna("control")),
        logged_propensity=ex["propensity"].to_numpy(), values=np.r_[0.0, offers["value"]],
        costs=np.r_[0.0, offers["cost"]], outcome_model=proba.to_numpy(),
    )  # fmt: skip
    truth = {n: true_value(p, world["truth_t"], offers) for n, p in policies.items()}
    print(table.round(3), "\ntrue:", truth)
    for name, value in truth.items():
        dr = table.loc[(name, "dr")]
        assert abs(dr["estimate"] - value) < 3 * dr["se"], name


def test_uplift_model_is_reproducible_and_clonable(world):
    model = world["model"]
    again = clone(model).fit(
        world["X"][world["train"]], world["exposures"]["offer_id"][world["train"]],
        world["y"][world["train"]], world["exposures"]["propensity"][world["train"]],
    )  # fmt: skip
    pd.testing.assert_frame_equal(
        again.predict_uplift(world["Xt"]), model.predict_uplift(world["Xt"])
    )
    assert again.get_params() == model.get_params()


def test_uplift_and_support_equal_the_frame_methods(world):
    """The numpy method (the service's hot path) answers like predict_uplift and supported,
    from a frame or from the encoded array, for the T- and the DR-learner."""
    X, ex, y = world["X"].iloc[:3000], world["exposures"].iloc[:3000], world["y"][:3000]
    dr = UpliftModel(learner="dr", n_estimators=20).fit(X, ex["offer_id"], y, ex["propensity"])
    for model in (world["model"], dr):
        Xt = world["Xt"].iloc[:500]
        uplift, supported = model.uplift_and_support(Xt)
        np.testing.assert_allclose(uplift, model.predict_uplift(Xt).to_numpy(), rtol=1e-12)
        np.testing.assert_array_equal(supported, model.supported(Xt).to_numpy())
        again = model.uplift_and_support(model.encode(Xt))
        np.testing.assert_array_equal(again[0], uplift)
        np.testing.assert_array_equal(again[1], supported)
        assert uplift.shape == supported.shape == (500, len(model.offers_))


def test_dr_learner_small_arms_and_unseen_categories(world):
    X, ex, y = world["X"].iloc[:4000], world["exposures"].iloc[:4000], world["y"][:4000]
    with pytest.warns(UserWarning, match="min_arm_size=300"):
        model = UpliftModel(learner="dr", min_arm_size=300, n_estimators=30).fit(
            X, ex["offer_id"], y, ex["propensity"]
        )
    small = [a for a, n in model.arm_counts_.items() if n < 300]
    uplift = model.predict_uplift(X.iloc[:50])
    assert small and uplift[small[0]].isna().all()
    assert uplift.drop(columns=small).notna().all().all()
    odd = X.iloc[:50].assign(plan=pd.Series(["platinum"] * 50, dtype="str", index=X.index[:50]))
    missing = X.iloc[:50].assign(plan=pd.Series([None] * 50, dtype="str", index=X.index[:50]))
    pd.testing.assert_frame_equal(model.predict_uplift(odd), model.predict_uplift(missing))
    with pytest.raises(ValueError, match="propensity"):
        UpliftModel(learner="dr").fit(X, ex["offer_id"], y)
