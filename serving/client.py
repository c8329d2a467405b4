"""Run the decision service locally and read its answers as tables (notebooks, scripts, tests).

:class:`LocalService` starts ``bentoml serve serving.service:LifecycleService`` as a
subprocess on a free localhost port with the service's environment variables, waits for
``/readyz`` and stops it again (its whole process group), also at interpreter exit, so a
failing notebook cell leaves no server behind::

    with LocalService(store="store/online.sqlite", ledger="store/ledger.sqlite",
                      offers="data/offers.parquet") as service:
        answer = httpx.post(f"{service.url}/decide", json={"customer_ids": ["c0000001"]}).json()
        decisions_frame(answer)

The ``*_frame`` functions flatten the JSON answers of ``/decide``, ``/batch``, ``/score`` and
``GET /models`` into pandas DataFrames.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx
import pandas as pd
import yaml

from features.store.factory import absolute_location

SERVICE = "serving.service:LifecycleService"
SERVER = ("{python}", "-m", "bentoml", "serve", SERVICE, "--host", "{host}", "--port", "{port}")
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"  # training.registry's default (no MLflow import)
_SQLITE = "sqlite:///"


class ServiceFailed(RuntimeError):
    """The service exited or did not become ready; the message ends with its log."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS has just reported free on ``host``."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def absolute_tracking_uri(uri: str) -> str:
    """``sqlite:///mlflow.db`` relative to the current directory -> an absolute sqlite URI
    (the service runs in another working directory); other URIs unchanged."""
    if uri.startswith(_SQLITE) and not uri.startswith(_SQLITE + "/"):
        return _SQLITE + str(Path(uri[len(_SQLITE) :]).resolve())
    return uri


def absolute_ledger(ledger: str | Path) -> str:
    """A ledger file (a path or ``sqlite:///PATH``) as an absolute path (the service runs in
    another working directory); a ``postgresql://`` URL unchanged."""
    from training.ledger_tables import parse_location

    kind, target = parse_location(ledger)
    return target if kind == "postgresql" else str(Path(target).resolve())


