"""The online feature store: versioned per-customer vectors in one SQLite file.

Writers materialise a whole version into a new table and move the ``current_version`` pointer
in the same transaction; readers read the pointer and the rows inside one read transaction.
In WAL mode a read transaction sees one snapshot of the database for its whole life, so a
reader sees either the old version or the new one, complete, and never a mix.

A file that cannot be read (damaged, locked longer than ``READ_TIMEOUT_S``, gone) raises
:class:`StoreUnavailableError` naming it and what to do (the service answers 503 with it);
the thread's connection is then dropped, so a file re-materialised in its place is read anew.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from features.store._decode import decode_rows, lookup_to_frame
from features.store._encode import column_specs, encode_rows, normalise_as_of
from features.store._schema import (
    POINTER_SQL,
    create_meta,
    create_vectors_table,
    drop_versions,
    insert_version,
    lookup_sql,
    read_version,
    read_versions,
    set_current,
)
from features.store._sqlite import Connections, checkpoint, read_txn, unreadable, write_txn
from features.store._types import Lookup, NoVersionError, StoreVersion

R = TypeVar("R")


def _reading(method: Callable[..., R]) -> Callable[..., R]:
    """``method`` of :class:`OnlineStore` with SQLite errors turned into
    :class:`StoreUnavailableError` (:func:`unreadable`), after dropping this thread's
    connection and the cached versions (the file may be replaced before the next call)."""

    @functools.wraps(method)
    def reading(self: OnlineStore, *args: Any, **kwargs: Any) -> R:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as err:
            self._connections.close()
            self._versions.clear()
            raise unreadable(self.path, err) from None

    return reading


def _no_table(exc: sqlite3.OperationalError) -> bool:
    return "no such table" in str(exc)


def _as_ids(customer_ids: Sequence[Any]) -> list[str]:
    if isinstance(customer_ids, str | bytes):
        raise TypeError("customer_ids must be a sequence of ids, not one string; wrap it in a list")
    return [str(i) for i in customer_ids]


def _check_args(feature_set: str, keep_versions: int) -> None:
    if not isinstance(feature_set, str) or not feature_set.strip():
        raise ValueError(f"feature_set must be a non-empty name; got {feature_set!r}")
    if not isinstance(keep_versions, int) or keep_versions < 1:
        raise ValueError(f"keep_versions must be an int >= 1; got {keep_versions!r}")


def _write_version(
    conn: sqlite3.Connection, draft: StoreVersion, vectors: pd.DataFrame
) -> StoreVersion:
    """Write the rows, the version row and the pointer in one transaction; return the version."""
    with write_txn(conn):  # nothing below is visible to readers before COMMIT
        create_meta(conn)
        version = insert_version(conn, draft)
        create_vectors_table(conn, version, encode_rows(vectors, version.columns))
        set_current(conn, version.version)
    return version


class OnlineStore:
    """Versioned per-customer feature vectors in a SQLite file, for fast look-up by id.

    Nothing is opened until first use; each thread (and each process after ``fork``) gets
    its own connection, so one instance can be shared by threads and by forked workers.

    Parameters
    ----------
    path : str or Path
        The SQLite file. Created (with its folder) by the first :meth:`materialize`;
        readers never create it.
    """

    def __init__(self, path: str | Path) -> None:
        if str(path) == ":memory:":
            raise ValueError("OnlineStore needs a file path: ':memory:' is private per connection")
        self.path = Path(path)
        self._connections = Connections(self.path)
        self._versions: dict[int, StoreVersion] = {}

    @property
    def address(self) -> str:
        """Where the store lives, for messages (the file's path)."""
        return str(self.path)

    def __repr__(self) -> str:
        return f"OnlineStore({str(self.path)!r})"

    def __reduce__(self) -> tuple:
        """Pickle as the path only: a process unpickling it opens its own connections."""
        return (OnlineStore, (self.path,))

    def materialize(
        self, vectors: pd.DataFrame, as_of: Any, feature_set: str, *, keep_versions: int = 2
    ) -> StoreVersion:
        """Write ``vectors`` as a new version and make it current, atomically.

        Parameters
        ----------
        vectors : pandas.DataFrame
            ``customer_id`` (unique, non-missing) plus numeric (float/int/bool, nullable
            allowed) and categorical (``category``/``str``/``object``) feature columns.
        as_of : timestamp-like
            Time the features were computed as of; naive is read as UTC.
        feature_set : str
            Name of the feature set (stored with the version).
        keep_versions : int, default 2
            Versions kept after the switch, the new current one included; older ones are
            dropped. Dropped pages are reused, so the file settles at about
            ``keep_versions + 1`` versions' size (the new one is written before the drop).

        Returns
        -------
        StoreVersion
            The new current version.

        Raises
        ------
        ValueError
            If the frame breaks a rule (see :func:`features.store._encode.column_specs`).
        """
        _check_args(feature_set, keep_versions)
        specs = column_specs(vectors)
        now = pd.Timestamp.now(tz="UTC")
        draft = StoreVersion(0, feature_set, normalise_as_of(as_of), now, len(vectors), specs)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._connections.get()
        version = _write_version(conn, draft, vectors)
        # Dropping is safe for readers still on an old version: a WAL read transaction keeps
        # its snapshot (pointer, schema and pages) until it ends, and checkpoints never
        # overwrite pages an open snapshot still needs; readers starting now follow the new
        # pointer. A separate transaction, so the switch is not delayed by the drop; if it
        # fails, the next materialize drops the leftovers. The current version is never dropped.
        with write_txn(conn):
            drop_versions(conn, keep_versions)
        checkpoint(conn)
        self._versions[version.version] = version
        return version

    def activate(self, version: int) -> StoreVersion:
        """Make a live ``version`` current again (roll back); return its metadata.

        Raises
        ------
        ValueError
            If ``version`` is not in the store.
        """
        conn = self._reader()
        with write_txn(conn):
            create_meta(conn)
            live = {v.version: v for v in read_versions(conn)}
            if version not in live:
                raise ValueError(f"version {version} is not in {self.path}; live: {sorted(live)}")
            set_current(conn, version)
        return live[version]

    @_reading
    def current(self) -> StoreVersion | None:
        """Return the current version's metadata, or None if nothing was materialised."""
        if not self._readable():
            return None
        conn = self._connections.get()
        with read_txn(conn):
            return self._current(conn)

    @_reading
    def versions(self) -> list[StoreVersion]:
        """Return the live versions, oldest first (empty if nothing was materialised)."""
        if not self._readable():
            return []
        with read_txn(self._connections.get()) as conn:
            try:
                return read_versions(conn)
            except sqlite3.OperationalError as exc:
                if _no_table(exc):
                    return []
                raise

    @_reading
    def lookup(self, customer_ids: Sequence[str]) -> Lookup:
        """Return the vectors of ``customer_ids`` from the current version.

        Pointer and rows are read in one transaction, so the whole call sees one version.
        Rows follow the request order (duplicates kept); unknown ids give NaN / None rows,
        ``found[i] == False`` and are listed in ``missing``.

        Raises
        ------
        NoVersionError
            If nothing was materialised yet.
        """
        ids = _as_ids(customer_ids)
        with read_txn(self._reader()) as conn:
            version = self._current(conn)
            if version is None:
                raise self._no_version()
            sql = lookup_sql(version.table, len(version.categorical_columns))
            rows = conn.execute(sql, (json.dumps(ids),)).fetchall()
        return decode_rows(rows, ids, version)

    @_reading
    def customer_ids(self) -> list[str]:
        """Every customer id of the current version, in storage order.

        Raises
        ------
        NoVersionError
            If nothing was materialised yet.
        """
        with read_txn(self._reader()) as conn:
            version = self._current(conn)
            if version is None:
                raise self._no_version()
            rows = conn.execute(f"SELECT customer_id FROM {version.table} ORDER BY rid").fetchall()
        return [row[0] for row in rows]

    def lookup_frame(self, customer_ids: Sequence[str]) -> pd.DataFrame:
        """Like :meth:`lookup`, as a frame of the found rows with the materialised dtypes.

        ``frame.attrs`` holds ``version``, ``feature_set``, ``as_of`` and ``missing``.
        """
        return lookup_to_frame(self.lookup(customer_ids))

    def close(self) -> None:
        """Close this thread's connection; the next call opens a new one."""
        self._connections.close()

    def _readable(self) -> bool:
        return self._connections.opened() or self.path.exists()

    def _reader(self) -> sqlite3.Connection:
        if not self._readable():
            raise self._no_version()
        return self._connections.get()

    def _no_version(self) -> NoVersionError:
        return NoVersionError(
            f"no version materialised yet in {self.path}; run `lifecycle features materialize`"
        )

    def _current(self, conn: sqlite3.Connection) -> StoreVersion | None:
        """Follow the pointer (inside the caller's read transaction)."""
        try:
            row = conn.execute(POINTER_SQL).fetchone()
        except sqlite3.OperationalError as exc:
            if _no_table(exc):
                return None
            raise
        if row is None:
            return None
        version = self._versions.get(row[0])
        if version is None:
            version = self._versions[row[0]] = read_version(conn, row[0])
        return version
