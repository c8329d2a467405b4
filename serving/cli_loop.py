"""``lifecycle simulate-loop``: the closed loop on simulated customers (serving/closed_loop.py)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from training.cli_common import console, fail


def simulate_loop(
    workdir: Annotated[
        Path,
        typer.Option(
            "--workdir",
            "-o",
            help="Folder for the data, store, ledgers, "
            "MLflow and the weekly figures (weeks.json, weeks.png).",
        ),
    ] = Path("loop"),
    customers: Annotated[int, typer.Option(min=500, help="Simulated customers.")] = 50_000,
    weeks: Annotated[int, typer.Option(min=1, max=104, help="Weeks to run the loop.")] = 12,
    seed: Annotated[int, typer.Option(min=0, help="Random seed of the world.")] = 0,
    exploration: Annotated[
        float, typer.Option(min=0.0, max=0.5, help="The live service's epsilon.")
    ] = 0.1,
    audience_share: Annotated[
        float, typer.Option(min=0.001, max=1.0, help="Share of contactable customers per week.")
    ] = 0.1,
    pilot_weeks: Annotated[
        int, typer.Option(min=1, help="Weeks of randomised campaigns in the history.")
    ] = 8,
    full_retrain_every: Annotated[
        int, typer.Option(min=1, help="Weeks between retraining every model (offers: weekly).")
    ] = 4,
    project_config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            exists=True,
            dir_okay=False,
            help="Project config (lifecycle.yaml) for every retrain, e.g. "
            "offers: {min_arm_size: 50} for a small world.",
        ),  # fmt: skip
    ] = None,
) -> None:
    """The simulator as the world, the running service deciding, `lifecycle retrain` learning
    from its ledger, week by week; every policy valued from the ground truth.

    Prints one line per week and writes WORKDIR/weeks.json and WORKDIR/weeks.png.
    """
    import pandas as pd
    import yaml
    from pydantic import ValidationError

    from serving.closed_loop import LoopConfig, run_loop
    from training.loop_values import gap_closed
    from training.plots import loop_figure, save_figure

    project = yaml.safe_load(project_config.read_text()) if project_config else None
    try:
        config = LoopConfig(customers=customers, weeks=weeks, seed=seed, exploration=exploration,
                            audience_share=audience_share, pilot_weeks=pilot_weeks,
                            full_retrain_every=full_retrain_every,
                            project=project or {})  # fmt: skip
        found = run_loop(config, workdir, progress=console.print)
    except (ValidationError, RuntimeError) as err:
        raise fail(str(err)) from None
    frame = pd.DataFrame([asdict(w) for w in found])
    save_figure(loop_figure(frame), workdir / "weeks.png")
    share = gap_closed(frame)
    closed = ("no gap to close in the last week (the observable bound was not above the week-0 "
              "policy)" if share != share else f"gap closed in the last week: {share:.0%} of "
              "the way from the week-0 policy to the observable bound")  # fmt: skip
    console.print(f"{closed}; figures in {workdir}/weeks.json, plot {workdir}/weeks.png")