def service_env(
    store: str | Path,
    ledger: str | Path,
    models: str | Path = "registry",
    offers: str | Path | None = None,
    tracking_uri: str | None = None,
    token: str | None = None,
    exploration: float | None = None,
    reload_seconds: float | None = None,
    config_file: str | Path | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment ``bentoml serve`` needs for the service (``serving.config``), on top of
    ``base`` (default: this process's): paths made absolute; with the registry,
    ``MLFLOW_TRACKING_URI`` from ``tracking_uri``, else ``base``'s, else ``sqlite:///mlflow.db``
    (made absolute: the service runs in another working directory)."""
    env = dict(os.environ if base is None else base)
    models = str(models)
    env.update({
        "LIFECYCLE_MODELS": models if models == "registry" else str(Path(models).resolve()),
        "LIFECYCLE_STORE": absolute_location(store),
        "LIFECYCLE_LEDGER": absolute_ledger(ledger),
    })  # fmt: skip
    if models == "registry":
        uri = tracking_uri or env.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
        env["MLFLOW_TRACKING_URI"] = absolute_tracking_uri(uri)
    optional = {
        "LIFECYCLE_OFFERS": offers and Path(offers).resolve(),
        "LIFECYCLE_API_TOKEN": token,
        "LIFECYCLE_EXPLORATION": exploration,
        "LIFECYCLE_RELOAD_SECONDS": reload_seconds,
        "LIFECYCLE_SERVICE_CONFIG": config_file and Path(config_file).resolve(),
    }
    env.update({k: str(v) for k, v in optional.items() if v is not None})
    return env


class LocalService:
    """The decision service in a subprocess on a free port (see the module docstring).

    ``config`` (a dict of :class:`serving.config.ServiceConfig` fields, e.g. ``{"seed": 0,
    "policy": {"exploration": 0.0}}``) is written to ``workdir/service.yaml``; the keyword
    arguments are passed as environment variables and win over it. The server's output goes
    to ``workdir/service.log``. Use it as a context manager, or call :meth:`start` and
    :meth:`stop` (e.g. in the first and last cells of a notebook). :meth:`stop` is also
    registered with ``atexit``; with ``die_with_parent`` (Linux) the server also gets SIGTERM
    when the thread that started it dies, even by SIGKILL (so do not start it from a
    short-lived thread). ``server`` replaces the command (placeholders ``{python}``,
    ``{host}``, ``{port}``).
    """

    def __init__(
        self,
        store: str | Path,
        ledger: str | Path,
        models: str | Path = "registry",
        offers: str | Path | None = None,
        tracking_uri: str | None = None,
        token: str | None = None,
        exploration: float | None = None,
        reload_seconds: float | None = None,
        config: Mapping | None = None,
        workdir: str | Path = "service",
        host: str = "127.0.0.1",
        port: int | None = None,
        timeout: float = 180.0,
        die_with_parent: bool = True,
        server: Sequence[str] = SERVER,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.log = self.workdir / "service.log"
        self.host, self.port, self.timeout = host, port, timeout
        self.token, self.die_with_parent, self.server = token, die_with_parent, tuple(server)
        config_file = None
        if config:
            self.workdir.mkdir(parents=True, exist_ok=True)
            config_file = self.workdir / "service.yaml"
            config_file.write_text(yaml.safe_dump(_plain(config), sort_keys=False))
        self.env = service_env(store, ledger, models, offers, tracking_uri, token, exploration,
                               reload_seconds, config_file)  # fmt: skip
        self.env.setdefault("BENTOML_HOME", str(self.workdir / "bentoml"))
        self.process: subprocess.Popen | None = None
        self.url: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        """The auth header when a token is configured (else empty)."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, wait: bool = True) -> LocalService:
        """Start the server; with ``wait``, block until ``/readyz`` answers 200 (models and
        store loaded; :meth:`wait_ready`). ``wait=False`` returns at once: the server imports
        and loads while you go on (it picks up champions promoted later through its registry
        poll, every ``reload_seconds``)."""
        if not self.running:
            self.workdir.mkdir(parents=True, exist_ok=True)
            port = self.port or free_port(self.host)
            command = [part.format(python=sys.executable, host=self.host, port=port)
                       for part in self.server]  # fmt: skip
            if self.die_with_parent:
                command = _dying_with_parent(command)
            with self.log.open("w") as log:
                self.process = subprocess.Popen(
                    command, cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=True,
                )  # fmt: skip
            atexit.register(self.stop)
            self.url = f"http://{self.host}:{port}"
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float | None = None) -> LocalService:
        """Block until ``/readyz`` answers 200; on failure (the server exited, or not ready in
        ``timeout`` s, default the constructor's) stop it and raise :class:`ServiceFailed`
        with the reason from ``GET /models`` and the end of the log."""
        if self.process is None:
            raise ServiceFailed("the service is not started: call start() first")
        try:
            self._wait_ready(self.timeout if timeout is None else timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceFailed(f"the service exited ({self.process.returncode}):\n"
                                    f"{self.log_tail()}")  # fmt: skip
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.25)
        why = ""
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, TypeError):
            why = httpx.get(f"{self.url}/models", headers=self.headers, timeout=2).json()["error"]
        raise ServiceFailed(f"not ready after {timeout:.0f} s ({why or 'still starting'}):\n"
                            f"{self.log_tail()}")  # fmt: skip

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self, timeout: float = 30.0) -> None:
        """Terminate the server's process group (SIGTERM, then SIGKILL after ``timeout``)."""
        process, self.process = self.process, None
        atexit.unregister(self.stop)
        if process is None or process.poll() is not None:
            return
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait(10)
        _signal_group(process, signal.SIGKILL)  # workers that outlived the arbiter

    def __enter__(self) -> LocalService:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"LocalService({self.url or 'not started'}, {state}, log={self.log})"


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)  # the group the server leads (start_new_session)


def _dying_with_parent(command: list[str]) -> list[str]:
    """On Linux, run ``command`` through a tiny trampoline that asks the kernel to SIGTERM it
    when the thread that started it dies (even by SIGKILL, when ``atexit`` cannot run), then
    execs it. (Not ``preexec_fn``, which is unsafe in threaded parents such as kernels.)"""
    if not sys.platform.startswith("linux"):
        return command
    trampoline = ("import ctypes, os, signal, sys; "
                  "ctypes.CDLL(None).prctl(1, signal.SIGTERM); "  # PR_SET_PDEATHSIG
                  "os.getppid() == int(sys.argv[1]) or sys.exit(1); "  # parent already gone
                  "os.execvp(sys.argv[2], sys.argv[2:])")  # fmt: skip
    return [sys.executable, "-c", trampoline, str(os.getpid()), *command]


