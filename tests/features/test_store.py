"""Online feature store: roundtrip, request order, versions, atomicity, processes, errors.

Every behaviour test runs on each backend (the SQLite file, Redis and PostgreSQL, through the
suite's own servers: ``tests/services.py``), so the three cannot drift apart.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import re
import sqlite3
import threading
import time

import numpy as np
import pandas as pd
import pytest

from features.store import NoVersionError, OnlineStore, PostgresStore, RedisStore, open_store
from features.store._sqlite import _INHERITED

AS_OF = pd.Timestamp("2024-03-01T00:00Z")
NUMERIC = ("spend_30d_amount", "purchases_90d", "is_subscriber", "tenure_days", "score", "marker")


def vectors(marker: int = 1) -> pd.DataFrame:
    """Three customers, one column of every supported kind."""
    return pd.DataFrame(
        {
            "customer_id": pd.Series(["c1", "c2", "c3"], dtype="str"),
            "spend_30d_amount": [10.5, np.nan, 0.0],
            "purchases_90d": [3, 0, 1],
            "is_subscriber": [True, False, True],
            "tenure_days": pd.Series([100, None, 7], dtype="Int64"),
            "score": np.array([0.5, 0.25, 1.0], dtype="float32"),
            "plan": pd.Categorical(["pro", None, "basic"], categories=["basic", "pro", "team"]),
            "region": pd.Series(["eu", "us", None], dtype="str"),
            "marker": marker,
        }
    )


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def store(request, tmp_path):
    """An empty store on each backend (Redis: under a key prefix of this test's own;
    PostgreSQL: in a database of this test's own)."""
    if request.param == "sqlite":
        location = str(tmp_path / "online.sqlite")
    elif request.param == "redis":
        location = request.getfixturevalue("redis_store_url")
    else:
        location = request.getfixturevalue("postgres_db_url")
    online = open_store(location)
    yield online
    online.close()


@pytest.fixture
def sqlite_store(tmp_path):
    online = OnlineStore(tmp_path / "online.sqlite")
    yield online
    online.close()


def _raw(store: OnlineStore, sql: str) -> list[tuple]:
    with sqlite3.connect(store.path) as conn:
        return conn.execute(sql).fetchall()


def _fresh(store):
    """The same store as another process would open it (pickled: a path or a URL)."""
    return pickle.loads(pickle.dumps(store))


def _stored_versions(store) -> list[int]:
    """The versions whose rows are physically in the store (tables, or Redis hashes)."""
    if isinstance(store, PostgresStore):
        names = store._run(lambda conn: conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
            "AND table_name LIKE 'vectors_v%%'", (store.schema,)).fetchall())  # fmt: skip
        return sorted(int(name[len("vectors_v") :]) for (name,) in names)
    if isinstance(store, RedisStore):
        keys = store._redis().scan_iter(match=f"{store.keys.prefix}:v*:rows")
        return sorted(int(k.decode().rsplit(":", 2)[1][1:]) for k in keys)
    tables = "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'vectors_v%'"
    return sorted(int(name[len("vectors_v") :]) for (name,) in _raw(store, tables))


def test_roundtrip_keeps_values_and_dtypes(store):
    store.materialize(vectors(), AS_OF, "churn_v1")
    frame = store.lookup_frame(["c1", "c2", "c3"])
    pd.testing.assert_frame_equal(frame, vectors())
    assert frame.attrs["feature_set"] == "churn_v1" and frame.attrs["missing"] == []


def test_lookup_returns_float64_numeric_and_str_categoricals(store):
    store.materialize(vectors(), AS_OF, "churn_v1")
    hit = store.lookup(["c3", "c2"])
    assert hit.numeric_columns == NUMERIC and hit.numeric.dtype == np.float64
    expected = [[0.0, 1, 1, 7, 1.0, 1], [np.nan, 0, 0, np.nan, 0.25, 1]]
    np.testing.assert_array_equal(hit.numeric, expected)
    assert hit.categorical["plan"].tolist() == ["basic", None]
    assert hit.categorical["region"].tolist() == [None, "us"]


