"""Model quality and training speed on simulator data, beside the oracle (issue 4).

Usage: python benchmarks/bench_models.py [--customers 100000] [--seed 0] [--snapshots 6]

Prints the churn, stage and offer metrics of `fit_and_evaluate` (the same pipeline as
`lifecycle train`, without MLflow), their baselines, the wall time, and the offer policy's TRUE
incremental value on the evaluation sends from the simulator's ground truth next to the oracle,
propensity and logging policies.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from _common import machine, markdown, peak_rss_mb, save

from features.loaders import load_customers, load_events, load_exposures, load_offers
from features.simulator import SimConfig, simulate
from features.simulator.truth import incremental_values, policy_values
from training.datasets import DatasetConfig, Tables
from training.pipeline import TrainConfig, fit_and_evaluate


def true_policy_values(report, sim, tables: Tables) -> dict[str, float]:
    """True value of the learned next-best-offer policy on the evaluation sends."""
    from training import offers_pipeline as op

    _, test = op.split_by_send_day(op.offer_data(tables))
    model = report.estimator
    truth = sim.truth_exposures.set_index("exposure_id").loc[test.exposures["exposure_id"]]
    truth = truth.reset_index()
    best, _ = op.learned_choice(model, test.X, tables.offers)
    iv = incremental_values(truth, tables.offers)
    arms = ["control", *tables.offers["offer_id"]]
    col = pd.Index(arms).get_indexer(best.fillna("control").astype(object))
    chosen = iv[np.arange(len(iv)), col]
    learned = float(np.where(np.isfinite(chosen), chosen, 0.0).mean())
    return {"learned (true)": learned, **policy_values(truth, tables.offers)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--snapshots", type=int, default=6)
    args = parser.parse_args()
    sim = simulate(SimConfig(customers=args.customers, seed=args.seed))
    offers = load_offers(sim.offers).data
    tables = Tables(load_events(sim.events).data, load_customers(sim.customers).data, offers,
                    load_exposures(sim.exposures, offers=offers).data)  # fmt: skip
    t0 = time.perf_counter()
    result = fit_and_evaluate(tables, TrainConfig(dataset=DatasetConfig(snapshots=args.snapshots)))
    seconds = time.perf_counter() - t0
    tables_by_model = {}
    for name, report in result.reports.items():
        shown = {k: v for k, v in report.metrics.items() if "." not in k}
        rows = [{"model": name, **{k: round(v, 4) for k, v in shown.items()}}]
        for base, metrics in report.baselines.items():
            rows.append({"model": f"baseline: {base}",
                         **{k: round(metrics.get(k, np.nan), 4) for k in shown}})  # fmt: skip
        tables_by_model[name] = rows
    values = true_policy_values(result.reports["offers"], sim, tables)
    print(
        f"\nModels on {args.customers:,} simulated customers x {args.snapshots} snapshots "
        f"({machine()}): fit_and_evaluate {seconds:.0f} s, peak RSS {peak_rss_mb():,.0f} MB\n"
    )
    for rows in tables_by_model.values():
        print(markdown(rows) + "\n")
    print("\n" + markdown([{"policy": k, "true incremental value per exposure": round(v, 3)}
                           for k, v in values.items()]))  # fmt: skip
    save(
        "models",
        {"args": vars(args), "seconds": seconds, "tables": tables_by_model, "values": values},
    )


if __name__ == "__main__":
    main()
