"""The ``lifecycle`` command: every training command plus ``serve``, ``export`` and
``simulate-loop``.

The entry point lives here because serving sits on top of training (imports flow features <-
training <- serving): this module adds the serving commands to training's Typer app.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from serving import cli_ledger, cli_loop
from training.cli import app
from training.cli_common import ProjectConfigFile, console, fail, project_config

PathOpt = Annotated[Path | None, typer.Option()]
SERVICE = "serving.service:LifecycleService"


@app.command()
def serve(
    data: Annotated[
        Path | None, typer.Option(help="Data folder: offer catalog, and store if missing.")
    ] = None,
    models: Annotated[str, typer.Option(help='"registry" or an export folder.')] = "registry",
    store: Annotated[
        str,
        typer.Option(help="Online store: a SQLite file, or a redis://... or postgresql://... URL."),
    ] = "store/online.sqlite",
    ledger: Annotated[
        str, typer.Option(help="Feedback ledger: a SQLite file, or a postgresql://... URL.")
    ] = "store/ledger.sqlite",
    offers: Annotated[Path | None, typer.Option(help="Offer catalog (.parquet/.csv).")] = None,
    host: str = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 3000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    token: Annotated[str | None, typer.Option(help="Require this API token.")] = None,
    exploration: Annotated[float | None, typer.Option(min=0.0, max=0.5)] = None,
    config: ProjectConfigFile = None,
) -> None:
    """Start the decision API (BentoML) on champion models and the online store; with --data,
    the store is materialised first when missing (with the champions' recorded config).
    Prints ready-to-paste calls once ready. Without an offer catalog (no --offers, and no
    offers table in --data) churn and stage are served without offers; without an offers
    model, offers are chosen by the cold-start policy. The service builds and reads vectors
    with the config the models recorded at training; the project config (--config,
    LIFECYCLE_CONFIG, DATA/lifecycle.yaml) says where the data folder's tables are."""
    from serving.preflight import problems

    found = problems(store, ledger, models)
    if found:
        for problem in found:
            console.print(f"[red]error:[/] {problem}", highlight=False)
        raise typer.Exit(1)
    offers = offers or (_catalog(data, required=False, config=config) if data else None)
    if data is not None and _no_version(store):
        from training.cli_features import materialize

        materialize(data, store=store, config=config)
    from serving.client import service_env
    from training.registry import tracking_uri

    env = service_env(store, ledger, models, offers, tracking_uri(), token, exploration)
    env["BENTOML_CONFIG_OPTIONS"] = " ".join(
        filter(None, [env.get("BENTOML_CONFIG_OPTIONS"), f"services.lifecycle.workers={workers}"])
    )
    command = [sys.executable, "-m", "bentoml", "serve", SERVICE, "--host", host, "--port",
               str(port)]  # fmt: skip
    console.print(f"starting the decision API on http://{host}:{port} ...")
    url = f"http://{host}:{port}"
    code = supervise(command, env, lambda process: _wait_ready(process, url),
                     lambda: _print_calls(url, store, token))  # fmt: skip
    if code not in (0, -signal.SIGTERM, -signal.SIGINT):
        raise typer.Exit(code)


class _Stopped(Exception):
    """SIGTERM or SIGHUP to ``lifecycle serve``: stop the server, then exit."""


def supervise(command: list[str], env: dict, ready, on_ready, grace: float = 30.0) -> int:
    """Run the server ``command`` in its own process group until it exits, calling
    ``on_ready()`` once ``ready(process)`` says so; whatever ends this (the server exiting,
    Ctrl-C, SIGTERM/SIGHUP, an exception after readiness) stops the server's whole group
    (SIGTERM, then SIGKILL after ``grace`` seconds), so no server outlives its command. On
    Linux the server also gets SIGTERM if this process is killed outright (SIGKILL). Returns
    the server's exit code (0 when it was stopped by a signal to this process)."""

    def stop(signum, _frame):
        raise _Stopped(signum)

    previous = {
        sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    from serving.client import _dying_with_parent  # Linux: SIGTERM if this process dies

    process = subprocess.Popen(_dying_with_parent(command), env=env, start_new_session=True)
    try:
        if ready(process):
            on_ready()
        return process.wait()
    except (KeyboardInterrupt, _Stopped):
        return 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # a second Ctrl-C must
            signal.signal(sig, signal.SIG_IGN)  # not cut the clean-up short
        _stop_group(process, grace)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop_group(process: subprocess.Popen, grace: float) -> None:
    """SIGTERM the server's process group (it leads it), SIGKILL what is left of it after
    ``grace`` seconds; a group already gone is fine."""
    _signal_group(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while process.poll() is None or _group_alive(process.pid):
        if time.monotonic() > deadline:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()
            return
        time.sleep(0.1)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    """Whether a live process (zombies aside: reaping orphans is init's job) is in the
    group; on Linux from /proc, elsewhere by signal 0."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            state, _parent, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if int(group) == pgid and state != "Z":
            return True
    return False


@app.command()
def export(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write.")] = Path("models"),
    offers: Annotated[Path | None, typer.Option(help="Offer catalog to ship with them.")] = None,
    data: Annotated[Path | None, typer.Option(help="Data folder holding the catalog.")] = None,
    alias: str = "champion",
    config: ProjectConfigFile = None,
) -> None:
    """Copy the registry's champion models (and the offer catalog) into a folder the service
    can run from without MLflow: ``lifecycle serve --models FOLDER``. Without an offers
    champion, churn and stage are exported (the manifest says why offers are absent) and
    the catalog when there is one; an offers model needs its catalog."""
    import mlflow

    from serving import bundle as bundles
    from training.registry import tracking_uri

    mlflow.set_tracking_uri(tracking_uri())
    with_offers = "offers" in (bundles.registry_versions(alias) or {})
    catalog = offers or (_catalog(data, required=with_offers, config=config) if data else None)
    if catalog is None and with_offers:
        raise fail("pass --offers FILE or --data FOLDER: the export ships the offer catalog "
                   "the offers model decides on")  # fmt: skip
    try:
        loaded = bundles.from_registry(alias)
        shipped = None if catalog is None else bundles.load_catalog(catalog)
        folder = bundles.export(loaded, shipped, out)
    except bundles.ModelsUnavailable as err:
        raise fail(str(err)) from None
    versions = ", ".join(f"{n} v{v}" for n, v in loaded.versions.items())
    console.print(f"exported {versions}{'' if shipped is None else ' and the offer catalog'} "
                  f"to {folder}/")  # fmt: skip
    for name, why in loaded.absent.items():
        console.print(f"[yellow]without {name}: {why}[/]")
    if shipped is None:
        console.print("[yellow]without an offer catalog: the service will serve churn and stage "
                      "without offers (--offers FILE or --data FOLDER ships one)[/]")  # fmt: skip


def _catalog(data: Path, required: bool = True, config: Path | None = None) -> Path | None:
    """The data folder's offers table (where the project config says); when there is none,
    fail if ``required``, else None (the service then runs without offers)."""
    from training.data import find_table

    try:
        found = find_table(data, "offers", project_config(config, data).data.offers)
    except FileNotFoundError as err:
        raise fail(str(err)) from None
    if found is None and required:
        raise fail(f"{data} has no offers table (.parquet or .csv)")
    if found is None:
        console.print(f"[yellow]{data} has no offers table: no offers (no catalog)[/]")
    return found


def _wait_ready(process: subprocess.Popen, url: str, timeout: float = 180.0) -> bool:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    if process.poll() is None:
        console.print(f"[yellow]not ready after {timeout:.0f} s: see {url}/models for why[/]")
    return False


def _no_version(store: str) -> bool:
    """Whether the store has nothing to serve yet (a missing SQLite file, an empty prefix)."""
    from features.store import StoreUnavailableError, open_store

    try:
        return open_store(store).current() is None
    except StoreUnavailableError as err:  # checked by the preflight; reported here otherwise
        raise fail(str(err)) from None


def _print_calls(url: str, store: str, token: str | None) -> None:
    from features.store import open_store

    ids = open_store(store).customer_ids()[:2]
    auth = f' -H "Authorization: Bearer {token}"' if token else ""
    ids_json = ", ".join(f'"{i}"' for i in ids)
    token_arg = f", token='{token}'" if token else ""
    console.print(
        f"\n[bold green]The decision API is ready[/] at {url} (docs: {url}/ , spec: "
        f"{url}/docs.json). Try:\n\n"
        f"curl -s -X POST {url}/decide -H 'content-type: application/json'{auth} "
        f'-d \'{{"customer_ids": [{ids_json}], "explain": true}}\'\n\n'
        f"curl -s -X POST {url}/batch -H 'content-type: application/json'{auth} "
        f'-d \'{{"filter": {{"stages": ["at_risk"], "min_churn": 0.3, "limit": 5}}}}\'\n\n'
        f"curl -s {url}/models{auth}\n\n"
        f".venv/bin/python -c \"import bentoml; c = bentoml.SyncHTTPClient('{url}'{token_arg}); "
        f'print(c.decide(customer_ids={list(ids)!r}))"\n\nCtrl-C stops it.',
        highlight=False,
    )


app.command("simulate-loop")(cli_loop.simulate_loop)
app.add_typer(cli_ledger.app, name="ledger")


def main() -> None:  # pragma: no cover - console entry point
    app()
