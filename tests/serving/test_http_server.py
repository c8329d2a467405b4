"""Against a real ``bentoml serve`` subprocess on a free localhost port: readiness, the Python
client, curl-style HTTP, Prometheus metrics, a schemathesis fuzz of the OpenAPI spec that
must produce no server error, and operations (quiet logs with request ids, load shedding, no
decision logged for a caller who left). The server runs ``tests/serving/fault_service.py``:
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

ROOT = Path(__file__).resolve().parents[2]
IN_FLIGHT = 4  # LIFECYCLE_MAX_IN_FLIGHT of the server (the fuzz runs 2 workers)
FAULT_ID, SLOW_PREFIX = "fault-injected-by-the-tests", "slow-"  # as in fault_service.py


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


def test_fuzzing_the_openapi_spec_finds_no_server_error(server, tmp_path):
    result = subprocess.run(
        [str(Path(sys.executable).parent / "st"), "run", f"{server['url']}/docs.json",
         "--checks", "not_a_server_error", "--max-examples", "25", "--seed", "1",
         "--header", "Authorization: Bearer t0ken", "--phases", "examples,coverage,fuzzing",
         "--workers", "2"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    generated = re.search(r"(\d+) generated", result.stdout)
    assert generated and int(generated.group(1)) >= 100, result.stdout[-2000:]


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
    assert "max_in_flight" in shed.json()["error"] and waited < 0.5
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
