"""Model quality and training speed on simulator data, beside aligned oracles (issue 4).

Usage: python benchmarks/bench_models.py [--customers 100000] [--seed 0] [--snapshots 6]

Prints the wall time of each step of `fit_and_evaluate` (the pipeline behind `lifecycle
train`, without MLflow), the churn and stage metrics beside their baselines and beside an
*informed oracle* on the same holdout rows and labels, and the offer policies' TRUE
incremental value on the evaluation sends (simulator ground truth) beside the DR estimate.

Oracles (the truth is used for scoring only, never by the models):
- churn / stage: the same estimator and training rows, given the ground truth as extra
  inputs (latent stage, exact churn probabilities and next-stage mix of the simulator's
  snapshot on each row's as-of date, latent traits); the simulation's truth snapshots are
  placed on the training set's as-of dates. Also the exact 60-day latent churn probability
  scored on the model's own (observable, 60-day inactivity) labels.
- offers: the oracle policy (best arm by true incremental value among the arms the logging
  policy could send), and an "observable bound": per offer, a LightGBM regression of the TRUE
  incremental value on the observable features (noise-free supervision no real model has),
  which bounds what any learner on these features can reach; and an "informed learner": the
  same uplift learner on the same sends given the latent traits, i.e. what learning from these
  noisy outcomes could reach if the events revealed the traits.

For each policy the pipeline evaluates off-policy (learned, propensity ranking, random), the
script also prints its true value beside its IPS / SNIPS / DR estimates and 95% intervals.
"""

from __future__ import annotations

import argparse
import time

import lightgbm as lgb
import numpy as np
import pandas as pd
from _common import machine, markdown, peak_rss_mb, save
from sklearn.metrics import roc_auc_score

from features.loaders import load_customers, load_events, load_exposures, load_offers
from features.simulator import SimConfig, simulate
from features.simulator.truth import incremental_values, policy_values
from training import offers_pipeline as op
from training.datasets import DatasetConfig, Tables, time_split
from training.oracle import LATENT_TRAITS, aligned_snapshot_first_day, with_truth
from training.pipeline import TrainConfig, churn_population, fit_and_evaluate, fit_churn, fit_stage

TRUTH_POLICIES = {"propensity": "propensity rule on the TRUE probabilities"}
SHOWN = ("roc_auc", "pr_auc", "brier", "ece", "lift_top_decile", "macro_f1", "accuracy",
         "log_loss", "auuc_mean", "policy_value_dr")  # fmt: skip


def metric_rows(name: str, report, oracle: dict | None = None) -> list[dict]:
    keys = [k for k in SHOWN if k in report.metrics]
    rows = [{"model": name, **{k: round(report.metrics[k], 4) for k in keys}}]
    for base, metrics in (report.baselines | (oracle or {})).items():
        rows.append({"model": base, **{k: round(metrics.get(k, np.nan), 4) for k in keys}})
    return rows


def informed_oracles(result, sim, config: TrainConfig) -> dict[str, dict]:
    """Churn and stage estimators refitted with the ground truth as extra inputs, scored on
    the same holdout, plus the exact latent churn probability on the model's labels."""
    frame = with_truth(result.dataset, sim.snapshots, sim.truth_customers)
    parts = time_split(frame, config.dataset)
    fit_part = pd.concat([parts["train"], parts["validation"]], ignore_index=True)
    holdout = parts["test"]
    aligned = float(holdout["truth_stage"].notna().mean())
    test = churn_population(holdout)
    p_true = test["truth_p_churn_60d"].to_numpy(dtype=float)
    ok = np.isfinite(p_true)
    return {
        "churn": {
            "oracle: model + truth": fit_churn(fit_part, holdout, config).metrics,
            "oracle: exact p(latent churn 60d)": {
                "roc_auc": roc_auc_score(test["churned"].to_numpy()[ok], p_true[ok])
            },
        },
        "stage": {"oracle: model + truth": fit_stage(fit_part, holdout, config).metrics},
        "aligned_share": aligned,
    }


