"""One entry point for every online store, chosen by URL (DESIGN section 9).

``open_store("store/online.sqlite")`` or ``open_store("sqlite:///store/online.sqlite")``: the
embedded SQLite store (:class:`features.store.OnlineStore`); ``open_store("redis://host:6379/0")``
(optionally ``?prefix=name``): the Redis store (:class:`features.store.redis_store.RedisStore`);
``open_store("postgresql://user@host:5432/db")`` (or ``postgres://``, optionally ``?prefix=name``,
a schema): the PostgreSQL store (:class:`features.store.postgres_store.PostgresStore`). All
have the same interface and guarantees.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from features.store.online import OnlineStore
from features.store.postgres_store import PostgresStore
from features.store.redis_store import RedisStore

SQLITE_PREFIX = "sqlite:///"
SUPPORTED = (
    "a file path, sqlite:///PATH, redis://HOST:PORT/DB (or rediss://...) or "
    "postgresql://USER@HOST:PORT/DB (or postgres://...)"
)


def is_url(location: str | Path) -> bool:
    """Whether ``location`` is a URL (``scheme://...``) rather than a file path."""
    return isinstance(location, str) and "://" in location


def sqlite_path(location: str | Path) -> Path | None:
    """The SQLite file ``location`` names (a path or ``sqlite:///path``), or None for a
    server URL."""
    if isinstance(location, Path):
        return location
    if location.startswith(SQLITE_PREFIX):
        return Path(location[len(SQLITE_PREFIX) :])
    return None if is_url(location) else Path(location)


def open_store(location: str | Path) -> OnlineStore | RedisStore | PostgresStore:
    """The online store at ``location`` (nothing is opened or connected before first use).

    Raises
    ------
    ValueError
        If ``location`` is empty or a URL of an unsupported kind.
    """
    if not str(location).strip():
        raise ValueError(f"store must be {SUPPORTED}; got an empty value")
    path = sqlite_path(location)
    if path is not None:
        return OnlineStore(path)
    scheme = urlsplit(str(location)).scheme
    if scheme in ("redis", "rediss"):
        return RedisStore(str(location))
    if scheme in ("postgresql", "postgres"):
        return PostgresStore(str(location))
    raise ValueError(f"store must be {SUPPORTED}; got the scheme {scheme!r} in {location!r}")


def absolute_location(location: str | Path) -> str:
    """``location`` for another process with another working directory: SQLite paths made
    absolute (kept as plain paths), server URLs unchanged."""
    path = sqlite_path(location)
    return str(location) if path is None else str(path.resolve())