def test_rows_follow_the_requested_order_with_duplicates(store):
    store.materialize(vectors(), AS_OF, "churn_v1")
    hit = store.lookup(["c2", "c1", "c2"])
    assert hit.customer_ids == ("c2", "c1", "c2") and hit.found.all() and hit.missing == ()
    assert hit.numeric[:, 1].tolist() == [0, 3, 0]
    assert hit.categorical["plan"].tolist() == [None, "pro", None]
    assert store.lookup_frame(["c3", "c1"])["customer_id"].tolist() == ["c3", "c1"]


def test_unknown_ids_are_reported_not_raised(store):
    store.materialize(vectors(), AS_OF, "churn_v1")
    hit = store.lookup(["x9", "c1", "x9", "x8"])
    assert hit.found.tolist() == [False, True, False, False]
    assert hit.missing == ("x9", "x8")
    assert np.isnan(hit.numeric[[0, 2, 3]]).all() and hit.numeric[1, 0] == 10.5
    assert hit.categorical["region"].tolist() == [None, "eu", None, None]
    frame = store.lookup_frame(["x9", "c1"])
    assert frame["customer_id"].tolist() == ["c1"] and frame.attrs["missing"] == ["x9"]
    assert store.lookup([]).numeric.shape == (0, len(NUMERIC))


def test_version_metadata_is_stored_for_a_fresh_reader(store):
    made = store.materialize(vectors(), pd.Timestamp("2024-03-01 13:00", tz="Europe/Paris"), "fs")
    assert made.as_of == pd.Timestamp("2024-03-01T12:00Z") and str(made.as_of.tz) == "UTC"
    if isinstance(store, OnlineStore):
        stored = _raw(store, "SELECT as_of FROM store_versions")
        assert stored == [("2024-03-01T12:00:00+00:00",)]
    fresh = _fresh(store).current()
    assert fresh == made and fresh.n_customers == 3 and fresh.feature_set == "fs"
    dtypes = [c.dtype for c in fresh.columns]
    assert dtypes == ["float64", "int64", "bool", "Int64", "float32", "category", "str", "int64"]
    assert fresh.categorical_columns == ("plan", "region")
    assert fresh.columns[5].categories == ("basic", "pro", "team")


def test_naive_as_of_is_read_as_utc(store):
    made = store.materialize(vectors(), pd.Timestamp("2024-03-01 12:00"), "fs")
    assert made.as_of == pd.Timestamp("2024-03-01T12:00Z")


def test_new_version_becomes_current_and_old_ones_are_dropped(store):
    for k in (1, 2, 3):
        store.materialize(vectors(marker=k), AS_OF, f"fs{k}")
    assert store.current().version == 3 and store.lookup(["c1"]).numeric[0, -1] == 3
    assert [v.version for v in store.versions()] == [2, 3]
    assert _stored_versions(store) == [2, 3]
    store.materialize(vectors(marker=4), AS_OF, "fs4", keep_versions=1)
    assert [v.version for v in store.versions()] == [4] and _stored_versions(store) == [4]


def test_activate_rolls_back_to_a_live_version(store):
    for k in (1, 2, 3):
        store.materialize(vectors(marker=k), AS_OF, f"fs{k}")
    assert store.activate(2).feature_set == "fs2"
    assert store.lookup(["c1"]).numeric[0, -1] == 2 and store.current().version == 2
    with pytest.raises(ValueError, match=re.escape("version 1 is not in") + ".*live: \\[2, 3\\]"):
        store.activate(1)


def _dups() -> pd.DataFrame:
    return pd.DataFrame({"customer_id": list("abcabcdd"), "x": range(8)})


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (vectors().drop(columns="customer_id"), "vectors must have a customer_id column; got"),
        (vectors().set_index("customer_id"), "it is the index: call .reset_index() first"),
        (_dups(), "customer_id must be unique; got 4 ids more than once (first: 'a', 'b', 'c')"),
        (vectors().iloc[:0], "at least one row; got an empty frame"),
        (vectors().assign(customer_id=["c1", None, None]), "not be missing; got 2 rows"),
        (vectors().assign(seen=pd.Timestamp("2024-01-01")), "got 1 others: seen (datetime64"),
        (vectors()[["customer_id"]], "at least one feature column"),
    ],
)
def test_materialize_rejects_bad_frames_naming_rule_and_values(store, frame, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        store.materialize(frame, AS_OF, "fs")
    assert store.current() is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"keep_versions": 0}, "keep_versions must be an int >= 1; got 0"),
        ({"feature_set": " "}, "feature_set must be a non-empty name"),
    ],
)
def test_materialize_rejects_bad_arguments(store, kwargs, message):
    with pytest.raises(ValueError, match=message):
        store.materialize(vectors(), AS_OF, **{"feature_set": "fs", **kwargs})


