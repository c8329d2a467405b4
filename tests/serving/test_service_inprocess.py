"""The decision API through its ASGI app (in process): endpoints, bad input, the ledger
loop, cold start, auth and model reload on promotion."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from starlette.testclient import TestClient

from serving.bundle import from_registry
from serving.engine import DecisionEngine
from serving.schemas import DecideResponse
from serving.traffic import current
from training.registry import log_estimator
from training.tracking import KINDS, REGISTERED_NAMES


@pytest.fixture
def client(app, service_env):
    with TestClient(app) as test_client:
        yield test_client


def ids(world, n: int) -> list[str]:
    return world["vectors"]["customer_id"].astype("str").head(n).tolist()


def test_probes_docs_and_models(client):
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert "<html" in client.get("/").text.lower()  # the interactive docs page
    spec = client.get("/docs.json").json()
    assert {"/decide", "/score", "/batch", "/feedback"} <= set(spec["paths"])
    models = client.get("/models").json()
    assert models["ready"] and set(models["models"]) == {"churn", "stage", "offers", "clv"}
    churn = models["models"]["churn"]
    assert churn["version"] == "1" and churn["trained_at"] and "roc_auc" in churn["metrics"]
    assert models["store"]["customers"] > 1000 and models["policy"]["exploration"] == 0.05


def test_decide_answers_each_customer_and_flags_unknown_ids(client, world):
    known = ids(world, 3)
    body = client.post(
        "/decide",
        json={"customer_ids": [known[0], "ghost", *known[1:]], "explain": True, "max_offers": 2},
    ).json()
    results = body["results"]
    assert [r["customer_id"] for r in results] == [known[0], "ghost", *known[1:]]
    assert (
        results[1]["error"]["code"] == "unknown_customer"
        and "/score" in results[1]["error"]["message"]
    )
    first = results[0]
    assert first["stage"]["current"] in first["stage"]["next"]
    assert sum(first["stage"]["next"].values()) == pytest.approx(1.0, abs=1e-4)
    assert 0 <= first["churn"]["probability"] <= 1 and first["churn"]["risk_band"] in (
        "low",
        "medium",
        "high",
    )
    reasons = first["churn"]["reasons"]
    assert reasons and all(r["contribution"] > 0 and r["label"] != r["feature"] for r in reasons)
    assert len(first["offers"]) == 2 and {"uplift", "expected_value", "eligible"} <= set(
        first["offers"][0]
    )
    decision = first["decision"]
    assert len(decision["decision_id"]) == 32 and 0 < decision["propensity"] <= 1
    assert (
        body["models"] == {"churn": "1", "stage": "1", "offers": "1", "clv": "1"} == first["models"]
    )
    assert body["features_as_of"] == first["features_as_of"] and body["store_version"] == 1


def test_decision_bodies_are_what_the_response_model_would_send(client, world):
    """The service serialises its answers without validating them first: the bytes must be
    those of the response model (every field, in order, of the declared types)."""
    event = {"timestamp": "2025-09-20T10:00:00Z", "event_type": "purchase", "amount": 4.0}
    cold = {"customer_id": "new", "events": [event]}
    requests = [
        ("/decide", {"customer_ids": [*ids(world, 3), "ghost"], "explain": True}),
        ("/decide", {"customer_ids": ids(world, 1), "channel": "email", "max_offers": 20}),
        ("/batch", {"customer_ids": [*ids(world, 300), "ghost"]}),
        ("/score", {"customers": [cold], "as_of": "2025-10-01T00:00:00Z", "explain": True}),
    ]
    for path, body in requests:
        response = client.post(path, json=body)
        assert response.headers["content-type"] == "application/json"
        validated = DecideResponse.model_validate_json(response.content)
        assert response.content == validated.model_dump_json().encode(), path


def wait_compiled(client, seconds: float = 180) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        models = client.get("/models").json()
        if len(models["compiled"]) == 3 or models["compile_error"]:
            return models
        time.sleep(0.2)
    raise AssertionError(f"trees not compiled in {seconds} s: {models}")


def scored(client, customer_ids: list[str], path: str = "/batch") -> list[tuple]:
    """What the models said of each customer (not the exploration's choice)."""
    body = {"customer_ids": customer_ids, "max_offers": 20, "explain": True}
    results = client.post(path, json=body).json()["results"]
    return [(r["customer_id"], r["error"], r["churn"], r["stage"], [(o["offer_id"], o["uplift"])
             for o in r["offers"]]) for r in results]  # fmt: skip


def wait_precomputed(client, seconds: float = 180) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done = client.get("/models").json()["precomputed_scores"]
        if done and done["current"]:
            return done
        time.sleep(0.2)
    raise AssertionError(f"store scores not precomputed in {seconds} s")


def test_precomputed_store_scores_give_the_same_answers(app, service_env, monkeypatch, world):
    """Stored customers are decided on their precomputed scores: no model runs per request,
    and every answer (unknown ids included) is what live scoring gives."""
    customers = [*ids(world, 300), "ghost", *ids(world, 5)]  # duplicates too
    monkeypatch.setenv("LIFECYCLE_PRECOMPUTE_SCORES", "false")
    with TestClient(app) as client:
        live = scored(client, customers), scored(client, customers[:3], "/decide")
        assert client.get("/models").json()["precomputed_scores"] is None
    monkeypatch.setenv("LIFECYCLE_PRECOMPUTE_SCORES", "true")
    with TestClient(app) as client:
        done = wait_precomputed(client)
        assert done["customers"] == len(world["vectors"])
        calls = []  # scoring done for a request (a reloader or precompute thread may still
        score = DecisionEngine.score  # score the store in the background: not per request)
        monkeypatch.setattr(DecisionEngine, "score", lambda self, rows: (
            current() is not None and calls.append(1)) or score(self, rows))  # fmt: skip
        assert (scored(client, customers), scored(client, customers[:3], "/decide")) == live
        assert calls == []
        assert scored(client, ["ghost"])[0][1]["code"] == "unknown_customer"


def test_a_new_store_version_is_scored_again(app, service_env, monkeypatch, world, tmp_path):
    """Precomputed scores belong to one store version: a request after a new
    materialisation reads the new version (scored live) and the new one gets precomputed."""
    import shutil

    from features.store import OnlineStore

    store = tmp_path / "store.sqlite"
    shutil.copy(world["folder"] / "store" / "online.sqlite", store)
    monkeypatch.setenv("LIFECYCLE_STORE", str(store))
    with TestClient(app) as client:
        first = wait_precomputed(client)["store_version"]
        vectors = world["vectors"].head(50)
        OnlineStore(store).materialize(vectors, world["tables"].end, world["label"])
        body = client.post("/decide", json={"customer_ids": ids(world, 2)}).json()
        assert body["store_version"] == first + 1
        assert wait_precomputed(client)["store_version"] == first + 1
        assert client.get("/models").json()["precomputed_scores"]["customers"] == 50


def test_trees_compile_in_the_background_without_changing_answers(
    app, service_env, monkeypatch, world
):
    """Every model's trees get compiled after the load (the service answers meanwhile), and
    the answers equal those of a service that does not compile."""
    customers = ids(world, 400)
    monkeypatch.setenv("LIFECYCLE_COMPILE_TREES", "false")
    with TestClient(app) as client:
        plain = scored(client, customers)
        assert client.get("/models").json()["compiled"] == {}
        assert not [t for t in threading.enumerate() if t.name == "tree-compiler"]
    monkeypatch.setenv("LIFECYCLE_COMPILE_TREES", "true")
    with TestClient(app) as client:
        models = wait_compiled(client)
        assert models["compiled"] == {"churn": True, "stage": True, "offers": True}
        assert models["compile_error"] is None
        assert scored(client, customers) == plain


@pytest.mark.parametrize(
    ("path", "body", "says"),
    [
        ("/decide", {"customer_ids": []}, "customer_ids"),
        ("/decide", {"customer_ids": "c1"}, "customer_ids"),
        ("/decide", {"customer_ids": ["c1"] * 1001}, "at most 1000"),
        ("/decide", {"customer_ids": ["c1"], "max_offers": 0}, "max_offers"),
        ("/decide", {}, "customer_ids"),
        ("/batch", {}, "exactly one of customer_ids or filter"),
        ("/batch", {"customer_ids": ["c1"] * 10_001}, "at most 10000"),
        ("/batch", {"filter": {"limit": 0}}, "limit"),
        ("/batch", {"filter": {"min_churn": 2}}, "min_churn"),
        ("/feedback", {"events": [{"event_id": "e", "event": "bought"}]}, "event"),
        ("/score", {"customers": [{"customer_id": "n", "events": []}]}, "events"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_field(client, path, body, says):
    response = client.post(path, json=body)
    assert 400 <= response.status_code < 500, response.text
    assert says in response.text


def test_malformed_json_is_a_4xx(client):
    response = client.post(
        "/decide", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert 400 <= response.status_code < 500


def test_batch_filter_returns_the_riskiest_customers_of_the_stages(client):
    body = client.post(
        "/batch",
        json={"filter": {"stages": ["at_risk", "retention"], "min_churn": 0.05, "limit": 25}},
    ).json()
    results = body["results"]
    risk = [r["churn"]["probability"] for r in results]
    assert 0 < len(results) <= 25 and risk == sorted(risk, reverse=True) and min(risk) >= 0.05
    assert {r["stage"]["current"] for r in results} <= {"at_risk", "retention"}


def test_a_filtered_audience_is_not_scored_twice(client, monkeypatch):
    body = {"filter": {"stages": ["retention"], "limit": 30}}
    first = client.post("/batch", json=body).json()["results"]  # scores the whole store once
    calls = []
    score = DecisionEngine.score
    monkeypatch.setattr(
        DecisionEngine, "score", lambda self, rows: calls.append(1) or score(self, rows)
    )
    again = client.post("/batch", json=body).json()["results"]
    assert calls == [] and len(again) == len(first) > 0
    assert [r["churn"] for r in again] == [r["churn"] for r in first]
    ids = [r["customer_id"] for r in first]
    looked_up = client.post("/batch", json={"customer_ids": ids}).json()["results"]
    assert calls == []  # stored customers' ids: decided on the same precomputed scores
    assert [r["churn"] for r in looked_up] == [r["churn"] for r in first]


def test_the_store_is_scored_once_however_many_ask_at_once(client, monkeypatch):
    """Filtered batches arriving together (and the background precompute) share one scoring
    of the whole store: the others wait for it instead of scoring it again."""
    whole, score = [], DecisionEngine.score
    monkeypatch.setattr(
        DecisionEngine,
        "score",
        lambda self, rows: whole.append(len(rows.customer_ids)) or score(self, rows),
    )
    body = {"filter": {"min_churn": 0.5, "limit": 5}}
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: client.post("/batch", json=body), range(4)))
    assert [a.status_code for a in answers] == [200] * 4
    assert len({str(a.json()["results"][0]["churn"]) for a in answers}) == 1
    assert len(whole) <= 1  # at most once: before this test, the precompute may have done it


def test_feedback_is_idempotent_and_feeds_cooldown(client, world):
    audience = client.post("/batch", json={"customer_ids": ids(world, 400)}).json()["results"]
    sent = next(r for r in audience if r["decision"]["offer_id"])
    decision = sent["decision"]
    event = {"event_id": "evt-1", "event": "sent", "decision_id": decision["decision_id"]}
    first = client.post("/feedback", json={"events": [event]}).json()
    again = client.post(
        "/feedback", json={"events": [event, {"event_id": "evt-2", "event": "sent"}]}
    ).json()
    assert first == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert again["accepted"] == 0 and again["duplicates"] == 1
    assert (
        again["rejected"][0]["event_id"] == "evt-2"
        and "decision_id" in again["rejected"][0]["error"]
    )
    after = client.post(
        "/decide", json={"customer_ids": [sent["customer_id"]], "max_offers": 20}
    ).json()["results"][0]
    offer = next(o for o in after["offers"] if o["offer_id"] == decision["offer_id"])
    assert not offer["eligible"] and "cooldown" in offer["ineligible_reason"]


def test_cold_start_scores_customers_from_their_events(client, world):
    events = [
        {"timestamp": "2025-09-01T10:00:00Z", "event_type": "signup"},
        {
            "timestamp": "2025-09-20T10:00:00Z",
            "event_type": "purchase",
            "amount": 40.0,
            "product": "starter_kit",
        },
    ]
    body = {
        "customers": [
            {"customer_id": "new-1", "events": events, "attributes": {"plan": "standard"}}
        ],
        "as_of": "2025-10-01T00:00:00Z",
        "explain": True,
    }
    result = client.post("/score", json=body).json()["results"][0]
    assert result["customer_id"] == "new-1" and result["stage"]["current"] == "purchase"
    assert result["features_as_of"].startswith("2025-10-01") and result["decision"]["decision_id"]
    bad = {
        "customers": [
            {
                "customer_id": "n",
                "events": [
                    {"timestamp": "2025-09-01T10:00:00Z", "event_type": "purchase", "amount": -3.0}
                ],
            }
        ]
    }
    response = client.post("/score", json=bad)
    assert response.status_code == 400 and "events.amount must be >= 0" in response.text
    response = client.post(
        "/score",
        json={
            "customers": [
                {"customer_id": "n", "events": [{"timestamp": "yesterday", "event_type": "signup"}]}
            ]
        },
    )
    assert response.status_code == 400 and "'yesterday'" in response.text


def test_feedback_refuses_impossible_times_and_revenue(client, world, monkeypatch):
    customer = ids(world, 1)[0]
    now = pd.Timestamp.now("UTC")
    events = [
        {"event_id": "old", "event": "sent", "customer_id": customer, "offer_id": None,
         "occurred_at": "0001-01-01T00:00:00Z"},
        {"event_id": "far", "event": "sent", "customer_id": customer,
         "occurred_at": "2999-01-01T00:00:00Z"},
        {"event_id": "skew", "event": "opened", "customer_id": customer,
         "occurred_at": (now + pd.Timedelta(seconds=60)).isoformat()},  # within the skew
        {"event_id": "fine", "event": "converted", "customer_id": customer, "revenue": 12.5,
         "occurred_at": (now - pd.Timedelta(days=30)).isoformat()},
    ]  # fmt: skip
    out = client.post("/feedback", json={"events": events}).json()
    assert out["accepted"] == 2 and [r["event_id"] for r in out["rejected"]] == ["old", "far"]
    assert all("outside the accepted window" in r["error"] for r in out["rejected"])
    # a 'sent' dated 2999 was refused, so it neither blocks the offer nor counts to the cap
    event = {"event_id": "inf", "event": "converted", "customer_id": customer,
             "revenue": float("inf")}  # fmt: skip
    infinite = json.dumps({"events": [event]})  # Python's json writes Infinity
    response = client.post("/feedback", content=infinite,
                           headers={"content-type": "application/json"})  # fmt: skip
    assert response.status_code == 422 and "revenue" in response.text
    negative = {"events": [{"event_id": "neg", "event": "converted", "customer_id": customer,
                            "revenue": -1.0}]}  # fmt: skip
    response = client.post("/feedback", json=negative)
    assert response.status_code == 422 and "revenue" in response.text


def test_a_body_above_the_limit_is_refused_before_it_is_read(app, service_env, monkeypatch):
    monkeypatch.setenv("LIFECYCLE_MAX_BODY_BYTES", "4096")
    monkeypatch.setenv("LIFECYCLE_API_TOKEN", "s3cret")
    big = json.dumps({"customer_ids": [f"c{i:07d}" for i in range(1000)]})  # ~12 KB
    auth = {"Authorization": "Bearer s3cret", "content-type": "application/json"}
    with TestClient(app) as client:
        for headers in (auth, {"content-type": "application/json"}):  # with a token or not
            response = client.post("/batch", content=big, headers=headers)
            assert response.status_code == 413, headers
            assert "max_body_bytes=4,096" in response.json()["error"]

        def chunks():  # no Content-Length: counted as it arrives
            for i in range(0, len(big), 1000):
                yield big[i : i + 1000].encode()

        response = client.post("/batch", content=chunks(), headers=auth)
        assert response.status_code == 413
        small = {"customer_ids": ["nobody"]}
        assert client.post("/decide", json=small, headers=auth).status_code == 200

        def small_chunks():
            yield json.dumps(small).encode()

        replayed = client.post("/decide", content=small_chunks(), headers=auth)
        assert replayed.status_code == 200 and replayed.json()["results"][0]["error"]


def test_a_store_lacking_model_columns_is_not_ready_and_says_which(
    app, service_env, monkeypatch, world, tmp_path
):  # fmt: skip
    from features.store import OnlineStore

    current = OnlineStore(world["folder"] / "store" / "online.sqlite").current()
    churn_inputs = set(from_registry().churn.feature_names_in_)
    dropped = [c.name for c in current.columns if c.name in churn_inputs][:3]
    vectors = world["vectors"].drop(columns=dropped, errors="ignore")
    lacking = tmp_path / "lacking.sqlite"
    OnlineStore(lacking).materialize(vectors, current.as_of, current.feature_set)
    monkeypatch.setenv("LIFECYCLE_STORE", str(lacking))
    with TestClient(app) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        models = client.get("/models").json()
        assert not models["ready"] and all(c in models["error"] for c in dropped)
        for path, body in (("/decide", {"customer_ids": ids(world, 2)}),
                           ("/batch", {"filter": {"limit": 5}})):  # fmt: skip
            response = client.post(path, json=body)
            assert response.status_code == 503, (path, response.text)
            assert "lacks column(s)" in response.text and dropped[0] in response.text


def test_api_token_guards_the_api_but_not_probes(app, service_env, monkeypatch, world):
    monkeypatch.setenv("LIFECYCLE_API_TOKEN", "s3cret")
    with TestClient(app) as client:
        body = {"customer_ids": ids(world, 1)}
        assert client.post("/decide", json=body).status_code == 401
        assert (
            client.post(
                "/decide", json=body, headers={"Authorization": "Bearer s3cret"}
            ).status_code
            == 200
        )
        assert client.get("/readyz").status_code == 200 and client.get("/livez").status_code == 200
        assert client.get("/models").status_code == 401


def test_not_ready_without_models(app, service_env, monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'empty.db'}")
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 503
        assert client.post("/decide", json={"customer_ids": ["c1"]}).status_code == 503
        models = client.get("/models").json()  # BentoML hides 5xx messages: /models says why
        assert not models["ready"] and "lifecycle train" in models["error"]


def republish_champions(uri: str) -> dict[str, str]:
    """Register the champions again as new versions and move `champion` to them."""
    mlflow.set_tracking_uri(uri)
    bundle, client, versions = from_registry(), MlflowClient(), {}
    example = mlflow.pyfunc.load_model("models:/lifecycle-churn@champion").input_example
    with mlflow.start_run(run_name="republish"):
        for name, registered in REGISTERED_NAMES.items():
            estimator = getattr(bundle, name)
            X = example if name != "offers" else _offers_example(estimator, example)
            new = log_estimator(estimator, KINDS[name], name, X, registered)
            client.set_registered_model_alias(registered, "champion", new.version)
            versions[name] = new.version
    return versions


def loaded(client) -> dict[str, str]:
    return {n: m["version"] for n, m in client.get("/models").json()["models"].items()}


def _offers_example(estimator, example):
    return example.reindex(columns=list(estimator.feature_names_in_))


def test_promotion_is_picked_up_without_restart_while_requests_keep_succeeding(
    app, service_env, monkeypatch, world
):
    monkeypatch.setenv("LIFECYCLE_RELOAD_SECONDS", "0.2")
    body = {"customer_ids": ids(world, 5)}
    with TestClient(app) as client:
        before = client.post("/decide", json=body).json()["models"]
        statuses, seen, stop = [], set(), threading.Event()

        def hammer():
            while not stop.is_set():
                response = client.post("/decide", json=body)
                statuses.append(response.status_code)
                seen.add(
                    response.json()["models"]["churn"] if response.status_code == 200 else None
                )

        with ThreadPoolExecutor(4) as pool:
            for _ in range(4):
                pool.submit(hammer)
            versions = republish_champions(world["uri"])
            deadline = time.time() + 60
            while loaded(client) != versions:
                assert time.time() < deadline, "the new champions were not loaded within 60 s"
                time.sleep(0.2)
            time.sleep(0.5)
            stop.set()
        assert before["churn"] != versions["churn"]
        assert statuses and set(statuses) == {200}
        assert {before["churn"], versions["churn"]} <= seen
        assert client.post("/decide", json=body).json()["models"] == versions


def test_an_invalid_value_built_by_the_service_is_a_500_not_a_422(client, world, monkeypatch):
    """A pydantic ValidationError raised inside the service's own code (the request was
    valid) is the server's fault: a 500 naming the request id, never a 422 blaming the
    caller."""
    from pydantic import BaseModel

    from serving.service import LifecycleService

    class Strict(BaseModel):
        n: int

    def broken(self, *args, **kwargs):
        return Strict(n="not a number")

    monkeypatch.setattr(LifecycleService.inner, "_respond", broken)
    response = client.post("/decide", json={"customer_ids": ids(world, 1)},
                           headers={"x-request-id": "bug-1"})  # fmt: skip
    assert response.status_code == 500, response.text
    assert response.json() == {"error": "an unexpected error occurred; the server log names "
                               "it with request id bug-1", "details": None}  # fmt: skip
