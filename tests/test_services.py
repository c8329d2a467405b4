"""The project's own servers (scripts/services.sh) answer, through the suite's fixtures."""

from __future__ import annotations

import psycopg
import redis

from tests.services import parse_urls, run_script


def test_redis_and_postgres_fixtures_give_working_servers(redis_url, postgres_url):
    client = redis.Redis.from_url(redis_url)
    assert client.ping() is True
    client.close()
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.execute("SELECT current_user, current_database()").fetchone() == (
            "lifecycle",
            "lifecycle",
        )


def test_status_and_a_second_start_print_the_same_urls(redis_url, postgres_url):
    expected = {"REDIS_URL": redis_url, "POSTGRES_URL": postgres_url}
    status = run_script("status")
    assert status.returncode == 0 and parse_urls(status.stdout) == expected
    again = run_script("start")  # idempotent: already running, just print
    assert again.returncode == 0 and again.stdout.splitlines() == [
        f"REDIS_URL={redis_url}",
        f"POSTGRES_URL={postgres_url}",
    ]


def test_each_test_gets_a_fresh_database(postgres_db_url, postgres_url):
    assert postgres_db_url != postgres_url
    with psycopg.connect(postgres_db_url) as conn:
        conn.execute("CREATE TABLE t (x int)")
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert tables.fetchone() == (1,)
