"""Replicas on shared backends (issue 16, point 5): ``/decide`` throughput of one
``bentoml serve`` process against two, both on one online store in Redis and one feedback
ledger in PostgreSQL.

On the world of ``bench_service.py`` (built in ``--workdir`` when it holds none: 100,000
customers in the store) it starts a Redis and a PostgreSQL of its own through
``scripts/services.sh`` (own data directory and free ports; stopped and removed at the end),
copies the world's store version into Redis, and starts two ``bentoml serve
serving.service:LifecycleService`` processes (one worker each, as on two hosts) on two ports,
both with that Redis store and one PostgreSQL ledger (``reserve_contacts`` on, its default
there; ``--no-precompute``: their models score every request, as a store too large to
precompute would need). After a warm-up, for each ``--concurrency``, it alternates two
layouts: closed loop (clients back to back, one known customer per ``POST /decide``) against
replica A alone (B idles) and against both (client k sends to replica k mod 2), ``--seconds``
each, for ``--rounds`` rounds. Per phase: requests/s, p50/p99, errors, decision rows the
ledger gained against the 200s, CPU seconds of every process (replicas, Redis, PostgreSQL,
this load generator, the rest of the machine), PostgreSQL transactions and inserted rows and
Redis commands per decision. The load generator is ``bench_service``'s raw asyncio HTTP/1.1 client.

On a small machine every process shares the same cores: the two/one ratio then shows what
sharing state costs, not scale-out. Prints markdown tables and writes
``benchmarks/out/replicas.json`` (``replicas_live.json`` with ``--no-precompute``)::

    .venv/bin/python benchmarks/bench_replicas.py --workdir /tmp/bench_replicas
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import numpy as np
import orjson
import pandas as pd
import psutil
import psycopg
import redis
from _common import markdown, quiet_gc, run_summary, save
from bench_service import (
    ROOT,
    Pool,
    build_world,
    free_port,
    memory_mb,
    ready_after,
    scores_precomputed,
    service_env,
    start,
    stop_servers,
    trees_compiled,
    wait_ready,
)

from features.store import open_store

PREFIX = "bench-replicas"


# ---- backends -----------------------------------------------------------------------


@contextlib.contextmanager
def own_services(folder: Path) -> Iterator[dict]:
    """A Redis and a PostgreSQL of this run (``scripts/services.sh`` with its own data
    directory and free ports, no persistence); yields their URLs and server pids."""
    ports = {"LIFECYCLE_REDIS_PORT": str(free_port()), "LIFECYCLE_PG_PORT": str(free_port())}
    env = {**os.environ, "LIFECYCLE_SERVICES_DIR": str(folder), **ports}
    script = [str(ROOT / "scripts" / "services.sh")]
    done = subprocess.run([*script, "start"], env=env, capture_output=True, text=True)
    try:
        if done.returncode:
            raise RuntimeError(f"services.sh start failed:\n{done.stderr}")
        urls = dict(line.split("=", 1) for line in done.stdout.split())
        pid = lambda path: int((folder / path).read_text().split()[0])  # noqa: E731
        pids = {"redis": pid("redis.pid"), "postgres": pid("pg/postmaster.pid")}
        yield {**urls, "pids": pids}
    finally:
        subprocess.run([*script, "stop"], env=env, capture_output=True, check=False)
        Path(f"{folder}.lock").unlink(missing_ok=True)


def materialise(world: dict, redis_url: str) -> dict:
    """Copy the world's current store version into Redis; seconds and Redis memory."""
    source = open_store(world["store"]).current()
    vectors = pd.read_parquet(world["vectors"])
    client = redis.Redis.from_url(redis_url)
    before = client.info("memory")["used_memory"]
    started = time.perf_counter()
    open_store(f"{redis_url}?prefix={PREFIX}").materialize(
        vectors, source.as_of, source.feature_set, keep_versions=1
    )
    seconds = time.perf_counter() - started
    used = client.info("memory")["used_memory"] - before
    client.close()
    return {"customers": len(vectors), "seconds": seconds, "redis_used_mb": used / 1e6,
            "redis_mb_per_1m_customers": used / 1e6 * 1e6 / len(vectors)}  # fmt: skip


# ---- replicas -----------------------------------------------------------------------


