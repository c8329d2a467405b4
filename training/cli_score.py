"""``lifecycle score --all``: every customer of the online store scored into Parquet, on the
cluster the project config names (``dask.scheduler``) or in this process."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from training.cli_common import ProjectConfigFile, console, fail, project_config


def score(
    all_customers: Annotated[
        bool, typer.Option("--all", help="Score every customer of the store (required).")
    ] = False,
    store: Annotated[
        str,
        typer.Option(
            "--store", help="The online store: a SQLite file, a redis:// or a postgresql:// URL."
        ),
    ] = "store/online.sqlite",
    out: Annotated[Path, typer.Option("--out", help="Parquet file to write.")] = Path(
        "scores.parquet"
    ),
    models: Annotated[
        str, typer.Option("--models", help="registry (the champions) or an export folder.")
    ] = "registry",
    chunk: Annotated[int, typer.Option(min=1, help="Customers per task.")] = 50_000,
    config: ProjectConfigFile = None,
) -> None:
    """Churn probability, rule stage, next stage and stage probabilities of every customer
    of the store, written to one Parquet file; in chunks on the Dask cluster of the project
    config's ``dask`` section (or here without one), progress printed per chunk."""
    from features.store import NoVersionError, StoreUnavailableError, open_store
    from features.store.factory import sqlite_path
    from training.scale.cluster import open_client
    from training.scale.scoring import load_models, score_all

    if not all_customers:
        raise fail("say which customers: --all (every customer of the store)")
    cfg = project_config(config)
    local = sqlite_path(store)
    if local is not None and not local.is_file():
        raise fail(f"--store {store}: no such store; write one with `lifecycle features "
                   "materialize DATA --store ...`")  # fmt: skip
    try:
        estimators = load_models(models)
    except FileNotFoundError as err:
        raise fail(str(err)) from None
    where = cfg.dask.scheduler or "this process"
    try:
        with open_client(cfg.dask) as client:
            path = score_all(open_store(store), estimators, out, client, chunk, _progress)
    except (NoVersionError, StoreUnavailableError) as err:
        raise fail(f"--store {store}: {err}") from None
    console.print(f"scores of every customer of {store} written to {path} (on {where})")


def _progress(done: int, total: int) -> None:
    console.print(f"scored {done:,} / {total:,} customers")