def offer_truth(result, sim, tables: Tables) -> tuple[dict[str, float], list[dict]]:
    """True value per exposure of the learned and reference policies on the evaluation sends,
    the observable bound and the informed learner; and, for every policy the pipeline
    evaluates off-policy, its IPS / SNIPS / DR estimates beside its true value."""
    data = op.offer_data(tables, result.config.dataset.feature_set)
    train, test = op.split_by_send_day(data)
    model = op.gate_model(result.reports["offers"].estimator)  # fitted on `train` only
    truth = sim.truth_exposures.set_index("exposure_id")
    t_test = truth.loc[test.exposures["exposure_id"]].reset_index()
    t_train = truth.loc[train.exposures["exposure_id"]].reset_index()
    uplift = model.predict_uplift(test.X)
    policies, proba = op.evaluated_policies(model, test, tables.offers, uplift)
    iv = pd.DataFrame(
        true_iv(t_test, tables.offers), columns=["control", *tables.offers["offer_id"]]
    )
    iv = iv[["control", *model.offers_]].to_numpy()
    true = {name: float((probs * iv).sum(axis=1).mean()) for name, probs in policies.items()}
    table = op.policy_table(model, test, tables.offers, policies, proba)
    estimates = [
        {"policy": name, "true value": round(true[name], 3),
         **{f"{est} (95% CI)": f"{row.estimate:.3f} ({row.lo:.3f}, {row.hi:.3f})"
            for est, row in table.loc[name].iterrows()},
         "DR error": f"{table.loc[(name, 'dr'), 'estimate'] / true[name] - 1:+.1%}"}
        for name in policies
    ]  # fmt: skip
    reference = policy_values(t_test, tables.offers)
    values = {"learned (true)": true["learned"],
              "learned (DR estimate)": table.loc[("learned", "dr"), "estimate"],
              "learned (DR bootstrap se)": table.loc[("learned", "dr"), "se"],
              "propensity ranking (true)": true["propensity"],
              **{TRUTH_POLICIES.get(k, k): v for k, v in reference.items()},
              "observable bound": observable_bound(model, train, test, t_train, t_test,
                                                   tables.offers),
              "informed learner": informed_learner(model, train, test, sim, t_test,
                                                   tables.offers)}  # fmt: skip
    return values, estimates


def informed_learner(model, train, test, sim, t_test, offers) -> float:
    """True value of the same uplift learner given the customers' latent traits as extra
    inputs: what learning from these sends could reach if the events revealed the traits."""
    traits = sim.truth_customers.astype({"customer_id": "str"}).set_index("customer_id")
    traits = traits[list(LATENT_TRAITS)].add_prefix("truth_")

    def informed(d: op.OfferData) -> op.OfferData:
        extra = traits.loc[d.exposures["customer_id"].astype("str")].reset_index(drop=True)
        return op.OfferData(pd.concat([d.X, extra], axis=1), d.exposures, d.y, d.arm)

    learner = op.fit_uplift(informed(train), model.get_params())
    best, _ = op.learned_choice(learner, informed(test).X, offers)
    arms = pd.Index(["control", *offers["offer_id"]])
    chosen = arms.get_indexer(best.fillna("control").astype(object))
    return float(true_iv(t_test, offers)[np.arange(len(t_test)), chosen].mean())


def true_iv(truth: pd.DataFrame, offers: pd.DataFrame) -> np.ndarray:
    """True incremental value of every arm, including arms the logging policy never sends."""
    arms = ["control", *offers["offer_id"]]
    p = truth[[f"p_{a}" for a in arms]].to_numpy()
    catalog = offers.set_index("offer_id").loc[arms[1:]]
    iv = (p - p[:, [0]]) * np.r_[0.0, catalog["value"]] - np.r_[0.0, catalog["cost"]]
    iv[:, 0] = 0.0
    return iv


