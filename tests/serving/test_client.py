"""serving.client: the local service runner (on a stand-in HTTP server, so these stay fast;
notebook 04 runs it on the real service) and the answers-as-tables helpers (on answers
validated by the service's own response models)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pandas as pd
import psutil
import pytest

from serving.client import (
    LocalService,
    ServiceFailed,
    absolute_tracking_uri,
    decisions_frame,
    models_frame,
    offers_frame,
    reasons_frame,
    service_env,
)
from serving.config import load_config
from serving.schemas import DecideResponse

ROOT = Path(__file__).resolve().parents[2]
# A stand-in server: answers GET /readyz with 200 (a file of that name), starts a child process
# that it stops on SIGTERM (like BentoML's arbiter and its workers) and writes the pids of both
# to pids.txt in its working directory.
STAND_IN = """
import http.server, functools, os, signal, subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
signal.signal(signal.SIGTERM, lambda *_: (child.kill(), os._exit(0)))
open("pids.txt", "w").write(f"{os.getpid()} {child.pid}")
open("readyz", "w").write("ok")
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=".")
http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), handler).serve_forever()
"""


def stand_in(tmp_path: Path) -> tuple[str, ...]:
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN)
    return ("{python}", str(script), "{host}", "{port}")


def local(tmp_path: Path, **kwargs) -> LocalService:
    kwargs.setdefault("server", stand_in(tmp_path))
    return LocalService(store=tmp_path / "online.sqlite", ledger=tmp_path / "ledger.sqlite",
                        models=tmp_path / "export", workdir=tmp_path / "server",
                        **kwargs)  # fmt: skip


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def gone(pids, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.1)
    return False


def pids(service: LocalService) -> list[int]:
    return [int(p) for p in (service.workdir / "pids.txt").read_text().split()]


def test_starts_waits_for_readyz_and_stops_the_whole_process_group(tmp_path):
    with local(tmp_path) as service:
        assert service.running and service.url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{service.url}/readyz").status_code == 200
        server, child = pids(service)
        assert alive(server) and alive(child)
    assert not service.running and gone([server, child])
    assert "stopped" in repr(service)
    service.stop()  # idempotent


def test_start_without_waiting_then_wait_ready(tmp_path):
    service = local(tmp_path).start(wait=False)
    try:
        assert service.url and service.wait_ready(timeout=60) is service
    finally:
        service.stop()


def test_a_server_that_exits_fails_with_its_log(tmp_path):
    crash = ("{python}", "-c", "import sys; print('cannot load the models'); sys.exit(3)")
    with pytest.raises(ServiceFailed, match=r"exited \(3\)[\s\S]*cannot load the models"):
        local(tmp_path, server=crash).start()


def test_a_server_never_ready_times_out_and_is_stopped(tmp_path):
    never = ("{python}", "-m", "http.server", "{port}", "--bind", "{host}", "-d", str(tmp_path))
    service = local(tmp_path, server=never, timeout=1.5)
    with pytest.raises(ServiceFailed, match="not ready after 2 s"):
        service.start()
    assert not service.running
    with pytest.raises(ServiceFailed, match="not started"):
        service.wait_ready()


DRIVER = """
import sys, time
from serving.client import LocalService
service = LocalService(store="s.sqlite", ledger="l.sqlite", models="export", workdir="server",
                       server=("{{python}}", {script!r}, "{{host}}", "{{port}}")).start()
print(open("server/pids.txt").read(), flush=True)
if sys.argv[1] == "hang":
    time.sleep(120)
