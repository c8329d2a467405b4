"""``make demo``: generate the demo data set, load it through the contracts, summarise it."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from features.simulator import SimConfig, Simulation, simulate, write_simulation
from features.simulator.truth import arm_uplift
from features.summary import churn_rate, conversion_by_arm, events_by_role, stage_distribution
from training.data import load_folder


def run_demo(out: Path, customers: int, seed: int, console: Console) -> dict:
    """Simulate, write, validate and summarise; returns the loaded tables by name."""
    cfg = SimConfig(customers=customers, seed=seed)
    t0 = time.perf_counter()
    sim = simulate(cfg, progress=console.is_terminal)
    write_simulation(sim, out, cfg)
    console.print(
        f"[bold]1. Simulated[/] {customers:,} customers, {cfg.days} days, seed {seed} "
        f"-> {out}/ ({time.perf_counter() - t0:.1f}s)"
    )
    loaded = load_folder(out, mode="strict")
    console.print("[bold]2. Loaded through the data contracts[/] (strict):")
    for result in loaded.values():
        r = result.report
        console.print(
            f"   {r.table:10s} {r.rows_accepted:>10,} rows accepted, "
            f"{r.rows_quarantined} quarantined"
        )
    end = pd.Timestamp(cfg.start, tz="UTC") + pd.Timedelta(days=cfg.days)
    _print_summary(console, loaded, sim, end)
    return loaded


def _print_summary(console: Console, loaded: dict, sim: Simulation, end: pd.Timestamp) -> None:
    truth = sim.truth_customers
    events = loaded["events"].data
    console.print(
        f"[bold]3. Summary[/] as of {end:%Y-%m-%d}: "
        f"{events['customer_id'].nunique():,} customers with events, "
        f"{len(events):,} events"
    )
    console.print(_table("Events by role", events_by_role(events).to_frame()))
    stages = stage_distribution(truth["final_stage"])
    console.print(_table("True stage at the end (simulator ground truth)", stages))
    console.print(
        f"Churn rate (customers who ever bought, churned at the end): "
        f"[bold]{churn_rate(truth, end):.1%}[/]"
    )
    arms = conversion_by_arm(loaded["exposures"].data)
    uplift = arm_uplift(sim.exposures, sim.truth_exposures)
    arms["uplift est."] = uplift["observed_uplift"]
    arms["uplift true"] = uplift["true_uplift"]
    arms = arms.rename(columns={"conversion_rate": "rate"})
    console.print(_table("Conversion by offer arm (control = held out)", arms))
    console.print(
        "uplift = conversion gained vs no offer: estimated from the randomised sends "
        "with their logged propensities, beside the simulator's truth"
    )


def _table(title: str, frame: pd.DataFrame) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(frame.index.name or "")
    for col in frame.columns:
        table.add_column(str(col), justify="right")
    for idx, row in frame.iterrows():
        table.add_row(str(idx), *(_fmt(v) for v in row))
    return table


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:.3f}" if abs(value) < 10 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def ensure_demo_data(folder: str | Path, customers: int = 5_000, seed: int = 7) -> Path:
    """``folder`` if it already holds an events table, else simulate the demo data set into it
    (``make demo``'s defaults); for notebooks that should run on a fresh clone."""
    from training.data import find_table

    folder = Path(folder)
    if not (folder.is_dir() and find_table(folder, "events")):
        cfg = SimConfig(customers=customers, seed=seed)
        write_simulation(simulate(cfg), folder, cfg)
    return folder
