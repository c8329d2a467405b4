"""The service on a business without campaign logs: churn and stage champions, no offers
champion (a copy of the world's registry without its ``champion`` alias), with and without
an offer catalog; in process, exported, and once through a real ``bentoml serve``."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import bentoml
import httpx
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from starlette.testclient import TestClient
from typer.testing import CliRunner

from serving.cli import app as cli
from serving.client import LocalService
from serving.ledger import FeedbackLedger
from serving.schemas import DecideResponse
from training.tracking import REGISTERED_NAMES

OFFERS = REGISTERED_NAMES["offers"]


def registry_without_offers(world, folder) -> tuple[str, str]:
    """A copy of the world's registry (same artifacts) whose offers model has no champion;
    its URI and the offers version the champion alias pointed at."""
    source, copy = sqlite3.connect(world["folder"] / "mlflow.db"), sqlite3.connect(
        folder / "mlflow.db")  # fmt: skip
    with copy:
        source.backup(copy)
    source.close(), copy.close()
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    version = client.get_model_version_by_alias(OFFERS, "champion").version
    client.delete_registered_model_alias(OFFERS, "champion")
    return uri, str(version)


@pytest.fixture(scope="module")
def no_offers(world, tmp_path_factory):
    """A registry without an offers champion, shared by the tests that do not change it."""
    folder = tmp_path_factory.mktemp("no-offers")
    return registry_without_offers(world, folder)[0]


@pytest.fixture
def env(service_env, monkeypatch, no_offers):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", no_offers)
    return service_env


def ids(world, n: int) -> list[str]:
    return world["vectors"]["customer_id"].astype("str").head(n).tolist()


def same_bytes(response) -> None:
    """The body is what the response model sends (the service writes it without it)."""
    validated = DecideResponse.model_validate_json(response.content)
    assert response.content == validated.model_dump_json().encode()


def status(offers: dict) -> dict:
    """A response's ``offers_status``: ``GET /models``'s ``offers`` without the catalog."""
    return {k: offers[k] for k in ("available", "policy", "reason")}


def test_without_a_catalog_churn_and_stage_are_served_without_offers(app, env, monkeypatch, world):
    monkeypatch.delenv("LIFECYCLE_OFFERS")
    event = {"timestamp": "2025-09-20T10:00:00Z", "event_type": "purchase", "amount": 4.0}
    cold = {"customer_id": "new", "events": [event]}
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 200
        models = client.get("/models").json()
        assert models["ready"] and set(models["models"]) == {"churn", "stage", "clv"}
        assert models["offers"] == {
            "available": False, "policy": None, "catalog": [],
            "reason": "no offer catalog configured (set offers / LIFECYCLE_OFFERS)",
        }  # fmt: skip
        answers = [
            client.post("/decide", json={"customer_ids": [*ids(world, 3), "ghost"],
                                         "explain": True}),
            client.post("/batch", json={"filter": {"min_churn": 0.2, "limit": 50}}),
            client.post("/score", json={"customers": [cold], "as_of": "2025-10-01T00:00:00Z"}),
        ]  # fmt: skip
        for response in answers:
            assert response.status_code == 200, response.text
            same_bytes(response)
            body = response.json()
            assert body["offers_status"] == status(models["offers"])
            assert body["models"] == {n: m["version"] for n, m in models["models"].items()}
            known = [r for r in body["results"] if not r["error"]]
            assert known and all(r["decision"] is None and r["offers"] == [] for r in known)
            assert all(0 <= r["churn"]["probability"] <= 1 and r["stage"]["current"]
                       for r in known)  # fmt: skip
        assert answers[0].json()["results"][0]["churn"]["reasons"]
        assert answers[0].json()["results"][3]["error"]["code"] == "unknown_customer"
    assert FeedbackLedger(env["LIFECYCLE_LEDGER"]).counts()["decisions"] == 0  # nothing decided


def seeded(monkeypatch, tmp_path, seed: int = 5) -> None:
    config = tmp_path / "service.yaml"
    config.write_text(f"seed: {seed}\npolicy:\n  cold_start_control_share: 0.25\n")
    monkeypatch.setenv("LIFECYCLE_SERVICE_CONFIG", str(config))


def test_a_catalog_without_an_offers_model_is_the_logged_cold_start_policy(
    app, env, monkeypatch, world, tmp_path
):
    seeded(monkeypatch, tmp_path)
    customers = ids(world, 400)
    with TestClient(app) as client:
        offers = client.get("/models").json()["offers"]
        assert offers["available"] and offers["policy"] == "cold_start" and offers["catalog"]
        assert "no offers model" in offers["reason"] and "0.25" in offers["reason"]
        response = client.post("/batch", json={"customer_ids": customers, "max_offers": 20})
        same_bytes(response)
        body = response.json()
    assert body["offers_status"]["policy"] == "cold_start" and "offers" not in body["models"]
    ledger = FeedbackLedger(env["LIFECYCLE_LEDGER"])
    chosen = []
    for result in body["results"]:
        decision, shown = result["decision"], result["offers"]
        assert len(shown) == len(offers["catalog"])  # every offer, eligible ones first
        assert all(o["uplift"] is None and o["expected_value"] is None for o in shown)
        m = sum(o["eligible"] for o in shown)
        p = {None: 0.25 if m else 1.0, **{o["offer_id"]: 0.75 / m for o in shown if o["eligible"]}}
        assert decision["offer_id"] in p and decision["propensity"] == p[decision["offer_id"]]
        assert decision["policy"] == "cold_start" and decision["expected_value"] is None
        logged = ledger.decision(decision["decision_id"])
        assert (logged.offer_id, logged.propensity, logged.policy, logged.expected_value) == (
            decision["offer_id"], decision["propensity"], "cold_start", None)  # fmt: skip
        chosen.append(decision["offer_id"])
    assert {None} < set(chosen)  # offers and control
    with TestClient(app) as client:  # the config's seed: the same random choices again
        again = client.post("/batch", json={"customer_ids": customers}).json()["results"]
    assert [r["decision"]["offer_id"] for r in again] == chosen


def test_an_offers_champion_promoted_later_is_picked_up_while_requests_succeed(
    app, service_env, monkeypatch, world, tmp_path
):
    uri, version = registry_without_offers(world, tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("LIFECYCLE_RELOAD_SECONDS", "0.2")
    body = {"customer_ids": ids(world, 5)}
    with TestClient(app) as client:
        assert client.get("/models").json()["offers"]["policy"] == "cold_start"
        statuses, policies, stop = [], set(), threading.Event()

        def hammer():
            while not stop.is_set():
                response = client.post("/decide", json=body)
                statuses.append(response.status_code)
                if response.status_code == 200:
                    policies.add(response.json()["offers_status"]["policy"])

        with ThreadPoolExecutor(3) as pool:
            for _ in range(3):
                pool.submit(hammer)
            try:
                time.sleep(0.3)
                MlflowClient(tracking_uri=uri).set_registered_model_alias(OFFERS, "champion",
                                                                          version)  # fmt: skip
                deadline = time.time() + 120
                while client.get("/models").json()["offers"]["policy"] != "model":
                    assert time.time() < deadline, "the offers champion was not loaded in 120 s"
                    time.sleep(0.2)
                time.sleep(0.3)
            finally:
                stop.set()  # else the pool waits for the hammers for ever
        assert statuses and set(statuses) == {200} and policies == {"cold_start", "model"}
        after = client.post("/decide", json=body).json()
        assert after["models"]["offers"] == version and after["offers_status"]["reason"] is None
        assert {r["decision"]["policy"] for r in after["results"]} == {"model"}
        assert client.get("/models").json()["reloads"] == 1


def export(no_offers: str, out, monkeypatch, *args: str) -> str:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", no_offers)
    result = CliRunner().invoke(cli, ["export", "--out", str(out), *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_export_without_an_offers_champion_and_serve_the_folder(
    app, service_env, monkeypatch, no_offers, world, tmp_path
):
    out = tmp_path / "models"
    said = export(no_offers, out, monkeypatch)  # no catalog either
    assert re.search(r"exported churn v\d+, stage v\d+, clv v\d+ to", " ".join(said.split()))
    assert "without offers: no offers model" in said and "without an offer catalog" in said
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["models"]) == {"churn", "stage", "clv"} and manifest["catalog"] is None
    assert "no offers model" in manifest["absent"]["offers"]
    assert {p.name for p in out.iterdir()} == {"churn.joblib", "stage.joblib", "clv.joblib",
                                               "manifest.json"}  # fmt: skip
    monkeypatch.setenv("LIFECYCLE_MODELS", str(out))
    monkeypatch.delenv("LIFECYCLE_OFFERS")
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 200
        offers = client.get("/models").json()["offers"]
        assert offers["policy"] is None and "or export one with the models" in offers["reason"]
        body = {"customer_ids": ids(world, 1)}
        result = client.post("/decide", json=body).json()["results"][0]
        assert result["churn"] and result["decision"] is None


def test_a_real_server_is_ready_and_decides_without_an_offers_model(
    world, no_offers, monkeypatch, tmp_path
):
    """``bentoml serve`` on an export without an offers model but with the catalog."""
    out = tmp_path / "models"
    export(no_offers, out, monkeypatch, "--data", str(world["folder"] / "data"))
    assert (out / "offers.json").exists() and not (out / "offers.joblib").exists()
    service = LocalService(
        store=world["folder"] / "store" / "online.sqlite", ledger=tmp_path / "ledger.sqlite",
        models=out, workdir=tmp_path / "server", token="t0ken",
        config={"compile_trees": False, "precompute_scores": False},
    )  # fmt: skip
    with service:
        assert httpx.get(f"{service.url}/readyz").status_code == 200
        with bentoml.SyncHTTPClient(service.url, token="t0ken") as client:
            body = client.decide(customer_ids=ids(world, 3), max_offers=20)
        models = httpx.get(f"{service.url}/models", headers=service.headers).json()
    assert models["ready"] and models["offers"]["policy"] == "cold_start"
    assert body["offers_status"] == status(models["offers"])
    decisions = [r["decision"] for r in body["results"]]
    assert all(d["policy"] == "cold_start" and 0 < d["propensity"] <= 1 for d in decisions)
    assert np.all([o["uplift"] is None for r in body["results"] for o in r["offers"]])
    logged = FeedbackLedger(tmp_path / "ledger.sqlite").decision(decisions[0]["decision_id"])
    assert logged.policy == "cold_start" and logged.propensity == decisions[0]["propensity"]
