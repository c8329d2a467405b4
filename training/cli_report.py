"""``lifecycle report``: a self-contained HTML page for business users."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from training.cli_common import ProjectConfigFile, console, fail


def report(
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")] = Path(
        "report.html"
    ),
    data: Annotated[
        Path, typer.Option("--data", help="Data folder (events, customers, offers, exposures).")
    ] = Path("demo_data"),
    models: Annotated[
        str,
        typer.Option(
            help="auto: the registry's champions if any, else train on the data; "
            "registry: champions only; train: always train (nothing logged)."
        ),
    ] = "auto",
    config: ProjectConfigFile = None,
    panel: Annotated[
        Path | None, typer.Option(help="Also write the main charts as one PNG here.")
    ] = None,
    loop: Annotated[
        Path | None,
        typer.Option(
            help="A `lifecycle simulate-loop` weeks.json: adds the closed loop's weekly curves."
        ),
    ] = None,
) -> None:
    """Write the business report: stage funnel, churn risk and reasons, customer lifetime
    value and value at risk by stage with who to save, the offer policy's choices and value
    by stage, model metrics, and the data's as-of date; with ``--loop``, the closed loop's
    weekly curves from a simulation."""
    from features.contracts import ContractError
    from features.project import load_project_config
    from training.data import load_tables
    from training.plots import save_figure
    from training.report import add_loop, build_report, load_models, report_panel
    from training.report_html import write_report

    if models not in ("auto", "registry", "train"):
        message = f"must be auto, registry or train; got {models!r}"
        raise typer.BadParameter(message, param_hint="--models")
    try:
        cfg = load_project_config(config, data)
        tables = load_tables(data, config=cfg)
        loaded = load_models(tables, models, cfg)  # type: ignore[arg-type]
    except FileNotFoundError as err:
        hint = " (run `make demo` to create demo_data/, or pass --data DIR)"
        raise fail(f"{err}{hint}") from None
    except (ContractError, ValueError, LookupError) as err:
        raise fail(str(err)) from None
    console.print(f"models: {loaded.source}")
    built = build_report(tables, loaded)
    if loop is not None:
        try:
            add_loop(built, loop)
        except ValueError as err:
            raise fail(str(err)) from None
    path = write_report(built, out)
    console.print(f"[bold]Report[/] written to {path} ({path.stat().st_size / 1024:,.0f} KB)")
    if panel is not None:
        console.print(f"charts: {save_figure(report_panel(built), panel)}")
