"""Load shedding (issue 15, point 4): the decision service past its capacity, with and
without ``max_in_flight``, in one run.

On the world of ``bench_service.py`` (built in ``--workdir`` when it holds none; smaller by
default) it starts two ``bentoml serve serving.service:LifecycleService`` processes, one
worker each: one with ``LIFECYCLE_MAX_IN_FLIGHT=--limit`` (the default), one with 0 (no
limit, BentoML queues). This script is the load generator, in its own process: raw keep-alive
HTTP/1.1 on asyncio (``bench_service.Connection``, tens of microseconds per request), open
loop (a request is due at a fixed time whatever happened to the earlier ones; latency counts
from that time), one known customer per ``POST /decide``; callers give up after
``--timeout`` seconds and close their connection, as real ones do.

1. Capacity, on the unlimited server: closed-loop throughput at concurrency 4, then open-loop
   steps at fractions of it; the capacity is the highest rate answered with p99 <=
   ``--p99-target`` ms and every request answered. A step that fails is run once more and
   passes if the repeat does; the first step failing twice ends the search (``capacity``).
2. Overload at ``--overload`` x capacity for ``--seconds`` s, the limited server then the
   unlimited one: goodput (200s per second, and as a share of capacity), p50/p99 of the 200s,
   shed 503s (count, p99), callers that timed out, and the decisions the ledger gained against
   the 200s received (no decision may be logged for a shed request; one whose caller left
   after it was logged is marked undelivered, counted apart).

By default (``--pin``, on a machine of 2 cores or more) the servers' process trees run on the
first core and the load generator on the others (``sched_setaffinity``), so that the
capacity and the overload are both measured with the server owning one core: unpinned, a
generator offering 2x the capacity took CPU the worker then lacked, and the figures could
not tell that from the cost of shedding. Around every step ``psutil`` reads the CPU time of
the server (the ``bentoml serve`` process and its worker), of the generator (its share of a
core says whether it could offer the load), and of whatever else ran on the server's core
(``other_share``: a step it slowed is noise, not the server): CPU per answered request at
capacity, and what each shed request cost in the overload (the CPU left after the answered
ones at that rate). ``--pure-python-http`` hides httptools and uvloop from the servers
(uvicorn falls back to h11 and asyncio's loop).

Goals: at 2x capacity, goodput >= 90% of capacity, p99 of answered requests <= 100 ms, shed
requests fast. Prints a markdown table and writes ``benchmarks/out/shedding.json``::

    .venv/bin/python benchmarks/bench_shedding.py --workdir /tmp/bench_shedding
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path

import httpx
import numpy as np
import orjson
import pandas as pd
import psutil
from _common import markdown, pin_tree, quiet_gc, run_summary, save, split_cores, tree_cpu_seconds
from bench_service import (
    Connection,
    build_world,
    closed_loop,
    free_port,
    ready_after,
    scores_precomputed,
    service_env,
    start,
    stop_servers,
    wait_ready,
)

from serving.config import DEFAULT_MAX_IN_FLIGHT


def pure_python_http(folder: Path) -> dict[str, str]:
    """Environment that hides httptools and uvloop from the servers, so that uvicorn falls
    back to h11 and asyncio's own loop (the service before they were dependencies)."""
    shims = folder / "pure_python_http"
    shims.mkdir(parents=True, exist_ok=True)
    for module in ("httptools", "uvloop"):
        (shims / f"{module}.py").write_text(f"raise ImportError('{module} hidden')\n")
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(shims), os.environ.get(
        "PYTHONPATH")]))}  # fmt: skip


