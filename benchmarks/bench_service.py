"""Benchmark the decision service against ``mlflow models serve`` of the churn model alone.

Builds a world in ``--workdir`` (reused when it already holds one): simulates ``--customers``
customers for a year, trains the three models on the first ``--train-customers`` of them with
modest sizes (the store's size, not the training set's, is what serving costs depend on), logs
and registers them in a SQLite MLflow store, promotes them to champion and materialises every
customer's vector into the online store. Then:

1. in process: one customer through the service's own path (store look-up -> ledger contacts ->
   decide -> ledger write -> JSON response), and the engine alone on pre-fetched rows;
2. starts ``bentoml serve serving.service:LifecycleService`` (models from the registry) and
   ``mlflow models serve -m models:/lifecycle-churn@champion --env-manager local`` side by
   side, each with ``--workers`` worker processes, and drives each in turn with the same
   random ids: open-loop load at ``--rate`` requests/s (one customer per request; latency
   counted from the scheduled send time, so it includes queueing), then closed-loop maximum
   throughput with one id per request and with ``--batch`` ids per request (``/batch`` for
   ours, ``--batch`` rows per ``/invocations`` for MLflow). MLflow is sent the churn model's
   input columns for each id (taken from the store's vectors), ours only the ids: it looks
   them up, scores all three models and decides;
3. reports the resident memory of both server process trees and the load average before and
   after (the machine may be shared: compare the ratios of one run).

Targets (issue 5): in-process p50 <= 2 ms; HTTP /decide p50 <= 10 ms and p99 <= 50 ms at
100 requests/s; /batch of 1,000 ids >= 20,000 customers/s; ours >= 2x MLflow's throughput.
Prints a markdown table and writes ``benchmarks/out/service.json``::

    .venv/bin/python benchmarks/bench_service.py --workdir /tmp/bench_service
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import psutil
from _common import machine, markdown, quiet_gc, save, timed_ms

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


# ---- the world ----------------------------------------------------------------------


def build_world(folder: Path, args: argparse.Namespace) -> dict:
    """Simulate, train on a subset, register + promote, materialise the store; return paths."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from features.simulator import SimConfig, simulate, write_simulation
    from features.store import OnlineStore
    from training.data import load_tables
    from training.datasets import DatasetConfig
    from training.pipeline import TrainConfig, fit_and_evaluate
    from training.registry import setup
    from training.resolve import store_vectors
    from training.tracking import REGISTERED_NAMES, log_run

    world = world_paths(folder)
    if (folder / "world.json").exists():
        return json.loads((folder / "world.json").read_text())
    seconds = {}
    start = time.perf_counter()
    cfg = SimConfig(customers=args.customers, days=365, seed=args.seed)
    write_simulation(simulate(cfg), folder / "data", cfg)
    tables = load_tables(folder / "data")
    seconds["simulate"] = time.perf_counter() - start

    start = time.perf_counter()
    os.environ["MLFLOW_TRACKING_URI"] = world["uri"]
    setup(artifact_root=folder / "mlartifacts")
    config = TrainConfig(
        dataset=DatasetConfig(snapshots=4, snapshot_every_days=30),
        churn={"n_estimators": 200}, stage={"n_estimators": 100},
        offers={"n_estimators": 100, "min_arm_size": 50},
    )  # fmt: skip
    result = fit_and_evaluate(subset(tables, args.train_customers), config)
    log_run(result, str(folder / "data"))
    client = MlflowClient()
    for name in REGISTERED_NAMES.values():
        if name in {REGISTERED_NAMES[n] for n in result.reports}:  # the models trained
            version = client.get_model_version_by_alias(name, "challenger").version
            client.set_registered_model_alias(name, "champion", str(version))
    mlflow.set_tracking_uri(None)
    seconds["train_register"] = time.perf_counter() - start

    start = time.perf_counter()
    vectors, label = store_vectors(tables, result.config)  # as `features materialize` does
    OnlineStore(world["store"]).materialize(vectors, tables.end, label)
    vectors.to_parquet(world["vectors"])
    seconds["materialise"] = time.perf_counter() - start
    world["setup_seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    (folder / "world.json").write_text(json.dumps(world, indent=2))
    return world


def world_paths(folder: Path) -> dict:
    return {
        "folder": str(folder),
        "uri": f"sqlite:///{folder / 'mlflow.db'}",
        "store": str(folder / "store" / "online.sqlite"),
        "offers": str(folder / "data" / "offers.parquet"),
        "vectors": str(folder / "vectors.parquet"),
    }


def subset(tables, n: int):
    """The tables restricted to ``n`` customers (training on all of them is not the point)."""
    from training.datasets import Tables

    keep = pd.Index(tables.events["customer_id"].astype("str").unique()[:n])

    def part(frame):
        if frame is None or "customer_id" not in frame:
            return frame
        return frame[frame["customer_id"].astype("str").isin(keep)].reset_index(drop=True)

    return Tables(part(tables.events), part(tables.customers), tables.offers,
                  part(tables.exposures))  # fmt: skip


# ---- in process ---------------------------------------------------------------------


def service_env(world: dict, folder: Path) -> dict[str, str]:
    return {
        "MLFLOW_TRACKING_URI": world["uri"],
        "LIFECYCLE_MODELS": "registry",
        "LIFECYCLE_STORE": world["store"],
        "LIFECYCLE_LEDGER": str(folder / "ledger.sqlite"),
        "LIFECYCLE_OFFERS": world["offers"],
        "BENTOML_HOME": str(folder / "bentoml"),
        "LIFECYCLE_COMPILE_CACHE": str(Path(world["folder"]) / "trees"),
    }


def ready_after(
    models: Callable[[], dict], ready: Callable[[dict], bool], times: int = 1,
    timeout: float = 600,
) -> float:  # fmt: skip
    """Seconds until ``ready(models())`` (``models``: what ``GET /models`` answers) holds
    ``times`` times in a row (with several workers any of them may answer)."""
    start, streak = time.perf_counter(), 0
    while time.perf_counter() - start < timeout:
        streak = streak + 1 if ready(models()) else 0
        if streak >= times:
            return time.perf_counter() - start
        time.sleep(0.1)
    raise RuntimeError(f"{ready.__name__}: not in {timeout} s")


def trees_compiled(state: dict) -> bool:
    """The trees of all three models are compiled (serving/compiled.py: in the background
    after loading; the first start compiles, later ones load the world's cache)."""
    if state["compile_error"]:
        raise RuntimeError(state["compile_error"])
    done = len(state["compiled"]) == 3
    if done and not all(state["compiled"].values()):
        raise RuntimeError(f"some trees could not be compiled: {state['compiled']}")
    return done


def scores_precomputed(state: dict) -> bool:
    """The store's scores are precomputed for the current store version and models (in the
    background, after compiling)."""
    if state["precompute_error"]:
        raise RuntimeError(state["precompute_error"])
    return bool(state["precomputed_scores"] and state["precomputed_scores"]["current"])


def summary(ms: np.ndarray) -> dict[str, float]:
    (p50, cpu50), (p99, cpu99) = np.percentile(ms, [50, 99], axis=0)
    return {"p50_ms": p50, "p99_ms": p99, "cpu_p50_ms": cpu50, "cpu_p99_ms": cpu99}


def in_process(world: dict, folder: Path, ids: np.ndarray, args: argparse.Namespace) -> dict:
    """One customer through the service's ``_respond`` path, and the engine alone."""
    import numpy.random as npr

    from serving.engine import Contacts
    from serving.service import LifecycleService
    from serving.state import models_summary

    os.environ.update({**service_env(world, folder / "inproc"), "LIFECYCLE_RELOAD_SECONDS": "0"})
    service = LifecycleService.inner()
    compile_s = ready_after(lambda: models_summary(service.state), trees_compiled)
    precomputed_s = ready_after(lambda: models_summary(service.state), scores_precomputed)
    engine, state = service._engine(), service.state
    rng = np.random.default_rng(args.seed)
    singles = [[i] for i in rng.choice(ids, args.in_process).tolist()]
    batches = [rng.choice(ids, args.batch).tolist() for _ in range(20)]

    def live(some: list[str], offers: int = 3) -> object:  # the models score each request
        return service._respond(engine, state.lookup(some), None, offers, False)

    def precomputed(some: list[str], offers: int = 3) -> object:  # the store's scores
        rows, scores = service._lookup(some, engine)
        return service._respond(engine, rows, None, offers, False, scores)

    rows = [state.lookup(one) for one in singles]
    no_contacts = Contacts(np.zeros(1), np.full((1, len(engine.catalog.ids)), np.nan))
    generator = npr.default_rng(0)
    timed_ms(live, singles[:100])  # warm up
    report = {
        "trees_compiled_after_s": compile_s,
        "store_scores_precomputed_after_s": precomputed_s,
        "decide_1 (lookup+contacts+decide+ledger+response)": summary(timed_ms(live, singles)),
        "decide_1, precomputed scores": summary(timed_ms(precomputed, singles)),
        "engine_1 (decide only)": summary(
            timed_ms(lambda r: engine.decide(r, no_contacts, generator.random(1)), rows)
        ),
        "lookup_1": summary(timed_ms(state.lookup, singles)),
    }
    for name, respond in (("", live), (", precomputed scores", precomputed)):
        ms = timed_ms(lambda b, respond=respond: respond(b, 1), batches)
        report[f"batch_{args.batch}{name}"] = summary(ms)
        per_s = args.batch / (np.median(ms[:, 0]) / 1e3)
        report[f"batch_{args.batch}{name} customers_per_s"] = per_s
    return report


# ---- servers ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env, "PATH": path},
                            stdout=log.open("w"), stderr=subprocess.STDOUT)  # fmt: skip


