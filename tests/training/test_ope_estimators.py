"""Off-policy estimators (issue 14, point 3): hand-computed values on tiny logs, the textbook
definitions on a simulated logged bandit with known truth, and interval coverage."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.dummy import DummyRegressor

from training.ope import off_policy_value
from training.ope_estimators import effective_sample_size
from training.ope_reward_model import cross_fitted_rewards

# ---- a tiny log, by hand ---------------------------------------------------------------
# w = pi(a_i) / mu_i = [1/.5, 1/.25, .75/.5] = [2, 4, 1.5]; r = [1, 1, 0]
# d = sum_a pi q = [.6, .5, .25*.3 + .75*.8] = [.6, .5, .675]; e = r - q(a_i) = [.4, .5, -.8]
TINY = {
    "rewards": np.array([1.0, 1.0, 0.0]),
    "logged_actions": np.array([0, 1, 1]),
    "logged_propensities": np.array([0.5, 0.25, 0.5]),
    "target_probabilities": np.array([[1.0, 0.0], [0.0, 1.0], [0.25, 0.75]]),
    "reward_model": np.array([[0.6, 0.2], [0.4, 0.5], [0.3, 0.8]]),
}
DM = (0.6 + 0.5 + 0.675) / 3
ALL = ("ips", "snips", "dm", "dr", "sndr", "switch_dr")


def estimates(data: dict, **kwargs) -> dict[str, float]:
    out = off_policy_value(**data, n_bootstrap=0, **kwargs)
    return out["estimate"].to_dict()


def test_every_estimator_hand_computed():
    got = estimates(TINY, estimators=ALL, tau=2.0)
    want = {
        "ips": (2 + 4 + 0) / 3,
        "snips": 6 / 7.5,
        "dm": DM,
        "dr": DM + (0.8 + 2.0 - 1.2) / 3,  # w e = [.8, 2, -1.2]
        "sndr": DM + 1.6 / 7.5,  # sum(w e) / sum(w)
        "switch_dr": DM + (0.8 - 1.2) / 3,  # row 2's weight 4 > tau: model alone
    }
    assert got == pytest.approx(want, abs=1e-12)


def test_clipping_caps_the_weights_of_ips_snips_dr_and_sndr():
    got = estimates(TINY, estimators=("ips", "snips", "dr", "sndr"), clip=2.0)
    # clipped w = [2, 2, 1.5]: w r = [2, 2, 0]; w e = [.8, 1, -1.2]
    want = {"ips": 4 / 3, "snips": 4 / 5.5, "dr": DM + 0.6 / 3, "sndr": DM + 0.6 / 5.5}
    assert got == pytest.approx(want, abs=1e-12)
    assert estimates(TINY, clip=10.0) == pytest.approx(estimates(TINY))  # inactive cap


@pytest.mark.parametrize(("tau", "same_as"), [(0.0, "dm"), (1.5, None), (np.inf, "dr")])
def test_switch_dr_goes_from_the_model_alone_to_dr(tau, same_as):
    got = estimates(TINY, estimators=("dm", "dr", "switch_dr"), tau=tau)
    if same_as:
        assert got["switch_dr"] == pytest.approx(got[same_as], abs=1e-12)
    else:  # only row 3 (w = 1.5) keeps its correction
        assert got["switch_dr"] == pytest.approx(DM - 1.2 / 3, abs=1e-12)


def test_positions_sum_the_per_slot_estimates():
    # slot 0: r = [1, 0], w = [2, 1]; slot 1: r = [1, 1], w = [.5, 1.5]
    data = {
        "rewards": np.array([1.0, 0.0, 1.0, 1.0]),
        "logged_actions": np.array([1, 1, 0, 0]),
        "logged_propensities": np.array([0.5, 0.5, 0.5, 0.5]),
        "target_probabilities": np.array([[0, 1], [0.5, 0.5], [0.25, 0.75], [0.75, 0.25]]),
    }
    got = estimates(data, positions=np.array([3, 3, 7, 7]))
    assert got == pytest.approx({"ips": 1 + 1, "snips": 2 / 3 + 2 / 2}, abs=1e-12)
    assert estimates(data)["ips"] == pytest.approx(4 / 4)  # without slots: the row mean


def test_no_overlap_is_an_error_not_a_silent_zero():
    data = dict(TINY, target_probabilities=np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="probability 0 to every logged action: no overlap"):
        off_policy_value(**data)
    one_slot = np.array([0, 1, 1])  # slot 0's only row has w = 0
    data = dict(TINY, target_probabilities=np.array([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="logged action at position 0: no overlap"):
        off_policy_value(**data, positions=one_slot)


def test_extreme_weights_warn_with_the_effective_sample_size():
    # 2 of 100 rows took action 1 with propensity .01 and the target always takes it:
    # w = 100 on 2 rows, 0 elsewhere; ESS = 200^2 / (2 * 100^2) = 2
    n = 100
    a = np.zeros(n, dtype=int)
    a[:2] = 1
    data = {"rewards": np.ones(n), "logged_actions": a,
            "logged_propensities": np.where(a == 1, 0.01, 0.99),
            "target_probabilities": np.tile([0.0, 1.0], (n, 1))}  # fmt: skip
    with pytest.warns(UserWarning, match=r"effective sample size 2\.0 of 100 rows \(2\.0%"):
        off_policy_value(**data, n_bootstrap=0)
    assert effective_sample_size([2.0, 4.0, 1.5]) == pytest.approx(7.5**2 / 22.25)
    with pytest.warns(UserWarning, match=r"2\.5 of 3 rows \(84\.3%, below 90%"):
        off_policy_value(**TINY, n_bootstrap=0, min_ess_share=0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        off_policy_value(**TINY, n_bootstrap=0)  # ESS 84% of the rows: quiet


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"estimators": ("dr", "magic")}, "estimators must be distinct names"),
        ({"estimators": ("switch_dr",)}, "switch_dr needs tau"),
        ({"estimators": ("dm",), "reward_model": None}, r"\['dm'\] need reward_model"),
        ({"clip": 0.0}, "clip must be"),
        ({"positions": np.array([0.0, 1.0, 1.0])}, "positions must be 3 integer"),
    ],
)
def test_options_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        off_policy_value(**(TINY | kwargs))


# ---- a simulated logged bandit with known truth ---------------------------------------

GRID = (np.arange(200_000) + 0.5) / 200_000  # midpoints: the truth is an integral over x


def world(x: np.ndarray, slot: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean rewards, logging and target probabilities of three actions at contexts x."""
    mu = np.column_stack([0.2 + 0.5 * x, 0.7 - 0.4 * x, 0.3 + 0.1 * np.sin(6 * x)]) / (1 + slot)
    logging = np.column_stack([0.15 + 0.5 * x, 0.6 - 0.5 * x, np.full_like(x, 0.25)])
    target = np.column_stack([x**2, (1 - x) ** 2, 2 * x * (1 - x)])
    return mu, logging, target


