"""Training on Dask vs one process: wall time, peak memory per process, holdout quality.

Usage:
    python benchmarks/bench_dask_training.py                       # 20k customers, here
    python benchmarks/bench_dask_training.py --customers 1000000   # the issue's target size
    python benchmarks/bench_dask_training.py --data DIR            # a `lifecycle simulate` folder
    python benchmarks/bench_dask_training.py --modes files --cap-gb 21 --memory-limit 8GiB

A training run of N customers x 6 snapshots (``dataset: {snapshots: 6}``; churn and stage
models) on the same data, each mode in its own subprocess so that peak RSS is its own:

- ``single``: ``training.data.load_tables`` then ``training.pipeline.fit_and_evaluate``;
- ``dask``: the tables loaded in the driver, split and scattered
  (``training.scale.pipeline.fit_and_evaluate_on_cluster``);
- ``files``: the workers read their own partitions of the Parquet files
  (``training.scale.pipeline.fit_and_evaluate_from_folder``);

the cluster modes on a ``LocalCluster`` of ``--workers`` processes with one thread each, with
the peak RSS of the driver and of every worker. A watchdog samples every process of a child's
tree each half second and kills the tree when their RSS sum passes ``--cap-gb``, the
machine's available memory drops under ``--floor-gb`` or the run passes ``--max-minutes``:
the result then says how far the run got (its last step), after how long, at what memory.
Results go to benchmarks/out/bench_dask_training_<customers>_<modes>.json (issue 16).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

from _common import OUT, machine, peak_rss_mb, save

CONFIG = {"dataset": {"snapshots": 6}}
MODELS = ("churn", "stage")


def run(mode: str, data: Path, workers: int, memory: str) -> dict:
    """One training run in this process; the figures as a dict."""
    import warnings

    from features.project import ProjectConfig

    warnings.filterwarnings("ignore")
    announce_steps()
    config = ProjectConfig.model_validate(CONFIG)
    start = time.perf_counter()
    if mode == "single":
        result, workers_mb = run_single(data, config), []
    else:
        from features.dask_builder import local_cluster

        with local_cluster(workers, memory_limit=memory) as client:
            result = run_on_cluster(mode, data, config, client)
            workers_mb = sorted(client.run(peak_rss_mb).values())
    return {
        "mode": mode, "seconds": round(time.perf_counter() - start, 1),
        "steps": {k: round(v, 1) for k, v in result.seconds.items()},
        "rows": len(result.dataset), "events": event_rows(data),
        "roc_auc": result.reports["churn"].primary, "macro_f1": result.reports["stage"].primary,
        "driver_peak_mb": round(peak_rss_mb()), "worker_peak_mb": [round(w) for w in workers_mb],
    }  # fmt: skip


def run_single(data: Path, config):
    from training.data import load_tables
    from training.pipeline import fit_and_evaluate

    step("tables")
    began = time.perf_counter()
    tables = load_tables(data, "strict", config)
    loaded = time.perf_counter() - began
    result = fit_and_evaluate(tables, config, models=MODELS)
    result.seconds = {"tables": loaded, **result.seconds}
    return result


def run_on_cluster(mode: str, data: Path, config, client):
    from training.scale.pipeline import fit_and_evaluate_from_folder, fit_and_evaluate_on_cluster

    if mode == "files":
        return fit_and_evaluate_from_folder(data, config, client, MODELS)
    from training.data import load_tables

    step("tables")
    began = time.perf_counter()
    tables = load_tables(data, "strict", config)
    loaded = time.perf_counter() - began
    result = fit_and_evaluate_on_cluster(tables, config, client, MODELS)
    result.seconds = {"tables": loaded, **result.seconds}
    return result


def event_rows(data: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(data / "events.parquet").metadata.num_rows


def step(name: str) -> None:
    """Tell the watchdog (on stderr) which step starts."""
    print(f"STEP {name} {time.time():.1f}", file=sys.stderr, flush=True)


def announce_steps() -> None:
    """Every ``_timed`` step of the training pipelines announces itself (``step``)."""
    import contextlib

    import training.pipeline
    import training.scale.pipeline

    plain = training.pipeline._timed

    @contextlib.contextmanager
    def timed(seconds, name):
        step(name)
        with plain(seconds, name):
            yield

    training.pipeline._timed = timed
    training.scale.pipeline._timed = timed


def watch(child: subprocess.Popen, cap_gb: float, floor_gb: float, minutes: float) -> dict:
    """Sample the RSS of ``child`` and its descendants until it exits; kill the tree when
    the sum passes ``cap_gb``, the machine's available memory drops under ``floor_gb`` or
    the run passes ``minutes``.
    Returns the sampled peaks (MB: the sum, each process) and why it was killed, if it was."""
    import psutil

    began, top, each, killed = time.time(), 0.0, {}, None
    root = psutil.Process(child.pid)
    while child.poll() is None:
        procs = [root, *root.children(recursive=True)]
        rss = {}
        for p in procs:
            try:
                rss[p.pid] = p.memory_info().rss / 2**20
            except psutil.Error:
                continue
        total = sum(rss.values())
        top = max(top, total)
        each = {pid: max(each.get(pid, 0.0), mb) for pid, mb in {**each, **rss}.items()}
        available = psutil.virtual_memory().available / 2**30
        late = time.time() - began > minutes * 60
        if total > cap_gb * 1024 or available < floor_gb or late:
            why = f"RSS {total / 1024:.1f} GB" if total > cap_gb * 1024 else (
                f"machine available memory {available:.1f} GB" if not late else
                f"still running after {minutes:.0f} min")  # fmt: skip
            killed = {"reason": why, "after_s": round(time.time() - began, 1)}
            for p in reversed(procs):
                with contextlib.suppress(psutil.Error):
                    p.kill()
            child.wait()
            break
        time.sleep(0.5)
    return {"sampled_peak_total_mb": round(top), "killed": killed,
            "sampled_peak_per_process_mb": sorted((round(v) for v in each.values()),
                                                  reverse=True)[:6]}  # fmt: skip


def last_step(stderr: Path) -> str | None:
    lines = [x for x in stderr.read_text(errors="replace").splitlines() if x.startswith("STEP ")]
    return lines[-1].split()[1] if lines else None


def run_child(mode: str, data: Path, args) -> dict:
    """One mode in a watched subprocess: its figures, or how far it got before the cap."""
    child_cmd = [sys.executable, __file__, "--mode", mode, "--data", str(data),
                 "--workers", str(args.workers), "--memory-limit", args.memory_limit]  # fmt: skip
    stderr = OUT / f"bench_dask_training_{mode}.stderr"
    began = time.time()
    with stderr.open("w") as err:
        child = subprocess.Popen(child_cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        watched = watch(child, args.cap_gb, args.floor_gb, args.max_minutes)
        out = child.stdout.read()
    if watched["killed"] or child.returncode != 0:
        return {"mode": mode, "finished": False, "returncode": child.returncode,
                "seconds": round(time.time() - began, 1), "last_step": last_step(stderr),
                **watched, "stderr_tail": stderr.read_text(errors="replace")[-1500:]}  # fmt: skip
    return {**json.loads(out.strip().splitlines()[-1]), "finished": True, **watched}


def simulate_into(folder: Path, customers: int, days: int) -> Path:
    from features.simulator import SimConfig, simulate, write_simulation

    if not (folder / "events.parquet").exists():
        cfg = SimConfig(customers=customers, days=days, seed=0)
        write_simulation(simulate(cfg), folder, cfg)
    return folder


def main() -> None:
    import os

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="3GiB", help="per worker")
    parser.add_argument("--modes", default="single,files", help="of single, dask, files")
    parser.add_argument("--cap-gb", type=float, default=18.0, help="kill a run's tree above")
    parser.add_argument("--floor-gb", type=float, default=2.0, help="kill when less available")
    parser.add_argument("--max-minutes", type=float, default=75.0, help="kill a run after")
    parser.add_argument("--mode", choices=("single", "dask", "files"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    data = args.data or OUT / f"dask_training_{args.customers}"
    if args.mode:  # a child run: one JSON line
        print(json.dumps(run(args.mode, data, args.workers, args.memory_limit)))
        return
    simulate_into(data, args.customers, args.days)
    load0, results = os.getloadavg(), {}
    for mode in args.modes.split(","):
        results[mode] = run_child(mode, data, args)
        print(json.dumps(results[mode]), flush=True)
    payload = {"customers": args.customers, "days": args.days, "workers": args.workers,
               "memory_limit": args.memory_limit, "cap_gb": args.cap_gb,
               "machine": machine(), "load_average": {"start": load0, "end": os.getloadavg()},
               "results": results}  # fmt: skip
    name = f"bench_dask_training_{args.customers}_{'_'.join(args.modes.split(','))}"
    print(f"saved {save(name, payload)}")


if __name__ == "__main__":
    main()
