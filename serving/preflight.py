"""Checks of the service's files before it starts (``lifecycle serve``): a damaged store or
ledger must stop the start once, with what is wrong and what to do, instead of a worker that
fails on every start while the port stays open.

Each check opens the SQLite file read-only (never creating or changing it), runs
``PRAGMA quick_check`` and looks for the tables the service needs; the store's current
version must be readable and hold every column the champion models read (the models are
loaded here, as the service will: :func:`models_problem`). A file that does not exist yet is
fine (the ledger is created empty; a service without a store answers not ready), and so are
champions not promoted yet (the service picks them up from the registry). A ledger on
PostgreSQL must be reachable, with its tables all there or none yet; so must an online store
on Redis or PostgreSQL, with a readable current-version pointer.
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
    return problem and (f"{problem}; run `lifecycle ledger repair {target}` (it copies the "
                        "readable rows into a new ledger and keeps the damaged file aside), or "
                        "restore it from a backup, or move it aside to start an empty ledger "
                        "(its decisions and feedback are then lost to contact caps, cooldowns "
                        "and learning)")  # fmt: skip


def server_store_problem(url: str) -> str | None:
    """Why the server store (Redis or PostgreSQL) at ``url`` cannot serve: unreachable (PING,
    ``SELECT 1``), or its current-version pointer and metadata unreadable. No version yet is
    fine, as a missing SQLite file is."""
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
    or PostgreSQL server reachable with a readable pointer (:func:`server_store_problem`)."""
    from features.store.factory import sqlite_path

    path = sqlite_path(store)
    if path is None:
        return server_store_problem(str(store))
    problem = sqlite_problem(path, "online store", STORE_TABLES) or _version_problem(path)
    return problem and (f"{problem}; re-materialise it (`lifecycle features materialize "
                        f"DATA --store {store}`) after moving the file aside")  # fmt: skip


def models_problem(models: str, store: str | Path, alias: str = "champion") -> str | None:
    """Why the champion models (``"registry"`` at ``MLFLOW_TRACKING_URI``, or an export
    folder) cannot be served from the store's current version: they do not load, were
    trained with another project config, or read columns the version lacks. None when they
    can, when the store has no version yet, or when the registry has no champions yet."""
    from features.store import StoreUnavailableError, open_store
    from serving import bundle as bundles
    from serving.consistency import ConfigMismatch, missing_columns, models_config
    from serving.consistency import store_problem as config_problem

    try:
        version = open_store(store).current()
    except StoreUnavailableError as err:
        return str(err)
    if version is None:
        return None
    try:
        loaded = _load_models(models, alias)
        _, fingerprint = models_config(loaded)
    except ConfigMismatch as err:
        return str(err)
    except bundles.ModelsUnavailable as err:
        return None if models == "registry" else f"{err}"
    except Exception as err:  # noqa: BLE001 - an unreadable model file: name it, no traceback
        where = "the registry's champions" if models == "registry" else f"the models in {models}"
        return (f"{where} cannot be loaded ({type(err).__name__}: {err}); export them again "
                "(`lifecycle export`) or promote sound ones")  # fmt: skip
    address = getattr(open_store(store), "address", str(store))
    inputs = {name: [str(c) for c in getattr(loaded, name).feature_names_in_]
              for name in ("churn", "stage", "offers", "clv")
              if getattr(loaded, name, None) is not None}  # fmt: skip
    return config_problem(fingerprint, version.feature_set, version.version, address) or \
        missing_columns(inputs, version, address)  # fmt: skip


def _load_models(models: str, alias: str):
    """The models the service would load (``serving.bundle``)."""
    from serving import bundle as bundles

    if models != "registry":
        return bundles.from_folder(models)
    import mlflow

    from training.registry import tracking_uri

    mlflow.set_tracking_uri(tracking_uri())
    return bundles.from_registry(alias)


def _version_problem(path: Path) -> str | None:
    """Why the store's current version cannot be read (its metadata or its table), if so."""
    from features.store import OnlineStore, StoreUnavailableError

    if not path.exists():
        return None
    store = OnlineStore(path)
    try:
        version = store.current()
        if version is not None:
            store.lookup([])  # reads the version's table: there, and of the expected layout
    except (StoreUnavailableError, KeyError, ValueError) as err:
        return f"the online store {path} has no readable current version ({err})"
    finally:
        store.close()
    return None


def problems(store: str | Path, ledger: str | Path, models: str | None = None) -> list[str]:
    """Every problem of the store and the ledger, each with what to do; with ``models``
    (``"registry"`` or an export folder), also of the models against the sound store."""
    found = []
    store_found = store_problem(store)
    if store_found:
        found.append(store_found)
    elif models is not None:
        models_found = models_problem(models, store)
        if models_found:
            found.append(models_found)
    ledger_found = ledger_problem(ledger)
    if ledger_found:
        found.append(ledger_found)
    return found
