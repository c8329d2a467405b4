"""The online store on PostgreSQL: the same interface and guarantees as the SQLite one.

A new version is written in one transaction (``features.store._postgres_format``): its
metadata row, its table (filled with binary ``COPY``, then indexed) and the move of the
``store_current`` pointer, so readers switch atomically when it commits, and a failed write
leaves nothing behind. Writers of one store take turns (a transaction advisory lock per schema).

A reader sends one statement (one snapshot, one round trip) that reads the rows of the version
it last saw current, gated on the pointer still naming it: rows come back only then, and a
version's rows never change, so they are that version's, complete. No rows (none of the ids is
there, the pointer moved, or that version's table is gone) sends a second statement that reads
the pointer: the same version confirms the empty answer; another one is followed and read. So a
look-up sees the old version or the new one, never a mix, and a hit costs one round trip.

Old versions are dropped (per ``keep_versions``) after the switch, in a transaction of their
own that waits at most ``DROP_LOCK_TIMEOUT`` for readers still on them (else the next
materialise drops them); the current one never.

Connections (one per thread and per process, fork-safe, bounded waits):
:mod:`features.store._postgres_conn`; a connection found broken (a restarted server) is
replaced and the call retried once.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import pandas as pd

from features.store import _postgres_format as sql
from features.store._decode import decode_rows, lookup_to_frame
from features.store._encode import column_specs, encode_rows, normalise_as_of
from features.store._postgres_conn import Connections, psycopg_module, reason, unreachable
from features.store._redis_format import version_from_meta, version_meta
from features.store._types import Lookup, NoVersionError, StoreUnavailableError, StoreVersion
from features.store.online import _as_ids, _check_args

T = TypeVar("T")
MAX_RETRIES = 20  # pointer moves survived by one read (each a version switch meanwhile)
DROP_LOCK_TIMEOUT = "2s"  # longest wait of the drop of old versions for their last readers
LOCK_CLASS = 0x4C53544F  # "LSTO": the first key of the store's advisory locks
Ref = tuple[int, int]  # (epoch, version) of a pointer


class PostgresStore:
    """Versioned per-customer feature vectors in PostgreSQL, for fast look-up by id.

    Parameters
    ----------
    url : str
        ``postgresql://[user[:password]@]host[:port]/database[?prefix=name]`` (or
        ``postgres://``; other query arguments go to libpq, e.g. ``sslmode``); the tables live
        in the schema ``prefix`` (default ``lifecycle_store``), created by the first
        :meth:`materialize` (the user needs ``CREATE`` on the database, or the schema made for
        it). Nothing is connected until first use.
    """

    def __init__(self, url: str) -> None:
        self._location = sql.parse_location(url)
        self.url = url
        self.schema = self._location.schema
        self._connections = Connections(self._location.conninfo, self.address)
        # Versions by (epoch, id): a store dropped and re-filled numbers its versions from 1
        # again, under a new epoch, so cached metadata never describes another version.
        self._versions: dict[Ref, StoreVersion] = {}  # never evicted: small, few versions
        self._last: Ref | None = None  # the last current version seen (its metadata cached)

    @property
    def address(self) -> str:
        """Where the store lives, for messages: the URL with any password masked."""
        return self._location.shown

    def __repr__(self) -> str:
        return f"PostgresStore({self.address!r})"

    def __reduce__(self) -> tuple:
        """Pickle as the URL only: a process unpickling it opens its own connections."""
        return (PostgresStore, (self.url,))

    # ---- connection ---------------------------------------------------------------

    def _run(self, work: Callable[[Any], T]) -> T:
        """``work(connection)``; a connection found broken is replaced and the work retried
        once (everything here is a read or one transaction); other server failures and missing
        privileges become :class:`StoreUnavailableError` naming the URL."""
        psycopg = psycopg_module(self.address)
        for attempt in (1, 2):
            reused = self._connections.opened()
            conn = self._connections.get()
            try:
                return work(conn)
            except psycopg.errors.InsufficientPrivilege as err:
                raise StoreUnavailableError(
                    f"the online store {self.address} is not open to its user ({reason(err)}); "
                    f"grant it CREATE on the database, or create the schema {self.schema!r} "
                    "for it, and USAGE / SELECT on the store's tables to readers"
                ) from None
            except psycopg.OperationalError as err:
                if not conn.broken:  # a timeout, a server shutting down: it answered
                    raise self._unavailable(err) from None
                self.close()
                if attempt == 2 or not reused:
                    raise unreachable(self.address, err) from None
        raise AssertionError("unreachable")

    def _unavailable(self, err: Exception) -> StoreUnavailableError:
        return StoreUnavailableError(f"the online store {self.address} failed ({reason(err)})")

    def ping(self) -> None:
        """Raise StoreUnavailableError unless the server answers."""
        self._run(lambda conn: conn.execute("SELECT 1").fetchone())

    def close(self) -> None:
        """Close this thread's connection; the next call opens a new one."""
        self._connections.close()

    # ---- writing ------------------------------------------------------------------

    def materialize(
        self, vectors: pd.DataFrame, as_of: Any, feature_set: str, *, keep_versions: int = 2
    ) -> StoreVersion:
        """Write ``vectors`` as a new version and make it current, atomically.

        Same contract as :meth:`features.store.OnlineStore.materialize`: the rows, the
        metadata and the pointer are written in one transaction; older versions beyond
        ``keep_versions`` are dropped after it (never the current one).
        """
        _check_args(feature_set, keep_versions)
        specs = column_specs(vectors)
        now = pd.Timestamp.now(tz="UTC")
        draft = StoreVersion(0, feature_set, normalise_as_of(as_of), now, len(vectors), specs)
        version = self._run(lambda conn: self._write(conn, draft, vectors))
        self._run(lambda conn: self._drop_old(conn, keep_versions))
        return version

    def _write(self, conn: Any, draft: StoreVersion, vectors: pd.DataFrame) -> StoreVersion:
        s, n_cat = self._location.quoted, len(draft.categorical_columns)
        with conn.transaction():  # nothing below is visible to readers before COMMIT
            conn.execute("SET LOCAL statement_timeout = 0")
            self._lock(conn)
            self._create_tables(conn)
            insert = f"INSERT INTO {s}.store_versions (meta) VALUES (%s) RETURNING version"
            number = conn.execute(insert, (version_meta(draft),)).fetchone()[0]
            version = replace(draft, version=number)
            conn.execute(sql.create_vectors_sql(s, version.table, n_cat))
            with conn.cursor().copy(sql.copy_sql(s, version.table)) as copy:
                copy.set_types(sql.copy_types(n_cat))
                for row in encode_rows(vectors, version.columns):
                    copy.write_row(row)
            conn.execute(sql.index_sql(s, version.table))
            epoch = conn.execute(sql.set_current_sql(s), (number, secrets.randbits(63)))
            self._versions[(epoch.fetchone()[0], number)] = version
        return version

    def _lock(self, conn: Any) -> None:
        """Take this store's writer lock until the transaction ends."""
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LOCK_CLASS, self.schema))

    def _create_tables(self, conn: Any) -> None:
        found = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,))
        if found.fetchone() is None:  # CREATE SCHEMA IF NOT EXISTS needs CREATE on the database
            conn.execute(f"CREATE SCHEMA {self._location.quoted}")
        for statement in sql.ddl(self._location.quoted):
            conn.execute(statement)

    def _drop_old(self, conn: Any, keep: int) -> list[int]:
        """Drop all but the newest ``keep`` versions, never the current one (after a switch);
        readers still on one are waited for at most ``DROP_LOCK_TIMEOUT``, else it stays."""
        psycopg, s = psycopg_module(self.address), self._location.quoted
        try:
            with conn.transaction():
                conn.execute(f"SET LOCAL lock_timeout = '{DROP_LOCK_TIMEOUT}'")
                self._lock(conn)
                pointer = conn.execute(f"SELECT version FROM {s}.store_current").fetchone()
                live = [r[0] for r in conn.execute(f"SELECT version FROM {s}.store_versions "
                                                   "ORDER BY version")]  # fmt: skip
                doomed = [v for v in live[: max(len(live) - keep, 0)] if v != pointer[0]]
                for number in doomed:
                    conn.execute(f"DROP TABLE IF EXISTS {s}.vectors_v{int(number)}")
                    conn.execute(f"DELETE FROM {s}.store_versions WHERE version = %s", (number,))
        except psycopg.errors.LockNotAvailable:
            return []
        return doomed  # their cached metadata stays: a reader may have just read one

    def activate(self, version: int) -> StoreVersion:
        """Make a live ``version`` current again (roll back); return its metadata.

        Raises
        ------
        ValueError
            If ``version`` is not in the store.
        """

        def switch(conn: Any) -> bool:
            errors = psycopg_module(self.address).errors
            s = self._location.quoted
            try:
                with conn.transaction():
                    self._lock(conn)  # the drop of old versions takes it too
                    moved = conn.execute(sql.activate_sql(s), {"version": int(version)})
                    return moved.fetchone() is not None
            except (errors.UndefinedTable, errors.InvalidSchemaName):  # nothing materialised
                return False

        switched = self._run(switch)
        live = {v.version: v for v in self.versions()}
        if not switched or version not in live:
            raise ValueError(f"version {version} is not in {self.address}; live: {sorted(live)}")
        return live[version]

    # ---- reading ------------------------------------------------------------------

    def current(self) -> StoreVersion | None:
        """Return the current version's metadata, or None if nothing was materialised."""
        return self._run(self._follow)

    def versions(self) -> list[StoreVersion]:
        """Return the live versions, oldest first (empty if nothing was materialised)."""
        return self._run(self._live)

    def lookup(self, customer_ids: Sequence[str]) -> Lookup:
        """Return the vectors of ``customer_ids`` from the current version.

        Pointer and rows are read in one statement (one snapshot, one round trip), so the
        whole call sees one version. Rows follow the request order (duplicates kept); unknown
        ids give NaN / None rows, ``found[i] == False`` and are listed in ``missing``.

        Raises
        ------
        NoVersionError
            If nothing was materialised yet.
        """
        ids = _as_ids(customer_ids)
        s = self._location.quoted

        def statement(ref: Ref, v: StoreVersion) -> str:
            return sql.lookup_sql(s, v.table, *ref, len(v.categorical_columns))

        version, rows = self._run(lambda conn: self._read(conn, statement, (ids,), True))
        if version is None:
            raise self._no_version()
        return decode_rows(rows, ids, version)

    def customer_ids(self) -> list[str]:
        """Every customer id of the current version, in materialised order.

        Raises
        ------
        NoVersionError
            If nothing was materialised yet.
        """
        s = self._location.quoted
        version, rows = self._run(
            lambda conn: self._read(conn, lambda ref, v: sql.ids_sql(s, v.table, *ref), (), False)
        )
        if version is None:
            raise self._no_version()
        return rows[0][0]

    def lookup_frame(self, customer_ids: Sequence[str]) -> pd.DataFrame:
        """Like :meth:`lookup`, as a frame of the found rows with the materialised dtypes.

        ``frame.attrs`` holds ``version``, ``feature_set``, ``as_of`` and ``missing``.
        """
        return lookup_to_frame(self.lookup(customer_ids))

    def _live(self, conn: Any) -> list[StoreVersion]:
        sql_text = f"SELECT version, meta FROM {self._location.quoted}.store_versions"
        rows = self._absent_is_empty(conn, sql_text + " ORDER BY version")
        return [version_from_meta(number, meta) for number, meta in rows]

    def _absent_is_empty(self, conn: Any, statement: str, params: Sequence = ()) -> list[tuple]:
        """The rows of ``statement``; none when the store's schema or tables do not exist."""
        errors = psycopg_module(self.address).errors
        try:
            return conn.execute(statement, params, binary=True).fetchall()
        except (errors.UndefinedTable, errors.InvalidSchemaName):
            return []

    def _follow(self, conn: Any) -> StoreVersion | None:
        """The version the pointer names (None: nothing materialised), remembered as the last
        one seen current."""
        found = self._pointer(conn)
        return None if found is None else self._versions[found]

    def _pointer(self, conn: Any) -> Ref | None:
        """Read the pointer and cache the metadata of the version it names; its ref."""
        s = self._location.quoted
        for _ in range(MAX_RETRIES):
            pointer = self._absent_is_empty(conn, f"SELECT epoch, version FROM {s}.store_current")
            if not pointer:
                self._last = None
                return None
            ref = tuple(pointer[0])
            if ref not in self._versions:
                meta = self._absent_is_empty(
                    conn, f"SELECT meta FROM {s}.store_versions WHERE version = %s", (ref[1],)
                )
                if not meta:  # switched and dropped between the two reads: follow again
                    continue
                self._versions[ref] = version_from_meta(ref[1], meta[0][0])
            self._last = ref
            return ref
        raise self._switching()

    def _read(
        self,
        conn: Any,
        statement: Callable[[Ref, StoreVersion], str],
        params: Sequence,
        empty_ok: bool,
    ) -> tuple[StoreVersion | None, list[tuple]]:
        """The rows of ``statement(ref, version)`` for the version last seen current (a
        statement that returns rows only while the pointer names it): (that version, or None
        when there is none; rows). No rows are confirmed by reading the pointer: the same
        version gives them (with ``empty_ok``), another one is followed."""
        known = self._last  # other threads move it too: read it once per attempt
        for _ in range(MAX_RETRIES):
            if known is None and (known := self._pointer(conn)) is None:
                return None, []
            version = self._versions[known]
            rows = self._absent_is_empty(conn, statement(known, version), params)
            if rows:
                return version, rows
            found = self._pointer(conn)
            if found is None:
                return None, []
            if found == known and empty_ok:
                return version, rows
            known = found
        raise self._switching()

    def _switching(self) -> StoreUnavailableError:
        return StoreUnavailableError(f"the online store {self.address} kept switching versions "
                                     f"during {MAX_RETRIES} reads")  # fmt: skip

    def _no_version(self) -> NoVersionError:
        return NoVersionError(
            f"no version materialised yet in {self.address}; run `lifecycle features materialize`"
        )
