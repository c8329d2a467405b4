"""What durable decisions cost a ``/decide`` on the SQLite ledger (README, "Durability").

Starts the service twice from a world folder (``export/``, ``store/online.sqlite``: the one
``tests/serving/conftest.py`` builds, or any ``lifecycle export``), side by side, each on a
fresh SQLite ledger in ``--workdir`` (put it on the disk you deploy on: the cost is an fsync
there): one with ``ledger_durability: normal`` (decisions committed with
``synchronous=NORMAL``) and one with ``full``. Sends ``--requests`` rounds of one ``/decide`` of
1 (then 100) random stored ids to each in turn (``bench_reserve_contacts.latencies``) and
reports p50 and p90 wall latency per setting, as a markdown table and
``benchmarks/out/durability.json``::

    .venv/bin/python benchmarks/bench_durability.py --world /tmp/.../serving0
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from pathlib import Path

import httpx
import numpy as np
from _common import machine, markdown, save
from bench_reserve_contacts import latencies, wait_for_scores

from features.store import open_store
from serving.client import LocalService

SIZES = (1, 100)
MODES = ("normal", "full")  # ledger_durability


def measure(world: Path, n: int, workdir: Path) -> list[dict]:
    """p50/p90 per request size and setting, the settings' services running side by side."""
    store = world / "store" / "online.sqlite"
    ids = np.asarray(open_store(store).customer_ids(), dtype=object)
    services = [
        LocalService(
            store,
            workdir / f"ledger-{mode}.sqlite",
            models=world / "export",
            workdir=workdir / f"durability-{mode}",
            config={"ledger_durability": mode, "compile_trees": False},
        )  # fmt: skip
        for mode in MODES
    ]
    with contextlib.ExitStack() as stack, httpx.Client(timeout=60) as http:
        for service in services:
            stack.enter_context(service)
            wait_for_scores(http, service.url)
        rows = []
        for size in SIZES:
            ms = latencies(http, [s.url for s in services], ids, size, n)
            rows += [{"decisions": mode, "ids": size, "requests": n,
                      "p50_ms": float(np.percentile(ms[:, j], 50)),
                      "p90_ms": float(np.percentile(ms[:, j], 90))}
                     for j, mode in enumerate(MODES)]  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--world", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, default=None, help="where the ledgers go")
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        rows = measure(args.world.resolve(), args.requests, Path(tmp))
    print(markdown(rows))
    print(f"{machine()}; load average {load0[0]:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end")  # fmt: skip
    save("durability", {"rows": rows, "machine": machine(), "load": [load0, os.getloadavg()]})


if __name__ == "__main__":
    main()