def start_pair(world: dict, folder: Path, limit: int, extra_env: dict[str, str],
               cores: set[int] | None) -> dict:  # fmt: skip
    """Two servers on the world, ``limit`` in flight and no limit, pinned to ``cores`` (the
    ``bentoml serve`` process at once, before it starts its worker; the whole tree checked
    once ready); ready with the store's scores precomputed. name -> {process, url, log,
    ledger, pinned}."""
    servers = {}
    for name, max_in_flight in ((f"max_in_flight={limit}", limit), ("no limit", 0)):
        sub, port = folder / name.replace(" ", "_").replace("=", "_"), free_port()
        env = {**service_env(world, sub), "LIFECYCLE_MAX_IN_FLIGHT": str(max_in_flight),
               **extra_env}  # fmt: skip
        command = [sys.executable, "-m", "bentoml", "serve", "serving.service:LifecycleService",
                   "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
        sub.mkdir(parents=True, exist_ok=True)
        servers[name] = {"process": start(command, env, sub / "server.log"), "log": sub /
                         "server.log", "url": f"http://127.0.0.1:{port}",
                         "ledger": sub / "ledger.sqlite"}  # fmt: skip
        if cores:
            os.sched_setaffinity(servers[name]["process"].pid, cores)
    for server in servers.values():
        wait_ready(server["process"], server["url"] + "/readyz", server["log"])
        server["pinned"] = pin_tree(server["process"].pid, cores) if cores else []
        models = lambda url=server["url"]: httpx.get(f"{url}/models").json()  # noqa: E731
        ready_after(models, scores_precomputed)
    return servers


def decisions(ledger: Path) -> tuple[int, int]:
    """Decisions in the ledger taken as delivered, and those marked undelivered (their
    caller left after they were logged)."""
    if not ledger.exists():
        return 0, 0
    with sqlite3.connect(ledger) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(decisions)")}
        marked = "undelivered_at" if "undelivered_at" in columns else "NULL"  # older ledgers
        return conn.execute(f"SELECT count(*) - count({marked}), count({marked}) "
                            "FROM decisions").fetchone()  # fmt: skip


async def open_loop(url: str, bodies: list[bytes], rate: float, seconds: float,
                    timeout: float) -> dict:  # fmt: skip
    """``rate`` requests/s for ``seconds`` on fresh or idle keep-alive connections (as many
    as needed: the server sees the offered load); each caller waits ``timeout`` s at most."""
    idle: list[Connection] = []
    outcomes: list[tuple[str, float]] = []

    async def post(body: bytes, deadline: float) -> tuple[Connection, int]:
        """On an idle connection, else a new one; a kept-alive connection the server closed
        meanwhile (its keep-alive timeout: nothing read) is retried once on a new one, as
        HTTP clients do."""
        conn = idle.pop() if idle else None
        if conn is not None:
            try:
                left = deadline - time.perf_counter()
                return conn, await asyncio.wait_for(conn.post("/decide", body), left)
            except BaseException as err:
                conn.close()
                stale = isinstance(err, ConnectionError) or (
                    isinstance(err, asyncio.IncompleteReadError) and not err.partial
                )
                if not stale:
                    raise
        conn = Connection(url)
        try:
            left = deadline - time.perf_counter()
            return conn, await asyncio.wait_for(conn.post("/decide", body), left)
        except BaseException:
            conn.close()
            raise

    async def send(body: bytes, due: float) -> None:
        try:
            conn, status = await post(body, time.perf_counter() + timeout)
        except TimeoutError:  # the caller leaves (its connection closed)
            outcomes.append(("timeout", np.nan))
            return
        except (OSError, asyncio.IncompleteReadError, ValueError):
            outcomes.append(("error", np.nan))
            return
        outcomes.append((str(status), (time.perf_counter() - due) * 1e3))
        idle.append(conn)

    n = int(rate * seconds)
    with quiet_gc():
        start_at, tasks = time.perf_counter() + 0.05, []
        for i in range(n):
            due = start_at + i / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.create_task(send(bodies[i % len(bodies)], due)))
        await asyncio.gather(*tasks)
    for conn in idle:
        conn.close()
    return summarise(outcomes, rate, seconds)


def summarise(outcomes: list[tuple[str, float]], rate: float, seconds: float) -> dict:
    frame = pd.DataFrame(outcomes, columns=["status", "ms"])
    ok, shed = frame.ms[frame.status == "200"], frame.ms[frame.status == "503"]
    pct = lambda s, q: float(np.percentile(s, q)) if len(s) else float("nan")  # noqa: E731
    return {"offered_rps": rate, "requests": len(frame), "ok": len(ok), "shed_503": len(shed),
            "timed_out": int((frame.status == "timeout").sum()),
            "other": int((~frame.status.isin(["200", "503", "timeout"])).sum()),
            "goodput_rps": len(ok) / seconds, "ok_p50_ms": pct(ok, 50), "ok_p99_ms": pct(ok, 99),
            "shed_p99_ms": pct(shed, 99)}  # fmt: skip


