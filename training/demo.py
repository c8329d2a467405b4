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

PROFILE_DAYS = {"default": 365, "purchase_only": 730, "subscription": 365}


def run_demo(
    out: Path, customers: int, seed: int, console: Console, profile: str = "default"
) -> dict:
    """Simulate, write, validate and summarise; returns the loaded tables by name.

    Other profiles than ``default`` also get their ``lifecycle.yaml`` (how to read the
    files) written beside the data, as a user would write it.
    """
    from training.profiles import profile_config, write_profile_config

    cfg = SimConfig(customers=customers, seed=seed, profile=profile, days=PROFILE_DAYS[profile])
    t0 = time.perf_counter()
    sim = simulate(cfg, progress=console.is_terminal)
    write_simulation(sim, out, cfg)
    written = write_profile_config(out, profile)
    console.print(
        f"[bold]1. Simulated[/] {customers:,} customers ({profile}), {cfg.days} days, seed "
        f"{seed} -> {out}/ ({time.perf_counter() - t0:.1f}s)"
        + (f"; the project config is {written}" if written else "")
    )
    loaded = load_folder(out, mode="strict", config=profile_config(profile))
    console.print("[bold]2. Loaded through the data contracts[/] (strict):")
    for result in loaded.values():
        r = result.report
        console.print(
            f"   {r.table:10s} {r.rows_accepted:>10,} rows accepted, "
            f"{r.rows_quarantined} quarantined"
        )
    end = pd.Timestamp(cfg.start, tz="UTC") + pd.Timedelta(days=cfg.days)
    if profile == "default":
        _print_summary(console, loaded, sim, end)
    else:
        _print_shape(console, loaded["events"].data)
    return loaded


def _print_shape(console: Console, events: pd.DataFrame) -> None:
    """Customers, events per type and role: what a user's own data looks like to us."""
    console.print(
        f"[bold]3. Summary[/]: {events['customer_id'].nunique():,} customers, "
        f"{len(events):,} events from {events['timestamp'].min():%Y-%m-%d} to "
        f"{events['timestamp'].max():%Y-%m-%d}"
    )
    by_type = events.groupby(["event_type", "role"], observed=True).size().rename("events")
    console.print(_table("Events by type and role", by_type.reset_index(level=1)))


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
