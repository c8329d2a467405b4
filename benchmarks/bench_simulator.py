"""Simulator speed and memory: N customers over a year, each size in its own process.

Usage: python benchmarks/bench_simulator.py [--customers 100000 1000000] [--days 365]
Targets (issue 2): 100k customers over a year <= 60 s; 1M <= 10 min; memory reported.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import time

from _common import machine, markdown, peak_rss_mb, save


def one_size(customers: int, days: int, seed: int, queue: mp.Queue) -> None:
    from features.simulator import SimConfig, simulate, write_simulation

    cfg = SimConfig(customers=customers, days=days, seed=seed)
    t0 = time.perf_counter()
    sim = simulate(cfg)
    t_sim = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t1 = time.perf_counter()
        write_simulation(sim, tmp, cfg)
        t_write = time.perf_counter() - t1
    queue.put({
        "customers": customers,
        "days": days,
        "events": len(sim.events),
        "exposures": len(sim.exposures),
        "simulate_s": round(t_sim, 1),
        "write_parquet_s": round(t_write, 1),
        "events_per_s": round(len(sim.events) / t_sim),
        "peak_rss_mb": round(peak_rss_mb()),
    })  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    ctx = mp.get_context("spawn")  # a fresh process per size: peak memory is that size's own
    rows = []
    for n in args.customers:
        queue = ctx.Queue()
        proc = ctx.Process(target=one_size, args=(n, args.days, args.seed, queue))
        proc.start()
        rows.append(queue.get())
        proc.join()
        print(rows[-1], flush=True)
    print(f"\nSimulator on {machine()}\n")
    print(markdown(rows))
    print(f"\nsaved {save('simulator', {'machine': machine(), 'rows': rows})}")


if __name__ == "__main__":
    main()
