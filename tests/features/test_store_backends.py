"""Stores chosen by URL: the factory, Redis and PostgreSQL specifics (prefixes, large batches,
an unreachable server, a foreign prefix, pickling) and the same answers as SQLite on the same
vectors."""

from __future__ import annotations

import pickle
import re
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis

from features.store import (
    NoVersionError,
    OnlineStore,
    PostgresStore,
    RedisStore,
    StoreUnavailableError,
    absolute_location,
    open_store,
)
from serving.preflight import problems, store_problem

AS_OF = pd.Timestamp("2024-03-01T00:00Z")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("location", "kind", "where"),
    [
        ("store/online.sqlite", OnlineStore, Path("store/online.sqlite")),
        (Path("/tmp/s.sqlite"), OnlineStore, Path("/tmp/s.sqlite")),
        ("sqlite:///store/online.sqlite", OnlineStore, Path("store/online.sqlite")),
        ("sqlite:////abs/online.sqlite", OnlineStore, Path("/abs/online.sqlite")),
        ("redis://127.0.0.1:6390/0", RedisStore, "lifecycle:store"),
        ("redis://h:1/2?prefix=shop1&socket_timeout=3", RedisStore, "shop1"),
        ("postgresql://lifecycle@127.0.0.1:5440/lifecycle", PostgresStore, "lifecycle_store"),
        ("postgres://u@h/db?prefix=shop1&sslmode=disable", PostgresStore, "shop1"),
    ],
)
def test_the_url_chooses_the_backend(location, kind, where):
    store = open_store(location)
    assert type(store) is kind
    place = {OnlineStore: lambda s: s.path, RedisStore: lambda s: s.keys.prefix,
             PostgresStore: lambda s: s.schema}[kind]  # fmt: skip
    assert place(store) == where


def test_the_postgres_url_keeps_libpq_arguments_and_hides_passwords():
    store = open_store("postgresql://u:pw@h:5/db?prefix=a&sslmode=disable&password=pw2")
    assert store._location.conninfo == "postgresql://u:pw@h:5/db?sslmode=disable&password=pw2"
    assert store.address == "postgresql://u:***@h:5/db?prefix=a&sslmode=disable&password=***"
    assert "pw" not in repr(store).replace("password", "")


def test_the_factory_refuses_unknown_kinds_naming_them():
    with pytest.raises(ValueError, match=re.escape("got the scheme 'mysql' in 'mysql:")):
        open_store("mysql://lifecycle@127.0.0.1:3306/lifecycle")
    with pytest.raises(ValueError, match="got an empty value"):
        open_store(" ")
    with pytest.raises(ValueError, match="prefix must be non-empty"):
        open_store("redis://127.0.0.1:6390/0?prefix=")
    with pytest.raises(ValueError, match="prefix must be non-empty"):
        open_store("postgresql://u:secret@h/db?prefix=")
    with pytest.raises(ValueError, match=r"at most 63 bytes; got 'postgresql://u:\*\*\*@h/db"):
        open_store(f"postgresql://u:secret@h/db?prefix={'x' * 64}")
    with pytest.raises(ValueError, match="nor start with pg_"):
        open_store("postgresql://h/db?prefix=pg_store")


def test_absolute_location_resolves_files_and_keeps_urls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute_location("s/online.sqlite") == str(tmp_path / "s" / "online.sqlite")
    assert absolute_location("sqlite:///s.sqlite") == str(tmp_path / "s.sqlite")
    assert absolute_location("redis://127.0.0.1:6390/0?prefix=a") == (
        "redis://127.0.0.1:6390/0?prefix=a"
    )
    assert absolute_location("postgresql://u@h:1/db?prefix=a") == "postgresql://u@h:1/db?prefix=a"


@pytest.mark.parametrize("scheme", ["redis", "postgresql"])
def test_an_unreachable_server_is_a_clear_error_naming_the_url(scheme):
    port = _free_port()
    where = "0?prefix=x" if scheme == "redis" else "lifecycle?prefix=x"
    url = f"{scheme}://user:s3cret@127.0.0.1:{port}/{where}"
    store = open_store(url)
    with pytest.raises(StoreUnavailableError) as caught:
        store.lookup(["c1"])
    message = str(caught.value)
    assert message.startswith(f"the online store {scheme}://user:***@127.0.0.1:{port}/{where} ")
    assert "is unreachable" in message and "s3cret" not in message and "make services" in message
    assert isinstance(caught.value, NoVersionError)  # the service answers it with a 503
    with pytest.raises(StoreUnavailableError):
        store.materialize(pd.DataFrame({"customer_id": ["a"], "x": [1.0]}), AS_OF, "fs")
    assert "is unreachable" in problems(url, "unused-ledger.sqlite")[0]


def test_preflight_checks_a_redis_store(redis_store_url, redis_url, redis_prefix):
    assert store_problem(redis_store_url) is None  # reachable, no version yet: not ready, not bad
    open_store(redis_store_url).materialize(pd.DataFrame({"customer_id": ["a"], "x": [1]}),
                                            AS_OF, "fs")  # fmt: skip
    assert store_problem(redis_store_url) is None
    foreign = f"{redis_url}?prefix={redis_prefix}-foreign"
    redis.Redis.from_url(redis_url).set(f"{redis_prefix}-foreign:versions", "not a hash")
    redis.Redis.from_url(redis_url).set(f"{redis_prefix}-foreign:current", "1")
    found = store_problem(foreign)
    assert found.startswith(f"the online store {foreign} holds something else under its prefix")
    redis.Redis.from_url(redis_url).delete(*(f"{redis_prefix}-foreign:{k}"
                                             for k in ("versions", "current")))  # fmt: skip