def start_replica(world: dict, folder: Path, store: str, ledger: str, precompute: bool) -> dict:
    """One ``bentoml serve`` (one worker) on the shared store and ledger, ready with its
    trees compiled and, if ``precompute``, the store's scores precomputed."""
    port, log = free_port(), folder / "server.log"
    folder.mkdir(parents=True, exist_ok=True)
    env = {**service_env(world, folder), "LIFECYCLE_STORE": store, "LIFECYCLE_LEDGER": ledger,
           "LIFECYCLE_PRECOMPUTE_SCORES": str(precompute).lower()}  # fmt: skip
    command = [sys.executable, "-m", "bentoml", "serve", "serving.service:LifecycleService",
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    server = {"process": start(command, env, log), "url": f"http://127.0.0.1:{port}", "log": log}
    started = time.perf_counter()
    wait_ready(server["process"], server["url"] + "/readyz", log)
    models = lambda: httpx.get(f"{server['url']}/models").json()  # noqa: E731
    ready_after(models, trees_compiled)
    if precompute:
        ready_after(models, scores_precomputed)
    server["ready_after_s"] = time.perf_counter() - started
    return server


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each named process tree (reaped children included), this
    process, and the whole machine (busy time of all cores)."""
    out = {}
    for name, pid in pids.items():
        total = 0.0
        for proc in tree(pid):
            with contextlib.suppress(psutil.NoSuchProcess):
                t = proc.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
        out[name] = total
    mine = psutil.Process().cpu_times()
    out["load generator"] = mine.user + mine.system
    machine = psutil.cpu_times()
    out["machine"] = sum(machine) - machine.idle - machine.iowait
    return out


def backend_counters(ledger: str, redis_url: str) -> dict[str, float]:
    """Decision rows in the ledger and commands Redis processed, so far."""
    with psycopg.connect(ledger) as conn:
        rows = conn.execute("SELECT count(*) FROM decisions").fetchone()[0]
    client = redis.Redis.from_url(redis_url)
    commands = client.info("stats")["total_commands_processed"]
    client.close()
    return {"ledger_rows": rows, "redis_commands": commands}


def pg_activity(ledger: str) -> dict[str, int]:
    """PostgreSQL's commits and inserted rows in the ledger's database so far (its statistics
    lag: a backend flushes them at most every second, an idle one after 10 s)."""
    with psycopg.connect(ledger) as conn:
        commits, inserted, rows = conn.execute(
            "SELECT xact_commit, tup_inserted, (SELECT count(*) FROM decisions) "
            "FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    return {"commits": commits, "rows_inserted": inserted, "decision_rows": rows}


# ---- load ---------------------------------------------------------------------------


async def closed_loop(urls: list[str], bodies: list[bytes], concurrency: int,
                      seconds: float) -> dict:  # fmt: skip
    """``concurrency`` clients back to back for ``seconds``, client k on ``urls[k % n]``."""
    pools = [Pool(url, concurrency) for url in urls]
    latencies: list[float] = []
    done = errors = 0
    stop = time.perf_counter() + seconds

    async def client(k: int) -> None:
        nonlocal done, errors
        pool, i = pools[k % len(pools)], k
        while time.perf_counter() < stop:
            sent = time.perf_counter()
            ok = await pool.post("/decide", bodies[i % len(bodies)])
            latencies.append((time.perf_counter() - sent) * 1e3)
            done, errors, i = done + ok, errors + (not ok), i + concurrency

    with quiet_gc():  # no collection pauses in this client while it measures
        started = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(concurrency)))
        elapsed = time.perf_counter() - started
    for pool in pools:
        pool.close()
    p50, p99 = np.percentile(latencies, [50, 99])
    return {"ok": done, "errors": errors, "seconds": elapsed, "req_per_s": done / elapsed,
            "p50_ms": p50, "p99_ms": p99}  # fmt: skip


def phase(layout: str, urls: list[str], concurrency: int, ctx: dict) -> dict:
    """One closed-loop phase with its CPU and backend accounting."""
    counters0, cpu0, wall0 = ctx["counters"](), cpu_seconds(ctx["pids"]), time.perf_counter()
    result = asyncio.run(closed_loop(urls, ctx["bodies"], concurrency, ctx["seconds"]))
    wall = time.perf_counter() - wall0
    cpu1, counters1 = cpu_seconds(ctx["pids"]), ctx["counters"]()
    cpu = {k: cpu1[k] - cpu0[k] for k in cpu0}
    delta = {k: counters1[k] - counters0[k] for k in counters0}
    ok = max(result["ok"], 1)
    ours = sum(v for k, v in cpu.items() if k != "machine")
    row = {"layout": layout, "concurrency": concurrency, **result,
           "ledger_rows": delta["ledger_rows"], "rows_minus_200s": delta["ledger_rows"] -
           result["ok"], "redis_commands_per_decision": delta["redis_commands"] / ok}  # fmt: skip
    row |= {f"cores {k}": v / wall for k, v in cpu.items() if k != "machine"}
    row["cores others"] = max(cpu["machine"] - ours, 0.0) / wall
    row["replica cpu ms per decision"] = (cpu["replica A"] + cpu["replica B"]) * 1e3 / ok
    return row


def run_phases(servers: list[dict], ctx: dict, args: argparse.Namespace) -> list[dict]:
    """Warm up, then every layout and concurrency for ``args.rounds`` rounds; the rows."""
    urls = [s["url"] for s in servers]
    for url in urls:  # warm up both (connections, caches, the ledger's first pages)
        asyncio.run(closed_loop([url], ctx["bodies"], 4, args.warmup))
    time.sleep(11)  # PostgreSQL's statistics of the warm-up are flushed
    ctx["pg_before"] = pg_activity(ctx["ledger"])
    rows = []
    for r in range(args.rounds):
        for concurrency in args.concurrency:
            layouts = [("one", urls[:1]), ("two", urls)]
            for layout, some in layouts if r % 2 == 0 else layouts[::-1]:
                rows.append({"round": r, **phase(layout, some, concurrency, ctx)})
                print(rows[-1], flush=True)
    time.sleep(11)
    after = pg_activity(ctx["ledger"])
    decisions = after["decision_rows"] - ctx["pg_before"]["decision_rows"]
    ctx["pg_per_decision"] = {k: (after[k] - ctx["pg_before"][k]) / decisions
                              for k in ("commits", "rows_inserted")}  # fmt: skip
    return rows


# ---- report -------------------------------------------------------------------------


def ratios(rows: list[dict]) -> list[dict]:
    frame = pd.DataFrame(rows)
    mean = frame.groupby(["concurrency", "layout"])["req_per_s"].mean().unstack()
    return [{"concurrency": int(c), "one req/s": r["one"], "two req/s": r["two"],
             "two / one": r["two"] / r["one"]} for c, r in mean.iterrows()]  # fmt: skip


def ledger_size(ledger: str) -> dict:
    with psycopg.connect(ledger) as conn:
        rows = conn.execute("SELECT count(*) FROM decisions").fetchone()[0]
        size = conn.execute("SELECT pg_total_relation_size('decisions')").fetchone()[0]
    return {"decision_rows": rows, "decisions_table_mb": size / 1e6,
            "bytes_per_decision_row": size / max(rows, 1)}  # fmt: skip


SHOWN = ["round", "layout", "concurrency", "req_per_s", "p50_ms", "p99_ms", "errors", "ok",
         "ledger_rows", "rows_minus_200s", "replica cpu ms per decision", "cores replica A",
         "cores replica B", "cores redis", "cores postgres", "cores load generator",
         "cores others", "redis_commands_per_decision"]  # fmt: skip


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=None, help="reuse/keep the world here")
    parser.add_argument("--customers", type=int, default=100_000, help="simulated = in the store")
    parser.add_argument("--train-customers", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--seconds", type=float, default=15.0, help="per phase")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds per replica")
    parser.add_argument("--rounds", type=int, default=2, help="one/two order alternates")
    parser.add_argument("--precompute", action=argparse.BooleanOptionalAction, default=True,
                        help="replicas decide from the store's precomputed scores "
                        "(--no-precompute: their models score every request)")  # fmt: skip
    return parser.parse_args(argv)


def measure(world: dict, folder: Path, backends: dict, args: argparse.Namespace) -> dict:
    report = {"materialise": materialise(world, backends["REDIS_URL"])}
    store, ledger = f"{backends['REDIS_URL']}?prefix={PREFIX}", backends["POSTGRES_URL"]
    ids = pd.read_parquet(world["vectors"], columns=["customer_id"])["customer_id"]
    picked = np.random.default_rng(args.seed).choice(ids.astype(str).to_numpy(), 20_000)
    servers = []  # A first: it compiles the trees into the world's cache, B loads them
    try:
        for name in ("a", "b"):
            servers.append(start_replica(world, folder / name, store, ledger, args.precompute))
        pids = {"replica A": servers[0]["process"].pid, "replica B": servers[1]["process"].pid,
                **backends["pids"]}  # fmt: skip
        ctx = {"pids": pids, "seconds": args.seconds,
               "bodies": [orjson.dumps({"customer_ids": [c]}) for c in picked],
               "ledger": ledger,
               "counters": lambda: backend_counters(ledger, backends["REDIS_URL"])}  # fmt: skip
        report["ready_after_s"] = [s["ready_after_s"] for s in servers]
        report["phases"] = run_phases(servers, ctx, args)
        report["pg_per_decision"] = ctx["pg_per_decision"]
        report["memory"] = {f"replica {n}": memory_mb(s["process"].pid)
                            for n, s in zip("AB", servers, strict=True)}  # fmt: skip
    finally:
        stop_servers({str(i): s for i, s in enumerate(servers)})
    report["ledger"] = ledger_size(ledger)
    report["ratios"] = ratios(report["phases"])
    return report


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    start_time, load0 = time.perf_counter(), os.getloadavg()
    folder = args.workdir or Path(tempfile.mkdtemp(prefix="bench_replicas_"))
    folder.mkdir(parents=True, exist_ok=True)
    world = build_world(folder, args)
    run_dir = folder / f"run_{int(time.time())}"
    with own_services(Path(f"/tmp/bench-replicas-services-{os.getpid()}")) as backends:
        report = measure(world, run_dir, backends, args)
    print(f"materialised into Redis: {report['materialise']}\nledger: {report['ledger']}; "
          f"PostgreSQL per decision: {report['pg_per_decision']}\n")  # fmt: skip
    print(markdown([{k: r[k] for k in SHOWN} for r in report["phases"]]), "\n")
    print(markdown(report["ratios"]), "\n")
    print(markdown([{"replica": k, **v} for k, v in report["memory"].items()]), "\n")
    how = "precomputed store scores" if args.precompute else "live scoring"
    line, total = run_summary(f"bench_replicas ({how})", start_time, load0)
    print(line)
    report |= {"args": vars(args), "summary": line, "seconds": total}
    print(f"saved {save('replicas' if args.precompute else 'replicas_live', report)}")
    return report


if __name__ == "__main__":
    main()