def wait_ready(process: subprocess.Popen, url: str, log: Path, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"not ready in {timeout} s:\n{log.read_text()[-3000:]}")


def start_servers(world: dict, folder: Path, workers: int = 1, precompute: bool = True) -> dict:
    """Both servers with ``workers`` worker processes each, ready (ours with its trees
    compiled and, if ``precompute``, the store's scores precomputed); name -> {process, url,
    log, ...}."""
    ours, theirs = free_port(), free_port()
    options = f"services.lifecycle.workers={workers}"
    precompute_env = {"LIFECYCLE_PRECOMPUTE_SCORES": str(precompute).lower()}
    servers = {
        "ours": (
            [sys.executable, "-m", "bentoml", "serve", "serving.service:LifecycleService",
             "--host", "127.0.0.1", "--port", str(ours)],
            {**service_env(world, folder / "http"), "BENTOML_CONFIG_OPTIONS": options,
             **precompute_env},
            f"http://127.0.0.1:{ours}", "/readyz",
        ),
        "mlflow": (
            [str(BIN / "mlflow"), "models", "serve", "-m", "models:/lifecycle-churn@champion",
             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(theirs), "-w", str(workers)],
            {"MLFLOW_TRACKING_URI": world["uri"]}, f"http://127.0.0.1:{theirs}", "/ping",
        ),
    }  # fmt: skip
    out = {}
    for name, (cmd, env, url, _) in servers.items():
        log = folder / f"{name}.log"
        out[name] = {"process": start(cmd, env, log), "url": url, "log": log}
    for name, (_, _, url, probe) in servers.items():
        wait_ready(out[name]["process"], url + probe, out[name]["log"])
    url = out["ours"]["url"]  # each worker compiles (or loads the cache) and says so
    models = lambda: httpx.get(f"{url}/models").json()  # noqa: E731
    out["ours"]["compiled_after_s"] = ready_after(models, trees_compiled, 10 * workers)
    if precompute:
        out["ours"]["precomputed_after_s"] = ready_after(models, scores_precomputed)
        time.sleep(5)  # the other workers' too
    return out