def _plain(value):
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# ---- answers as tables ---------------------------------------------------------------------


DECISION_COLUMNS = ("customer_id", "stage", "next_stage", "churn_probability", "risk_band",
                    "top_reason", "offer", "propensity", "explored", "expected_value",
                    "decision_id", "policy")  # fmt: skip
NO_DECISION = {"offer_id": None, "propensity": None, "explored": None, "expected_value": None,
               "decision_id": None, "policy": None}  # fmt: skip


def decisions_frame(answer: Mapping) -> pd.DataFrame:
    """One row per customer of a ``/decide``, ``/batch`` or ``/score`` answer: stage (now and
    most likely next), churn probability, risk band, top reason (a column only when the
    answer is explained), the chosen offer (``None`` = no offer) with its propensity, whether
    it was explored, its expected value, the decision id and the policy that made it (all
    ``None`` when the service decides no offers: see the answer's ``offers_status``); an
    ``error`` column appears when some customers were unknown."""
    rows = []
    for r in answer.get("results", []):
        if r.get("error"):
            rows.append({"customer_id": r["customer_id"], "error": r["error"]["message"]})
            continue
        nxt, reasons = r["stage"]["next"], r["churn"].get("reasons")
        decision = r.get("decision") or NO_DECISION
        rows.append({
            "customer_id": r["customer_id"],
            "stage": r["stage"]["current"],
            "next_stage": max(nxt, key=nxt.get) if nxt else None,
            "churn_probability": r["churn"]["probability"],
            "risk_band": r["churn"]["risk_band"],
            "top_reason": reasons[0]["label"] if reasons else None,
            "offer": decision["offer_id"],
            "propensity": decision["propensity"],
            "explored": decision["explored"],
            "expected_value": decision["expected_value"],
            "decision_id": decision["decision_id"],
            "policy": decision.get("policy"),
        })  # fmt: skip
    columns = list(DECISION_COLUMNS)
    if not any(row.get("top_reason") for row in rows):
        columns.remove("top_reason")
    if any(row.get("error") for row in rows):
        columns.append("error")
    return pd.DataFrame(rows, columns=columns)


def offers_frame(answer: Mapping, customer_id: str | None = None) -> pd.DataFrame:
    """The ranked offers of one customer of an answer (the first by default): uplift, expected
    value, eligibility and the first rule an ineligible offer failed."""
    results = [r for r in answer.get("results", []) if not r.get("error")]
    if customer_id is not None:
        results = [r for r in results if r["customer_id"] == customer_id]
    if not results:
        raise KeyError(f"no decision for {customer_id or 'any customer'} in the answer")
    columns = ["offer_id", "kind", "uplift", "expected_value", "eligible", "ineligible_reason"]
    frame = pd.DataFrame(results[0]["offers"], columns=columns)
    frame.index = pd.RangeIndex(1, len(frame) + 1, name="rank")
    return frame


def reasons_frame(answer: Mapping) -> pd.DataFrame:
    """Every churn reason of an explained answer: customer, rank, feature, label, the
    customer's value and its contribution (log-odds)."""
    rows = [{"customer_id": r["customer_id"], "rank": k, **reason}
            for r in answer.get("results", []) if not r.get("error")
            for k, reason in enumerate(r["churn"].get("reasons") or [], 1)]  # fmt: skip
    return pd.DataFrame(rows, columns=["customer_id", "rank", "feature", "label", "value",
                                       "contribution"])  # fmt: skip


def models_frame(summary: Mapping) -> pd.DataFrame:
    """``GET /models`` as one row per model: its fields (version, registry name, run id,
    training date, ...) with nested headline metrics flattened to columns."""
    rows = {}
    for name, info in (summary.get("models") or {}).items():
        row = {}
        for key, value in info.items():
            if key == "name":  # the index
                continue
            if isinstance(value, Mapping):
                row.update({f"{key}.{k}": v for k, v in value.items()})
            else:
                row[key] = value
        rows[name] = row
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "model"
    return frame
