"""The ``lifecycle`` command line.

Each subcommand is a thin shell over a library function; imports happen inside the commands so
that ``lifecycle --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from training import cli_features, cli_monitor, cli_report, cli_score, cli_train, cli_tune
from training.cli_common import DataDir, ProjectConfigFile, console, fail, project_config

app = typer.Typer(
    name="lifecycle",
    help="Customer-lifecycle decision service: simulate, validate, build features, train.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
app.add_typer(cli_features.app, name="features")
app.command()(cli_train.train)
app.command()(cli_train.promote)
app.command()(cli_train.retrain)
app.command()(cli_tune.tune)
app.command()(cli_report.report)
app.command()(cli_monitor.monitor)
app.command()(cli_score.score)


OutDir = Annotated[Path, typer.Option("--out", "-o", help="Folder to write the data set into.")]
Customers = Annotated[int, typer.Option(min=1, help="Number of customers to simulate.")]
Seed = Annotated[int, typer.Option(min=0, help="Random seed; the same seed gives the same data.")]
Days = Annotated[int, typer.Option(min=30, help="Length of the event log in days.")]
ConfigFile = Annotated[
    Path | None,
    typer.Option("--config", exists=True, dir_okay=False, help="Simulator YAML (SimConfig)."),
]
Progress = Annotated[bool, typer.Option(help="Show a progress bar over simulated days.")]


@app.command()
def simulate(
    out: OutDir = Path("data"),
    customers: Customers = 10_000,
    seed: Seed = 0,
    days: Days = 365,
    config: ConfigFile = None,
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
    progress: Progress = True,
    profile: Annotated[
        str | None,
        typer.Option(
            help="Data shape: default (rich lifecycle events, campaigns), purchase_only (a "
            "retailer's transaction log) or subscription (a social app's events, accounts and "
            "billing periods). Overrides the config file's profile."
        ),
    ] = None,
) -> None:
    """Simulate customers moving through lifecycle stages, with events, campaigns and truth."""
    from features.simulator import SimConfig, write_simulation
    from features.simulator import simulate as run_simulation

    if fmt not in ("parquet", "csv"):
        raise typer.BadParameter(f"must be parquet or csv; got {fmt!r}", param_hint="--format")
    profiles = ("default", "purchase_only", "subscription")
    if profile is not None and profile not in profiles:
        raise typer.BadParameter(
            f"must be one of {', '.join(profiles)}; got {profile!r}", param_hint="--profile"
        )
    overrides = {"customers": customers, "seed": seed, "days": days}
    if profile is not None:
        overrides["profile"] = profile
    try:
        cfg = SimConfig.from_yaml(config, **overrides) if config else SimConfig(**overrides)
    except ValueError as err:
        raise fail(str(err), code=2) from None
    sim = run_simulation(cfg, progress=progress)
    paths = write_simulation(sim, out, cfg, fmt)  # type: ignore[arg-type]
    console.print(f"[bold]Simulated[/] {cfg.customers:,} customers over {cfg.days} days -> {out}")
    for name, path in paths.items():
        console.print(f"  {name:16s} {len(getattr(sim, name)):>12,} rows  {path}")


@app.command()
def validate(
    data: DataDir,
    lenient: Annotated[bool, typer.Option(help="Quarantine bad rows instead of failing.")] = False,
    quarantine_out: Annotated[
        Path | None, typer.Option(help="With --lenient: write quarantined rows here (CSV).")
    ] = None,
    config: ProjectConfigFile = None,
) -> None:
    """Load a data folder through the data contracts (read the project config's way) and
    print one load report per table."""
    from features.contracts import ContractError
    from training.data import load_folder

    cfg = project_config(config, data)
    try:
        loaded = load_folder(data, mode="lenient" if lenient else "strict", config=cfg)
    except (ContractError, FileNotFoundError) as err:
        raise fail(str(err)) from None
    for name, result in loaded.items():
        console.print(result.report.summary())
        if quarantine_out is not None and len(result.quarantine):
            quarantine_out.mkdir(parents=True, exist_ok=True)
            result.quarantine.to_csv(quarantine_out / f"{name}.csv", index=False)


@app.command()
def demo(
    out: OutDir = Path("demo_data"),
    customers: Customers = 5_000,
    seed: Seed = 7,
    train: Annotated[bool, typer.Option(help="Also train, register and promote models.")] = True,
    profile: Annotated[
        str, typer.Option(help="Data shape: default, purchase_only or subscription.")
    ] = "default",
) -> None:
    """Generate the demo data set, validate and summarise it, then train, register and
    promote the models in MLflow (SQLite in the working directory).

    ``--profile purchase_only`` (a retailer's plain transaction log) and ``subscription`` (a
    social app's own events and billing export) also write the lifecycle.yaml that reads
    them into the data folder."""
    from training.demo import PROFILE_DAYS, run_demo

    if profile not in PROFILE_DAYS:
        raise typer.BadParameter(f"must be one of {', '.join(PROFILE_DAYS)}; got {profile!r}",
                                 param_hint="--profile")  # fmt: skip
    run_demo(out, customers=customers, seed=seed, console=console, profile=profile)
    if train:
        console.print("[bold]4. Training[/] churn, stage and offer models (logged to MLflow):")
        cli_train.train(out, config=None, register=True, experiment="customer-lifecycle")
        console.print("[bold]5. Promoting[/] challengers that beat the champion:")
        cli_train.promote(out, config=None, experiment="customer-lifecycle")
        console.print(
            "Browse the runs: .venv/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db"
        )


def main() -> None:  # pragma: no cover - console entry point
    app()