"""


@pytest.mark.parametrize("ending", ["exits", "killed"])
def test_no_server_outlives_the_process_that_started_it(tmp_path, ending):
    """Normal exit without stop(): atexit stops it; SIGKILL (no atexit): the kernel's
    parent-death signal does (Linux)."""
    if ending == "killed" and not sys.platform.startswith("linux"):
        pytest.skip("parent-death signal is Linux only")
    script = stand_in(tmp_path)[1]
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(DRIVER.format(script=script)))
    mode = "hang" if ending == "killed" else "exit"
    process = subprocess.Popen([sys.executable, str(driver), mode], cwd=tmp_path,
                               stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        started = [int(p) for p in process.stdout.readline().split()]  # once ready
        assert len(started) == 2
        if ending == "killed":
            assert all(alive(p) for p in started)
            process.send_signal(signal.SIGKILL)
        process.wait(60)
        assert gone(started), f"{started} still running after the driver {ending}"
    finally:
        process.kill()


def test_service_env_makes_paths_absolute_and_sets_only_given_options(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = service_env("store/online.sqlite", "store/ledger.sqlite", offers="data/offers.parquet",
                      tracking_uri="sqlite:///mlflow.db", token="t", exploration=0.0,
                      base={"PATH": "/bin"})  # fmt: skip
    assert env["PATH"] == "/bin" and env["LIFECYCLE_MODELS"] == "registry"
    assert env["LIFECYCLE_STORE"] == str(tmp_path / "store" / "online.sqlite")
    assert env["LIFECYCLE_LEDGER"] == str(tmp_path / "store" / "ledger.sqlite")
    assert env["LIFECYCLE_OFFERS"] == str(tmp_path / "data" / "offers.parquet")
    assert env["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert env["LIFECYCLE_API_TOKEN"] == "t" and env["LIFECYCLE_EXPLORATION"] == "0.0"
    assert "LIFECYCLE_RELOAD_SECONDS" not in env and "LIFECYCLE_SERVICE_CONFIG" not in env
    inherited = service_env("s", "l", base={"MLFLOW_TRACKING_URI": "sqlite:///other.db"})
    assert inherited["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path / 'other.db'}"
    assert service_env("s", "l", base={})["MLFLOW_TRACKING_URI"].endswith(f"{tmp_path}/mlflow.db")
    folder = service_env("s", "l", models="export", base={})
    assert folder["LIFECYCLE_MODELS"] == str(tmp_path / "export")
    assert "MLFLOW_TRACKING_URI" not in folder


def test_absolute_tracking_uri():
    assert absolute_tracking_uri("sqlite:////abs/mlflow.db") == "sqlite:////abs/mlflow.db"
    assert absolute_tracking_uri("http://mlflow:5000") == "http://mlflow:5000"
    assert absolute_tracking_uri("sqlite:///m.db") == f"sqlite:///{Path('m.db').resolve()}"


def test_config_and_options_reach_the_service_config(tmp_path):
    service = local(tmp_path, token="t0ken", reload_seconds=1,
                    config={"seed": 3, "policy": {"exploration": 0.1, "churn_bands": (0.3, 0.6)}},
                    exploration=0.0)  # fmt: skip
    config = load_config(service.env)
    assert config.seed == 3 and config.reload_seconds == 1.0 and config.api_token == "t0ken"
    assert config.policy.exploration == 0.0  # the keyword wins over the YAML
    assert config.policy.churn_bands == (0.3, 0.6)
    assert config.models == str(tmp_path / "export") and service.headers == {
        "Authorization": "Bearer t0ken"
    }
    assert service.env["BENTOML_HOME"] == str(tmp_path / "server" / "bentoml")


# ---- answers as tables ---------------------------------------------------------------------


def decision(customer: str, stage: str, p: float, offer: str | None, reasons=None) -> dict:
    return {
        "customer_id": customer,
        "stage": {"current": stage, "next": {stage: 0.3, "churned": 0.7}},
        "churn": {"probability": p, "risk_band": "high" if p >= 0.5 else "low",
                  "reasons": reasons or []},
        "offers": [
            {"offer_id": "ret_loyalty", "kind": "retention", "uplift": 0.2,
             "expected_value": 0.6, "eligible": True, "ineligible_reason": None},
            {"offer_id": "upsell_premium", "kind": "upsell", "uplift": 0.1,
             "expected_value": 5.0, "eligible": False,
             "ineligible_reason": "sent 0.0 days ago (cooldown 30)"},
        ],
        "decision": {"decision_id": f"d-{customer}", "offer_id": offer, "propensity": 0.96,
                     "explored": False, "expected_value": 0.6 if offer else 0.0,
                     "policy": "model"},
        "models": {"churn": "1", "stage": "1", "offers": "1"},
        "features_as_of": "2025-10-27T23:55:36+00:00",
    }  # fmt: skip


REASON = {"feature": "recency_days", "label": "days since the last event of any role",
          "value": 41.0, "contribution": 0.8}  # fmt: skip


def answer(*results) -> dict:
    body = {"results": list(results), "models": {"churn": "1", "stage": "1", "offers": "1"},
            "features_as_of": "2025-10-27T23:55:36+00:00", "store_version": 1,
            "offers_status": {"available": True, "policy": "model", "reason": None}}  # fmt: skip
    return DecideResponse.model_validate(body).model_dump()  # the service's own schema


def test_decisions_frame_one_row_per_customer():
    body = answer(
        decision("c1", "at_risk", 0.7, "ret_loyalty", [REASON]),
        {"customer_id": "ghost", "error": {"code": "unknown_customer", "message": "not in store"}},
        decision("c2", "retention", 0.1, None, [REASON]),
    )
    frame = decisions_frame(body)
    assert frame["customer_id"].tolist() == ["c1", "ghost", "c2"]
    first = frame.iloc[0]
    assert (first.stage, first.next_stage, first.risk_band) == ("at_risk", "churned", "high")
    assert first.top_reason == REASON["label"] and first.offer == "ret_loyalty"
    assert first.propensity == 0.96 and first.decision_id == "d-c1"
    assert frame.loc[1, "error"] == "not in store" and pd.isna(frame.loc[2, "offer"])


def test_decisions_frame_without_reasons_or_errors_drops_those_columns():
    frame = decisions_frame(answer(decision("c1", "retention", 0.1, "ret_loyalty")))
    assert "top_reason" not in frame and "error" not in frame
    assert decisions_frame({"results": []}).empty


def test_offers_frame_ranks_one_customers_offers():
    body = answer(decision("c1", "at_risk", 0.7, None), decision("c2", "retention", 0.1, None))
    ranked = offers_frame(body, "c2")
    assert ranked.index.tolist() == [1, 2] and ranked.index.name == "rank"
    assert ranked.loc[2, "ineligible_reason"].startswith("sent 0.0 days ago")
    assert offers_frame(body)["offer_id"].tolist() == ["ret_loyalty", "upsell_premium"]
    with pytest.raises(KeyError, match="ghost"):
        offers_frame(body, "ghost")


def test_reasons_frame_lists_every_reason():
    body = answer(decision("c1", "at_risk", 0.7, None, [REASON, {**REASON, "feature": "x"}]))
    frame = reasons_frame(body)
    assert frame[["customer_id", "rank", "feature"]].values.tolist() == [
        ["c1", 1, "recency_days"], ["c1", 2, "x"]
    ]  # fmt: skip


def test_models_frame_flattens_metrics():
    summary = {"ready": True, "models": {
        "churn": {"name": "churn", "registered_name": "lifecycle-churn", "version": "2",
                  "run_id": "r", "trained_at": None, "metrics": {"roc_auc": 0.8}},
        "offers": {"name": "offers", "registered_name": "lifecycle-offers", "version": "1",
                   "run_id": "s", "trained_at": None, "metrics": {"policy_value_dr": 0.6}},
    }}  # fmt: skip
    frame = models_frame(summary)
    assert frame.index.tolist() == ["churn", "offers"] and "name" not in frame
    assert frame.loc["churn", "metrics.roc_auc"] == 0.8 and frame.loc["offers", "version"] == "1"
    assert models_frame({"ready": False, "models": {}}).empty
