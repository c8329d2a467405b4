"""Off-policy estimators against a simulated logged bandit with known truth (issue 14, point 3).

Usage: python benchmarks/bench_ope.py [--reps 200] [--rows 3000] [--bootstrap 200]
           [--clip 10] [--tau 10] [--seed 0]

The world: contexts ``x ~ N(0, I_5)``, 5 actions, 0/1 rewards with ``P(r=1 | x, a) =
sigmoid(theta_a . x + b_a)``. The target policy is a softmax (temperature 1/3) of a noisy copy
of the true scores. Two logging policies over a different score:

- ``overlap``: half a softmax of it, half uniform (every propensity >= 0.1, weights <= 10);
- ``near-deterministic``: its argmax with probability 0.95, uniform exploration otherwise
  (propensity 0.01 for the actions it does not prefer).

The truth is the target's value ``E_x[sum_a pi(a|x) P(r=1|x,a)]`` on 1,000,000 fresh contexts.
Each replication logs ``--rows`` rows, fits the reward model by 2-fold cross-fitting (the
product's default small LightGBM, one thread) and estimates the value with
``training.ope.off_policy_value`` (percentile bootstrap, ``--bootstrap`` resamples, the model
held fixed). Reported per estimator: bias (with its Monte-Carlo standard error), RMSE, the
share of 95% intervals that cover the truth, the mean interval width, and how often the
effective-sample-size warning fired. Writes ``benchmarks/out/ope.json``.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from _common import machine, markdown, save

from training.ope import off_policy_value
from training.ope_estimators import effective_sample_size, importance_weights
from training.ope_reward_model import cross_fitted_rewards

D, K = 5, 5
ESTIMATORS = ("ips", "snips", "dm", "dr", "sndr", "switch_dr")
LABELS = {"ips": "IPS", "snips": "SNIPS", "dm": "DM (model only)", "dr": "DR",
          "dr_clip": "DR, clipped", "sndr": "SNDR", "switch_dr": "switch-DR"}  # fmt: skip


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class World:
    """The simulated bandit: true reward probabilities, target and logging policies."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.theta, self.bias = rng.normal(0, 0.6, (D, K)), rng.normal(-1.0, 0.5, K)
        self.target_noise = rng.normal(0, 0.3, (D, K))
        self.logging_theta = self.theta + rng.normal(0, 0.8, (D, K))

    def mean_reward(self, x: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-(x @ self.theta + self.bias)))

    def target(self, x: np.ndarray) -> np.ndarray:
        return softmax(3.0 * (x @ (self.theta + self.target_noise) + self.bias))

    def logging(self, x: np.ndarray, kind: str) -> np.ndarray:
        score = x @ self.logging_theta
        if kind == "overlap":
            return 0.5 * softmax(score) + 0.5 / K
        greedy = np.eye(K)[score.argmax(axis=1)]
        return 0.95 * greedy + 0.05 / K

    def truth(self, rng: np.random.Generator, n: int = 1_000_000) -> float:
        x = rng.normal(size=(n, D))
        return float((self.target(x) * self.mean_reward(x)).sum(axis=1).mean())

    def log(self, rng: np.random.Generator, n: int, kind: str) -> dict[str, np.ndarray]:
        x = rng.normal(size=(n, D))
        mu = self.logging(x, kind)
        a = (rng.random(n)[:, None] >= np.cumsum(mu, axis=1)).sum(axis=1).clip(0, K - 1)
        r = (rng.random(n) < self.mean_reward(x)[np.arange(n), a]).astype(float)
        pi = self.target(x)
        return {"x": x, "rewards": r, "logged_actions": a,
                "logged_propensities": mu[np.arange(n), a], "target_probabilities": pi}  # fmt: skip


def replicate(world: World, rng: np.random.Generator, kind: str, args, seed: int) -> dict:
    """One logged sample: every estimator's estimate and interval, and whether ESS warned."""
    data = world.log(rng, args.rows, kind)
    q = cross_fitted_rewards(data["x"], data["logged_actions"], data["rewards"], K, folds=2,
                             random_state=seed)  # fmt: skip
    log = {k: v for k, v in data.items() if k != "x"}
    common = {"reward_model": q, "n_bootstrap": args.bootstrap, "random_state": seed}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = off_policy_value(**log, estimators=ESTIMATORS, tau=args.tau, **common)
        clipped = off_policy_value(**log, estimators=("dr",), clip=args.clip, **common)
    out.loc["dr_clip"] = clipped.loc["dr"]
    w = importance_weights(log["target_probabilities"], log["logged_actions"],
                           log["logged_propensities"])  # fmt: skip
    warned = any("effective sample size" in str(c.message) for c in caught)
    return {"table": out, "warned": warned, "max_weight": float(w.max()),
            "ess_share": effective_sample_size(w) / len(w)}  # fmt: skip


def summary(runs: list[dict], truth: float, kind: str) -> list[dict]:
    rows = []
    for name in LABELS:
        est = np.array([r["table"].loc[name, "estimate"] for r in runs])
        lo = np.array([r["table"].loc[name, "lo"] for r in runs])
        hi = np.array([r["table"].loc[name, "hi"] for r in runs])
        err = est - truth
        rows.append({
            "logging": kind, "estimator": LABELS[name], "bias": float(err.mean()),
            "bias_se": float(err.std(ddof=1) / np.sqrt(len(err))),
            "rmse": float(np.sqrt((err**2).mean())),
            "coverage_95": float(((lo <= truth) & (truth <= hi)).mean()),
            "mean_width": float((hi - lo).mean()),
        })  # fmt: skip
    return rows


def _shown(row: dict) -> dict:
    """A table row with 4 decimals (the biases are small)."""
    bias = f"{row['bias']:+.4f} ± {row['bias_se']:.4f}"
    rest = {k: f"{row[k]:.4f}" for k in ("rmse", "coverage_95", "mean_width")}
    return {"logging": row["logging"], "estimator": row["estimator"], "bias ± se": bias} | rest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--clip", type=float, default=10.0)
    parser.add_argument("--tau", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    world = World(args.seed)
    truth = world.truth(np.random.default_rng(args.seed + 1))
    rows, diagnostics = [], []
    for kind in ("overlap", "near-deterministic"):
        rng = np.random.default_rng(args.seed + 2)
        runs = [replicate(world, rng, kind, args, seed) for seed in range(args.reps)]
        rows += summary(runs, truth, kind)
        diagnostics.append({
            "logging": kind, "mean_max_weight": float(np.mean([r["max_weight"] for r in runs])),
            "mean_ess_share": float(np.mean([r["ess_share"] for r in runs])),
            "ess_warning_share": float(np.mean([r["warned"] for r in runs])),
        })  # fmt: skip
    seconds = time.perf_counter() - start
    print(f"truth (target value, 1e6 contexts): {truth:.4f}; {args.reps} replications of "
          f"{args.rows} rows per logging policy; clip={args.clip:g}, tau={args.tau:g}; "
          f"{seconds:.0f} s on {machine()}\n")  # fmt: skip
    print(markdown([_shown(r) for r in rows]), "\n")
    print(markdown(diagnostics))
    payload = {"args": vars(args), "truth": truth, "rows": rows, "diagnostics": diagnostics,
               "seconds": seconds, "machine": machine()}  # fmt: skip
    path = save("ope", payload)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
