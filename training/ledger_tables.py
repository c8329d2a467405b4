"""Where the service's feedback ledger lives and how tools read it (``serving/ledger.py`` writes
it): a SQLite file (a path or ``sqlite:///PATH``) or a PostgreSQL database
(``postgresql://...``). Training and monitoring read the ledger through :func:`read_tables`,
read-only, whichever the backend (the service may be writing meanwhile)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pandas as pd

POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
CONNECT_TIMEOUT = 5  # seconds to reach a PostgreSQL server


def parse_location(location: str | Path) -> tuple[str, str]:
    """``("sqlite", path)`` or ``("postgresql", url)`` for a ledger location: a file path,
    ``sqlite:///relative/path``, ``sqlite:////absolute/path`` or ``postgresql://...``
    (``postgres://`` and ``postgresql+psycopg://`` too). Other URL schemes raise."""
    text = str(location)
    if isinstance(location, Path) or "://" not in text:
        return "sqlite", text
    scheme = text.split("://", 1)[0].lower()
    if scheme == "sqlite":
        path = text[len("sqlite:///") :] if text.startswith("sqlite:///") else ""
        if not path:
            raise ValueError(f"ledger: a SQLite URL needs a path, sqlite:///PATH; got {text!r}")
        return "sqlite", path
    if scheme in POSTGRES_SCHEMES:
        return "postgresql", "postgresql://" + text.split("://", 1)[1]
    raise ValueError(f"ledger: unknown backend {scheme!r} in {describe(text)!r}; use a file "
                     "path, sqlite:///PATH or postgresql://USER@HOST:PORT/DATABASE")  # fmt: skip


def describe(location: str | Path) -> str:
    """``location`` fit for messages and logs: a URL's password replaced by ``***``."""
    text = str(location)
    if "://" not in text:
        return text
    parts = urlsplit(text)
    if parts.password is None:
        return text
    netloc = f"{parts.username or ''}:***@{parts.netloc.rsplit('@', 1)[1]}"
    return urlunsplit(parts._replace(netloc=netloc))


def unreachable_message(url: str, err: Exception) -> str:
    """What to say when the server at ``url`` cannot be reached (password elided)."""
    reason = " ".join(str(err).split()) or type(err).__name__
    return (f"the feedback ledger {describe(url)} is unavailable ({reason}); check that "
            "PostgreSQL is running and the URL is right")  # fmt: skip


def read_tables(location: str | Path, queries: dict[str, str]) -> dict[str, pd.DataFrame]:
    """Run each read-only ``SELECT`` of ``queries`` (name -> SQL both backends read alike)
    on the ledger at ``location`` without changing it.

    Raises FileNotFoundError for a SQLite file that does not exist, ValueError for a database
    that is not a readable ledger, ConnectionError for a server that cannot be reached."""
    kind, target = parse_location(location)
    if kind == "postgresql":
        return _read_postgres(target, queries)
    path = Path(target)
    if not path.is_file():
        raise FileNotFoundError(f"the feedback ledger {path} does not exist")
    with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as conn:
        try:
            return {name: pd.read_sql_query(sql, conn) for name, sql in queries.items()}
        except (sqlite3.DatabaseError, pd.errors.DatabaseError) as err:
            raise ValueError(f"{path} is not a readable feedback ledger: {err}") from None


def columns(location: str | Path, table: str) -> set[str]:
    """The names of ``table``'s columns in the ledger at ``location`` (read-only), so that a
    tool can read a ledger written by an earlier version, which lacks the newer ones (errors
    as :func:`read_tables`)."""
    if parse_location(location)[0] == "postgresql":
        sql = ("SELECT column_name AS name FROM information_schema.columns "
               f"WHERE table_schema = current_schema() AND table_name = '{table}'")  # fmt: skip
    else:
        sql = f"SELECT name FROM pragma_table_info('{table}')"
    return set(read_tables(location, {"columns": sql})["columns"]["name"])


def _read_postgres(url: str, queries: dict[str, str]) -> dict[str, pd.DataFrame]:
    """Each ``SELECT`` of ``queries`` as a frame, in one read-only transaction."""
    import psycopg

    try:
        conn = psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT)
    except psycopg.OperationalError as err:
        raise ConnectionError(unreachable_message(url, err)) from None
    try:
        conn.execute("SET TRANSACTION READ ONLY")
        out = {}
        for name, sql in queries.items():
            cur = conn.execute(sql)
            columns = [c.name for c in cur.description]
            out[name] = pd.DataFrame.from_records(cur.fetchall(), columns=columns)
        return out
    except psycopg.errors.UndefinedTable as err:
        raise ValueError(f"{describe(url)} is not a readable feedback ledger: {err}") from None
    except psycopg.OperationalError as err:
        raise ConnectionError(unreachable_message(url, err)) from None
    finally:
        conn.close()
