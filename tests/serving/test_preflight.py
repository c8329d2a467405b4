"""`lifecycle serve` checks the store and the ledger before it starts (issue 15, point 1):
a damaged file stops the start once, naming the file, what is wrong and what to do."""

from __future__ import annotations

import sqlite3

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.store import OnlineStore
from serving.cli import app
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
