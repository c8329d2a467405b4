"""The PostgreSQL online store's own concerns (the shared behaviour runs on every backend in
``test_store.py``): schemas as prefixes, preflight, a failed write, writers taking turns,
readers of a dropped version, a broken connection, fork, a store dropped and re-filled."""

from __future__ import annotations

import os
import re
import threading

import pandas as pd
import psycopg
import pytest

from features.store import NoVersionError, PostgresStore, StoreUnavailableError, open_store
from features.store import postgres_store as module
from serving.preflight import store_problem

AS_OF = pd.Timestamp("2024-03-01T00:00Z")


def _frame(marker: float, ids: tuple[str, ...] = ("c1", "c2")) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": list(ids), "x": marker, "tag": f"v{marker:g}"})


def _sql(url: str, statement: str) -> list[tuple]:
    with psycopg.connect(url.split("?")[0], autocommit=True) as conn:
        cursor = conn.execute(statement)
        return cursor.fetchall() if cursor.description else []


def _schemas(url: str) -> set[str]:
    return {r[0] for r in _sql(url, "SELECT nspname FROM pg_namespace")}


def test_prefixes_are_schemas_keeping_stores_apart_in_one_database(postgres_db_url):
    first = open_store(f"{postgres_db_url}?prefix=shop a")
    second = open_store(f"{postgres_db_url}?prefix=Shop:b")
    first.materialize(_frame(1, ("c1",)), AS_OF, "first")
    for k in (1, 2):
        second.materialize(_frame(2, ("c2",)), AS_OF, f"s{k}")
    assert first.current().version == 1 and second.current().version == 2
    assert first.lookup(["c1", "c2"]).found.tolist() == [True, False]
    assert second.customer_ids() == ["c2"] and first.customer_ids() == ["c1"]
    assert {"shop a", "Shop:b"} <= _schemas(postgres_db_url)


def test_readers_never_create_anything(postgres_db_url):
    store = open_store(postgres_db_url)
    with pytest.raises(NoVersionError):
        store.lookup(["c1"])
    assert store.current() is None and store.versions() == []
    with pytest.raises(ValueError, match=r"live: \[\]"):
        store.activate(1)
    assert "lifecycle_store" not in _schemas(postgres_db_url)


def test_preflight_checks_a_postgres_store(postgres_db_url):
    assert store_problem(postgres_db_url) is None  # reachable, no version yet: not ready
    open_store(postgres_db_url).materialize(_frame(1), AS_OF, "fs")
    assert store_problem(postgres_db_url) is None
    _sql(postgres_db_url, "CREATE SCHEMA other; CREATE TABLE other.store_current (v text)")
    foreign = f"{postgres_db_url}?prefix=other"
    assert store_problem(foreign).startswith(
        f"the online store {foreign} holds something else under its prefix"
    )
    missing = postgres_db_url.rsplit("/", 1)[0] + "/no_such_db"
    found = store_problem(missing)
    assert found.startswith(f"the online store {missing} is unreachable") and "no_such_db" in found


def test_a_user_without_privileges_gets_a_clear_error(postgres_db_url):
    role = f"reader_{os.getpid()}_{threading.get_ident() % 10_000}"
    _sql(postgres_db_url, f"CREATE ROLE {role} LOGIN")
    try:
        url = postgres_db_url.replace("//lifecycle@", f"//{role}@")
        store = open_store(url)
        with pytest.raises(StoreUnavailableError, match=f"{re.escape(url)} is not open to its "
                           "user .*permission denied.*grant it CREATE"):  # fmt: skip
            store.materialize(_frame(1), AS_OF, "fs")
        open_store(postgres_db_url).materialize(_frame(1), AS_OF, "fs")
        with pytest.raises(StoreUnavailableError, match="permission denied for schema"):
            store.lookup(["c1"])
        store.close()
    finally:
        _sql(postgres_db_url, f"DROP OWNED BY {role}; DROP ROLE {role}")


def test_a_failed_materialize_leaves_nothing_behind(postgres_db_url, monkeypatch):
    store = open_store(postgres_db_url)
    store.materialize(_frame(1), AS_OF, "good")

    encode = module.encode_rows

    def broken(vectors, specs):
        yield from encode(vectors.iloc[:1], specs)
        raise OSError("disk gone mid-write")

    monkeypatch.setattr(module, "encode_rows", broken)
    with pytest.raises(OSError, match="disk gone"):
        store.materialize(_frame(2), AS_OF, "bad")
    monkeypatch.undo()
    fresh = open_store(postgres_db_url)
    assert fresh.current().feature_set == "good" and [v.version for v in fresh.versions()] == [1]
    tables = _sql(postgres_db_url, "SELECT table_name FROM information_schema.tables WHERE "
                  "table_schema = 'lifecycle_store' AND table_name LIKE 'vectors%'")  # fmt: skip
    assert tables == [("vectors_v1",)]
    assert store.materialize(_frame(3), AS_OF, "next").version == 3  # ids are never reused


