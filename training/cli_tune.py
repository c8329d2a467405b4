"""``lifecycle tune``: Optuna search of churn / stage model params, trials logged to MLflow."""

from __future__ import annotations

from typing import Annotated

import typer

from training.cli_common import DataDir, console, fail
from training.cli_train import Experiment, TrainConfigFile, _setup

MODELS = ("churn", "stage")


def tune(
    data: DataDir,
    model: Annotated[str, typer.Option("--model", help="Model to tune: churn or stage.")],
    trials: Annotated[int, typer.Option("--trials", help="Trials to run (>= 1).")] = 20,
    config: TrainConfigFile = None,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Optuna storage URL (default sqlite:///optuna.db; any RDB URL for "
            "parallel workers)."
        ),  # fmt: skip
    ] = None,
    study_name: Annotated[str | None, typer.Option(help="Default lifecycle-<model>.")] = None,
    seed: Annotated[int, typer.Option(help="Sampler seed.")] = 0,
    timeout: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    experiment: Experiment = "customer-lifecycle",
) -> None:
    """Tune a model's LightGBM params on time-ordered folds; write the best to tuned/<model>.yaml.

    Every trial is a nested MLflow run under a `tune-<model>` run; the study continues if it
    already exists in the storage.
    """
    import optuna

    from training.tune import best_trial, tuned_path
    from training.tune import tune as run_tune

    if model not in MODELS:
        raise fail(f"--model must be one of {', '.join(MODELS)}; got {model!r}", code=2)
    if trials < 1:
        raise fail(f"--trials must be >= 1; got {trials}", code=2)
    cfg, tables = _setup(data, config, experiment)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial is printed below
    try:
        study = run_tune(tables, model, trials, cfg, storage=storage, study_name=study_name,  # type: ignore[arg-type]
                         seed=seed, timeout=timeout, callbacks=[print_trial])  # fmt: skip
    except ValueError as err:
        raise fail(str(err)) from None
    if best_trial(study) is None:
        raise fail(f"study {study.study_name!r} has no completed trial (all pruned or failed)")
    console.print(f"[bold]best[/] trial {study.best_trial.number}: {study.best_value:.4f}")
    console.print(f"  params {format_params(study.best_params)}")
    console.print(f"  written to {tuned_path(model)}")


def format_params(params: dict) -> str:
    """``name=value`` pairs, floats to 4 significant digits."""
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in params.items())  # fmt: skip


def print_trial(study, trial) -> None:
    """Optuna callback: one line per finished trial (number, value or state, params)."""
    state = trial.state.name.lower()
    value = f"{trial.value:.4f}" if state == "complete" else state
    console.print(f"trial {trial.number:3d}  {value:>8s}  {format_params(trial.params)}")