def stop_servers(servers: dict) -> None:
    for server in servers.values():
        server["process"].terminate()
    for server in servers.values():
        try:
            server["process"].wait(30)
        except subprocess.TimeoutExpired:
            server["process"].kill()


def memory_mb(pid: int) -> dict[str, float]:
    """RSS of a process tree: total and the largest process (the worker), in MB."""
    root = psutil.Process(pid)
    rss = [p.memory_info().rss / 2**20 for p in [root, *root.children(recursive=True)]]
    return {"processes": len(rss), "total_rss_mb": sum(rss), "largest_rss_mb": max(rss)}


# ---- request bodies -----------------------------------------------------------------


class Bodies:
    """Pre-encoded request bodies for the same ids, ours and MLflow's."""

    def __init__(self, vectors: pd.DataFrame, columns: list[str], categorical: set[str]) -> None:
        self.columns = columns
        frame = vectors.set_index(vectors["customer_id"].astype("str"))[columns]
        data = {}
        for c in columns:
            if c in categorical:
                data[c] = [None if pd.isna(v) else str(v) for v in frame[c].astype("object")]
            else:
                values = frame[c].astype("float64").to_numpy()
                data[c] = [None if np.isnan(v) else float(v) for v in values]
        self.rows = dict(zip(frame.index, zip(*data.values(), strict=True), strict=True))

    def ours(self, ids: list[str], route: str) -> tuple[str, bytes]:
        return route, json.dumps({"customer_ids": ids}).encode()

    def mlflow(self, ids: list[str]) -> tuple[str, bytes]:
        split = {"columns": self.columns, "data": [self.rows[i] for i in ids]}
        return "/invocations", json.dumps({"dataframe_split": split}).encode()


