"""Against a real ``bentoml serve`` subprocess on a free localhost port: readiness, the Python
client, curl-style HTTP, Prometheus metrics, and a schemathesis fuzz of the OpenAPI spec that
must produce no server error."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import bentoml
import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


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
    }
    (folder / "monitor.prom").write_text(
        "# HELP lifecycle_score_psi PSI of the churn scores\n"
        "# TYPE lifecycle_score_psi gauge\nlifecycle_score_psi 0.125\n"
    )  # as `lifecycle monitor` writes it
    log = (folder / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "bentoml", "serve", "serving.service:LifecycleService",
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
