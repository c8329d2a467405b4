"""The online store on Redis: the same interface and guarantees as the SQLite one.

A new version is written whole under its own keys (``features.store._redis_format``); then
one MULTI/EXEC records its metadata and moves the ``current`` pointer, so readers switch
atomically. A reader sends, in one MULTI/EXEC (one round trip, executed atomically), ``GET
current`` and the ``HMGET`` of the version it last saw current; if the pointer still names
that version, the rows are that version's, complete; if it moved, the reader follows it and
reads again. So a look-up sees the old version or the new one, never a mix, and never reads a
version dropped meanwhile. Old versions are dropped (per ``keep_versions``) only after the
switch, in one MULTI/EXEC; the current one never.

Why not a Lua script that follows the pointer itself: it copies every row into Lua strings and
back, which measured ~3x slower than a plain ``HMGET`` for 1,000 rows of 80 features.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import islice
from typing import Any

import pandas as pd

from features.store._decode import decode_rows, lookup_to_frame
from features.store._encode import column_specs, encode_rows, normalise_as_of
from features.store._redis_format import (
    ACTIVATE_LUA,
    Keys,
    parse_location,
    row_value,
    value_rows,
    version_from_meta,
    version_meta,
)
from features.store._types import Lookup, NoVersionError, StoreUnavailableError, StoreVersion
from features.store.online import _as_ids, _check_args

WRITE_BATCH = 5000  # rows per HSET / RPUSH while materialising
MAX_RETRIES = 20  # pointer moves survived by one read (each a version switch meanwhile)
CONNECT_TIMEOUT_S = 5.0
SOCKET_TIMEOUT_S = 60.0  # a 1M-id LRANGE or a large pipeline must not time out
# A command that fails on a broken connection (a restarted server) is sent again on a new one,
# at most RETRIES times within ~0.2 s: enough to reconnect, short enough that a server that is
# down costs a request a fraction of a second before its 503 (redis-py's default: 10 retries,
# backoff up to 1 s, seconds per command)
RETRIES, RETRY_CAP_S = 2, 0.1


def _batches(rows: Iterable[tuple], size: int) -> Iterator[list[tuple]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch


class RedisStore:
    """Versioned per-customer feature vectors in Redis, for fast look-up by id.

    Parameters
    ----------
    url : str
        ``redis://[user:password@]host:port/db[?prefix=name]`` (or ``rediss://``); keys live
        under ``prefix`` (default ``lifecycle:store``). Nothing is connected until first use;
        the client's pool is thread-safe and re-opened after ``fork``.
    """

    def __init__(self, url: str) -> None:
        self._location = parse_location(url)
        self.url = url
        self.keys = Keys(self._location.prefix)
        self._client: Any = None
        self._activate: Callable | None = None
        # Versions by (epoch, id): a server emptied and re-filled numbers its versions from 1
        # again, under a new epoch, so cached metadata never describes another version.
        self._versions: dict[tuple[bytes | None, int], StoreVersion] = {}
        self._last: tuple[bytes | None, int] | None = None  # the last current version seen

    @property
    def address(self) -> str:
        """Where the store lives, for messages: the URL with any password masked."""
        return self._location.shown

    def __repr__(self) -> str:
        return f"RedisStore({self.address!r})"

    def __reduce__(self) -> tuple:
        """Pickle as the URL only: a process unpickling it opens its own connections."""
        return (RedisStore, (self.url,))

    # ---- connection ---------------------------------------------------------------

    def _redis(self) -> Any:
        if self._client is None:
            try:
                import redis
            except ImportError as err:  # the [scale] extra
                raise StoreUnavailableError(
                    f"the online store {self.address} needs the redis package: "
                    "pip install 'customer-lifecycle[scale]'"
                ) from err
            client = _client(redis, self._location.client_url)
            self._activate = client.register_script(ACTIVATE_LUA)
            self._client = client
        return self._client

    @contextmanager
    def _reachable(self) -> Iterator[Any]:
        """Yield the client; a connection failure becomes a StoreUnavailableError naming the URL."""
        client = self._redis()  # a missing redis package is reported here
        import redis

        try:
            yield client
        except (redis.ConnectionError, redis.TimeoutError) as err:
            raise StoreUnavailableError(
                f"the online store {self.address} is unreachable ({err}); start Redis "
                "(`make services`) or fix the store URL"
            ) from None

    def ping(self) -> None:
        """Raise StoreUnavailableError unless the server answers."""
        with self._reachable() as client:
            client.ping()

    def close(self) -> None:
        """Close the connections; the next call opens new ones."""
        if self._client is not None:
            self._client.close()
        self._client = None

    # ---- writing ------------------------------------------------------------------

    def materialize(
        self, vectors: pd.DataFrame, as_of: Any, feature_set: str, *, keep_versions: int = 2
    ) -> StoreVersion:
        """Write ``vectors`` as a new version and make it current, atomically.

        Same contract as :meth:`features.store.OnlineStore.materialize`. Versions are numbered
        by one counter per prefix; a failed write leaves keys no pointer reaches (dropped by
        nothing: re-materialising writes a new version beside them).
        """
        _check_args(feature_set, keep_versions)
        specs = column_specs(vectors)
        now = pd.Timestamp.now(tz="UTC")
        with self._reachable() as client:
            client.set(self.keys.epoch, uuid.uuid4().hex, nx=True)  # a new store: a new epoch
            number = int(client.incr(self.keys.next))
            version = StoreVersion(number, feature_set, normalise_as_of(as_of), now,
                                   len(vectors), specs)  # fmt: skip
            self._write_rows(client, version, vectors)
            switch = client.pipeline(transaction=True)
            switch.hset(self.keys.versions, str(number), version_meta(version))
            switch.set(self.keys.current, number)
            switch.execute()
            self._drop_old(client, keep_versions)
        return version

    def _write_rows(self, client: Any, version: StoreVersion, vectors: pd.DataFrame) -> None:
        rows_key, ids_key = self.keys.rows(version.version), self.keys.ids(version.version)
        client.unlink(rows_key, ids_key)  # leftovers of a crashed writer with this id: none
        for batch in _batches(encode_rows(vectors, version.columns), WRITE_BATCH):
            mapping = {row[1]: row_value(row[2], row[3:]) for row in batch}
            pipe = client.pipeline(transaction=False)
            pipe.hset(rows_key, mapping=mapping)
            pipe.rpush(ids_key, *(row[1] for row in batch))
            pipe.execute()

    def _drop_old(self, client: Any, keep: int) -> list[int]:
        """Drop all but the newest ``keep`` versions, never the current one (after a switch)."""
        current = client.get(self.keys.current)
        live = sorted(int(v) for v in client.hkeys(self.keys.versions))
        pointer = None if current is None else int(current)
        doomed = [v for v in live[: max(len(live) - keep, 0)] if v != pointer]
        if doomed:
            drop = client.pipeline(transaction=True)
            drop.hdel(self.keys.versions, *(str(v) for v in doomed))
            drop.unlink(*(k for v in doomed for k in (self.keys.rows(v), self.keys.ids(v))))
            drop.execute()
        return doomed  # their cached metadata stays: a reader may have just read one

    def activate(self, version: int) -> StoreVersion:
        """Make a live ``version`` current again (roll back); return its metadata.

        Raises
        ------
        ValueError
            If ``version`` is not in the store.
        """
        with self._reachable():
            switched = self._activate(keys=[self.keys.current, self.keys.versions],
                                      args=[int(version)])  # fmt: skip
        live = {v.version: v for v in self.versions()}
        if not switched or version not in live:
            raise ValueError(f"version {version} is not in {self.address}; live: {sorted(live)}")
        return live[version]

    # ---- reading ------------------------------------------------------------------

    def current(self) -> StoreVersion | None:
        """Return the current version's metadata, or None if nothing was materialised."""
        with self._reachable() as client:
            return self._follow(client)

    def versions(self) -> list[StoreVersion]:
        """Return the live versions, oldest first (empty if nothing was materialised)."""
        with self._reachable() as client:
            metas = client.hgetall(self.keys.versions)
        return sorted((version_from_meta(v, m) for v, m in metas.items()), key=_number)

    def lookup(self, customer_ids: Sequence[str]) -> Lookup:
        """Return the vectors of ``customer_ids`` from the current version.

        Pointer and rows are read in one MULTI/EXEC (one round trip, atomic), so the whole
        call sees one version. Rows follow the request order (duplicates kept); unknown ids give
        NaN / None rows, ``found[i] == False`` and are listed in ``missing``.

        Raises
        ------
        NoVersionError
            If nothing was materialised yet.
        """
        ids = _as_ids(customer_ids)
        version, values = self._read(lambda pipe, v: pipe.hmget(self.keys.rows(v), ids), ids)
        if version is None:
            raise self._no_version()
        return decode_rows(value_rows(values, version), ids, version)

    def customer_ids(self) -> list[str]:
        """Every customer id of the current version, in materialised order.

        Raises
        ------
        NoVersionError
            If nothing was materialised yet.
        """
        version, values = self._read(lambda pipe, v: pipe.lrange(self.keys.ids(v), 0, -1))
        if version is None:
            raise self._no_version()
        return [i.decode() for i in values]

    def lookup_frame(self, customer_ids: Sequence[str]) -> pd.DataFrame:
        """Like :meth:`lookup`, as a frame of the found rows with the materialised dtypes.

        ``frame.attrs`` holds ``version``, ``feature_set``, ``as_of`` and ``missing``.
        """
        return lookup_to_frame(self.lookup(customer_ids))

    def _pointer(self, pipe: Any) -> None:
        pipe.get(self.keys.epoch)
        pipe.get(self.keys.current)

    def _follow(self, client: Any) -> StoreVersion | None:
        """Read the pointer and the metadata of the version it names (cached per version)."""
        for _ in range(MAX_RETRIES):
            pipe = client.pipeline(transaction=True)
            self._pointer(pipe)
            epoch, number = pipe.execute()
            if number is None:
                return None
            ref = (epoch, int(number))
            if ref not in self._versions:
                meta = client.hget(self.keys.versions, number)
                if meta is None:  # switched and dropped between the two reads: follow again
                    continue
                self._versions[ref] = version_from_meta(number, meta)
            self._last = ref
            return self._versions[ref]
        raise StoreUnavailableError(f"the online store {self.address} kept switching versions "
                                    f"during {MAX_RETRIES} reads of its pointer")  # fmt: skip

    def _read(self, command: Callable, ids: list | None = None) -> tuple[StoreVersion | None, Any]:
        """``command(pipe, version)`` on the current version, with the pointer read in the same
        MULTI/EXEC: (the version read, or None when there is none; the command's result)."""
        with self._reachable() as client:
            if ids == [] or self._last is None:  # nothing to read (HMGET needs a field), or
                version = self._follow(client)  # no pointer seen yet
                if ids == [] or version is None:
                    return version, []
            for _ in range(MAX_RETRIES):
                known = self._last
                pipe = client.pipeline(transaction=True)
                self._pointer(pipe)
                command(pipe, known[1])
                epoch, number, values = pipe.execute()
                if number is not None and (epoch, int(number)) == known:
                    return self._versions[known], values
                if self._follow(client) is None:  # the pointer moved: follow it, read again
                    return None, []
        raise StoreUnavailableError(f"the online store {self.address} kept switching versions "
                                    f"during {MAX_RETRIES} reads")  # fmt: skip

    def _no_version(self) -> NoVersionError:
        return NoVersionError(
            f"no version materialised yet in {self.address}; run `lifecycle features materialize`"
        )


def _client(redis: Any, url: str) -> Any:
    """A client of ``url`` with the timeouts and the short retry above (a thread-safe pool)."""
    from redis.backoff import ExponentialWithJitterBackoff
    from redis.retry import Retry

    retry = Retry(ExponentialWithJitterBackoff(cap=RETRY_CAP_S, base=0.01), RETRIES)
    return redis.Redis.from_url(url, retry=retry, socket_connect_timeout=CONNECT_TIMEOUT_S,
                                socket_timeout=SOCKET_TIMEOUT_S,
                                socket_keepalive=True)  # fmt: skip


def _number(version: StoreVersion) -> int:
    return version.version
