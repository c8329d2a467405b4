"""Hyperparameter search for the churn and stage models with Optuna (DESIGN section 7).

The training set is built once; each trial fits the model on time-ordered folds (an expanding
window over snapshots: fit on the earlier snapshots whose label windows end by snapshot ``k``,
evaluate on snapshot ``k``, for the last :data:`N_FOLDS` snapshots) and scores the mean primary
metric (churn ROC-AUC, stage macro-F1; maximised). The running mean is reported after each fold
so the pruner (``MedianPruner(n_startup_trials=3)`` by default) can stop weak trials early.

Every trial is a nested MLflow run under one parent run ``tune-<model>`` in the active
experiment (params, fold metrics, tag ``optuna.state`` = COMPLETE / PRUNED / FAIL), logged here
rather than with the deprecated ``optuna_integration.MLflowCallback``.

Storage: ``sqlite:///optuna.db`` in the working directory by default (one process at a time).
For parallel workers give every worker the same RDB URL (e.g.
``postgresql://user:pass@host/optuna``) and study name, or pass an
``optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend("optuna.log"))``;
studies are loaded if they exist, so a second call continues the first.

The best params go to ``tuned/<model>.yaml``; :func:`tuned_params` reads them back and
:func:`with_tuned` merges them under a :class:`TrainConfig`'s explicit model params.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import mlflow
import numpy as np
import optuna
import pandas as pd
import yaml
from sqlalchemy.engine import make_url

from training.datasets import DatasetConfig, Tables, build_training_set
from training.metrics import churn_metrics, stage_metrics
from training.models._lgbm import feature_columns
from training.models.churn import ChurnModel
from training.models.stage import StageModel
from training.pipeline import PRIMARY, TrainConfig, churn_population

Model = Literal["churn", "stage"]
MODELS: tuple[str, ...] = ("churn", "stage")
DEFAULT_STORAGE = "sqlite:///optuna.db"
TUNED_DIR = "tuned"
N_FOLDS = 2
MIN_TRAIN_SNAPSHOTS = 2  # the models hold out their latest snapshot(s) to calibrate / stop


class Dim(NamedTuple):
    """One search dimension: ``int`` or ``float`` between ``low`` and ``high``."""

    kind: type
    low: float
    high: float
    log: bool = False


SEARCH_SPACE: dict[str, Dim] = {
    "n_estimators": Dim(int, 50, 400, log=True),
    "learning_rate": Dim(float, 0.01, 0.2, log=True),
    "num_leaves": Dim(int, 4, 63, log=True),
    "min_child_samples": Dim(int, 10, 200, log=True),
    "subsample": Dim(float, 0.5, 1.0),
    "colsample_bytree": Dim(float, 0.5, 1.0),
    "reg_lambda": Dim(float, 1e-3, 10.0, log=True),
}


@dataclass(frozen=True)
class Fold:
    """Model inputs of one fold: fit on ``X``/``y`` (as-of ``time``), score on ``X_eval``."""

    X: pd.DataFrame
    y: pd.Series
    time: pd.Series
    X_eval: pd.DataFrame
    y_eval: np.ndarray


def check_model(model: str) -> None:
    """Raise ``ValueError`` unless ``model`` is one of :data:`MODELS`."""
    if model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}; got {model!r}")


def fold_frames(
    frame: pd.DataFrame, config: DatasetConfig, n_folds: int = N_FOLDS
) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """``(train, eval)`` per fold: eval = one of the last ``n_folds`` snapshots, train = the
    snapshots whose label window (``config.horizon_days``) ends by its as-of date (purged as in
    ``time_split``). Raises ``ValueError`` when a fold has too few training snapshots."""
    dates = np.sort(frame["as_of"].unique())
    horizon = pd.Timedelta(days=config.horizon_days)
    folds = []
    for as_of in dates[-n_folds:]:
        train = frame[frame["as_of"] + horizon <= as_of]
        if train["as_of"].nunique() < MIN_TRAIN_SNAPSHOTS:
            raise ValueError(
                f"dataset: the fold evaluated at {pd.Timestamp(as_of):%Y-%m-%d} has "
                f"{train['as_of'].nunique()} training snapshot(s) after purging the "
                f"{config.horizon_days}-day label window; need >= {MIN_TRAIN_SNAPSHOTS} "
                f"(raise dataset.snapshots, currently {config.snapshots})"
            )
        folds.append((train, frame[frame["as_of"] == as_of]))
    return folds


def churn_fold(train: pd.DataFrame, test: pd.DataFrame) -> Fold:
    """The churn population's inputs and ``churned`` labels."""
    train, test = churn_population(train), churn_population(test)
    cols = feature_columns(train)
    return Fold(train[cols], train["churned"], train["as_of"], test[cols],
                test["churned"].to_numpy())  # fmt: skip


