"""Real Redis and PostgreSQL servers for the tests, started by the project's own script.

``scripts/services.sh start`` runs once per session (it installs the Debian packages when
missing, so CI needs nothing else; a failure fails the tests that need it, with the script's
stderr, never a skip). The servers are stopped at the end of the session when a test session
started them and no other live session still uses them (parallel sessions on one machine
share them through lease files); servers started by hand (``make services``) are left running.

Per-test isolation: ``redis_prefix`` (a fresh key prefix, its keys deleted after) and
``redis_store_url`` (an online-store URL under that prefix); ``postgres_db_url`` (a fresh
database, dropped after).

Tests that stop and start servers must not touch the shared ones: ``dedicated_services``
starts a pair of their own (own data directory, free ports, Redis persisting its data) that
only the module using it stops, restarts and finally removes.
"""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "services.sh"
STARTED_BY_TESTS = "started-by-tests"  # marker in the data dir: a test session started them


def services_dir() -> Path:
    """The data directory the script uses (``LIFECYCLE_SERVICES_DIR``)."""
    return Path(os.environ.get("LIFECYCLE_SERVICES_DIR", "/tmp/lifecycle-services"))


def parse_urls(stdout: str) -> dict[str, str]:
    """``NAME=url`` lines of the script's stdout -> {NAME: url}."""
    pairs = (line.split("=", 1) for line in stdout.splitlines() if "=" in line)
    return {name.strip(): url.strip() for name, url in pairs}


def run_script(
    command: str, timeout: float = 900, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``scripts/services.sh COMMAND`` (with extra ``env`` vars) and return its completed
    process (text output)."""
    return subprocess.run([str(SCRIPT), command], capture_output=True, text=True,
                          timeout=timeout, check=False,
                          env={**os.environ, **(env or {})})  # fmt: skip


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _other_live_leases(leases: Path) -> list[Path]:
    return [p for p in leases.glob("*") if p.name.isdigit() and _alive(int(p.name))]


@pytest.fixture(scope="session")
def services() -> Iterator[dict[str, str]]:
    """Start (or reuse) the project's Redis and PostgreSQL; yield their URLs by name."""
    before = parse_urls(run_script("status").stdout)
    result = run_script("start")
    if result.returncode != 0:
        pytest.fail(f"scripts/services.sh start failed (exit {result.returncode}):\n"
                    f"{result.stderr}", pytrace=False)  # fmt: skip
    urls = parse_urls(result.stdout)
    missing = {"REDIS_URL", "POSTGRES_URL"} - set(urls)
    if missing:
        pytest.fail(f"scripts/services.sh start printed no {sorted(missing)}:\n{result.stdout}")
    if len(before) < 2:  # this session started at least one of them
        (services_dir() / STARTED_BY_TESTS).touch()
    leases = Path(f"{services_dir()}.leases")
    leases.mkdir(exist_ok=True)
    lease = leases / str(os.getpid())
    lease.touch()
    yield urls
    lease.unlink(missing_ok=True)  # first drop ours, then look for others (no leak on races)
    if (services_dir() / STARTED_BY_TESTS).exists() and not _other_live_leases(leases):
        run_script("stop", timeout=120)


@pytest.fixture(scope="session")
def redis_url(services) -> str:
    """``redis://127.0.0.1:<port>/0`` of the session's Redis."""
    return services["REDIS_URL"]


@pytest.fixture(scope="session")
def postgres_url(services) -> str:
    """``postgresql://lifecycle@127.0.0.1:<port>/lifecycle`` (superuser, trust auth)."""
    return services["POSTGRES_URL"]


@pytest.fixture
def redis_prefix(redis_url) -> Iterator[str]:
    """A key prefix no other test uses; every key under it is deleted after the test."""
    import redis

    prefix = f"test-{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()


@pytest.fixture
def redis_store_url(redis_url, redis_prefix) -> str:
    """An online-store URL on the session's Redis under this test's own prefix."""
    return f"{redis_url}?prefix={redis_prefix}"


@pytest.fixture
def postgres_db_url(postgres_url) -> Iterator[str]:
    """A fresh, empty database for this test (dropped after, connections and all)."""
    import psycopg

    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DedicatedServices:
    """A Redis and a PostgreSQL of one test module's own, through ``scripts/services.sh``
    with its own data directory and ports; Redis persists (``LIFECYCLE_REDIS_PERSIST``), so a
    restart keeps the store, as a production server would."""

    def __init__(self, folder: Path) -> None:
        self.env = {
            "LIFECYCLE_SERVICES_DIR": str(folder),
            "LIFECYCLE_REDIS_PORT": str(_free_port()),
            "LIFECYCLE_PG_PORT": str(_free_port()),
            "LIFECYCLE_REDIS_PERSIST": "1",
        }
        self.urls: dict[str, str] = {}

    def run(self, command: str) -> str:
        """``services.sh COMMAND`` on this pair; its stdout (fails the test on an error)."""
        result = run_script(command, timeout=300, env=self.env)
        if result.returncode != 0:
            pytest.fail(f"scripts/services.sh {command} failed (exit {result.returncode}):\n"
                        f"{result.stderr}", pytrace=False)  # fmt: skip
        return result.stdout

    def start(self) -> dict[str, str]:
        """Start whichever of the two is not running (keeping its data); their URLs."""
        self.urls = parse_urls(self.run("start"))
        return self.urls

    def stop_redis(self) -> None:
        self.run("stop-redis")

    def stop_postgres(self) -> None:
        self.run("stop-postgres")

    def stop(self) -> None:
        """Stop both and delete their data."""
        self.run("stop")


@pytest.fixture(scope="module")
def dedicated_services() -> Iterator[DedicatedServices]:
    """A started :class:`DedicatedServices` pair, stopped and removed after the module."""
    pair = DedicatedServices(Path(f"/tmp/lifecycle-services-failover-{os.getpid()}"))
    pair.start()
    try:
        yield pair
    finally:
        pair.stop()
        Path(f"{pair.env['LIFECYCLE_SERVICES_DIR']}.lock").unlink(missing_ok=True)