def generator_cpu() -> float:
    """CPU seconds (user + system) of this process, the load generator (not its children,
    the servers)."""
    return sum(psutil.Process().cpu_times()[:2])


def cores_busy(cores: list[int] | None) -> float:
    """CPU seconds the machine's ``cores`` (all when None) have been busy so far, whoever
    ran on them."""
    per_core = psutil.cpu_times(percpu=True)
    chosen = per_core if cores is None else [per_core[c] for c in sorted(cores)]
    return sum(t.user + t.nice + t.system + t.irq + t.softirq + t.steal for t in chosen)


def with_cpu(process: subprocess.Popen, run: Callable[[], dict], cores: list[int] | None) -> dict:
    """``run()``'s result with the CPU seconds over it of the server (the ``bentoml serve``
    process and its worker: what the requests cost it whatever else the machine runs) and of
    the load generator, each with its share of the wall time (1.0 = one core busy all along:
    a generator near 1.0 on its own core could not offer the load); and ``other_share``, the
    time the server's ``cores`` (the machine when not pinned) were busy with anything else:
    other load that took the server's core (0.0 = none)."""
    counters = lambda: np.array([tree_cpu_seconds(process.pid), generator_cpu(),  # noqa: E731
                                 cores_busy(cores), time.perf_counter()])  # fmt: skip
    before = counters()
    result = run()
    server, generator, busy, wall = counters() - before
    other = busy - server - (0 if cores else generator)
    return {**result, "server_cpu_s": server, "server_cpu_share": server / wall,
            "generator_cpu_s": generator, "generator_cpu_share": generator / wall,
            "other_share": max(other, 0.0) / wall}  # fmt: skip


def capacity(process: subprocess.Popen, url: str, bodies: list[bytes],
             args: argparse.Namespace) -> tuple[float, list]:  # fmt: skip
    """The highest open-loop rate of the steps, in increasing order, answered in full with
    p99 <= the target, up to the first step that fails twice; the attempts.

    A failing step is run once more, and passes if the repeat does: on a shared machine
    other load only ever adds latency, so one slow attempt says less than one that met the
    target, and one noisy step no longer ends the search. A step failing both times ends it
    (a later step passing by chance does not count), so a rate is only taken when the
    server met the target at that rate and at every lower step."""
    framed = [("/decide", b) for b in bodies]
    peak = drive(args, lambda: closed_loop(url, framed, 1, 4, args.step_seconds))
    peak = peak["requests_per_s"]
    steps, best = [], 0.0
    for share in sorted(args.steps):
        rate, passed = round(peak * share), False
        for attempt in (1, 2):
            load = lambda rate=rate: drive(args, lambda: open_loop(  # noqa: E731
                url, bodies, rate, args.step_seconds, args.timeout))  # fmt: skip
            step = with_cpu(process, load, args.server_cores)
            step["cpu_ms_per_ok"] = step["server_cpu_s"] * 1e3 / max(step["ok"], 1)
            fine = step["ok"] == step["requests"] and step["ok_p99_ms"] <= args.p99_target
            steps.append({"share_of_closed_loop_peak": share, "attempt": attempt, **step,
                          "within_target": fine})  # fmt: skip
            time.sleep(2)
            if passed := fine:
                break
        if not passed:
            break
        best = rate
    return best, [{"closed_loop_peak_rps": peak}, *steps]


def drive(args: argparse.Namespace, load: Callable[[], Coroutine]) -> dict:
    """Run ``load()`` on a fresh event loop of ``--generator-loop`` (uvloop: a fraction of
    asyncio's CPU per request, the generator's own cost)."""
    factory = None
    if args.generator_loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(load())


