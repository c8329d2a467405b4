"""`lifecycle serve` checks the store and the ledger before it starts (issue 15, point 1):
a damaged file stops the start once, naming the file, what is wrong and what to do."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.store import OnlineStore
from serving.cli import app
from serving.client import LocalService, free_port
from serving.ledger import _DDL
from serving.preflight import problems


@pytest.fixture
def sound(tmp_path):
    ledger = tmp_path / "ledger.sqlite"
    conn = sqlite3.connect(ledger)  # the ledger's schema, with no connection left open (a
    for ddl in _DDL:  # FeedbackLedger's would checkpoint its log over the damage later)
        conn.execute(ddl)
    conn.commit()
    conn.close()
    store = tmp_path / "online.sqlite"
    vectors = pd.DataFrame({"customer_id": ["a", "b"], "x": [1.0, 2.0]})
    OnlineStore(store).materialize(vectors, pd.Timestamp("2025-01-01", tz="UTC"), "test")
    return store, ledger


def test_sound_or_absent_files_pass(sound, tmp_path):
    store, ledger = sound
    assert problems(store, ledger) == []
    assert problems(tmp_path / "none.sqlite", tmp_path / "new.sqlite") == []


def damage(path, how: str) -> None:
    """Damage a database file at rest (its write-ahead log gone, as after a clean stop: a
    log would still hold the pages and mask the damage)."""
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    if how == "random bytes":
        path.write_bytes(bytes(range(256)) * 64)
    elif how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3 + 100])
    else:  # another schema: a SQLite file of something else
        path.unlink()
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE other (x)")


@pytest.mark.parametrize("how", ["random bytes", "truncated", "another schema"])
def test_a_damaged_ledger_or_store_is_named_with_what_to_do(sound, how):
    store, ledger = sound
    with sqlite3.connect(ledger) as conn:  # enough pages for a truncation to hurt
        conn.executemany("INSERT INTO feedback_rejected VALUES (?,?,?,?)",
                         [(1.0, f"e{i}", "r", "x" * 500) for i in range(200)])  # fmt: skip
    damage(ledger, how)
    found = problems(store, ledger)
    assert len(found) == 1 and str(ledger) in found[0] and "feedback ledger" in found[0]
    assert "move it aside" in found[0]
    damage(store, how)
    found = problems(store, ledger)
    assert len(found) == 2 and str(store) in found[0] and "lifecycle features materialize" \
        in found[0]  # fmt: skip


def test_lifecycle_serve_refuses_to_start_on_a_damaged_ledger(sound):
    store, ledger = sound
    damage(ledger, "random bytes")
    result = CliRunner().invoke(app, ["serve", "--store", str(store), "--ledger", str(ledger),
                                      "--port", "1"])  # fmt: skip
    assert result.exit_code == 1
    assert "is not a readable SQLite database" in result.output and "starting" not in result.output


# ---- through `lifecycle serve`, a real process (issue 15, point 1) --------------------------

LIFECYCLE = Path(sys.executable).with_name("lifecycle")


@pytest.fixture
def served(world, tmp_path):
    """A copy of the trained world's store, a ledger with rows and the export folder."""
    store = tmp_path / "online.sqlite"
    shutil.copy(world["folder"] / "store" / "online.sqlite", store)
    ledger = tmp_path / "ledger.sqlite"
    fill_ledger(ledger)
    return store, ledger, world["folder"] / "export"


def fill_ledger(ledger: Path, rows: int = 200) -> None:
    """A ledger with ``rows`` rejected events (enough pages for a truncation to hurt), its
    log checkpointed into the file and no connection left open."""
    conn = sqlite3.connect(ledger)
    for ddl in _DDL:
        conn.execute(ddl)
    conn.executemany("INSERT INTO feedback_rejected VALUES (?,?,?,?)",
                     [(1.0, f"e{i}", "r", "x" * 500) for i in range(rows)])  # fmt: skip
    conn.commit()
    conn.close()