def churn_inputs(world: dict) -> tuple[list[str], set[str]]:
    """The churn champion's input columns and which of them are categorical."""
    import mlflow

    from training.registry import load_alias

    mlflow.set_tracking_uri(world["uri"])
    estimator, _ = load_alias("lifecycle-churn", "champion")
    mlflow.set_tracking_uri(None)
    return [str(c) for c in estimator.feature_names_in_], set(estimator.categories_)


# ---- load ---------------------------------------------------------------------------


class Connection:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams: pre-encoded POSTs, status and
    body back. httpx costs ~3 ms of CPU per request, which on 2 shared cores would be taken
    from the servers being measured; this costs a few tens of microseconds."""

    def __init__(self, url: str) -> None:
        self.host, self.port = url.removeprefix("http://").split(":")
        self.reader = self.writer = None

    async def post(self, route: str, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, int(self.port))
        head = (f"POST {route} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json"
                f"\r\nContent-Length: {len(body)}\r\n\r\n").encode()  # fmt: skip
        self.writer.write(head + body)
        lines = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
        if "content-length" in headers:
            await self.reader.readexactly(int(headers["content-length"]))
        else:  # chunked
            while size := int((await self.reader.readuntil(b"\r\n")).strip(), 16):
                await self.reader.readexactly(size + 2)
            await self.reader.readuntil(b"\r\n")
        return int(lines[0].split()[1])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class Pool:
    """Connections handed out one request at a time (opened on demand, kept alive)."""

    def __init__(self, url: str, size: int) -> None:
        self.free: asyncio.Queue[Connection] = asyncio.Queue()
        self.all = [Connection(url) for _ in range(size)]
        for c in self.all:
            self.free.put_nowait(c)

    async def post(self, route: str, body: bytes) -> bool:
        conn = await self.free.get()
        try:
            return await conn.post(route, body) == 200
        except (OSError, asyncio.IncompleteReadError, ValueError):
            conn.close()
            self.all.append(fresh := Connection(f"http://{conn.host}:{conn.port}"))
            conn = fresh
            return False
        finally:
            self.free.put_nowait(conn)

    def close(self) -> None:
        for c in self.all:
            c.close()


async def open_loop(url: str, bodies: list[tuple[str, bytes]], rate: float) -> dict:
    """Send ``bodies`` at ``rate``/s on a fixed schedule; latency from the scheduled time."""
    pool = Pool(url, 64)
    latencies, errors = np.full(len(bodies), np.nan), 0

    async def send(i: int, due: float) -> None:
        nonlocal errors
        if await pool.post(*bodies[i]):
            latencies[i] = time.perf_counter() - due
        else:
            errors += 1

    with quiet_gc():
        start, tasks = time.perf_counter() + 0.05, []
        for i in range(len(bodies)):
            due = start + i / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.create_task(send(i, due)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    pool.close()
    ms = latencies[~np.isnan(latencies)] * 1e3
    p50, p95, p99 = np.percentile(ms, [50, 95, 99]) if len(ms) else (np.nan,) * 3
    return {"requests": len(bodies), "achieved_rps": len(ms) / elapsed, "errors": errors,
            "p50_ms": p50, "p95_ms": p95, "p99_ms": p99, "max_ms": float(ms.max())}  # fmt: skip


async def closed_loop(
    url: str, bodies: list[tuple[str, bytes]], per_request: int, concurrency: int, seconds: float
) -> dict:
    """``concurrency`` clients sending back to back for ``seconds``; customers per second."""
    pool = Pool(url, concurrency)
    done, errors, latencies = 0, 0, []
    stop = time.perf_counter() + seconds

    async def worker(k: int) -> None:
        nonlocal done, errors
        i = k
        while time.perf_counter() < stop:
            sent = time.perf_counter()
            ok = await pool.post(*bodies[i % len(bodies)])
            i += concurrency
            done += ok
            errors += not ok
            latencies.append((time.perf_counter() - sent) * 1e3)

    with quiet_gc():
        start = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        elapsed = time.perf_counter() - start
    pool.close()
    p50, p99 = np.percentile(latencies, [50, 99])
    return {"requests": done, "errors": errors, "concurrency": concurrency,
            "requests_per_s": done / elapsed, "customers_per_s": done * per_request / elapsed,
            "p50_ms": p50, "p99_ms": p99}  # fmt: skip


def http_phases(servers: dict, bodies: Bodies, ids: np.ndarray, args) -> dict:
    """Open loop then closed loop, each server in turn on the same ids; plus memory."""
    rng = np.random.default_rng(args.seed + 1)
    n_open = int(args.rate * args.seconds)
    singles = [[i] for i in rng.choice(ids, n_open).tolist()]
    batches = [rng.choice(ids, args.batch).tolist() for _ in range(10)]
    make = {
        "ours": (lambda b: bodies.ours(b, "/decide"), lambda b: bodies.ours(b, "/batch")),
        "mlflow": (bodies.mlflow, bodies.mlflow),
    }
    out: dict = {"open_loop": {}, "closed_1": {}, f"closed_{args.batch}": {}, "memory": {}}
    for name, (one, many) in make.items():  # warm up both
        url = servers[name]["url"]
        asyncio.run(closed_loop(url, [one(s) for s in singles[:200]], 1, 2, 3))
        asyncio.run(closed_loop(url, [many(b) for b in batches[:2]], args.batch, 1, 2))
    for name, (one, _) in make.items():
        requests = [one(s) for s in singles]
        out["open_loop"][name] = asyncio.run(open_loop(servers[name]["url"], requests, args.rate))
    for name, (one, many) in make.items():
        url = servers[name]["url"]
        out["closed_1"][name] = asyncio.run(
            closed_loop(url, [one(s) for s in singles], 1, args.concurrency, args.closed_seconds)
        )
        out[f"closed_{args.batch}"][name] = asyncio.run(
            closed_loop(url, [many(b) for b in batches], args.batch, 2, args.closed_seconds)
        )
        out["memory"][name] = memory_mb(servers[name]["process"].pid)
    return out


# ---- report -------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def targets(report: dict, batch: int) -> list[dict]:
    inproc = report["in_process"]["decide_1 (lookup+contacts+decide+ledger+response)"]["p50_ms"]
    warm = report["in_process"]["decide_1, precomputed scores"]["p50_ms"]
    http = report["http"]
    ol, cb = http["open_loop"]["ours"], http[f"closed_{batch}"]
    ratios = report["ratios"]
    rows = [
        ("in-process decision, 1 customer, p50", f"{inproc:.2f} ms", "<= 2 ms", inproc <= 2),
        ("the same, from precomputed scores", f"{warm:.2f} ms", "<= 2 ms", warm <= 2),
        ("HTTP /decide at 100 req/s, p50", f"{ol['p50_ms']:.1f} ms", "<= 10 ms",
         ol["p50_ms"] <= 10),
        ("HTTP /decide at 100 req/s, p99", f"{ol['p99_ms']:.1f} ms", "<= 50 ms",
         ol["p99_ms"] <= 50),
        (f"/batch {batch:,} ids", f"{cb['ours']['customers_per_s']:,.0f} customers/s",
         ">= 20,000 customers/s", cb["ours"]["customers_per_s"] >= 20_000),
        ("throughput ours / MLflow, 1 id per request", f"{ratios['closed_1_throughput']:.2f}x",
         ">= 2x", ratios["closed_1_throughput"] >= 2),
        (f"throughput ours / MLflow, {batch:,} per request",
         f"{ratios[f'closed_{batch}_throughput']:.2f}x", ">= 2x",
         ratios[f"closed_{batch}_throughput"] >= 2),
    ]  # fmt: skip
    return [{"target": t, "measured": m, "goal": g, "status": verdict(ok)} for t, m, g, ok in rows]


def ratios(http: dict, batch: int) -> dict:
    def ratio(phase: str, key: str) -> float:
        return http[phase]["ours"][key] / http[phase]["mlflow"][key]

    return {
        "closed_1_throughput": ratio("closed_1", "customers_per_s"),
        f"closed_{batch}_throughput": ratio(f"closed_{batch}", "customers_per_s"),
        "open_loop_p50_latency": ratio("open_loop", "p50_ms"),
        "open_loop_p99_latency": ratio("open_loop", "p99_ms"),
    }


def tables(report: dict, batch: int) -> str:
    inproc = [{"measure": k, **v} for k, v in report["in_process"].items() if isinstance(v, dict)]
    http = report["http"]
    rows = []
    for phase in ("open_loop", "closed_1", f"closed_{batch}"):
        for name in ("ours", "mlflow"):
            r = http[phase][name]
            rows.append({
                "phase": phase, "server": name,
                "req/s": r.get("achieved_rps", r.get("requests_per_s")),
                "customers/s": r.get("customers_per_s", r.get("achieved_rps")),
                "p50 ms": r["p50_ms"], "p95 ms": r.get("p95_ms", "-"), "p99 ms": r["p99_ms"],
                "errors": r["errors"],
            })  # fmt: skip
    memory = [{"server": k, **v} for k, v in http["memory"].items()]
    precomputed = report["config"]["precompute"] == "True"
    how = "from precomputed store scores" if precomputed else "the models score every request"
    ratio_rows = [{"ratio (ours / MLflow)": k, "value": v} for k, v in report["ratios"].items()]
    return "\n\n".join([
        f"Decision service, {report['store_customers']:,} customers in the store, "
        f"{report['config']['workers']} worker(s) per server, {report['machine']}, "
        f"HTTP: {how}; "
        f"load average {report['load_before']} before, {report['load']} after; trees "
        f"compiled {report['in_process']['trees_compiled_after_s']:.1f} s after the in-process "
        f"load, {report['http_trees_compiled_after_s']:.1f} s after the server was ready",
        markdown(inproc), markdown(rows), markdown(memory), markdown(ratio_rows),
        markdown(targets(report, batch)),
    ])  # fmt: skip


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100_000, help="simulated = in the store")
    parser.add_argument("--train-customers", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="reuse/keep the world here")
    parser.add_argument("--in-process", type=int, default=2_000, help="single-customer calls")
    parser.add_argument("--rate", type=float, default=100.0, help="open-loop requests/s")
    parser.add_argument("--seconds", type=float, default=30.0, help="open-loop duration")
    parser.add_argument("--closed-seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=8, help="closed loop, 1 id each")
    parser.add_argument("--batch", type=int, default=1_000, help="ids per batch request")
    parser.add_argument("--workers", type=int, default=1, help="worker processes per server")
    parser.add_argument("--precompute", action=argparse.BooleanOptionalAction, default=True,
                        help="HTTP server decides from the store's precomputed scores "
                        "(--no-precompute: its models score every request)")  # fmt: skip
    return parser.parse_args(argv)


def run(args: argparse.Namespace, folder: Path) -> dict:
    world = build_world(folder, args)
    vectors = pd.read_parquet(world["vectors"])
    ids = vectors["customer_id"].astype("str").to_numpy(dtype=object)
    run_dir = Path(tempfile.mkdtemp(prefix="run_", dir=folder))
    report = {"config": {k: str(v) for k, v in vars(args).items()}, "machine": machine(),
              "store_customers": len(ids), "setup_seconds": world.get("setup_seconds")}  # fmt: skip
    report["load_before"] = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    report["in_process"] = in_process(world, run_dir, ids, args)
    columns, categorical = churn_inputs(world)
    bodies = Bodies(vectors, columns, categorical)
    del vectors
    servers = start_servers(world, run_dir, args.workers, args.precompute)
    try:
        report["http_trees_compiled_after_s"] = servers["ours"]["compiled_after_s"]
        report["http"] = http_phases(servers, bodies, ids, args)
    finally:
        stop_servers(servers)
    report["ratios"] = ratios(report["http"], args.batch)
    report["load"] = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    report["targets"] = targets(report, args.batch)
    return report


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    folder = args.workdir or Path(tempfile.mkdtemp(prefix="bench_service_"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        report = run(args, folder)
    finally:
        if args.workdir is None:
            shutil.rmtree(folder, ignore_errors=True)
    print(tables(report, args.batch))
    print(f"\nsaved {save('service', report)}")
    return report


if __name__ == "__main__":
    main()