def stage_fold(train: pd.DataFrame, test: pd.DataFrame) -> Fold:
    """All customers' inputs (current stage as a category) and ``stage_next`` labels."""
    cols = feature_columns(train)
    train = train.assign(stage=train["stage"].astype("category"))
    test = test.assign(stage=pd.Categorical(test["stage"], train["stage"].cat.categories))
    return Fold(train[cols], train["stage_next"], train["as_of"], test[cols],
                test["stage_next"].astype("str").to_numpy())  # fmt: skip


def build_folds(tables: Tables, model: Model, config: TrainConfig) -> list[Fold]:
    """The training set, built once, without the final test snapshots (kept for the honest
    holdout of ``train`` and ``promote``), cut into the model's time-ordered folds."""
    frame = build_training_set(tables, config.dataset)
    dates = np.sort(frame["as_of"].unique())
    if config.dataset.test_snapshots:
        frame = frame[frame["as_of"] < dates[len(dates) - config.dataset.test_snapshots]]
    make = churn_fold if model == "churn" else stage_fold
    return [make(train, test) for train, test in fold_frames(frame, config.dataset)]


def score_fold(model: Model, params: dict, fold: Fold) -> dict[str, float]:
    """Fit the model with ``params`` on the fold and return its metrics on the eval rows."""
    if model == "churn":
        est = ChurnModel(**params).fit(fold.X, fold.y, time=fold.time)
        return churn_metrics(fold.y_eval, est.predict_proba(fold.X_eval)[:, 1])
    est = StageModel(**params).fit(fold.X, fold.y, time=fold.time)
    proba = pd.DataFrame(est.predict_proba(fold.X_eval), columns=list(est.classes_))
    return stage_metrics(fold.y_eval, proba, est.predict(fold.X_eval))


def suggest(trial: optuna.Trial, space: dict[str, Dim]) -> dict:
    """One value per dimension of ``space``."""
    return {
        name: (trial.suggest_int if dim.kind is int else trial.suggest_float)(
            name, dim.low, dim.high, log=dim.log
        )
        for name, dim in space.items()
    }


def model_params(model: Model, config: TrainConfig, suggested: dict) -> dict:
    """Estimator params: seed, the config's params, the trial's values, one thread."""
    return {"random_state": config.seed, **getattr(config, model), **suggested, "n_jobs": 1}


def run_folds(trial: optuna.Trial, model: Model, params: dict, folds: list[Fold]) -> float:
    """Mean primary metric over the folds, logging each fold's metrics and reporting the
    running mean; raises ``optuna.TrialPruned`` when the pruner says so."""
    scores = []
    for step, fold in enumerate(folds):
        metrics = score_fold(model, params, fold)
        mlflow.log_metrics({f"fold{step}.{k}": float(v) for k, v in metrics.items()})
        scores.append(metrics[PRIMARY[model]])
        trial.report(float(np.mean(scores)), step)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after fold {step}")
    return float(np.mean(scores))


def make_objective(
    model: Model, folds: list[Fold], config: TrainConfig
) -> Callable[[optuna.Trial], float]:
    """The trial function: one nested MLflow run per trial, tagged with its final state."""

    def objective(trial: optuna.Trial) -> float:
        suggested = suggest(trial, SEARCH_SPACE)
        with mlflow.start_run(run_name=f"trial-{trial.number}", nested=True):
            mlflow.set_tags({"optuna.trial": trial.number, "optuna.study": trial.study.study_name})
            mlflow.log_params(suggested)
            state = "FAIL"
            try:
                value = run_folds(trial, model, model_params(model, config, suggested), folds)
                state = "COMPLETE" if np.isfinite(value) else "FAIL"  # Optuna fails NaN
                mlflow.log_metric(PRIMARY[model], value)
            except optuna.TrialPruned:
                state = "PRUNED"
                raise
            finally:
                mlflow.set_tag("optuna.state", state)
        return value

    return objective


