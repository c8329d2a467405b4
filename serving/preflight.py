"""Checks of the service's files before it starts (``lifecycle serve``): a damaged store or
ledger must stop the start once, with what is wrong and what to do, instead of a worker that
fails on every start while the port stays open.

Each check opens the SQLite file read-only (never creating or changing it), runs
``PRAGMA quick_check`` and looks for the tables the service needs. A file that does not exist
yet is fine (the ledger is created empty; a service without a store answers not ready). A
ledger on PostgreSQL must be reachable, with its tables all there or none yet.
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


def ledger_problem(ledger: str | Path) -> str | None:
    """What is wrong with the ledger, with what to do: a SQLite file as above; a PostgreSQL
    URL connected to, its tables all there or none yet (``postgres_problem``)."""
    from serving.ledger_common import parse_location

    kind, target = parse_location(ledger)
    if kind == "postgresql":
        from serving.ledger_postgres import postgres_problem

        return postgres_problem(target)
    problem = sqlite_problem(Path(target), "feedback ledger", LEDGER_TABLES)
    return problem and (f"{problem}; restore it from a backup, or move it aside to start an "
                        "empty ledger (its decisions and feedback are then lost to contact "
                        "caps, cooldowns and learning)")  # fmt: skip


def redis_store_problem(url: str) -> str | None:
    """Why the Redis store at ``url`` cannot serve: unreachable (PING), or its current-version
    pointer and metadata unreadable. No version yet is fine, as a missing SQLite file is."""
    from features.store import StoreUnavailableError, open_store

    try:
        store = open_store(url)
    except ValueError as err:  # not a kind of store we know
        return str(err)
    try:
        store.ping()
        store.current()
    except StoreUnavailableError as err:
        return str(err)
    except Exception as err:  # a prefix holding something else: WRONGTYPE, bad metadata
        what = f"{type(err).__name__}: {err}"
        return (
            f"the online store {store.address} holds something else under its prefix "
            f"({what}); use another ?prefix= or re-materialise it"
        )
    finally:
        store.close()
    return None


def store_problem(store: str | Path) -> str | None:
    """What is wrong with the online store, with what to do: a SQLite file as above; a Redis
    server reachable with a readable pointer (:func:`redis_store_problem`)."""
    from features.store.factory import sqlite_path

    path = sqlite_path(store)
    if path is None:
        return redis_store_problem(str(store))
    problem = sqlite_problem(path, "online store", STORE_TABLES)
    return problem and (f"{problem}; re-materialise it (`lifecycle features materialize "
                        f"DATA --store {store}`) after moving the file aside")  # fmt: skip


def problems(store: str | Path, ledger: str | Path) -> list[str]:
    """Every problem of the store and the ledger, each with what to do."""
    found = []
    store_found = store_problem(store)
    if store_found:
        found.append(store_found)
    ledger_found = ledger_problem(ledger)
    if ledger_found:
        found.append(ledger_found)
    return found
