"""The ``lifecycle`` command: every training command plus ``serve`` and ``export``.

The entry point lives here because serving sits on top of training (imports flow features <-
training <- serving): this module adds the serving commands to training's Typer app.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

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
    store: Annotated[Path, typer.Option(help="Online store file.")] = Path("store/online.sqlite"),
    ledger: Annotated[Path, typer.Option(help="Feedback ledger file.")] = Path(
        "store/ledger.sqlite"
    ),
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

    found = problems(store, ledger)
    if found:
        for problem in found:
            console.print(f"[red]error:[/] {problem}", highlight=False)
        raise typer.Exit(1)
    offers = offers or (_catalog(data, required=False, config=config) if data else None)
    if data is not None and not store.exists():
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
    process = subprocess.Popen(command, env=env)
    try:
        if _wait_ready(process, f"http://{host}:{port}"):
            _print_calls(f"http://{host}:{port}", store, token)
        process.wait()
    except KeyboardInterrupt:
        process.terminate()
        process.wait(30)
    if process.returncode not in (0, -15, None):
        raise typer.Exit(process.returncode)


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


def _print_calls(url: str, store: Path, token: str | None) -> None:
    from features.store import OnlineStore

    ids = OnlineStore(store).customer_ids()[:2]
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


def main() -> None:  # pragma: no cover - console entry point
    app()
