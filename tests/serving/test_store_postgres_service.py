"""The decision API on a PostgreSQL online store: `lifecycle features materialize --store
postgresql://` then `/decide` through the service (in process), answering as on SQLite; a
database that is missing is named by the CLI, preflight and the service."""

from __future__ import annotations

from starlette.testclient import TestClient
from typer.testing import CliRunner

from features.store import open_store
from serving.preflight import problems
from training.cli import app as cli

runner = CliRunner()


def _decide(client: TestClient, ids: list[str]) -> tuple[dict, list[tuple]]:
    body = client.post("/decide", json={"customer_ids": ids}).json()
    return body, [(r["customer_id"], r["churn"], r["stage"]) for r in body["results"]]


def test_a_store_materialised_into_postgres_serves_decide(
    app, service_env, monkeypatch, world, postgres_db_url
):
    url = f"{postgres_db_url}?prefix=online"
    data = str(world["folder"] / "data")
    result = runner.invoke(cli, ["features", "materialize", data, "--store", url])
    assert result.exit_code == 0, result.output
    assert f"store {url}: version 1 is current" in result.output
    assert open_store(url).current().n_customers == len(world["vectors"])
    assert problems(url, service_env["LIFECYCLE_LEDGER"], "registry") == []
    ids = world["vectors"]["customer_id"].astype("str").head(5).tolist() + ["ghost"]
    with TestClient(app) as client:  # the world's SQLite store
        _, on_sqlite = _decide(client, ids)
    monkeypatch.setenv("LIFECYCLE_STORE", url)
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 200
        body, on_postgres = _decide(client, ids)
        assert client.get("/models").json()["store"]["customers"] == len(world["vectors"])
    assert body["store_version"] == 1 and on_postgres == on_sqlite
    assert body["results"][-1]["error"]["code"] == "unknown_customer"


def test_a_missing_postgres_database_is_named_by_the_cli_preflight_and_service(
    app, service_env, monkeypatch, world, postgres_url
):
    missing = postgres_url.rsplit("/", 1)[0] + "/no_such_database"
    data = str(world["folder"] / "data")
    result = runner.invoke(cli, ["features", "materialize", data, "--store", missing])
    expected = f"the online store {missing} is unreachable"
    assert result.exit_code == 1 and expected in result.output
    assert expected in problems(missing, service_env["LIFECYCLE_LEDGER"])[0]
    monkeypatch.setenv("LIFECYCLE_STORE", missing)
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 503
        response = client.post("/decide", json={"customer_ids": ["c0000001"]})
    assert response.status_code == 503 and expected in response.text
