"""Against a real ``bentoml serve`` subprocess on a free localhost port: readiness, the Python
client, curl-style HTTP, Prometheus metrics, a schemathesis fuzz of the OpenAPI spec with
every check that must find no failure, the one error shape and strict request bodies, and
operations (quiet logs with request ids, load shedding, no decision logged for a caller who
left). The server runs ``tests/serving/fault_service.py``:
the service plus two faults that only sentinel customer ids trigger."""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bentoml
import httpx
import pytest

from serving.schemas import ErrorBody

ROOT = Path(__file__).resolve().parents[2]
IN_FLIGHT = 4  # LIFECYCLE_MAX_IN_FLIGHT of the server (the fuzz runs 2 workers)
FAULT_ID, SLOW_PREFIX = "fault-injected-by-the-tests", "slow-"  # as in fault_service.py
SCHEMATHESIS_CONFIG = Path(__file__).with_name("schemathesis.toml")  # why /score may answer 400


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(world, tmp_path_factory):
    folder = tmp_path_factory.mktemp("http")
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": world["uri"],
        "LIFECYCLE_STORE": str(world["folder"] / "store" / "online.sqlite"),
        "LIFECYCLE_LEDGER": str(folder / "ledger.sqlite"),
        "LIFECYCLE_MODELS": str(world["folder"] / "export"),  # the registry-free path
        "LIFECYCLE_API_TOKEN": "t0ken",
        "BENTOML_HOME": str(folder / "bentoml"),
        "LIFECYCLE_COMPILE_CACHE": str(world["folder"] / "trees"),
        "LIFECYCLE_MONITOR_METRICS": str(folder / "monitor.prom"),
        "LIFECYCLE_MAX_IN_FLIGHT": str(IN_FLIGHT),
    }
    (folder / "monitor.prom").write_text(
        "# HELP lifecycle_score_psi PSI of the churn scores\n"
        "# TYPE lifecycle_score_psi gauge\nlifecycle_score_psi 0.125\n"
    )  # as `lifecycle monitor` writes it
    log = (folder / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "bentoml", "serve", "tests.serving.fault_service:LifecycleService",
         "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(process, url, folder / "server.log")
        yield {
            "url": url,
            "log": folder / "server.log",
            "headers": {"Authorization": "Bearer t0ken"},
            "ledger": folder / "ledger.sqlite",
        }
    finally:
        process.terminate()
        process.wait(30)


def wait_ready(process, url: str, log: Path, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert process.poll() is None, f"server exited:\n{log.read_text()[-3000:]}"
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"not ready in {timeout} s:\n{log.read_text()[-3000:]}")


def test_python_client_and_plain_http(server, world):
    ids = world["vectors"]["customer_id"].astype("str").head(2).tolist()
    with bentoml.SyncHTTPClient(server["url"], token="t0ken") as client:
        body = client.decide(customer_ids=ids, explain=True)
        plain = client.decide(customer_ids=[*ids, "ghost"])  # the client decodes every shape
        audience = client.batch(filter={"min_churn": 0.0, "limit": 3})
    assert plain["results"][0]["churn"]["reasons"] == [] and len(audience["results"]) == 3
    assert plain["results"][2]["error"]["code"] == "unknown_customer"
    assert [r["customer_id"] for r in body["results"]] == ids
    assert body["results"][0]["churn"]["reasons"]
    response = httpx.post(f"{server['url']}/decide", json={"customer_ids": ids},
                          headers=server["headers"])  # fmt: skip
    assert response.status_code == 200 and response.json()["models"]["churn"] == "1"
    assert httpx.post(f"{server['url']}/decide", json={"customer_ids": ids}).status_code == 401
    models = httpx.get(f"{server['url']}/models", headers=server["headers"]).json()
    assert models["source"].endswith("export") and models["ready"]


def test_probes_and_metrics_stay_open(server, world):
    for path in ("/livez", "/readyz", "/metrics"):
        assert httpx.get(server["url"] + path).status_code == 200, path
    known = str(world["vectors"]["customer_id"].iloc[0])
    body = {"customer_ids": ["ghost", known]}
    httpx.post(f"{server['url']}/decide", json=body, headers=server["headers"])
    metrics = httpx.get(server["url"] + "/metrics").text
    assert "bentoml_service_request_total" in metrics
    assert 'lifecycle_decisions_total{explored="' in metrics
    assert "lifecycle_score_psi 0.125" in metrics  # the monitor's gauges, re-exposed
    huge = httpx.post(f"{server['url']}/batch", content=b"[" * (9 * 1024 * 1024),
                      headers={"content-type": "application/json"})  # fmt: skip
    assert huge.status_code == 413 and "max_body_bytes" in huge.text  # before the token check


def test_fuzzing_the_openapi_spec_finds_no_failure_of_any_check(server, tmp_path):
    """Schemathesis with every check (server errors, status codes, content types, headers and
    bodies conforming to the spec, invalid data refused, valid data accepted, auth enforced,
    undeclared methods 405) against the running server: zero failures. One worker: with two,
    hypothesis describes strategies from two threads at once and CPython 3.11's ast.parse is not
    thread-safe ("SystemError: AST constructor recursion depth mismatch", CPython gh-106905)."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "st"), "--config-file", str(SCHEMATHESIS_CONFIG),
         "run", f"{server['url']}/docs.json", "--checks", "all", "--max-examples", "25",
         "--seed", "1", "--header", "Authorization: Bearer t0ken",
         "--phases", "examples,coverage,fuzzing", "--workers", "1"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    generated = re.search(r"(\d+) generated", result.stdout)
    assert generated and int(generated.group(1)) >= 100, result.stdout[-2000:]


def one_error_shape(response: httpx.Response, status: int) -> ErrorBody:
    """The answer's status is ``status`` and its body the one error shape, nothing more."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert set(response.json()) == {"error", "details"}, response.text
    body = ErrorBody.model_validate(response.json())
    assert body.error and (body.details is not None) == (status == 422), response.text
    return body


def test_strict_types_and_unknown_fields_are_a_422_naming_the_field(server):
    """ "yes" is not a boolean, "3" not an integer, a misspelt field is refused rather than
    ignored, at the top of the body and inside it; 20.0 is the integer 20 (as in JSON)."""
    url, headers = server["url"], server["headers"]
    feedback = {"event_id": "e1", "event": "sent", "customer_id": "c", "revenue": "5"}
    cases = [
        ("/decide", {"customer_ids": ["a"], "explain": "yes"}, ["explain"], "bool_type"),
        ("/decide", {"customer_ids": ["a"], "max_offers": "3"}, ["max_offers"], "int_type"),
        ("/decide", {"customer_ids": ["a"], "explian": True}, ["explian"], "extra_forbidden"),
        ("/batch", {"filter": {"limt": 5}}, ["filter", "limt"], "extra_forbidden"),
        ("/batch", {"customer_ids": ["a"], "filter": {}}, [], "value_error"),
        ("/feedback", {"events": [feedback]}, ["events", 0, "revenue"], "float_type"),
    ]
    for route, body, loc, kind in cases:
        answer = httpx.post(url + route, json=body, headers=headers)
        error = one_error_shape(answer, 422)
        assert [(d.loc, d.type) for d in error.details] == [(loc, kind)], (route, answer.text)
        assert ".".join(map(str, loc)) in error.error  # the message names the field too
    integral = httpx.post(f"{url}/decide", json={"customer_ids": ["a"], "max_offers": 20.0},
                          headers=headers)  # fmt: skip
    assert integral.status_code == 200, integral.text


def test_every_error_answers_the_one_shape(server):
    url, headers = server["url"], server["headers"]
    one_error_shape(httpx.post(f"{url}/decide", json={"customer_ids": ["a"]}), 401)
    huge = httpx.post(f"{url}/batch", content=b"[" * (9 * 1024 * 1024),
                      headers={"content-type": "application/json"})  # fmt: skip
    one_error_shape(huge, 413)
    text = httpx.post(
        f"{url}/decide", content=b"a", headers={**headers, "content-type": "text/plain"}
    )
    one_error_shape(text, 415)
    assert one_error_shape(httpx.post(f"{url}/decide", content=b"{", headers=headers),
                           422).details[0].type == "json_invalid"  # fmt: skip
    many = httpx.post(f"{url}/decide", json={"customer_ids": [f"x{i}" for i in range(1001)]},
                      headers=headers)  # fmt: skip
    assert "at most 1000" in one_error_shape(many, 400).error  # InvalidArgument: a 400
    one_error_shape(httpx.post(f"{url}/nowhere", json={}, headers=headers), 404)
    wrong_method = httpx.get(f"{url}/decide", headers=headers)
    assert "POST" in wrong_method.headers["allow"]
    one_error_shape(wrong_method, 405)
    assert httpx.request("TRACE", f"{url}/models", headers=headers).status_code == 405
    fault = httpx.post(f"{url}/decide", json={"customer_ids": [FAULT_ID]}, headers=headers)
    assert fault.headers["x-request-id"] in one_error_shape(fault, 500).error


def test_the_spec_declares_auth_every_status_and_the_models_endpoint(server):
    spec = httpx.get(f"{server['url']}/docs.json").json()
    assert spec["openapi"].startswith("3.1") and "bearer" in spec["components"]["securitySchemes"]
    decide = spec["paths"]["/decide"]["post"]
    assert {"bearer": []} in decide["security"] and decide["requestBody"]["required"]
    assert set(decide["responses"]) == {"200", "400", "401", "413", "415", "422", "500", "503"}
    for status, answer in decide["responses"].items():
        schema = answer["content"]["application/json"]["schema"]
        assert (schema == {"$ref": "#/components/schemas/ErrorBody"}) == (status != "200")
    request = spec["components"]["schemas"]["DecideRequest"]
    assert request["additionalProperties"] is False and "customer_ids" in request["required"]
    assert request["properties"]["customer_ids"]["maxItems"] == 1000  # the running config's
    assert {"type": "null"} in request["properties"]["channel"]["anyOf"]
    assert spec["paths"]["/models"]["get"]["responses"]["401"]
    assert spec["paths"]["/livez"]["get"]["security"] == []


def log_after(log: Path, offset: int, needle: str, timeout: float = 10.0) -> str:
    """The server log written after ``offset``, once it holds ``needle`` (lines are written
    after the response is sent)."""
    deadline = time.time() + timeout
    while True:
        text = log.read_bytes()[offset:].decode(errors="replace")
        if needle in text or time.time() > deadline:
            return text
        time.sleep(0.1)


def lines_with(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if needle in line]


def decided(ledger: Path, customer: str) -> int:
    with sqlite3.connect(ledger) as conn:
        query = "SELECT count(*) FROM decisions WHERE customer_id = ?"
        return conn.execute(query, (customer,)).fetchone()[0]


def test_client_errors_are_one_info_line_without_a_traceback(server):
    start = server["log"].stat().st_size
    bad = httpx.post(f"{server['url']}/decide", json={"customer_ids": 3},
                     headers={**server["headers"], "X-Request-ID": "bad-input.1"})  # fmt: skip
    anonymous = httpx.post(f"{server['url']}/decide", json={"customer_ids": ["a"]},
                           headers={"X-Request-ID": "no-token.1"})  # fmt: skip
    assert bad.status_code in (400, 422) and anonymous.status_code == 401
    assert bad.headers["x-request-id"] == "bad-input.1"
    assert anonymous.headers["x-request-id"] == "no-token.1"
    text = log_after(server["log"], start, "no-token.1")
    assert "Traceback" not in text and "[ERROR]" not in text, text
    (invalid,) = lines_with(text, "request_id=bad-input.1")
    (refused,) = lines_with(text, "request_id=no-token.1")
    assert "[INFO]" in invalid and f"POST /decide {bad.status_code}" in invalid
    assert "customer_ids" in invalid  # the reason names the field
    assert "[INFO]" in refused and "POST /decide 401" in refused and "API token" in refused


def test_a_server_error_logs_one_traceback_naming_the_request_id(server):
    start = server["log"].stat().st_size
    response = httpx.post(f"{server['url']}/decide", json={"customer_ids": [FAULT_ID]},
                          headers=server["headers"])  # fmt: skip
    assert response.status_code == 500
    request_id = response.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)  # none sent: one was made
    text = log_after(server["log"], start, "a fault injected by the tests")
    assert text.count("Traceback") == 1 and "a fault injected by the tests" in text, text
    (line,) = lines_with(text, request_id)
    assert "[ERROR]" in line and "/decide" in line


