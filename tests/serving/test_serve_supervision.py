"""``lifecycle serve`` stops the server it started whenever it exits (real processes): an
exception after readiness, SIGTERM to the command, the server exiting by itself."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from serving.cli import supervise
from serving.client import free_port
from tests.serving.test_client import alive, gone

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# A stand-in server with a child of its own (like BentoML's arbiter and its workers) that
# ignores SIGTERM, so only the SIGKILL after the grace period ends it; writes both pids.
STAND_IN = """
import os, signal, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"])
open(sys.argv[1], "w").write(f"{os.getpid()} {child.pid}")
time.sleep(120)
"""


def stand_in(tmp_path: Path) -> tuple[list[str], Path]:
    script, pids = tmp_path / "stand_in.py", tmp_path / "pids.txt"
    script.write_text(STAND_IN)
    return [sys.executable, str(script), str(pids)], pids


def wait_for(path: Path, timeout: float = 15.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while not (path.exists() and len(path.read_text().split()) == 2):
        assert time.monotonic() < deadline, f"{path} never written"
        time.sleep(0.05)
    return [int(p) for p in path.read_text().split()]


def test_an_exception_after_readiness_stops_the_whole_group(tmp_path):
    command, pids = stand_in(tmp_path)
    started: list[int] = []

    def ready(process) -> bool:
        started.extend(wait_for(pids))
        return True

    def on_ready() -> None:
        raise RuntimeError("printing the calls failed")

    with pytest.raises(RuntimeError, match="printing the calls failed"):
        supervise(command, dict(os.environ), ready, on_ready, grace=1.0)
    assert len(started) == 2 and gone(started, timeout=5)  # the child needed the SIGKILL


def test_a_server_that_exits_returns_its_code_and_leaves_nothing(tmp_path):
    code = supervise([sys.executable, "-c", "import sys; sys.exit(3)"], dict(os.environ),
                     lambda process: process.wait() is None, lambda: None)  # fmt: skip
    assert code == 3


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_sigterm_to_lifecycle_serve_stops_its_bentoml_server(tmp_path):
    """The real command and server (no models: it answers /livez, never ready), SIGTERM'd."""
    port = free_port()
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}  # fmt: skip
    command = [str(Path(sys.executable).parent / "lifecycle"), "serve", "--models",
               str(tmp_path / "no-models"), "--store", str(tmp_path / "online.sqlite"),
               "--ledger", str(tmp_path / "ledger.sqlite"), "--port", str(port)]  # fmt: skip
    log = (tmp_path / "serve.log").open("w")
    serve = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not _answers(port):
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(0.3)
        servers = [p.pid for p in psutil.Process(serve.pid).children(recursive=True)]
        assert servers and all(alive(p) for p in servers)
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(60) == 0
        assert gone(servers, timeout=10) and not port_open(port)
    finally:
        if serve.poll() is None:
            serve.kill()


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/livez", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_worker_stops_when_its_supervisor_is_killed(world, tmp_path):
    """SIGKILL to BentoML's supervisor alone (as the OOM killer does): its worker, orphaned,
    gets SIGTERM from the kernel (serving.service.stop_with_supervisor) and exits instead of
    holding the port and the ledger with nobody left to stop it."""
    import shutil

    from serving.client import LocalService

    store = tmp_path / "online.sqlite"
    shutil.copy(world["folder"] / "store" / "online.sqlite", store)
    running = LocalService(store, tmp_path / "ledger.sqlite", models=world["folder"] / "export",
                           config={"compile_cache": str(world["folder"] / "trees"),
                                   "reload_seconds": 0},
                           workdir=tmp_path / "service").start()  # fmt: skip
    try:
        supervisor = psutil.Process(running.process.pid)
        workers = [p.pid for p in supervisor.children(recursive=True)
                   if "_bentoml_impl.worker" in " ".join(p.cmdline())]  # fmt: skip
        assert workers, supervisor.children(recursive=True)
        os.kill(supervisor.pid, signal.SIGKILL)  # the supervisor only, not its group
        assert gone(workers, timeout=30), f"workers {workers} outlived their supervisor"
    finally:
        running.stop()
