"""Champion swap without a stall (issue 15, point 6): request latency while the service
swaps to a new champion under load, against the steady latency before it.

On the world of ``bench_service.py`` (built in ``--workdir`` when it holds none) it registers a
second version of every model once (trained with more trees: other models, so their trees
compile from scratch), then per run: moves ``champion`` to the first versions, starts one
``bentoml serve serving.service:LifecycleService`` worker on the registry (reload every
``--reload-seconds``, a fresh compile cache, so the swap compiles the new trees as a real one
does), waits until its trees are compiled and the store's scores precomputed, and drives it
open loop (``bench_shedding.open_loop``: a request due at a fixed time whatever happened to
the earlier ones, one known customer per ``POST /decide``) at ``--rate`` requests/s. After
``--steady`` seconds it moves ``champion`` to the second versions (the swap) and polls
``GET /models`` until the new versions serve with compiled trees and current precomputed
scores (the swap completed); the load goes on ``--after`` seconds longer.

Reports p50/p99/max and failures of the steady period against the swap window (from the
alias move until ``--after`` s after the swap completed), p99 per 10 s slice (drift), and
the ratio p99 swap / p99 steady (goal <= 2, no failed request). Writes
``benchmarks/out/swap_<label>.json``::

    flock /tmp/bench.lock .venv/bin/python benchmarks/bench_swap.py --workdir /tmp/bench_swap
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import bench_shedding
import httpx
import numpy as np
import orjson
import pandas as pd
from _common import markdown, run_summary, save
from bench_service import (
    Connection,
    build_world,
    free_port,
    ready_after,
    scores_precomputed,
    service_env,
    start,
    stop_servers,
    subset,
    trees_compiled,
    wait_ready,
)

SENT: list[tuple[float, float, str]] = []  # (sent at, latency ms, status) of every request
RETRIED = "stale connection, retried"  # an attempt, not a request: not counted


class Timed(Connection):
    """``bench_service.Connection`` recording when each request left and how it ended."""

    async def post(self, route: str, body: bytes) -> int:
        sent, status = time.perf_counter(), "error"
        try:
            status = str(await super().post(route, body))
            return int(status)
        except asyncio.CancelledError:  # the caller gave up (bench_shedding's timeout)
            status = "timeout"
            raise
        except (OSError, asyncio.IncompleteReadError, ValueError) as err:
            stale = isinstance(err, ConnectionError) or (
                isinstance(err, asyncio.IncompleteReadError) and not err.partial
            )  # a kept-alive connection the server closed: bench_shedding retries it
            status = RETRIED if stale else type(err).__name__
            raise
        finally:
            SENT.append((sent, (time.perf_counter() - sent) * 1e3, status))


def champion_versions(world: dict, args: argparse.Namespace) -> dict[str, dict[str, str]]:
    """``{"old": {registered name: version}, "new": {...}}``: the world's champions, and a
    second version of each trained with more trees (registered once, kept in world.json)."""
    path = Path(world["folder"]) / "world.json"
    saved = json.loads(path.read_text())
    if "swap_versions" in saved:
        return saved["swap_versions"]
    import mlflow
    from mlflow.tracking import MlflowClient

    from training.data import load_tables
    from training.datasets import DatasetConfig
    from training.pipeline import TrainConfig, fit_and_evaluate
    from training.tracking import log_run

    mlflow.set_tracking_uri(world["uri"])
    os.environ["MLFLOW_TRACKING_URI"] = world["uri"]
    tables = load_tables(Path(world["folder"]) / "data")
    config = TrainConfig(
        dataset=DatasetConfig(snapshots=4, snapshot_every_days=30),
        churn={"n_estimators": 240}, stage={"n_estimators": 120},
        offers={"n_estimators": 120, "min_arm_size": 50},
    )  # fmt: skip
    logged = log_run(fit_and_evaluate(subset(tables, args.train_customers), config),
                     str(Path(world["folder"]) / "data"))  # fmt: skip
    client = MlflowClient()
    new = {r.name: r.version for r in logged.registered.values()}
    old = {n: client.get_model_version_by_alias(n, "champion").version for n in new}
    saved["swap_versions"] = {"old": old, "new": new}
    path.write_text(json.dumps(saved, indent=2))
    return saved["swap_versions"]


def move_champion(world: dict, versions: dict[str, str]) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=world["uri"])
    for name, version in versions.items():
        client.set_registered_model_alias(name, "champion", version)


def swapped(url: str, versions: dict[str, str]) -> tuple[bool, bool]:
    """Whether the new versions serve, and whether they also run compiled trees from current
    precomputed scores (the swap completed)."""
    response = httpx.get(f"{url}/models", timeout=10)
    if response.status_code != 200:  # e.g. shed (max_in_flight) while the worker is busy
        return False, False
    state = response.json()
    serving = {m["registered_name"]: m["version"] for m in state["models"].values()}
    if serving != versions:
        return False, False
    return True, trees_compiled(state) and scores_precomputed(state)


async def swap(world: dict, url: str, versions: dict[str, str], args) -> dict:
    """Move ``champion`` after the steady period; the times (``perf_counter``) it took."""
    await asyncio.sleep(args.steady)
    times = {"moved": time.perf_counter()}
    await asyncio.to_thread(move_champion, world, versions)
    while time.perf_counter() - times["moved"] < args.swap_timeout:
        serving, complete = await asyncio.to_thread(swapped, url, versions)
        if serving:
            times.setdefault("serving", time.perf_counter())
        if complete:
            times["complete"] = time.perf_counter()
            break
        await asyncio.sleep(0.25)
    else:
        raise RuntimeError(f"the swap did not complete in {args.swap_timeout} s")
    await asyncio.sleep(args.after + args.timeout + 1)  # the window's requests answered
    return times


async def drive(world: dict, url: str, bodies: list[bytes], versions: dict, args) -> dict:
    """Open-loop load from now until the swap window closed; the swap's times."""
    seconds = args.steady + args.swap_timeout + args.after + args.timeout + 5
    load = asyncio.create_task(
        bench_shedding.open_loop(url, bodies, args.rate, seconds, args.timeout)
    )
    times = {"start": time.perf_counter(), **await swap(world, url, versions, args)}
    load.cancel()  # the requests sent after the window: not counted
    with contextlib.suppress(asyncio.CancelledError):
        await load
    return times


