"""Benchmark the online store's backends side by side: Redis and PostgreSQL against SQLite.

Materialises the same synthetic frame (``--customers`` x ``--features`` float64 columns, 5%
NaN, plus three categoricals: ``bench_store.synthetic_vectors``) into a SQLite file, into
Redis (a key prefix of its own) and into PostgreSQL (a schema of its own), timing each
materialisation (a new version, the atomic switch, the drop of older versions), then times
``lookup`` for 1 random id and for batches of 1,000 random ids on all, interleaved so machine
noise hits all alike. Goal for Redis: 1,000 ids p50 <= 5 ms on loopback. Wall and CPU times
are reported (CPU: this process only; the servers work in their own processes).

Servers: ``--redis URL`` / ``--postgres URL``, or the project's own (``scripts/services.sh
start``, which installs and starts them when missing). Prints a markdown table and writes
``benchmarks/out/store_backends.json``::

    .venv/bin/python benchmarks/bench_store_backends.py --customers 1000000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from _common import machine, markdown, peak_rss_mb, save, timed_ms
from bench_store import summary, synthetic_vectors

from features.store import open_store

ROOT = Path(__file__).resolve().parents[1]


def project_server(name: str) -> str:
    """The URL of the project's own ``REDIS`` or ``POSTGRES``, started (and installed) when
    needed."""
    out = subprocess.run([str(ROOT / "scripts" / "services.sh"), "start"], check=True,
                         capture_output=True, text=True).stdout  # fmt: skip
    return next(line.split("=", 1)[1] for line in out.splitlines() if line.startswith(name))


def materialize_s(store, frame, repeats: int) -> list[float]:
    """Seconds per materialise run (each a new version; keep_versions=1 keeps memory flat)."""
    seconds = []
    for k in range(repeats):
        start = time.perf_counter()
        store.materialize(frame, "2024-03-01", f"bench{k}", keep_versions=1)
        seconds.append(time.perf_counter() - start)
    return seconds


def lookups(stores: dict, ids: np.ndarray, args: argparse.Namespace) -> list[dict]:
    """p50/p99 of 1-id and batch look-ups on every store, interleaved."""
    rng = np.random.default_rng(args.seed)
    cases = {
        "1 id": [[i] for i in rng.choice(ids, args.single_lookups).tolist()],
        f"{args.batch_size:,} ids": [
            rng.choice(ids, args.batch_size).tolist() for _ in range(args.batch_lookups)
        ],
    }
    rows = []
    for case, batches in cases.items():
        for store in stores.values():
            timed_ms(store.lookup, batches[:20])  # warm up: connection, caches, script load
        ms = {name: np.empty((len(batches), 2)) for name in stores}
        for i, batch in enumerate(batches):
            for name, store in stores.items():
                ms[name][i] = timed_ms(store.lookup, [batch])[0]
        rows += [{"backend": name, "lookup": case, **summary(ms[name])} for name in stores]
    return rows


def redis_memory_mb(store) -> float:
    """Redis's ``used_memory`` (the whole server), in MB."""
    return store._redis().info("memory")["used_memory"] / 2**20


def postgres_mb(store) -> float:
    """Size of the PostgreSQL store's schema (tables and indexes), in MB."""
    size = ("SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s")  # fmt: skip
    return store._run(lambda c: c.execute(size, (store.schema,)).fetchone()[0]) / 2**20


def drop_prefix(store) -> None:
    """Delete every key of the benchmark's prefix (Redis) or its schema (PostgreSQL)."""
    if hasattr(store, "schema"):
        store._run(lambda c: c.execute(f'DROP SCHEMA IF EXISTS "{store.schema}" CASCADE'))
        return
    client = store._redis()
    keys = list(client.scan_iter(match=f"{store.keys.prefix}:*", count=1000))
    for start in range(0, len(keys), 1000):
        client.unlink(*keys[start : start + 1000])


def run(args: argparse.Namespace, folder: Path) -> dict:
    """Materialise into both backends, time look-ups; return the report."""
    frame = synthetic_vectors(args.customers, args.features, args.seed)
    url = f"{args.redis or project_server('REDIS_')}?prefix=bench-{os.getpid()}"
    pg_url = f"{args.postgres or project_server('POSTGRES_')}?prefix=bench_{os.getpid()}"
    stores = {"redis": open_store(url), "postgres": open_store(pg_url),
              "sqlite": open_store(folder / "online.sqlite")}  # fmt: skip
    try:
        before = redis_memory_mb(stores["redis"])
        report = {
            "config": {k: v for k, v in vars(args).items()},
            "machine": machine(),
            "redis_version": stores["redis"]._redis().info("server")["redis_version"],
            "postgres_version": stores["postgres"]._run(
                lambda c: c.execute("SHOW server_version").fetchone()[0]
            ),
            "materialize_s": {n: materialize_s(s, frame, args.repeats) for n, s in stores.items()},
            "redis_memory_mb": redis_memory_mb(stores["redis"]) - before,
            "postgres_mb": postgres_mb(stores["postgres"]),
            "sqlite_file_mb": (folder / "online.sqlite").stat().st_size / 2**20,
            "lookups": lookups(stores, frame["customer_id"].to_numpy(dtype=object), args),
            "load": " / ".join(f"{x:.1f}" for x in os.getloadavg()),
            "peak_rss_mb": peak_rss_mb(),
        }
    finally:
        for name in ("redis", "postgres"):
            drop_prefix(stores[name])
        for store in stores.values():
            store.close()
    return report


def table(report: dict) -> str:
    """The report as a small markdown table (latencies in ms)."""
    cfg = report["config"]
    runs = "; ".join(
        f"{name} {', '.join(f'{s:.1f}' for s in seconds)} s"
        for name, seconds in report["materialize_s"].items()
    )
    return (
        f"{cfg['customers']:,} customers x {cfg['features']} numeric + 3 categorical on "
        f"{report['machine']}, Redis {report['redis_version']}, PostgreSQL "
        f"{report['postgres_version']}, load {report['load']}\n\n"
        f"materialise (new version + switch + drop): {runs}; Redis memory "
        f"+{report['redis_memory_mb']:,.0f} MB, PostgreSQL {report['postgres_mb']:,.0f} MB, "
        f"SQLite file {report['sqlite_file_mb']:,.0f} MB; "
        f"peak RSS {report['peak_rss_mb']:,.0f} MB\n\n{markdown(report['lookups'])}"
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=80)
    parser.add_argument("--repeats", type=int, default=2, help="materialise runs per backend")
    parser.add_argument("--single-lookups", type=int, default=2_000)
    parser.add_argument("--batch-lookups", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--redis", default=None, help="redis://... (default: the project's own)")
    parser.add_argument("--postgres", default=None,
                        help="postgresql://... (default: the project's own)")  # fmt: skip
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark, print the table, write the JSON report and return it."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_backends_") as folder:
        report = run(args, Path(folder))
    print(table(report))
    print(f"\nsaved {save('store_backends', report)}")
    return report


if __name__ == "__main__":
    main()
