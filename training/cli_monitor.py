"""``lifecycle monitor``: drift, realised calibration, offer performance and ledger health
against thresholds, with exit codes a scheduler can act on (DESIGN section 13)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from training.cli_common import DataDir, ProjectConfigFile, console, fail, load_data

# exit codes of `lifecycle monitor`, for a scheduler
WITHIN, CROSSED, FAILED = 0, 4, 1

PsiThreshold = Annotated[
    float, typer.Option(min=0.0, help="Exit 4 when a feature's or the score's PSI is above.")
]
EceThreshold = Annotated[
    float, typer.Option(min=0.0, help="Exit 4 when the latest closed cohort's ECE is above.")
]
ActivityThreshold = Annotated[
    float, typer.Option(min=0.0, help="Exit 4 when a role's event rate per active customer "
                        "moved by more than this share (0.1 = 10 %) beyond noise.")
]  # fmt: skip
AmountThreshold = Annotated[
    float, typer.Option(min=0.0, help="Exit 4 when what customers pay per event of a money "
                        "role (purchase, refund, subscription start) moved by more than this "
                        "share (0.1 = 10 %) beyond noise.")
]  # fmt: skip


def monitor(
    data: DataDir,
    store: Annotated[
        str, typer.Option("--store", help="The online store the service reads (a SQLite file "
                          "or a redis://... or postgresql://... URL); without it, the vectors "
                          "at the data's last event.")
    ] = "store/online.sqlite",
    ledger: Annotated[
        str | None, typer.Option(help="The service's feedback ledger: a SQLite file or a "
                                 "postgresql:// URL.")
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the outputs.")] = Path(
        "monitor"
    ),
    config: ProjectConfigFile = None,
    psi_threshold: PsiThreshold = 0.25,
    ece_threshold: EceThreshold = 0.1,
    activity_threshold: ActivityThreshold = 0.1,
    amount_threshold: AmountThreshold = 0.1,
    activity_days: Annotated[int, typer.Option(min=1, help="Event rates and amounts over the "
                                               "last N days vs the N days before the reference "
                                               "date.")] = 7,
    reference_as_of: Annotated[
        str | None, typer.Option(help="Reference date (ISO; default: the champion churn "
                                 "model's training snapshot, its run's holdout_as_of).")
    ] = None,
    window_days: Annotated[int, typer.Option(min=1, help="Exposures sent in the last N days "
                                             "count for offer performance.")] = 90,
    ledger_days: Annotated[int, typer.Option(min=1, help="Ledger health over the last N "
                                             "days.")] = 7,
    now: Annotated[
        str | None, typer.Option(help="Ledger health as of this time (ISO; default: now).")
    ] = None,
) -> None:  # fmt: skip
    """Compare the current store with the champion churn model's training snapshot (feature
    and score drift: PSI and a two-sample test), check realised calibration of the latest
    cohort whose churn horizon has passed, each role's event rate in the last days against the
    days before the reference date (activity), what customers pay per event of each money role
    over the same windows (amounts), realised offer performance against the control arm and
    the ledger's health (with offers the champion offers model never saw sent). Writes
    OUT/monitor.json, monitor.html and monitor.prom (Prometheus gauges).

    Exit codes: 0 every check within its threshold; 4 a threshold was crossed (printed);
    1 the data, the models or the store could not be read; 2 bad usage.
    """
    import pandas as pd

    from training.ledger_tables import parse_location
    from training.monitoring.checks import Thresholds, evaluate
    from training.monitoring.outputs import write_outputs
    from training.monitoring.page import render

    kind, where = parse_location(ledger) if ledger is not None else (None, None)
    if kind == "sqlite" and not Path(where).is_file():
        raise fail(f"the feedback ledger {ledger} does not exist", FAILED)
    try:
        *parts, activity, amounts, notes = _gather(data, config, store, ledger,
                                                   reference_as_of, window_days, ledger_days,
                                                   now, activity_days)  # fmt: skip
        thresholds = Thresholds(psi_threshold, ece_threshold, activity_threshold,
                                amount_threshold)  # fmt: skip
        result = evaluate(*parts, thresholds, notes=notes, activity=activity, amounts=amounts)
        generated_at = pd.Timestamp.now(tz="UTC")
        paths = write_outputs(result, out, generated_at, render(result, generated_at))
    except (LookupError, ValueError, KeyError, TypeError, OSError) as err:
        raise fail(str(err), FAILED) from None
    _print(result, paths)
    if result.crossed:
        crossed = "; ".join(
            f"{c.name} {c.value:.4f} > {c.threshold:g}" + (f" ({c.detail})" if c.detail else "")
            for c in result.crossed
        )
        console.print(f"[red]threshold crossed[/]: {crossed} (exit {CROSSED})")
        raise typer.Exit(CROSSED)
    console.print(f"every check within its threshold (exit {WITHIN})")


def _gather(data, config, store, ledger, reference_as_of, window_days, ledger_days, now,
            activity_days):  # fmt: skip
    """(champion, reference, current, calibration, exposures, ledger health, activity,
    amounts, notes)."""
    import pandas as pd

    from features.project import recorded_config
    from training.cli_common import project_config
    from training.monitoring import inputs
    from training.monitoring.activity import activity_shift
    from training.monitoring.amounts import amount_shift
    from training.monitoring.checks import calibration_of
    from training.monitoring.ledger_health import ledger_health
    from training.pipeline import resolved

    cfg = project_config(config, data)
    tables = load_data(data, cfg)
    estimator, version = inputs.champion_churn()
    followed = resolved(tables, recorded_config(estimator) or cfg)
    trained = inputs.training_as_of(version)
    champion = inputs.Champion(estimator, str(version.version), followed, trained)
    when = reference_as_of or trained
    if when is None:
        raise LookupError(f"lifecycle-churn v{version.version}'s run logged no holdout_as_of; "
                          "pass --reference-as-of")  # fmt: skip
    source = "--reference-as-of" if reference_as_of else f"training snapshot of v{version.version}"
    reference = inputs.vectors_at(tables, followed, when, f"{source}, vectors as of "
                                  f"{pd.Timestamp(when):%Y-%m-%d}")  # fmt: skip
    notes: list[str] = []
    current = inputs.store_current(store, followed, notes)
    if current is None:
        notes.append(f"no store at {store}: current = the vectors at the data's last event")
        current = inputs.vectors_at(tables, followed, tables.end, "the data's last event")
    try:
        cohort, cohort_as_of = inputs.calibration_cohort(tables, champion)
        horizon = followed.dataset.churn_horizon_days
        calibration = calibration_of(cohort, cohort_as_of, horizon) if len(cohort) else None
    except ValueError as err:
        notes.append(f"realised calibration not computed: {err}")
        calibration = None
    exposures = inputs.window_exposures(tables, window_days,
                                        followed.dataset.response_window_days, ledger)  # fmt: skip
    at = now or pd.Timestamp.now(tz="UTC")
    health = None
    if ledger is not None:
        health = ledger_health(ledger, at, ledger_days, inputs.offers_training_sends())
        notes += _support_notes(health)
    try:
        activity = activity_shift(tables.events, pd.Timestamp(when), tables.end, activity_days)
    except ValueError as err:
        notes.append(f"activity not computed: {err}")
        activity = None
    try:
        amounts = amount_shift(tables.events, pd.Timestamp(when), tables.end, activity_days)
    except ValueError as err:
        notes.append(f"amounts not computed: {err}")
        amounts = None
    return champion, reference, current, calibration, exposures, health, activity, amounts, notes


def _support_notes(health) -> list[str]:
    """A note on the offers decided that the champion offers model never saw sent."""
    if health.offers is None:
        return ["no champion offers model: every offer is decided without training support "
                "(cold start)"]  # fmt: skip
    new = health.offers[~health.offers["supported"]]
    if new.empty:
        return []
    listed = ", ".join(f"{r.offer_id} ({r.decisions:.0f} decisions, {r.explored:.0f} explored)"
                       for r in new.itertuples())  # fmt: skip
    return [f"offers without training support (new to the champion offers model, explored "
            f"only; reported, not a threshold): {listed}"]  # fmt: skip


def _print(result, paths: dict[str, Path]) -> None:
    console.print(f"model {result.model}; reference {result.reference.source} "
                  f"({len(result.reference.frame):,}); current {result.current.source} "
                  f"({len(result.current.frame):,})")  # fmt: skip
    top = result.features.head(5)
    console.print("top drifting features (PSI): " + ", ".join(
        f"{f} {v:.3f}" for f, v in zip(top["feature"], top["psi"], strict=True)))  # fmt: skip
    s = result.scores
    console.print(f"score drift: PSI {s['psi']:.4f}, mean {s['reference_mean']:.3f} -> "
                  f"{s['current_mean']:.3f}")  # fmt: skip
    cal = result.calibration
    if cal is not None:
        console.print(f"realised calibration, cohort of {cal.as_of:%Y-%m-%d} ({cal.customers:,} "
                      f"customers): ECE {cal.ece:.4f}, predicted {cal.mean_predicted:.3f}, "
                      f"realised {cal.churn_rate:.3f}")  # fmt: skip
    if result.activity is not None:
        a = result.activity
        moved = ", ".join(f"{r.role} {r.change:+.0%}" for r in a.moved.itertuples()) or "none"
        console.print(f"activity, {a.days} days to {a.current_end:%Y-%m-%d} vs to "
                      f"{a.reference_end:%Y-%m-%d}: roles moved beyond noise: {moved}")  # fmt: skip
    if result.amounts is not None:
        a = result.amounts
        moved = ", ".join(f"{r.role} {r.change:+.0%}" for r in a.moved.itertuples()) or "none"
        console.print(f"amounts per event, same windows: roles moved beyond noise: {moved}")
    if result.ledger is not None:
        h = result.ledger.summary
        console.print(f"ledger: {h['decisions']:.0f} decisions in {h['days']:.0f} days, "
                      f"exploration {h['exploration_share']:.3f}, feedback "
                      f"{h['feedback_share']:.3f}")  # fmt: skip
    for note in result.notes:
        console.print(f"[yellow]note[/]: {note}")
    console.print("wrote " + ", ".join(str(p) for p in paths.values()))