def window(frame: pd.DataFrame, start: float, end: float) -> dict:
    part = frame[(frame.sent >= start) & (frame.sent < end)]
    ok = part.ms[part.status == "200"]
    p50, p99 = np.percentile(ok, [50, 99]) if len(ok) else (np.nan, np.nan)
    failed = part.status[part.status != "200"]
    return {"seconds": end - start, "requests": len(part), "failed": len(failed),
            "shed_503": int((failed == "503").sum()), "timed_out": int((failed ==
            "timeout").sum()), "p50_ms": p50, "p99_ms": p99,
            "max_ms": float(ok.max()) if len(ok) else np.nan,
            "failures": failed.value_counts().to_dict()}  # fmt: skip


def report(times: dict, args: argparse.Namespace) -> dict:
    frame = pd.DataFrame(SENT, columns=["sent", "ms", "status"])
    frame = frame[frame.status != RETRIED]
    t0, end = times["start"], times["complete"] + args.after
    steady = window(frame, t0 + args.warmup, times["moved"])
    during = window(frame, times["moved"], end)
    slices = [{"from_s": round(s - t0), **window(frame, s, min(s + 10, end))}
              for s in np.arange(t0 + args.warmup, end, 10.0)]  # fmt: skip
    return {
        "steady": steady, "swap": during, "ratio_p99": during["p99_ms"] / steady["p99_ms"],
        "alias_moved_at_s": times["moved"] - t0,
        "new_versions_serving_after_s": times["serving"] - times["moved"],
        "swap_completed_after_s": times["complete"] - times["moved"], "slices": slices,
    }  # fmt: skip


def run(world: dict, versions: dict, args: argparse.Namespace) -> dict:
    ids = pd.read_parquet(world["vectors"], columns=["customer_id"])["customer_id"]
    picked = np.random.default_rng(args.seed).choice(ids.astype(str).to_numpy(), 5_000)
    bodies = [orjson.dumps({"customer_ids": [c]}) for c in picked]
    move_champion(world, versions["old"])
    folder = Path(tempfile.mkdtemp(prefix=f"run_{args.label}_", dir=world["folder"]))
    port, log = free_port(), folder / "server.log"
    env = {**service_env(world, folder), "LIFECYCLE_RELOAD_SECONDS": str(args.reload_seconds),
           "LIFECYCLE_COMPILE_CACHE": str(folder / "trees")}  # fmt: skip
    command = [sys.executable, "-m", "bentoml", "serve", "serving.service:LifecycleService",
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    server = {"process": start(command, env, log), "log": log}
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(server["process"], f"{url}/readyz", log)
        models = lambda: httpx.get(f"{url}/models").json()  # noqa: E731
        ready_after(models, trees_compiled)
        ready_after(models, scores_precomputed)
        bench_shedding.Connection = Timed  # the shared open loop, timing each request
        times = asyncio.run(drive(world, url, bodies, versions["new"], args))
    finally:
        stop_servers({"ours": server})
    return report(times, args)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=None, help="reuse/keep the world here")
    parser.add_argument("--customers", type=int, default=50_000, help="simulated = in the store")
    parser.add_argument("--train-customers", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate", type=float, default=50.0, help="requests/s, open loop")
    parser.add_argument("--warmup", type=float, default=10.0, help="s of load not counted")
    parser.add_argument("--steady", type=float, default=70.0, help="s of load before the swap")
    parser.add_argument("--after", type=float, default=30.0, help="s counted after the swap")
    parser.add_argument("--swap-timeout", type=float, default=300.0)
    parser.add_argument("--reload-seconds", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=5.0, help="callers give up after")
    parser.add_argument("--label", default="after", help="names benchmarks/out/swap_<label>")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    start_time, load0 = time.perf_counter(), os.getloadavg()
    folder = args.workdir or Path(tempfile.mkdtemp(prefix="bench_swap_"))
    folder.mkdir(parents=True, exist_ok=True)
    world = build_world(folder, args)
    versions = champion_versions(world, args)
    result = run(world, versions, args)
    rows = [{"period": name, **{k: v for k, v in result[name].items()}}
            for name in ("steady", "swap")]  # fmt: skip
    print(f"{args.label}: swap completed {result['swap_completed_after_s']:.1f} s after the "
          f"alias moved (new versions serving after {result['new_versions_serving_after_s']:.1f}"
          f" s); p99 swap / steady = {result['ratio_p99']:.2f} (goal <= 2)\n\n{markdown(rows)}"
          f"\n\np99 per 10 s slice:\n\n{markdown(result['slices'])}\n")  # fmt: skip
    line, total = run_summary(f"bench_swap {args.label}", start_time, load0)
    print(line)
    payload = {**result, "versions": versions, "args": vars(args), "summary": line,
               "seconds": total, "code": str(Path(__file__).resolve().parents[1])}  # fmt: skip
    save(f"swap_{args.label}", payload)
    return payload


if __name__ == "__main__":
    main()
