"""What ``reserve_contacts`` costs a ``/decide`` on a PostgreSQL ledger (README, "The ledger,
MLflow and Optuna on PostgreSQL").

Starts the service twice from a world folder (``export/``, ``store/online.sqlite``,
``data/offers.parquet``: the one ``tests/serving/conftest.py`` builds, or any
``lifecycle export``), side by side, each on a fresh database of the PostgreSQL server at
``--postgres``: one with ``reserve_contacts: false`` (contacts read, then decisions recorded:
two transactions) and one with ``true`` (one transaction holding a lock per customer). Sends
``--requests`` rounds of one ``/decide`` of 1 (then 100) random stored ids to each in turn
and reports p50 and p90 wall latency per mode, as a markdown table and
``benchmarks/out/reserve_contacts.json``::

    .venv/bin/python benchmarks/bench_reserve_contacts.py --world /tmp/.../serving0 \\
        --postgres postgresql://lifecycle@127.0.0.1:5440/lifecycle
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import psycopg
from _common import machine, markdown, save

from features.store import open_store
from serving.client import LocalService

SIZES = (1, 100)
MODES = (False, True)  # reserve_contacts


@contextlib.contextmanager
def fresh_database(server: str) -> Iterator[str]:
    """A new database on ``server`` (dropped after)."""
    name = f"bench_reserve_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def wait_for_scores(http: httpx.Client, url: str, timeout: float = 120) -> None:
    """Until the service decides from precomputed scores (as in production)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        scored = http.get(f"{url}/models").json().get("precomputed_scores")
        if scored and scored["current"]:
            return
        time.sleep(0.5)
    raise TimeoutError(f"{url}: no precomputed scores after {timeout} s")


def latencies(http: httpx.Client, urls: list[str], ids: np.ndarray, size: int, n: int):
    """Wall ms ``(n, len(urls))`` of ``n`` rounds of one ``/decide`` of ``size`` random ids to
    each service in turn, the same ids for each (after 20 warm-up rounds): interleaved, so
    that a busy machine slows every mode alike."""
    rng, out = np.random.default_rng(size), np.empty((n, len(urls)))
    for i in range(-20, n):
        body = {"customer_ids": rng.choice(ids, size, replace=False).tolist()}
        for j, url in enumerate(urls):
            start = time.perf_counter()
            response = http.post(f"{url}/decide", json=body)
            if i >= 0:
                out[i, j] = (time.perf_counter() - start) * 1e3
            response.raise_for_status()
    return out


def measure(world: Path, ledgers: list[str], n: int, workdir: Path) -> list[dict]:
    """p50/p90 per request size and mode, the modes' services running side by side."""
    store = world / "store" / "online.sqlite"
    ids = np.asarray(open_store(store).customer_ids(), dtype=object)
    services = [
        LocalService(
            store,
            ledger,
            models=world / "export",
            workdir=workdir / f"reserve-{mode}",
            config={"reserve_contacts": mode, "compile_trees": False},
        )  # fmt: skip
        for mode, ledger in zip(MODES, ledgers, strict=True)
    ]
    with contextlib.ExitStack() as stack, httpx.Client(timeout=60) as http:
        for service in services:
            stack.enter_context(service)
            wait_for_scores(http, service.url)
        rows = []
        for size in SIZES:
            ms = latencies(http, [s.url for s in services], ids, size, n)
            rows += [{"reserve_contacts": "on" if mode else "off", "ids": size, "requests": n,
                      "p50_ms": float(np.percentile(ms[:, j], 50)),
                      "p90_ms": float(np.percentile(ms[:, j], 90))}
                     for j, mode in enumerate(MODES)]  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--world", type=Path, required=True)
    parser.add_argument("--postgres", required=True, help="a server URL (databases made here)")
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    load0 = os.getloadavg()
    with (
        tempfile.TemporaryDirectory() as tmp,
        fresh_database(args.postgres) as off,
        fresh_database(args.postgres) as on,
    ):
        rows = measure(args.world.resolve(), [off, on], args.requests, Path(tmp))
    print(markdown(rows))
    print(f"{machine()}; load average {load0[0]:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end")  # fmt: skip
    save("reserve_contacts", {"rows": rows, "machine": machine(), "load": [load0, os.getloadavg()]})


if __name__ == "__main__":
    main()
