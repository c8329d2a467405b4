"""The decision API on a Redis online store: `lifecycle features materialize --store redis://`
then `/decide` through the service (in process), answering as on the SQLite store."""

from __future__ import annotations

import socket

from starlette.testclient import TestClient
from typer.testing import CliRunner

from features.store import open_store
from training.cli import app as cli

runner = CliRunner()


def _decide(client: TestClient, ids: list[str]) -> tuple[dict, list[tuple]]:
    body = client.post("/decide", json={"customer_ids": ids}).json()
    return body, [(r["customer_id"], r["churn"], r["stage"]) for r in body["results"]]


def test_a_store_materialised_into_redis_serves_decide(
    app, service_env, monkeypatch, world, redis_store_url
):
    data = str(world["folder"] / "data")
    result = runner.invoke(cli, ["features", "materialize", data, "--store", redis_store_url])
    assert result.exit_code == 0, result.output
    assert f"store {redis_store_url}: version 1 is current" in result.output
    assert open_store(redis_store_url).current().n_customers == len(world["vectors"])
    ids = world["vectors"]["customer_id"].astype("str").head(5).tolist() + ["ghost"]
    with TestClient(app) as client:  # the world's SQLite store
        _, on_sqlite = _decide(client, ids)
    monkeypatch.setenv("LIFECYCLE_STORE", redis_store_url)
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 200
        body, on_redis = _decide(client, ids)
        assert client.get("/models").json()["store"]["customers"] == len(world["vectors"])
    assert body["store_version"] == 1 and on_redis == on_sqlite
    assert body["results"][-1]["error"]["code"] == "unknown_customer"


def _dead_redis() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"redis://127.0.0.1:{sock.getsockname()[1]}/0"


def test_an_unreachable_redis_store_is_named_by_the_cli_and_the_service(
    app, service_env, monkeypatch, world
):
    dead = _dead_redis()
    data = str(world["folder"] / "data")
    result = runner.invoke(cli, ["features", "materialize", data, "--store", dead])
    assert result.exit_code == 1 and f"the online store {dead} is unreachable" in result.output
    monkeypatch.setenv("LIFECYCLE_STORE", dead)
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 503
        response = client.post("/decide", json={"customer_ids": ["c0000001"]})
        models = client.get("/models").json()
    assert response.status_code == 503 and f"the online store {dead} is unreachable" in (
        response.text
    )
    assert not models["ready"] and models["store"] is None and dead in models["error"]
