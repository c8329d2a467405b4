"""Checks of the service's files before it starts (``lifecycle serve``): a damaged store or
ledger must stop the start once, with what is wrong and what to do, instead of a worker that
fails on every start while the port stays open.

Each check opens the SQLite file read-only (never creating or changing it), runs
``PRAGMA quick_check`` and looks for the tables the service needs. A file that does not exist
yet is fine (the ledger is created empty; a service without a store answers not ready).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

LEDGER_TABLES = frozenset({"decisions", "feedback", "feedback_rejected"})
STORE_TABLES = frozenset({"store_meta", "store_versions"})
TIMEOUT_SECONDS = 5.0  # a file locked longer than this is reported, never waited on forever


def sqlite_problem(path: Path, kind: str, tables: frozenset[str]) -> str | None:
    """Why ``path`` cannot serve as the ``kind`` (None: absent or sound)."""
    if not path.exists():
        return None
    try:
        with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                             timeout=TIMEOUT_SECONDS) as conn:  # fmt: skip
            found = conn.execute("PRAGMA quick_check").fetchall()
            if found != [("ok",)]:
                first = "; ".join(str(row[0]) for row in found[:3])
                return f"the {kind} {path} is damaged (SQLite quick_check: {first})"
            names = {row[0] for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}  # fmt: skip
    except sqlite3.DatabaseError as err:
        return f"the {kind} {path} is not a readable SQLite database ({err})"
    missing = sorted(tables - names)
    if missing:
        return f"the {kind} {path} is a SQLite file of something else: it lacks {missing}"
    return None


def problems(store: Path, ledger: Path) -> list[str]:
    """Every problem of the store and the ledger, each with what to do."""
    found = []
    store_problem = sqlite_problem(store, "online store", STORE_TABLES)
    if store_problem:
        found.append(f"{store_problem}; re-materialise it (`lifecycle features materialize "
                     f"DATA --store {store}`) after moving the file aside")  # fmt: skip
    ledger_problem = sqlite_problem(ledger, "feedback ledger", LEDGER_TABLES)
    if ledger_problem:
        found.append(f"{ledger_problem}; restore it from a backup, or move it aside to start "
                     "an empty ledger (its decisions and feedback are then lost to contact "
                     "caps, cooldowns and learning)")  # fmt: skip
    return found
