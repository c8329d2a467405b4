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
