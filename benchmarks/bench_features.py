"""Feature pipeline speed and memory, side by side with DuckDB on the shared RFM aggregates.

Usage:
    python benchmarks/bench_features.py --data DIR           # a folder from `lifecycle simulate`
    python benchmarks/bench_features.py --customers 1000000   # simulate first (into benchmarks/out)

Targets (issue 3): full default feature set >= 2M events/s; our RFM core (purchases and spend
over 7/30/90/365 days, purchase recency) <= 3x DuckDB's time on the same in-memory frame;
peak memory of the build <= 3x the events frame's in-memory size.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from pathlib import Path

import numpy as np
from _common import OUT, machine, markdown, peak_rss_mb, save


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        line = next(ln for ln in fh if ln.startswith("VmRSS"))
    return int(line.split()[1]) / 1024


def duckdb_rfm(events, as_of, threads: int):
    import duckdb

    windows = (7, 30, 90, 365)
    cols = []
    for w in windows:
        cond = f"role = 'purchase' AND timestamp > TIMESTAMPTZ '{as_of}' - INTERVAL {w} DAY"
        cols.append(f"count(*) FILTER (WHERE {cond}) AS purchases_{w}d")
        cols.append(f"coalesce(sum(amount) FILTER (WHERE {cond}), 0) AS spend_{w}d_amount")
    cols.append(
        f"epoch(TIMESTAMPTZ '{as_of}' - max(timestamp) FILTER (WHERE role = 'purchase'))"
        " / 86400.0 AS purchase_recency_days"
    )
    sql = (f"SELECT customer_id, {', '.join(cols)} FROM events "
           f"WHERE timestamp <= TIMESTAMPTZ '{as_of}' GROUP BY customer_id")  # fmt: skip
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    con.register("events", events[["customer_id", "timestamp", "role", "amount"]])
    t0 = time.perf_counter()
    result = con.execute(sql).df()
    return time.perf_counter() - t0, result


def timed(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def build_peak_mb(fn) -> float:
    """Peak extra memory allocated while ``fn`` runs (numpy reports to tracemalloc)."""
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def check_parity(ours, theirs) -> float:
    """Largest absolute difference between our RFM core and DuckDB's, over shared columns."""
    merged = ours.merge(
        theirs.astype({"customer_id": "str"}), on="customer_id", suffixes=("", "_db")
    )
    worst = 0.0
    for col in [c for c in ours.columns if c != "customer_id"]:
        a, b = merged[col].to_numpy(float), merged[f"{col}_db"].to_numpy(float)
        both = ~(np.isnan(a) & np.isnan(b))
        worst = max(
            worst, float(np.nanmax(np.abs(a[both] - b[both]) / np.maximum(1, np.abs(b[both]))))
        )
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="folder with events.parquet")
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="DuckDB threads")
    args = parser.parse_args()
    from features.builder import build_features
    from features.loaders import load_events

    data = args.data or OUT / f"sim_{args.customers}"
    if not (data / "events.parquet").exists():
        from features.simulator import SimConfig, simulate, write_simulation

        cfg = SimConfig(customers=args.customers, seed=0)
        write_simulation(simulate(cfg), data, cfg)
    baseline = rss_mb()
    t0 = time.perf_counter()
    events = load_events(data / "events.parquet").data
    t_load = time.perf_counter() - t0
    frame_mb = events.memory_usage(deep=True).sum() / 2**20
    as_of = events["timestamp"].max()
    before_build = rss_mb()
    t_full, full = timed(lambda: build_features(events, as_of), args.repeats)
    extra_mb = build_peak_mb(lambda: build_features(events, as_of))
    t_rfm, ours = timed(lambda: build_features(events, as_of, "rfm_core"), args.repeats)
    t_db, theirs = min((duckdb_rfm(events, as_of, args.threads) for _ in range(args.repeats)),
                       key=lambda r: r[0])  # fmt: skip
    n = len(events)
    row = {
        "events": n, "customers": len(full), "features": full.shape[1] - 1,
        "load_validate_s": round(t_load, 2), "build_default_s": round(t_full, 2),
        "events_per_s": round(n / t_full), "rfm_core_s": round(t_rfm, 2),
        "duckdb_rfm_s": round(t_db, 2), "rfm_vs_duckdb": round(t_rfm / t_db, 2),
        "events_frame_mb": round(frame_mb), "rss_before_load_mb": round(baseline),
        "rss_before_build_mb": round(before_build), "build_extra_peak_mb": round(extra_mb),
        "peak_over_frame": round((frame_mb + extra_mb) / frame_mb, 2),
        "process_peak_rss_mb": round(peak_rss_mb()),
        "rfm_max_rel_diff_vs_duckdb": check_parity(ours, theirs),
    }  # fmt: skip
    print(f"\nFeature pipeline on {machine()}, as_of {as_of}\n")
    print(markdown([row]))
    print(f"\nsaved {save('features', {'machine': machine(), 'row': row})}")


if __name__ == "__main__":
    main()
