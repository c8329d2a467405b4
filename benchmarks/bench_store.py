"""Benchmark the online feature store (SQLite): materialise, then look vectors up.

Materialises a synthetic frame of ``--customers`` x ``--features`` float64 columns (5% NaN)
plus three categoricals (plan, region, stage) ``--repeats`` times (each run is a new version:
the pointer switch and, from the third, the drop of the oldest are included), then times
``OnlineStore.lookup`` for 1 random id and for batches of 1,000 random ids, and compares the
three SQL strategies for a batch (``json_each`` join, chunked ``IN (...)``, temp-table join).

Wall and CPU times are both reported: on a loaded machine wall time includes waiting for a
core. Targets: 1 id p50 <= 1 ms; 1,000 ids p50 <= 10 ms. Prints a markdown table and writes
``benchmarks/out/store.json``::

    .venv/bin/python benchmarks/bench_store.py --customers 200000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from _common import machine, markdown, peak_rss_mb, save, timed_ms

from features.store import OnlineStore
from features.store._schema import lookup_sql

MAX_VARIABLES = 32_766


def synthetic_vectors(n: int, k: int, seed: int = 0) -> pd.DataFrame:
    """Return ``customer_id`` (``c00000000``...), ``f000..`` float64 (5% NaN) and 3 categoricals."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, k))
    x[rng.random((n, k)) < 0.05] = np.nan
    frame = pd.DataFrame(x, columns=[f"f{j:03d}" for j in range(k)])
    frame.insert(0, "customer_id", pd.array([f"c{i:08d}" for i in range(n)], dtype="str"))
    levels = {"plan": ["basic", "pro", "team"], "region": ["eu", "us", "apac"], "stage": ["a", "b"]}
    for name, values in levels.items():
        frame[name] = pd.Categorical(rng.choice(values, n), categories=values)
    return frame


def summary(ms: np.ndarray) -> dict[str, float]:
    """p50 / p99 / mean of wall times and p50 / p99 of CPU times, in ms."""
    (p50, cpu50), (p99, cpu99) = np.percentile(ms, [50, 99], axis=0)
    mean = float(ms[:, 0].mean())
    return {"p50_ms": p50, "p99_ms": p99, "mean_ms": mean, "cpu_p50_ms": cpu50, "cpu_p99_ms": cpu99}


def sql_strategies(store: OnlineStore) -> dict[str, Callable[[list[str]], list]]:
    """Raw SQL + fetch of one batch, three ways, on the current version.

    Only ``json_each`` returns rows already tied to request positions; the other two would
    still need an id -> position mapping in Python, which is not timed here.
    """
    conn = store._connections.get()
    version = store.current()
    table, n_cat = version.table, len(version.categorical_columns)
    texts = "".join(f", c{i}" for i in range(n_cat))
    joined = texts.replace(", c", ", t.c")
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS ids (pos INTEGER PRIMARY KEY, id TEXT)")

    def json_each(ids: list[str]) -> list:
        return conn.execute(lookup_sql(table, n_cat), (json.dumps(ids),)).fetchall()

    def in_list(ids: list[str]) -> list:
        unique, rows = list(dict.fromkeys(ids)), []
        for start in range(0, len(unique), MAX_VARIABLES):
            part = unique[start : start + MAX_VARIABLES]
            marks = ",".join("?" * len(part))
            sql = f"SELECT customer_id, x{texts} FROM {table} WHERE customer_id IN ({marks})"
            rows += conn.execute(sql, part).fetchall()
        return rows

    def temp_table(ids: list[str]) -> list:
        conn.executemany("INSERT INTO ids VALUES (?, ?)", enumerate(ids))
        sql = f"SELECT ids.pos, t.x{joined} FROM ids JOIN {table} AS t ON t.customer_id = ids.id"
        rows = conn.execute(sql).fetchall()
        conn.execute("DELETE FROM ids")
        return rows

    return {"json_each": json_each, "in_list": in_list, "temp_table": temp_table}


