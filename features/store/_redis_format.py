"""How the online store lies in Redis: the URL, the keys, the row values, the roll-back script.

Keys, all under one prefix (``?prefix=`` in the URL, default ``lifecycle:store``), so several
stores share a server::

    <prefix>:current        the version readers follow (an int as text)
    <prefix>:epoch          a random token set by the first materialisation into an empty
                            prefix (readers' cached metadata is keyed by epoch and version)
    <prefix>:next           the last version id handed out (INCR)
    <prefix>:versions       hash: version -> JSON [feature_set, as_of, created_at, n, columns]
    <prefix>:v<N>:rows      hash: customer_id -> row value of version N
    <prefix>:v<N>:ids       list: the customer ids of version N in frame order

A row value is the numeric features as one little-endian float64 block (as the SQLite store's
``x`` BLOB, :mod:`features.store._encode`), followed, when the version has categorical
columns, by their values as a JSON list (``null`` where missing). One hash per version makes a
batch one ``HMGET``, sent in the same MULTI/EXEC as the pointer read
(:mod:`features.store.redis_store`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from features.store._encode import FLOAT
from features.store._schema import version_from_row
from features.store._types import StoreVersion

SCHEMES = ("redis", "rediss")
DEFAULT_PREFIX = "lifecycle:store"


@dataclass(frozen=True)
class RedisLocation:
    """A ``redis://`` store URL split into what redis-py reads and the key prefix."""

    url: str  # as given
    client_url: str  # without ``prefix`` (redis-py rejects unknown query arguments)
    prefix: str

    @property
    def shown(self) -> str:
        """The URL with any password masked, for messages."""
        return redact(self.url)


def parse_location(url: str) -> RedisLocation:
    """Split ``redis://[user:password@]host:port/db?prefix=name`` (or ``rediss://``).

    Raises
    ------
    ValueError
        If the scheme is not redis/rediss, or the prefix is empty.
    """
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"a Redis store URL must start with redis:// or rediss://; got {url!r}")
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefixes = [value for name, value in query if name == "prefix"]
    prefix = prefixes[-1] if prefixes else DEFAULT_PREFIX
    if not prefix.strip():
        raise ValueError(f"the Redis store URL's prefix must be non-empty; got {redact(url)!r}")
    rest = urlencode([(name, value) for name, value in query if name != "prefix"])
    return RedisLocation(url, urlunsplit(parts._replace(query=rest)), prefix)


def redact(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


@dataclass(frozen=True)
class Keys:
    """The key names of one store (one prefix)."""

    prefix: str

    @property
    def current(self) -> str:
        return f"{self.prefix}:current"

    @property
    def epoch(self) -> str:
        return f"{self.prefix}:epoch"

    @property
    def next(self) -> str:
        return f"{self.prefix}:next"

    @property
    def versions(self) -> str:
        return f"{self.prefix}:versions"

    def rows(self, version: int) -> str:
        return f"{self.prefix}:v{version}:rows"

    def ids(self, version: int) -> str:
        return f"{self.prefix}:v{version}:ids"


# ---- metadata --------------------------------------------------------------------------


def version_meta(version: StoreVersion) -> str:
    """The JSON kept in the versions hash for ``version`` (its id is the hash field)."""
    columns = json.dumps([c.to_json() for c in version.columns])
    created, as_of = version.created_at.isoformat(), version.as_of.isoformat()
    return json.dumps([version.feature_set, as_of, created, version.n_customers, columns])


def version_from_meta(version: int | bytes | str, meta: bytes | str) -> StoreVersion:
    """Inverse of :func:`version_meta` (through the SQLite store's row reader)."""
    return version_from_row([int(version), *json.loads(meta)])


# ---- row values ------------------------------------------------------------------------


def row_value(x: bytes, texts: Sequence[str | None]) -> bytes:
    """One row's value: the float64 block, then the categoricals as JSON when there are any."""
    if not texts:
        return x
    return x + json.dumps(list(texts), ensure_ascii=False, separators=(",", ":")).encode()


def value_rows(values: Sequence[bytes | None], version: StoreVersion) -> list[tuple]:
    """Hash values (None: unknown id) -> ``(position, x, c0, ...)`` rows of the found ids,
    the shape :func:`features.store._decode.decode_rows` reads.

    The categorical JSON lists of all found rows are parsed in one ``json.loads`` call.
    """
    width = len(version.numeric_columns) * FLOAT.itemsize
    positions = [i for i, v in enumerate(values) if v is not None]
    found = values if len(positions) == len(values) else [values[i] for i in positions]
    if not version.categorical_columns:
        return list(zip(positions, found, strict=True))
    texts = json.loads(b"[" + b",".join([v[width:] for v in found]) + b"]")
    heads = [v[:width] for v in found]
    return [(i, x, *t) for i, x, t in zip(positions, heads, texts, strict=True)]


# ---- scripts ---------------------------------------------------------------------------

# KEYS: current, versions. ARGV: version. Returns 1 if switched, 0 if the version is not live.
ACTIVATE_LUA = """
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""