def test_every_response_carries_a_request_id(server):
    for path in ("/livez", "/readyz", "/metrics", "/models"):
        assert re.fullmatch(
            r"[0-9a-f]{32}", httpx.get(server["url"] + path).headers["x-request-id"]
        )
    for unsafe in ("two words", "x" * 129, "new\\nline", "é"):
        sent = httpx.get(f"{server['url']}/livez", headers={"X-Request-ID": unsafe.encode()})
        assert re.fullmatch(r"[0-9a-f]{32}", sent.headers["x-request-id"]), unsafe
    kept = httpx.get(f"{server['url']}/livez", headers={"X-Request-ID": "A-z_0.9" * 18})
    assert kept.headers["x-request-id"] == "A-z_0.9" * 18  # 126 sane characters


def test_past_max_in_flight_requests_are_shed_at_once_and_log_no_decision(server, world):
    ids = world["vectors"]["customer_id"].astype("str").iloc[10 : 10 + IN_FLIGHT + 1].tolist()
    url, headers = f"{server['url']}/decide", server["headers"]
    before = [decided(server["ledger"], c) for c in ids]
    with ThreadPoolExecutor(IN_FLIGHT) as pool:  # IN_FLIGHT requests, one at a time in the
        slow = [pool.submit(httpx.post, url, json={"customer_ids": [c, f"{SLOW_PREFIX}0.8"]},
                            headers=headers, timeout=30) for c in ids[:IN_FLIGHT]]  # fmt: skip
        time.sleep(0.5)  # handler thread: all in flight for >= 2.4 s
        began = time.perf_counter()
        shed = httpx.post(url, json={"customer_ids": [ids[-1]]}, headers=headers)
        waited = time.perf_counter() - began
        probe = httpx.get(f"{server['url']}/readyz")  # never shed
        answers = [future.result() for future in slow]
    assert shed.status_code == 503 and shed.headers["retry-after"] == "1", shed.text
    one_error_shape(shed, 503)
    assert "max_in_flight" in shed.json()["error"] and waited < 0.5
    assert re.fullmatch(r"[0-9a-f]{32}", shed.headers["x-request-id"])
    assert "at the edge" in server["log"].read_text()  # before BentoML's middlewares
    assert probe.status_code == 200
    assert [a.status_code for a in answers] == [200] * IN_FLIGHT
    after = [decided(server["ledger"], c) for c in ids]
    assert [a - b for a, b in zip(after, before, strict=True)] == [1] * IN_FLIGHT + [0]
    assert "lifecycle_requests_shed_total 1.0" in httpx.get(f"{server['url']}/metrics").text