def test_lookup_before_any_materialize_is_a_clear_error(store):
    expected = (
        f"no version materialised yet in {store.address}; run `lifecycle features materialize`"
    )
    with pytest.raises(NoVersionError, match=re.escape(expected)):
        store.lookup(["c1"])
    with pytest.raises(NoVersionError, match=re.escape(expected)):
        store.customer_ids()
    assert store.current() is None and store.versions() == []
    with pytest.raises(TypeError, match="not one string"):
        store.lookup("c1")


def test_an_empty_sqlite_file_is_no_version_and_readers_never_create_it(sqlite_store):
    with pytest.raises(NoVersionError):
        sqlite_store.lookup(["c1"])
    assert not sqlite_store.path.exists()
    sqlite_store.path.touch()
    with pytest.raises(NoVersionError):
        sqlite_store.lookup(["c1"])


def test_readers_always_see_one_complete_version_while_versions_switch(store):
    ids = [f"c{i}" for i in range(300)]

    def frame(k: int) -> pd.DataFrame:
        return pd.DataFrame({"customer_id": ids, "marker": k, "tag": f"v{k}"})

    store.materialize(frame(0), AS_OF, "v0", keep_versions=1)
    stop, seen, errors = threading.Event(), set(), []

    def read() -> None:
        try:
            while not stop.is_set():
                hit = store.lookup(ids)
                name = hit.version.feature_set
                assert hit.found.all() and (hit.numeric[:, 0] == int(name[1:])).all()
                assert set(hit.categorical["tag"]) == {name}
                seen.add(name)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for reader in readers:
        reader.start()
    for k in range(1, 13):
        store.materialize(frame(k), AS_OF, f"v{k}", keep_versions=1)
        deadline = time.monotonic() + 5
        while f"v{k}" not in seen and not errors and time.monotonic() < deadline:
            time.sleep(0.001)
    stop.set()
    for reader in readers:
        reader.join()
    assert errors == [] and {f"v{k}" for k in range(1, 13)} <= seen


def _read_in_child(store: OnlineStore, ids: list[str]) -> tuple:
    hit = store.lookup(ids)
    return hit.version.feature_set, hit.numeric.tolist(), hit.categorical["plan"].tolist()


def test_a_reader_in_another_process_reads_what_was_written(store):
    store.materialize(vectors(), AS_OF, "churn_v1")
    with mp.get_context("spawn").Pool(1) as pool:
        name, numeric, plan = pool.apply(_read_in_child, (store, ["c3", "zz"]))
    assert name == "churn_v1" and plan == ["basic", None]
    assert numeric[0] == [0.0, 1, 1, 7, 1.0, 1] and np.isnan(numeric[1]).all()


def _child_check(store: OnlineStore, inherited: sqlite3.Connection | None) -> bytes:
    if inherited is None:  # Redis: the client's pool notices the new pid and reconnects
        hit = store.lookup(["c1", "c3"])
        return b"ok" if hit.numeric[1, 1] == 1 else b"child read a wrong row"
    hit = store.lookup(["c1", "c3"])
    own = store._connections.get()
    ok = own is not inherited and inherited in _INHERITED and hit.numeric[1, 1] == 1
    return b"ok" if ok else b"child reused or closed the parent's connection"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_after_fork_the_child_opens_its_own_connection(store):
    store.materialize(vectors(), AS_OF, "churn_v1")
    sqlite = isinstance(store, OnlineStore)
    inherited = store._connections.get() if sqlite else None
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report through the pipe, never return into pytest
        try:
            os.write(write_end, _child_check(store, inherited))
        except BaseException as exc:
            os.write(write_end, repr(exc).encode()[:500])
        finally:
            os._exit(0)
    os.close(write_end)
    message = os.read(read_end, 1000)
    os.waitpid(pid, 0)
    assert message == b"ok"
    assert not sqlite or store._connections.get() is inherited
    assert store.lookup(["c2"]).found.all()
