"""Oracle figures from the simulator's ground truth: what perfect knowledge of the latent state
achieves. Later models (issue 4) are judged against these.

Usage: python benchmarks/oracle.py [--customers 100000] [--seed 0] [--horizon 30]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from _common import machine, markdown, save

from features.simulator import SimConfig, simulate
from features.simulator.truth import policy_values
from training.oracle import churn_oracle, evaluable_snapshots, stage_oracle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--horizon", type=int, default=30, help="churn and stage horizon, days")
    args = parser.parse_args()
    cfg = SimConfig(customers=args.customers, seed=args.seed, stage_horizon_days=args.horizon)
    t0 = time.perf_counter()
    sim = simulate(cfg)
    print(f"simulated {args.customers:,} customers in {time.perf_counter() - t0:.0f}s")
    end = pd.Timestamp(cfg.start, tz="UTC") + pd.Timedelta(days=cfg.days)
    rows = []
    for as_of in evaluable_snapshots(sim.snapshots, end, args.horizon):
        churn = churn_oracle(sim.snapshots, sim.stage_history, as_of, args.horizon)
        stage = stage_oracle(sim.snapshots, sim.stage_history, as_of, args.horizon)
        rows.append({"as_of": f"{as_of:%Y-%m-%d}", "churn_customers": churn["customers"],
                     "churn_rate": churn["churn_rate"], "churn_roc_auc": churn["roc_auc"],
                     "stage_customers": stage["customers"], "stage_macro_f1": stage["macro_f1"],
                     "stage_f1_argmax": stage["macro_f1_argmax"],
                     "stage_f1_stay": stage["macro_f1_stay"]})  # fmt: skip
    values = policy_values(sim.truth_exposures, sim.offers)
    summary = {
        "churn_roc_auc_mean": float(np.mean([r["churn_roc_auc"] for r in rows])),
        "stage_macro_f1_mean": float(np.mean([r["stage_macro_f1"] for r in rows])),
        "stage_f1_stay_mean": float(np.mean([r["stage_f1_stay"] for r in rows])),
        "policy_value_per_exposure": values,
        "oracle_minus_logging": values["oracle"] - values["logging"],
        "exposures": len(sim.exposures),
    }
    print(
        f"\nOracle figures, {args.customers:,} customers, seed {args.seed}, "
        f"horizon {args.horizon} days ({machine()})\n"
    )
    print(markdown(rows))
    print("\n" + markdown([{"policy": k, "true incremental value per exposure": v}
                           for k, v in values.items()]))  # fmt: skip
    print(
        f"\nmean churn ROC-AUC {summary['churn_roc_auc_mean']:.3f}; mean stage macro-F1 "
        f"{summary['stage_macro_f1_mean']:.3f} (stay baseline {summary['stage_f1_stay_mean']:.3f});"
        f" oracle - logging = {summary['oracle_minus_logging']:.3f} per exposure"
    )
    print(f"saved {save('oracle', {'args': vars(args), 'rows': rows, 'summary': summary})}")


if __name__ == "__main__":
    main()