def test_a_decision_whose_caller_left_is_not_logged(server, world):
    """One caller leaves while its handler runs (its decisions are made, not logged), one
    while it waits for the handler thread (no work is done for it)."""
    running, queued = world["vectors"]["customer_id"].astype("str").iloc[20:22].tolist()
    before = [decided(server["ledger"], c) for c in (running, queued)]
    bodies = [[running, f"{SLOW_PREFIX}1"], [queued]]

    def leave(ids: list[str], delay: float) -> None:
        time.sleep(delay)
        with pytest.raises(httpx.ReadTimeout):  # the caller gives up before the answer
            httpx.post(f"{server['url']}/decide", json={"customer_ids": ids},
                       headers=server["headers"], timeout=0.4)  # fmt: skip

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(leave, bodies, [0, 0.1]))
    time.sleep(1.5)  # the slow handler wakes up, decides, and finds its caller gone
    assert [decided(server["ledger"], c) for c in (running, queued)] == before
    metrics = httpx.get(f"{server['url']}/metrics").text
    assert re.search(r"lifecycle_decisions_unlogged_total [1-9]", metrics), metrics[-2000:]
    again = httpx.post(f"{server['url']}/decide", json={"customer_ids": [running, queued]},
                       headers=server["headers"])  # fmt: skip
    assert again.status_code == 200
    assert [decided(server["ledger"], c) for c in (running, queued)] == [b + 1 for b in before]


def test_unknown_paths_add_no_metric_series(server):
    """BentoML's request metrics label every unknown path as one route (serving/metric_labels)."""

    def series() -> set[str]:
        text = httpx.get(f"{server['url']}/metrics").text
        return {line.rsplit(" ", 1)[0] for line in text.splitlines()
                if line.startswith("bentoml_service_request")}  # fmt: skip

    start = server["log"].stat().st_size
    with httpx.Client(base_url=server["url"]) as client:
        for headers in ({}, server["headers"]):  # the unknown label's 401 and 404 series
            client.get("/warm-up", headers=headers)
        before = series()
        for i in range(500):
            client.post(f"/scan/{i}-{os.urandom(4).hex()}", json={},
                        headers=server["headers"] if i % 2 else {})  # fmt: skip
    after = series()
    assert after == before, sorted(after - before)[:5]
    assert any('endpoint="/{other}"' in s and 'http_response_code="404"' in s for s in after)
    assert any('endpoint="/decide"' in s for s in after)  # known routes keep their label
    text = log_after(server["log"], start, "/scan/499-")  # the real path inside the service
    assert "POST /scan/499-" in text and "404" in lines_with(text, "POST /scan/499-")[0]
