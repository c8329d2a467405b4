"""Training on Dask vs one process: wall time, peak memory per process, holdout quality.

Usage:
    python benchmarks/bench_dask_training.py                       # 20k customers, here
    python benchmarks/bench_dask_training.py --customers 1000000   # the issue's target size
    python benchmarks/bench_dask_training.py --data DIR            # a `lifecycle simulate` folder

A training run of N customers x 6 snapshots (``dataset: {snapshots: 6}``; churn and stage
models) twice on the same data, each in its own subprocess so that peak RSS is its own: the
single-process path (``training.pipeline.fit_and_evaluate``) and the cluster path
(``training.scale.pipeline.fit_and_evaluate_on_cluster``) on a ``LocalCluster`` of
``--workers`` processes with one thread each; for the latter the peak RSS of the driver and of
every worker. Results go to benchmarks/out/bench_dask_training.json (issue 16).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from _common import OUT, machine, peak_rss_mb, save

CONFIG = {"dataset": {"snapshots": 6}}


def run(mode: str, data: Path, workers: int, memory: str) -> dict:
    """One training run in this process; the figures as a dict."""
    import warnings

    from features.project import ProjectConfig
    from training.data import load_tables

    warnings.filterwarnings("ignore")
    config = ProjectConfig.model_validate(CONFIG)
    tables = load_tables(data, "strict", config)
    start = time.perf_counter()
    if mode == "single":
        from training.pipeline import fit_and_evaluate

        result = fit_and_evaluate(tables, config, models=("churn", "stage"))
        workers_mb = []
    else:
        from features.dask_builder import local_cluster
        from training.scale.pipeline import fit_and_evaluate_on_cluster

        with local_cluster(workers, memory_limit=memory) as client:
            result = fit_and_evaluate_on_cluster(tables, config, client, ("churn", "stage"))
            workers_mb = sorted(client.run(peak_rss_mb).values())
    return {
        "mode": mode, "seconds": round(time.perf_counter() - start, 1),
        "steps": {k: round(v, 1) for k, v in result.seconds.items()},
        "rows": len(result.dataset), "events": len(tables.events),
        "roc_auc": result.reports["churn"].primary, "macro_f1": result.reports["stage"].primary,
        "driver_peak_mb": round(peak_rss_mb()), "worker_peak_mb": [round(w) for w in workers_mb],
    }  # fmt: skip


def simulate_into(folder: Path, customers: int, days: int) -> Path:
    from features.simulator import SimConfig, simulate, write_simulation

    if not (folder / "events.parquet").exists():
        cfg = SimConfig(customers=customers, days=days, seed=0)
        write_simulation(simulate(cfg), folder, cfg)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="3GiB", help="per worker")
    parser.add_argument("--mode", choices=("single", "dask"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    data = args.data or OUT / f"dask_training_{args.customers}"
    if args.mode:  # a child run: one JSON line
        print(json.dumps(run(args.mode, data, args.workers, args.memory_limit)))
        return
    simulate_into(data, args.customers, args.days)
    results = {}
    for mode in ("single", "dask"):
        child = [sys.executable, __file__, "--mode", mode, "--data", str(data),
                 "--workers", str(args.workers), "--memory-limit", args.memory_limit]  # fmt: skip
        done = subprocess.run(child, capture_output=True, text=True, check=True)
        results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
        print(results[mode], flush=True)
    payload = {"customers": args.customers, "days": args.days, "workers": args.workers,
               "machine": machine(), "results": results}  # fmt: skip
    print(f"saved {save('bench_dask_training', payload)}")


if __name__ == "__main__":
    main()
