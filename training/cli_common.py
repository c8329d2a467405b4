"""Shared pieces of the command line: the console, errors, common options."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console(soft_wrap=True)  # long paths and messages stay whole (and greppable)

DataDir = Annotated[
    Path, typer.Argument(help="Folder with events/customers/offers/exposures (.parquet/.csv).")
]


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print a clear error and return the Exit to raise."""
    console.print(f"[red]error:[/] {message}", markup=True, highlight=False)
    return typer.Exit(code)


ProjectConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        envvar="LIFECYCLE_CONFIG",
        dir_okay=False,
        help="Project config (lifecycle.yaml); default: DATA/lifecycle.yaml if present.",
    ),
]


def project_config(path: Path | None, data: Path | None = None):
    """The project config for a command (``--config``, ``$LIFECYCLE_CONFIG``,
    ``DATA/lifecycle.yaml``, or the defaults); a bad file is a clear error."""
    from features.project import load_project_config

    try:
        return load_project_config(path, data)
    except (ValueError, FileNotFoundError) as err:
        raise fail(str(err)) from None


def load_data(data: Path, config, mode: str = "strict"):
    """The data folder's tables, read the config's way; contract errors end the command."""
    from features.contracts import ContractError
    from training.data import load_tables

    try:
        return load_tables(data, mode, config)
    except (ContractError, ValueError, FileNotFoundError) as err:
        raise fail(str(err)) from None