def overload(servers: dict, bodies: list[bytes], rate: float, cap: float, ok_cpu_ms: float,
             args) -> list[dict]:  # fmt: skip
    """Each server at ``rate``; with the server's CPU per answered request at capacity
    (``ok_cpu_ms``, from the steps), what each shed request cost it (``cpu_ms_per_shed``)."""
    rows = []
    for name, server in servers.items():
        before, marked_before = decisions(server["ledger"])
        result = with_cpu(server["process"], lambda url=server["url"]: drive(args, lambda:
            open_loop(url, bodies, rate, args.seconds, args.timeout)),
            args.server_cores)  # fmt: skip
        time.sleep(args.timeout + 1)  # handlers of callers who left finish
        logged, marked = decisions(server["ledger"])
        logged, marked = logged - before, marked - marked_before
        shed_cpu = result["server_cpu_s"] * 1e3 - result["ok"] * ok_cpu_ms
        rows.append({"server": name, **result, "goodput_share_of_capacity": result["goodput_rps"]
                     / cap, "decisions_logged": logged,
                     "logged_minus_answered": logged - result["ok"], "marked_undelivered": marked,
                     "cpu_ms_per_shed": shed_cpu / result["shed_503"] if result["shed_503"]
                     else float("nan")})  # fmt: skip
        time.sleep(3)
    return rows


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=None, help="reuse/keep the world here")
    parser.add_argument("--customers", type=int, default=20_000, help="simulated = in the store")
    parser.add_argument("--train-customers", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=DEFAULT_MAX_IN_FLIGHT)
    parser.add_argument("--step-seconds", type=float, default=8.0)
    parser.add_argument("--steps", type=float, nargs="+", default=[0.5, 0.65, 0.8, 0.9, 1.0])
    parser.add_argument("--seconds", type=float, default=20.0, help="overload duration")
    parser.add_argument("--overload", type=float, default=2.0, help="x capacity")
    parser.add_argument("--timeout", type=float, default=2.0, help="callers give up after")
    parser.add_argument("--p99-target", type=float, default=100.0)
    parser.add_argument("--pin", action=argparse.BooleanOptionalAction, default=True,
                        help="servers on the first core, the load generator on the others "
                        "(ignored on one core)")  # fmt: skip
    parser.add_argument("--generator-loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument(
        "--pure-python-http",
        action="store_true",
        help="servers without httptools and uvloop (h11, asyncio's loop)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    start_time, load0 = time.perf_counter(), os.getloadavg()
    folder = args.workdir or Path(tempfile.mkdtemp(prefix="bench_shedding_"))
    folder.mkdir(parents=True, exist_ok=True)
    world = build_world(folder, args)
    ids = pd.read_parquet(world["vectors"], columns=["customer_id"])["customer_id"]
    picked = np.random.default_rng(args.seed).choice(ids.astype(str).to_numpy(), 5_000)
    bodies = [orjson.dumps({"customer_ids": [c]}) for c in picked]
    run = folder / f"run_{int(time.time())}"
    extra_env = pure_python_http(run) if args.pure_python_http else {}
    cores = split_cores() if args.pin else None
    args.server_cores = cores and sorted(cores[0])  # whose other load each step reports
    if cores:
        os.sched_setaffinity(0, cores[1])
    servers = start_pair(world, run, args.limit, extra_env, cores and cores[0])
    try:
        unlimited = servers["no limit"]
        cap, steps = capacity(unlimited["process"], unlimited["url"], bodies, args)
        if cap == 0:
            raise RuntimeError(f"no step met p99 <= {args.p99_target} ms: {steps}")
        ok_cpu_ms = float(np.median([s["cpu_ms_per_ok"] for s in steps[1:]
                                     if s["within_target"]]))  # fmt: skip
        rows = overload(servers, bodies, args.overload * cap, cap, ok_cpu_ms, args)
    finally:
        stop_servers(servers)
    print(
        f"capacity (no limit): {cap:.0f} requests/s; server CPU per answered request "
        f"(median of the passing steps): {ok_cpu_ms:.2f} ms\n\n{markdown(steps[1:])}\n"
    )
    print(f"at {args.overload:g}x capacity ({args.overload * cap:.0f} requests/s, "
          f"{args.seconds:g} s, callers time out after {args.timeout:g} s):\n\n"
          f"{markdown(rows)}\n")  # fmt: skip
    line, total = run_summary("bench_shedding", start_time, load0)
    print(line)
    pinned = cores and {"server_cores": sorted(cores[0]), "generator_cores": sorted(cores[1]),
                        "server_pids": {n: s["pinned"] for n, s in servers.items()}}  # fmt: skip
    print(f"pinned: {pinned}")
    payload = {"capacity_rps": cap, "ok_cpu_ms": ok_cpu_ms, "steps": steps, "overload": rows,
               "pinned": pinned, "args": vars(args), "summary": line,
               "seconds": total}  # fmt: skip
    save("shedding", payload)
    return payload


if __name__ == "__main__":
    main()