def observable_bound(model, train, test, t_train, t_test, offers) -> float:
    """Value of the policy picking the arm of highest predicted TRUE incremental value, each
    arm's regression fitted on the observable features of the training sends."""
    iv_train, iv_test = incremental_values(t_train, offers), incremental_values(t_test, offers)
    a_train, a_test = model.encode(train.X), model.encode(test.X)
    pred = np.full(iv_test.shape, -np.inf)
    pred[:, 0] = 0.0
    params = {"objective": "regression", "learning_rate": 0.05, "num_leaves": 31,
              "num_threads": 1, "verbosity": -1, "seed": 0}  # fmt: skip
    for j in range(1, iv_test.shape[1]):
        fit, use = np.isfinite(iv_train[:, j]), np.isfinite(iv_test[:, j])
        if fit.sum() < 100 or not use.any():
            continue
        booster = lgb.train(params, lgb.Dataset(a_train[fit], iv_train[fit, j]), 200)
        pred[use, j] = booster.predict(a_test[use])
    return float(iv_test[np.arange(len(iv_test)), pred.argmax(axis=1)].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--snapshots", type=int, default=6)
    args = parser.parse_args()
    config = TrainConfig(dataset=DatasetConfig(snapshots=args.snapshots))
    first = aligned_snapshot_first_day(365, config.dataset.horizon_days)
    sim = simulate(SimConfig(customers=args.customers, seed=args.seed, snapshot_first_day=first))
    offers = load_offers(sim.offers).data
    tables = Tables(load_events(sim.events).data, load_customers(sim.customers).data, offers,
                    load_exposures(sim.exposures, offers=offers).data)  # fmt: skip
    t0 = time.perf_counter()
    result = fit_and_evaluate(tables, config)
    seconds = time.perf_counter() - t0
    oracles = informed_oracles(result, sim, config)
    values, estimates = offer_truth(result, sim, tables)
    dr_error = values["learned (DR estimate)"] / values["learned (true)"] - 1.0
    print(
        f"\nModels on {args.customers:,} simulated customers x {args.snapshots} snapshots "
        f"({machine()}): fit_and_evaluate {seconds:.0f} s, peak RSS {peak_rss_mb():,.0f} MB\n"
    )
    print(markdown([{"step": k, "seconds": round(v, 1)} for k, v in result.seconds.items()]))
    tables_by_model = {
        name: metric_rows(name, report, oracles.get(name))
        for name, report in result.reports.items()
    }
    for rows in tables_by_model.values():
        print("\n" + markdown(rows))
    print(f"\n(truth snapshots aligned with {oracles['aligned_share']:.0%} of the holdout rows)")
    print("\n" + markdown([{"policy": k, "true incremental value per exposure": round(v, 3)}
                           for k, v in values.items()]))  # fmt: skip
    print("\nOff-policy estimates of the evaluated policies beside their true values:\n")
    print(markdown(estimates))
    learned = values["learned (true)"]
    on_truth = values[TRUTH_POLICIES["propensity"]]
    print(f"\nDR estimate vs true value of the learned policy: {dr_error:+.1%}; learned / "
          f"oracle {learned / values['oracle']:.0%}; learned / propensity ranking "
          f"(our predictions) {learned / values['propensity ranking (true)']:.2f}x; learned / "
          f"propensity rule on the true probabilities {learned / on_truth:.2f}x; "
          f"learned / observable bound {learned / values['observable bound']:.0%}; informed "
          f"learner / oracle {values['informed learner'] / values['oracle']:.0%}")  # fmt: skip
    save("models", {"args": vars(args), "seconds": seconds, "steps": result.seconds,
                    "tables": tables_by_model, "values": values, "dr_error": dr_error,
                    "off_policy": estimates,
                    "aligned_share": oracles["aligned_share"]})  # fmt: skip


if __name__ == "__main__":
    main()