def open_study(
    model: Model, storage: str | optuna.storages.BaseStorage | None, study_name: str | None,
    seed: int, pruner: optuna.pruners.BasePruner | None,
) -> optuna.Study:  # fmt: skip
    """Create or load the study; the sampler seed is offset by the trials already run, so a
    continued study does not repeat its first random draws."""
    study = optuna.create_study(
        storage=storage or DEFAULT_STORAGE, study_name=study_name or f"lifecycle-{model}",
        direction="maximize", load_if_exists=True,
        pruner=pruner or optuna.pruners.MedianPruner(n_startup_trials=3),
    )  # fmt: skip
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials))
    return study


def storage_label(storage: str | optuna.storages.BaseStorage | None) -> str:
    """What to log about the storage: its URL without password, or its type."""
    if storage is None or isinstance(storage, str):
        return make_url(storage or DEFAULT_STORAGE).render_as_string(hide_password=True)
    return type(storage).__name__


def tune(
    tables: Tables, model: Model, trials: int, config: TrainConfig, storage: str | None = None,
    study_name: str | None = None, seed: int = 0, timeout: float | None = None,
    pruner: optuna.pruners.BasePruner | None = None, folder: str | Path = TUNED_DIR,
    callbacks: Sequence[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] = (),
) -> optuna.Study:  # fmt: skip
    """Run ``trials`` more trials of the ``model`` study and write its best params.

    Logs into the active MLflow experiment (call ``training.registry.setup`` first). Writes
    ``<folder>/<model>.yaml`` when the study has a completed trial. Raises ``ValueError`` for
    an unknown model, ``trials < 1`` or too few snapshots for the folds.
    """
    check_model(model)
    if trials < 1:
        raise ValueError(f"trials must be >= 1; got {trials}")
    folds = build_folds(tables, model, config)
    study = open_study(model, storage, study_name, seed, pruner)
    with mlflow.start_run(run_name=f"tune-{model}", nested=mlflow.active_run() is not None):
        mlflow.log_params(
            {"model": model, "trials": trials, "seed": seed, "folds": len(folds),
             "study_name": study.study_name, "storage": storage_label(storage)}
        )  # fmt: skip
        objective = make_objective(model, folds, config)
        study.optimize(objective, n_trials=trials, timeout=timeout, callbacks=list(callbacks))
        if best_trial(study) is not None:
            log_best(study, model)
            write_tuned(study, model, folder)
    return study


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The best completed trial, or ``None`` when none completed (all pruned or failed)."""
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return study.best_trial if done else None


def log_best(study: optuna.Study, model: Model) -> None:
    """Best value and params on the parent run."""
    mlflow.log_metric(f"best_{PRIMARY[model]}", study.best_value)
    mlflow.log_params({f"best.{k}": v for k, v in study.best_params.items()})
    mlflow.set_tag("best_trial", study.best_trial.number)


def tuned_path(model: str, folder: str | Path = TUNED_DIR) -> Path:
    """``<folder>/<model>.yaml``."""
    return Path(folder) / f"{model}.yaml"


def write_tuned(study: optuna.Study, model: Model, folder: str | Path = TUNED_DIR) -> Path:
    """Write the study's best params to ``<folder>/<model>.yaml`` (with a provenance header)."""
    path = tuned_path(model, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"# written by `lifecycle tune`: study {study.study_name!r}, trial "
        f"{study.best_trial.number}, mean {PRIMARY[model]} {study.best_value:.4f}\n"
    )
    path.write_text(header + yaml.safe_dump(dict(study.best_params), sort_keys=False))
    return path


def tuned_params(model: str, folder: str | Path = TUNED_DIR) -> dict:
    """The params in ``<folder>/<model>.yaml``, or ``{}`` when the file does not exist.

    Raises ``ValueError`` naming the file when it is not a mapping of param names.
    """
    check_model(model)
    path = tuned_path(model, folder)
    if not path.is_file():
        return {}
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict) or not all(isinstance(k, str) for k in raw):
        raise ValueError(f"{path}: expected a mapping of {model} model params; got {raw!r}")
    return raw


def with_tuned(config: TrainConfig, folder: str | Path = TUNED_DIR) -> TrainConfig:
    """``config`` with each model's tuned params merged under its explicit ones."""
    update = {m: {**tuned_params(m, folder), **getattr(config, m)} for m in MODELS}
    return config.model_copy(update=update)
