"""Small helpers shared by the benchmark scripts (not part of the product)."""

from __future__ import annotations

import contextlib
import gc
import json
import platform
import resource
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "out"


@contextlib.contextmanager
def quiet_gc():
    """No garbage collection in a load generator while it measures: a full collection of its
    heap (114-223 ms measured in bench_shedding.py) stalls its event loop and counts as
    latency of every request in flight. Collected once the measurement is over."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()
        gc.collect()


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def run_summary(head: str, start: float, load0: tuple[float, ...]) -> tuple[str, float]:
    """The closing line of a benchmark run: ``head``, the machine, the wall time since
    ``start`` (``time.perf_counter``), peak RSS and the load average at the start
    (``os.getloadavg()`` then) and now; and the seconds."""
    import os

    total = time.perf_counter() - start
    return (f"{head}; {machine()}; total {total:.0f} s, peak RSS {peak_rss_mb():,.0f} MB; "
            f"load average {load0[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the "
            "end"), total  # fmt: skip


def save(name: str, payload: dict) -> Path:
    OUT.mkdir(exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


def markdown(rows: list[dict]) -> str:
    """A markdown table from a list of same-keyed dicts."""
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_cell(r[h]) for h in head) + " |" for r in rows]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def timed_ms(fn: Callable[[object], object], args: Sequence[object]) -> np.ndarray:
    """Call ``fn`` once per item of ``args``; return ``(n, 2)`` wall and CPU times in ms.

    CPU time (this process) leaves out time spent waiting for a core, which dominates wall
    time on a loaded machine; on an idle one the two agree.
    """
    out = np.empty((len(args), 2))
    for i, arg in enumerate(args):
        wall, cpu = time.perf_counter(), time.process_time()
        fn(arg)
        out[i] = (time.perf_counter() - wall) * 1e3, (time.process_time() - cpu) * 1e3
    return out


def split_cores() -> tuple[set[int], set[int]] | None:
    """The cores this process may use, split for a server under test (the first one) and its
    load generator (the rest): each side then owns its share of the machine, and a generator
    busy at 2x the capacity takes nothing from the server's core. None on one core."""
    import os

    cores = sorted(os.sched_getaffinity(0))
    return ({cores[0]}, set(cores[1:])) if len(cores) > 1 else None


def pin_tree(pid: int, cores: set[int]) -> list[int]:
    """Pin process ``pid`` and every process below it to ``cores`` (threads and processes
    they start later inherit it); the pids pinned."""
    import psutil

    root = psutil.Process(pid)
    tree = [root, *root.children(recursive=True)]
    for process in tree:
        process.cpu_affinity(sorted(cores))
    return [p.pid for p in tree]


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` and its descendants."""
    import psutil

    root = psutil.Process(pid)
    return sum(sum(p.cpu_times()[:2]) for p in [root, *root.children(recursive=True)])