def bench_materialize(store: OnlineStore, frame: pd.DataFrame, repeats: int) -> list[float]:
    """Seconds per :meth:`OnlineStore.materialize` run (keep_versions=2)."""
    seconds = []
    for run in range(repeats):
        start = time.perf_counter()
        store.materialize(frame, pd.Timestamp("2024-06-01", tz="UTC"), f"bench_{run}")
        seconds.append(round(time.perf_counter() - start, 2))
    return seconds


def bench_lookups(store: OnlineStore, ids: np.ndarray, args: argparse.Namespace) -> dict:
    """Latency summaries of single-id and batch look-ups and of the SQL strategies."""
    rng = np.random.default_rng(args.seed)
    singles = [[i] for i in rng.choice(ids, args.single_lookups).tolist()]
    batches = [rng.choice(ids, args.batch_size).tolist() for _ in range(args.batch_lookups)]
    timed_ms(store.lookup, singles[:50] + batches[:5])  # warm up: connection, caches
    results = {
        "lookup_1": summary(timed_ms(store.lookup, singles)),
        f"lookup_{args.batch_size}": summary(timed_ms(store.lookup, batches)),
        f"lookup_frame_{args.batch_size}": summary(timed_ms(store.lookup_frame, batches[:50])),
    }
    for name, ms in compare(sql_strategies(store), batches).items():
        results[f"sql_{name}_{args.batch_size}"] = summary(ms)
    return results


def compare(fns: dict[str, Callable[[list[str]], list]], batches: list) -> dict[str, np.ndarray]:
    """Time every function on every batch, interleaved so that machine noise hits all alike."""
    ms = {name: np.empty((len(batches), 2)) for name in fns}
    for i, batch in enumerate(batches):
        for name, fn in fns.items():
            ms[name][i] = timed_ms(fn, [batch])[0]
    return ms


def table(report: dict) -> str:
    """The report as a small markdown table (latencies in ms)."""
    rows = [{"measure": name, **stats} for name, stats in report["lookups"].items()]
    runs = ", ".join(f"{x:.1f}" for x in report["materialize_s"])
    cfg = report["config"]
    return (
        f"OnlineStore, {cfg['customers']:,} customers x {cfg['features']} numeric + 3 categorical"
        f" on {report['machine']}, SQLite {report['sqlite']}, load average {report['load']}\n\n"
        f"materialize: {runs} s per run; file {report['file_mb']:,.0f} MB; "
        f"peak RSS {report['peak_rss_mb']:,.0f} MB\n\n{markdown(rows)}"
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=80)
    parser.add_argument(
        "--repeats", type=int, default=3, help="materialize runs (new version each)"
    )
    parser.add_argument("--single-lookups", type=int, default=2_000)
    parser.add_argument("--batch-lookups", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--path", type=Path, default=None, help="store file (default: a temp dir)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, path: Path) -> dict:
    """Materialise into ``path`` and time look-ups; return the report."""
    frame = synthetic_vectors(args.customers, args.features, args.seed)
    store = OnlineStore(path)
    report = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "sqlite": sqlite3.sqlite_version,
        "machine": machine(),
        "materialize_s": bench_materialize(store, frame, args.repeats),
        "file_mb": path.stat().st_size / 2**20,
        "lookups": bench_lookups(store, frame["customer_id"].to_numpy(dtype=object), args),
        "load": " / ".join(f"{x:.1f}" for x in os.getloadavg()),
        "peak_rss_mb": peak_rss_mb(),
    }
    store.close()
    return report


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark, print the table, write the JSON report and return it."""
    args = parse_args(argv)
    workdir = None if args.path else Path(tempfile.mkdtemp(prefix="bench_store_"))
    try:
        report = run(args, args.path or workdir / "online.sqlite")
    finally:
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    print(table(report))
    print(f"\nsaved {save('store', report)}")
    return report


if __name__ == "__main__":
    main()
