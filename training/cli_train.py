"""``lifecycle train`` and ``lifecycle promote``: MLflow-tracked training and promotion."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from training.cli_common import (
    DataDir,
    ProjectConfigFile,
    console,
    fail,
    load_data,
    project_config,
)

TrainConfigFile = ProjectConfigFile
Experiment = Annotated[str, typer.Option(help="MLflow experiment name.")]
Ledger = Annotated[
    str | None,
    typer.Option(
        help="The service's feedback ledger (a SQLite file or a postgresql:// URL): its "
        "decisions (with their propensities) become exposures beside the campaign logs "
        "(offer decisions once reported sent).",
    ),
]


def _setup(data: Path, config: Path | None, experiment: str, ledger: str | None = None):
    from training.ledger_exposures import with_ledger
    from training.pipeline import check_before_work, resolved
    from training.registry import setup, tracking_uri
    from training.tune import with_tuned

    cfg = project_config(config, data)
    tables = load_data(data, cfg)
    try:
        if ledger is not None:
            tables, added = with_ledger(tables, ledger, cfg.dataset.response_window_days)
            console.print(f"ledger {ledger}: {added:,} decisions as exposures")
        cfg = resolved(tables, with_tuned(cfg))
        check_before_work(tables, cfg)  # fail early
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
    ledger: Ledger = None,
    models: Annotated[
        list[str] | None,
        typer.Option(
            "--models",
            help="Train only these (repeat the option): churn, stage, clv, offers; default "
            "all. With a dask.scheduler and only churn and/or stage, on Parquet tables, the "
            "workers read the data folder themselves (it is never loaded whole here).",
        ),
    ] = None,
) -> None:
    """Train churn and stage models with baselines; log to MLflow; register as challengers."""
    from training.pipeline import PRIMARY, ModelSkipped
    from training.scale.pipeline import train as run_training
    from training.tracking import log_run

    try:
        if ledger is None and (found := _on_workers(data, config, experiment, models)):
            cfg, result = found
        else:
            cfg, tables = _setup(data, config, experiment, ledger)
            result = run_training(tables, cfg, models)  # on Dask when dask.scheduler is set
    except ModelSkipped as err:
        raise fail(str(err)) from None
    logged = log_run(result, source=str(data.resolve()), register=register)
    console.print(f"run {logged.run_id}: holdout as of {result.holdout_as_of:%Y-%m-%d}")
    _print_choices(result)
    for name, report in result.reports.items():
        metric = PRIMARY[name]
        base = ", ".join(f"{b} {m[metric]:.4f}" for b, m in report.baselines.items())
        reg = logged.registered.get(name)
        where = f" -> {reg.name} v{reg.version} @challenger" if reg else ""
        score = report.metrics[metric]
        console.print(f"  {name:6s} {metric} {score:.4f} (baselines: {base}){where}")


def _on_workers(data: Path, config: Path | None, experiment: str, models):
    """(config, result) of a run whose workers read ``data`` themselves
    (``training.scale.pipeline.reads_on_workers``), else None."""
    from features.contracts import ContractError
    from training.pipeline import check_models
    from training.registry import setup, tracking_uri
    from training.scale.pipeline import reads_on_workers, train_folder
    from training.tune import with_tuned

    try:
        check_models(models)
        cfg = with_tuned(project_config(config, data))
        if not reads_on_workers(data, cfg, models):
            return None
        setup(experiment)
        console.print(f"MLflow tracking at {tracking_uri()}, experiment {experiment!r}; the "
                      f"Dask workers read {data} themselves")  # fmt: skip
        return cfg, train_folder(data, cfg, models)
    except (ContractError, ValueError, FileNotFoundError) as err:
        raise fail(str(err)) from None


def _print_choices(result) -> None:
    """What the run decided from the data: definitions, dropped columns, skipped models."""
    d = result.config.dataset
    console.print(f"  churn: {d.churn_definition} over {d.churn_horizon_days} days, "
                  f"population {d.population}; stage rule {d.stages.churn_rule}; "
                  f"{len(d.event_types or ())} event types with features of their own; "
                  f"buy-till-you-die features {d.btyd_features}")  # fmt: skip
    if result.dropped:
        console.print(f"  dropped {len(result.dropped)} constant or empty column(s): "
                      f"{', '.join(result.dropped)}")  # fmt: skip
    for name, why in result.skipped.items():
        console.print(f"  [yellow]skipped[/] {name}: {why}")


def promote(
    data: DataDir, config: TrainConfigFile = None, experiment: Experiment = "customer-lifecycle",
    ledger: Ledger = None,
) -> None:  # fmt: skip
    """Move `champion` to the challenger only if it wins on the same latest holdout.

    Primary metrics: churn ROC-AUC, stage macro-F1; the comparison is printed.
    """
    from training.promotion import promote_all, without_challenger

    cfg, tables = _setup(data, config, experiment, ledger)
    try:
        outcomes = promote_all(tables, cfg)
    except LookupError as err:
        raise fail(str(err)) from None
    if not outcomes:
        raise fail("no model has a challenger to promote; run `lifecycle train` first")
    for outcome in outcomes:
        console.print(outcome.summary())
    for name in without_challenger():
        console.print(f"{name}: no challenger (training skipped it; its run says why): "
                      "nothing to promote")  # fmt: skip


# exit codes of `lifecycle retrain`, for a scheduler
PROMOTED, KEPT, FAILED = 0, 3, 1


def retrain(
    data: DataDir,
    config: TrainConfigFile = None,
    ledger: Ledger = None,
    store: Annotated[
        str, typer.Option("--store", help="The online store to refresh: a SQLite file or a URL.")
    ] = "store/online.sqlite",
    keep_versions: Annotated[int, typer.Option(min=1, help="Store versions to keep.")] = 2,
    experiment: Experiment = "customer-lifecycle",
    models: Annotated[
        list[str] | None,
        typer.Option(
            "--models",
            help="Retrain only these (repeat the option): churn, stage, "
            "clv, offers; default all. E.g. offers weekly, everything monthly.",
        ),
    ] = None,
    redefine: Annotated[
        bool,
        typer.Option(
            "--redefine",
            help="Derive the features afresh from the data and the config (churn definition, "
            "stage rules, BG/NBD parameters) instead of keeping the champions'. The service "
            "serves the new definition only once every model of it is champion.",
        ),
    ] = False,
) -> None:
    """One scheduled retraining step: train on DATA (and the ledger's decisions), register
    challengers, promote those that win on the same latest holdout, and materialise the store
    with the champions' config. A running service (registry models) picks up new champions
    and the new store version by itself, without a failed request.

    The challengers keep the champions' feature definition (the resolved dataset config they
    recorded: churn definition, stage rules, the BG/NBD parameters fitted when they were
    trained), so that any of them can replace its champion and still be served beside the
    others (the service serves only models that share one definition). ``--redefine``
    derives it afresh.

    With ``--models``, only those models are retrained and compared (the others' champions
    stay as they are); the store is refreshed all the same.

    Exit codes: 0 a challenger became champion; 3 no challenger won (the champions stay; the
    store is refreshed); 1 the data, the config or the training failed (nothing promoted);
    2 bad usage.
    """
    from features.project import recorded_config
    from features.store import StoreUnavailableError, open_store
    from training.pipeline import MODELS, ModelSkipped, resolved
    from training.promotion import promote_all
    from training.registry import load_alias
    from training.resolve import store_vectors
    from training.scale.pipeline import train as run_training
    from training.tracking import log_run

    unknown = sorted(set(models or ()) - set(MODELS))
    if unknown:
        raise typer.BadParameter(f"unknown model(s) {', '.join(unknown)}; choose among "
                                 f"{', '.join(MODELS)}", param_hint="--models")  # fmt: skip
    cfg, tables = _setup(data, config, experiment, ledger)
    champion, _ = load_alias("lifecycle-churn", "champion")
    kept = None if redefine or champion is None else recorded_config(champion)
    if kept is not None:  # challengers comparable with, and servable beside, the champions
        cfg = cfg.model_copy(update={"dataset": kept.dataset, "roles": kept.roles})
        console.print(f"features as the champions define them (fingerprint "
                      f"{kept.fingerprint()}; --redefine derives them afresh)")  # fmt: skip
    try:
        result = run_training(tables, cfg, models or None)  # on Dask when configured
        logged = log_run(result, source=str(data.resolve()), register=True)
        console.print(f"trained: run {logged.run_id}, holdout as of "
                      f"{result.holdout_as_of:%Y-%m-%d}")  # fmt: skip
        _print_choices(result)
        outcomes = promote_all(tables, cfg, names=logged.registered,  # this run's challengers
                               training_set=result.dataset)  # fmt: skip
        for outcome in outcomes:
            console.print(f"  {outcome.summary()}")
        if champion is None or any(o.promoted and o.name == "lifecycle-churn" for o in outcomes):
            champion, _ = load_alias("lifecycle-churn", "champion")  # new: load what it records
        followed = recorded_config(champion) if champion is not None else cfg
        vectors, label = store_vectors(tables, resolved(tables, followed))
    except (ModelSkipped, LookupError, ValueError, KeyError) as err:
        raise fail(str(err), FAILED) from None
    try:  # a SQLite store creates its folder; a server must be reachable
        version = open_store(store).materialize(vectors, tables.end, label,
                                                keep_versions=keep_versions)  # fmt: skip
    except StoreUnavailableError as err:
        raise fail(str(err), FAILED) from None
    console.print(
        f"store {store}: version {version.version} is current "
        f"({version.n_customers:,} customers, as of {tables.end:%Y-%m-%dT%H:%M:%SZ})"
    )
    promoted = [o.name for o in outcomes if o.promoted]
    if promoted:
        console.print(f"[bold]promoted[/]: {', '.join(promoted)} (exit {PROMOTED})")
        raise typer.Exit(PROMOTED)
    console.print(f"no challenger won; the champions stay (exit {KEPT})")
    raise typer.Exit(KEPT)