def serve_once(store: Path, ledger: Path, models: Path, tmp_path: Path) -> tuple[int, str, bool]:
    """Run `lifecycle serve` on a free port until it exits (at most 120 s); its exit code,
    its output (whitespace folded) and whether the port ever accepted a connection."""
    port = free_port()
    env = {**os.environ, "COLUMNS": "500", "BENTOML_HOME": str(tmp_path / "bentoml")}
    process = subprocess.Popen(
        [str(LIFECYCLE), "serve", "--store", str(store), "--ledger", str(ledger),
         "--models", str(models), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    opened = False
    try:
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            with socket.socket() as s:
                s.settimeout(0.2)
                opened = opened or s.connect_ex(("127.0.0.1", port)) == 0
            time.sleep(0.05)
    finally:
        if process.poll() is None:
            process.kill()
        output = process.communicate(timeout=30)[0]
    return process.returncode, " ".join(output.split()), opened


DAMAGE = {  # case -> (file damaged, damage, what the message says is wrong, what to do)
    "ledger random bytes": ("ledger", "random bytes", "not a readable SQLite database",
                            "lifecycle ledger repair"),
    "ledger truncated": ("ledger", "truncated", "feedback ledger", "lifecycle ledger repair"),
    "ledger another schema": ("ledger", "another schema", "a SQLite file of something else",
                              "lifecycle ledger repair"),
    "store garbage": ("store", "random bytes", "not a readable SQLite database",
                      "lifecycle features materialize"),
    "store lacking three model columns": ("store", "columns", "lacks column(s) the models read",
                                          "lifecycle features materialize"),
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("case", list(DAMAGE))
def test_lifecycle_serve_exits_once_naming_the_file_the_problem_and_the_fix(
    served, world, tmp_path, case
):
    store, ledger, models = served
    which, how, wrong, fix = DAMAGE[case]
    path = store if which == "store" else ledger
    if how == "columns":
        vectors = world["vectors"]
        dropped = [c for c in vectors.columns if c != "customer_id"][:3]
        OnlineStore(store).materialize(vectors.drop(columns=dropped), world["tables"].end,
                                       world["label"])  # fmt: skip
        wrong = f"{wrong} (churn model: {dropped}"
    else:
        damage(path, how)
    code, output, opened = serve_once(store, ledger, models, tmp_path)
    assert code == 1, output
    assert str(path) in output and wrong in output and fix in output, output
    assert output.count("error:") == 1 and "starting the decision API" not in output
    assert not opened  # the port never opened


@pytest.mark.slow
def test_bare_bentoml_serve_on_a_damaged_ledger_starts_once_says_why_and_recovers(
    served, world, tmp_path
):
    """`bentoml serve` has no preflight: the worker must start once (no restart loop with
    the port open and `/livez` silent), answer 503 naming the ledger and the fix, and serve
    once the damaged file is moved aside (as the message says)."""
    store, ledger, models = served
    damage(ledger, "random bytes")
    customer = str(world["vectors"]["customer_id"].iloc[0])
    service = LocalService(store, ledger, models, workdir=tmp_path / "bare").start(wait=False)
    try:
        live = wait_for(lambda: httpx.get(f"{service.url}/livez", timeout=2), 200, 120)
        assert live.status_code == 200, service.log_tail()
        ready = httpx.get(f"{service.url}/readyz", timeout=5)
        assert ready.status_code == 503 and str(ledger) in ready.text, ready.text
        assert "lifecycle ledger repair" in ready.text
        decide = httpx.post(f"{service.url}/decide", json={"customer_ids": [customer]},
                            timeout=10)  # fmt: skip
        assert decide.status_code == 503 and "feedback ledger" in decide.text, decide.text
        log = service.log.read_text()
        assert "Application startup failed" not in log and log.count("Traceback") == 0, log
        ledger.rename(ledger.with_name("ledger.damaged"))  # the fix the message names
        ready = wait_for(lambda: httpx.get(f"{service.url}/readyz", timeout=5), 200, 60)
        assert ready.status_code == 200, ready.text
        decide = httpx.post(f"{service.url}/decide", json={"customer_ids": [customer]},
                            timeout=10)  # fmt: skip
        assert decide.status_code == 200, decide.text
    finally:
        service.stop()


def wait_for(ask, status: int, seconds: float):
    """``ask()`` until it answers ``status`` or ``seconds`` pass; the last answer (a refused
    connection retries)."""
    deadline, answer = time.monotonic() + seconds, None
    while time.monotonic() < deadline:
        try:
            answer = ask()
            if answer.status_code == status:
                return answer
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    return answer


# ---- `lifecycle ledger check|repair` --------------------------------------------------------


def test_ledger_check_names_the_damage_and_repair_keeps_the_readable_rows(tmp_path):
    ledger = tmp_path / "ledger.sqlite"
    fill_ledger(ledger, rows=2000)
    runner = CliRunner()
    sound = runner.invoke(app, ["ledger", "check", str(ledger)], env={"COLUMNS": "500"})
    assert sound.exit_code == 0 and "feedback_rejected 2,000" in sound.output
    size = ledger.stat().st_size
    with ledger.open("r+b") as f:  # a stretch of pages in the middle overwritten
        f.seek(size // 2)
        f.write(os.urandom(4096 * 8))
    found = runner.invoke(app, ["ledger", "check", str(ledger)], env={"COLUMNS": "500"})
    assert found.exit_code == 1 and str(ledger) in found.output and "damaged" in found.output
    repaired = runner.invoke(app, ["ledger", "repair", str(ledger)], env={"COLUMNS": "500"})
    assert repaired.exit_code == 0, repaired.output
    aside = list(tmp_path.glob("ledger.sqlite.damaged-*"))
    assert len(aside) == 1 and aside[0].stat().st_size == size  # kept as it was
    assert problems(tmp_path / "none.sqlite", ledger) == []  # the new one is sound
    with sqlite3.connect(ledger) as conn:
        kept = conn.execute("SELECT COUNT(*) FROM feedback_rejected").fetchone()[0]
    assert 1000 < kept < 2000  # what the damaged pages held is gone, the rest is there
    assert f"feedback_rejected {kept:,}" in repaired.output


def test_ledger_repair_of_a_garbage_file_keeps_it_aside_and_starts_empty(tmp_path):
    ledger = tmp_path / "ledger.sqlite"
    ledger.write_bytes(bytes(range(256)) * 64)
    result = CliRunner().invoke(app, ["ledger", "repair", str(ledger)], env={"COLUMNS": "500"})
    assert result.exit_code == 0 and "decisions 0" in result.output
    assert problems(tmp_path / "none.sqlite", ledger) == []
    assert len(list(tmp_path.glob("ledger.sqlite.damaged-*"))) == 1