def test_writers_take_turns_and_the_last_one_is_current(postgres_db_url):
    errors: list[BaseException] = []

    def write(k: int) -> None:
        try:
            open_store(postgres_db_url).materialize(_frame(k), AS_OF, f"v{k}", keep_versions=2)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    writers = [threading.Thread(target=write, args=(k,)) for k in range(6)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    store = open_store(postgres_db_url)
    assert errors == [] and [v.version for v in store.versions()] == [5, 6]
    current = store.current()
    assert current.version == 6
    assert store.lookup(["c1"]).categorical["tag"].tolist() == [current.feature_set]


def test_a_reader_of_a_dropped_version_follows_the_pointer(postgres_db_url):
    reader, writer = open_store(postgres_db_url), open_store(postgres_db_url)
    writer.materialize(_frame(1), AS_OF, "v1", keep_versions=1)
    assert reader.lookup(["c1"]).numeric.tolist() == [[1.0]]  # caches version 1
    writer.materialize(_frame(2, ("c1", "c9")), AS_OF, "v2", keep_versions=1)  # drops v1
    hit = reader.lookup(["c9", "c1"])
    assert hit.version.version == 2 and hit.numeric.tolist() == [[2.0], [2.0]]
    assert reader.customer_ids() == ["c1", "c9"]


def test_a_broken_connection_is_replaced_and_the_read_retried(postgres_db_url):
    store = open_store(postgres_db_url)
    store.materialize(_frame(1), AS_OF, "v1")
    pid = store._run(lambda conn: conn.execute("SELECT pg_backend_pid()").fetchone()[0])
    _sql(postgres_db_url, f"SELECT pg_terminate_backend({pid})")  # as a server restart
    assert store.lookup(["c2"]).found.all()
    assert store._run(lambda conn: conn.execute("SELECT pg_backend_pid()").fetchone()[0]) != pid


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_never_closes_the_parents_session(postgres_db_url):
    """The child drops the inherited connection (its socket pointed at /dev/null first) and
    opens its own; the parent's session is untouched: same connection, same server process."""
    store = open_store(postgres_db_url)
    store.materialize(_frame(1), AS_OF, "v1")
    conn = store._run(lambda c: c)
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    child = os.fork()
    if child == 0:  # child: exit code 0 only if its own read worked
        code = 1
        try:
            ok = store.lookup(["c1"]).found.all() and store._run(lambda c: c) is not conn
            code = 0 if ok else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store._run(lambda c: c) is conn and not conn.broken
    assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] == pid


def test_a_store_dropped_and_refilled_is_not_read_with_stale_metadata(postgres_db_url):
    reader = open_store(postgres_db_url)
    open_store(postgres_db_url).materialize(_frame(1), AS_OF, "old")
    assert reader.lookup(["c1"]).numeric.tolist() == [[1.0]]
    _sql(postgres_db_url, "DROP SCHEMA lifecycle_store CASCADE")
    with pytest.raises(NoVersionError):
        reader.lookup(["c1"])
    refill = pd.DataFrame({"customer_id": ["c1"], "y": [2.0], "z": [3.0], "plan": ["pro"]})
    assert open_store(postgres_db_url).materialize(refill, AS_OF, "new").version == 1
    hit = reader.lookup(["c1"])
    assert hit.version.feature_set == "new" and hit.numeric.tolist() == [[2.0, 3.0]]
    assert hit.categorical["plan"].tolist() == ["pro"]


def test_the_lookup_plan_uses_the_index(postgres_db_url):
    """At scale the join is index look-ups, not a scan of the version's table."""
    ids = [f"c{i:06d}" for i in range(20_000)]
    store = PostgresStore(postgres_db_url)
    store.materialize(pd.DataFrame({"customer_id": ids, "x": 1.0}), AS_OF, "big")
    epoch, _ = store._pointer(store._run(lambda c: c))
    statement = module.sql.lookup_sql('"lifecycle_store"', "vectors_v1", epoch, 1, 0)
    plan = store._run(lambda c: c.execute("EXPLAIN " + statement, (ids[:50],)).fetchall())
    text = "\n".join(row[0] for row in plan)
    assert "Index Scan using vectors_v1_pkey" in text, text
