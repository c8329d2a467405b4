"""``lifecycle train`` and ``lifecycle promote``: MLflow-tracked training and promotion."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from training.cli_common import DataDir, console, fail

TrainConfigFile = Annotated[
    Path | None,
    typer.Option("--config", exists=True, dir_okay=False, help="TrainConfig YAML."),
]
Experiment = Annotated[str, typer.Option(help="MLflow experiment name.")]


def _setup(data: Path, config: Path | None, experiment: str):
    from training.data import load_tables
    from training.pipeline import TrainConfig
    from training.registry import setup, tracking_uri
    from training.tune import with_tuned

    try:
        cfg = with_tuned(TrainConfig.from_yaml(config) if config else TrainConfig())
        tables = load_tables(data)
    except (ValueError, FileNotFoundError) as err:
        raise fail(str(err)) from None
    setup(experiment)
    console.print(f"MLflow tracking at {tracking_uri()}, experiment {experiment!r}")
    return cfg, tables


def train(
    data: DataDir,
    config: TrainConfigFile = None,
    register: Annotated[bool, typer.Option(help="Register models (alias challenger).")] = True,
    experiment: Experiment = "customer-lifecycle",
) -> None:
    """Train churn and stage models with baselines; log to MLflow; register as challengers."""
    from training.pipeline import PRIMARY, fit_and_evaluate
    from training.tracking import log_run

    cfg, tables = _setup(data, config, experiment)
    result = fit_and_evaluate(tables, cfg)
    logged = log_run(result, source=str(data.resolve()), register=register)
    console.print(f"run {logged.run_id}: holdout as of {result.holdout_as_of:%Y-%m-%d}")
    for name, report in result.reports.items():
        metric = PRIMARY[name]
        base = ", ".join(f"{b} {m[metric]:.4f}" for b, m in report.baselines.items())
        reg = logged.registered.get(name)
        where = f" -> {reg.name} v{reg.version} @challenger" if reg else ""
        score = report.metrics[metric]
        console.print(f"  {name:6s} {metric} {score:.4f} (baselines: {base}){where}")


def promote(
    data: DataDir, config: TrainConfigFile = None, experiment: Experiment = "customer-lifecycle"
) -> None:
    """Move `champion` to the challenger only if it wins on the same latest holdout.

    Primary metrics: churn ROC-AUC, stage macro-F1; the comparison is printed.
    """
    from training.promotion import promote_all

    cfg, tables = _setup(data, config, experiment)
    try:
        outcomes = promote_all(tables, cfg)
    except LookupError as err:
        raise fail(str(err)) from None
    for outcome in outcomes:
        console.print(outcome.summary())