def test_prefixes_keep_stores_apart_on_one_server(redis_url, redis_prefix):
    first, second = (open_store(f"{redis_url}?prefix={redis_prefix}:{n}") for n in ("a", "b"))
    first.materialize(pd.DataFrame({"customer_id": ["c1"], "x": [1.0]}), AS_OF, "first")
    for k in (1, 2):
        second.materialize(pd.DataFrame({"customer_id": ["c2"], "x": [2.0]}), AS_OF, f"s{k}")
    assert first.current().version == 1 and second.current().version == 2
    assert first.lookup(["c1", "c2"]).found.tolist() == [True, False]
    assert second.customer_ids() == ["c2"] and first.customer_ids() == ["c1"]


def _wide(n: int) -> pd.DataFrame:
    """n customers, shuffled ids, numeric and categorical columns with awkward text."""
    rng = np.random.default_rng(5)
    texts = np.array(["pro", 'a "quoted" one', "é ü 中", "back\\slash", "line\nbreak", None])
    return pd.DataFrame({
        "customer_id": pd.Series([f"c{i:05d}" for i in rng.permutation(n)], dtype="str"),
        "spend": rng.gamma(2.0, 30.0, n),
        "orders": pd.Series(rng.integers(0, 9, n)).astype("Int64").mask(rng.random(n) < 0.1),
        "flag": rng.random(n) < 0.5,
        "plan": pd.Categorical(rng.choice(["basic", "pro"], n), categories=["basic", "pro"]),
        "note": pd.Series(texts[rng.integers(0, len(texts), n)], dtype="str"),
    })  # fmt: skip


@pytest.mark.parametrize("server", ["redis_store_url", "postgres_db_url"])
def test_servers_give_the_same_answers_as_sqlite_for_large_batches(server, request, tmp_path):
    """Large batches (10,000 ids, a /batch request's most), with duplicates and unknown ids."""
    vectors = _wide(6000)
    sqlite, other = OnlineStore(tmp_path / "s.sqlite"), open_store(request.getfixturevalue(server))
    for store in (sqlite, other):
        store.materialize(vectors, AS_OF, "fs")
    rng = np.random.default_rng(1)
    ids = [f"c{i:05d}" for i in rng.integers(0, 6500, 10_000)]  # ~8% unknown
    want, got = sqlite.lookup(ids), other.lookup(ids)
    np.testing.assert_array_equal(got.numeric, want.numeric)
    assert got.found.tolist() == want.found.tolist() and got.missing == want.missing
    for name in ("plan", "note"):
        assert got.categorical[name].tolist() == want.categorical[name].tolist()
    pd.testing.assert_frame_equal(other.lookup_frame(ids[:500]), sqlite.lookup_frame(ids[:500]))
    assert other.customer_ids() == sqlite.customer_ids() == vectors["customer_id"].tolist()


@pytest.mark.parametrize("server", ["redis_store_url", "postgres_db_url"])
def test_server_stores_pickle_as_their_url_even_when_connected(server, request):
    """Dask ships stores to workers: a used store (open connections) pickles as its URL."""
    url = request.getfixturevalue(server)
    store = open_store(url)
    store.materialize(pd.DataFrame({"customer_id": ["a", "b"], "x": [1.0, 2.0]}), AS_OF, "fs")
    copy = pickle.loads(pickle.dumps(store))
    assert type(copy) is type(store) and copy.url == url and repr(copy) == repr(store)
    assert copy.lookup(["b", "z"]).numeric.tolist()[0] == [2.0]
    assert store.lookup(["a"]).found.all()  # the original keeps its own connection


def test_a_store_emptied_and_refilled_is_not_read_with_stale_metadata(redis_url, redis_prefix):
    """A Redis restarted without persistence numbers versions from 1 again: a reader that
    cached version 1's columns must not decode the new version 1 with them."""
    url = f"{redis_url}?prefix={redis_prefix}"
    reader = open_store(url)
    open_store(url).materialize(pd.DataFrame({"customer_id": ["a"], "x": [1.0]}), AS_OF, "old")
    assert reader.lookup(["a"]).numeric.tolist() == [[1.0]]
    client = redis.Redis.from_url(redis_url)
    client.delete(*client.scan_iter(match=f"{redis_prefix}:*"))  # as a restart without data
    with pytest.raises(NoVersionError):
        reader.lookup(["a"])
    refill = pd.DataFrame({"customer_id": ["a"], "y": [2.0], "z": [3.0], "plan": ["pro"]})
    assert open_store(url).materialize(refill, AS_OF, "new").version == 1
    hit = reader.lookup(["a"])
    assert hit.version.feature_set == "new" and hit.numeric.tolist() == [[2.0, 3.0]]
    assert hit.categorical["plan"].tolist() == ["pro"]