def logged_bandit(seed: int, n: int = 2000, slot: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.random(n)
    mu, logging, target = world(x, slot)
    a = (rng.random(n)[:, None] >= np.cumsum(logging, axis=1)).sum(axis=1)
    r = (rng.random(n) < mu[np.arange(n), a]).astype(float)
    true_mu, _, true_target = world(GRID, slot)
    return {"x": x, "mu": mu, "rewards": r, "logged_actions": a,
            "logged_propensities": logging[np.arange(n), a], "target_probabilities": target,
            "truth": float((true_target * true_mu).sum(axis=1).mean())}  # fmt: skip


LOG = ("rewards", "logged_actions", "logged_propensities", "target_probabilities")


def textbook(d: dict, q: np.ndarray, clip: float, tau: float) -> dict[str, float]:
    """The definitions, one row at a time (Dudik et al. 2014; Wang et al. 2017; OBP)."""
    rows = []
    for i, (r, a, p) in enumerate(zip(d["rewards"], d["logged_actions"],
                                      d["logged_propensities"], strict=True)):  # fmt: skip
        pi = d["target_probabilities"][i]
        w = pi[a] / p
        dm = sum(pi[b] * q[i, b] for b in range(len(pi)))
        rows.append((w, min(w, clip), r, dm, r - q[i, a]))
    w, wc, r, dm, e = map(np.array, zip(*rows, strict=True))
    return {
        "ips": np.mean(w * r),
        "snips": np.sum(w * r) / np.sum(w),
        "dm": np.mean(dm),
        "dr": np.mean(dm + w * e),
        "sndr": np.mean(dm + w * e / np.mean(w)),
        "switch_dr": np.mean(dm + (w <= tau) * w * e),
        "dr_clip": np.mean(dm + wc * e),
    }


def test_estimators_match_the_textbook_and_find_the_truth():
    d = logged_bandit(7, n=4000)
    q = 0.7 * d["mu"] + 0.1  # a wrong reward model: DR must still be right
    log = {k: d[k] for k in LOG}
    out = off_policy_value(**log, reward_model=q, estimators=ALL, tau=3.0, n_bootstrap=200)
    clipped = off_policy_value(**log, reward_model=q, estimators=("dr",), clip=2.0, n_bootstrap=0)
    want = textbook(d, q, clip=2.0, tau=3.0)
    got = out["estimate"].to_dict() | {"dr_clip": clipped.loc["dr", "estimate"]}
    assert got == pytest.approx(want, abs=1e-12)
    for name in ("ips", "snips", "dr", "sndr"):  # unbiased or consistent
        assert abs(got[name] - d["truth"]) < 4 * out.loc[name, "se"], name
    assert abs(got["dm"] - d["truth"]) > 4 * out.loc["dm", "se"]  # the model alone is off


def test_positions_estimate_the_total_over_slots():
    slots = [logged_bandit(10 + s, n=3000, slot=s) for s in (0, 1)]
    log = {k: np.concatenate([d[k] for d in slots]) for k in LOG}
    q = np.concatenate([0.8 * d["mu"] for d in slots])
    where = np.repeat([0, 1], 3000)
    out = off_policy_value(**log, reward_model=q, positions=where, n_bootstrap=200)
    truth = sum(d["truth"] for d in slots)
    for name in ("ips", "snips", "dr"):
        assert abs(out.loc[name, "estimate"] - truth) < 4 * out.loc[name, "se"], name
        per_slot = [
            off_policy_value(
                **{k: d[k] for k in LOG}, reward_model=0.8 * d["mu"], n_bootstrap=0
            ).loc[name, "estimate"]
            for d in slots
        ]
        assert out.loc[name, "estimate"] == pytest.approx(sum(per_slot), abs=1e-12)


def test_dr_and_sndr_intervals_cover_the_truth():
    covered = {"dr": [], "sndr": []}
    for seed in range(100):
        d = logged_bandit(100 + seed)
        q = 0.7 * d["mu"] + 0.1
        out = off_policy_value(
            **{k: d[k] for k in LOG},
            reward_model=q,
            estimators=("dr", "sndr"),
            n_bootstrap=200,
            random_state=seed,
        )
        for name, hits in covered.items():
            hits.append(out.loc[name, "lo"] <= d["truth"] <= out.loc[name, "hi"])
    rates = {name: float(np.mean(hits)) for name, hits in covered.items()}
    print(f"95% interval coverage over 100 replications of 2,000 rows: {rates}")
    assert min(rates.values()) >= 0.88, rates


# ---- cross-fitted reward model -----------------------------------------------------------


def test_cross_fitted_rewards_are_out_of_fold_hand_computed():
    # leave-one-out with a mean model: q(x_i, a) = mean of the other rows' rewards, any a
    r = np.array([1.0, 2.0, 4.0, 8.0])
    q = cross_fitted_rewards(np.zeros((4, 1)), np.array([0, 1, 0, 1]), r, 2, folds=4,
                             make_model=DummyRegressor)  # fmt: skip
    want = (r.sum() - r) / 3
    np.testing.assert_allclose(q, np.column_stack([want, want]))
    with pytest.raises(ValueError, match="actions must index the 2 action columns"):
        cross_fitted_rewards(np.zeros((4, 1)), np.array([0, 1, 2, 1]), r, 2)


def test_cross_fitted_lightgbm_rewards_recover_the_means_and_feed_dr():
    d = logged_bandit(3, n=3000)
    q = cross_fitted_rewards(d["x"][:, None], d["logged_actions"], d["rewards"], 3)
    assert q.shape == (3000, 3) and ((q >= 0) & (q <= 1)).all()
    assert np.abs(q - d["mu"]).mean() < 0.07  # a constant per action: 0.10
    out = off_policy_value(**{k: d[k] for k in LOG}, reward_model=q, estimators=("dr", "sndr"))
    assert (abs(out["estimate"] - d["truth"]) < 4 * out["se"]).all()
