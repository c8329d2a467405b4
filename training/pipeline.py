"""Train and evaluate the churn and stage models beside their baselines — pure, no MLflow.

``fit_and_evaluate`` builds the snapshot training set, splits it in time, fits every model on
the earlier snapshots and scores it on the latest one; ``training.tracking.log_run`` puts the
result in MLflow. Primary metrics (what ``lifecycle promote`` compares): churn ROC-AUC, stage
macro-F1.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from features.project import ProjectConfig
from features.stages import STAGE_DTYPE
from training import plots
from training.calendar import CalendarError, plan_snapshots
from training.datasets import Tables, build_training_set, resolve, snapshot_labels, time_split
from training.metrics import churn_metrics, confusion, stage_metrics
from training.models._lgbm import feature_columns, holdout_mask
from training.models.baselines import LogisticChurn, RFMChurnHeuristic, StayInStage
from training.models.churn import ChurnModel
from training.models.stage import StageModel

PRIMARY = {"churn": "roc_auc", "stage": "macro_f1", "offers": "policy_value_dr",
           "clv": "normalized_gini"}  # fmt: skip
MODELS = ("churn", "stage", "clv", "offers")
SNAPSHOT_MODELS = frozenset({"churn", "stage"})  # learn from (and are scored on) the snapshots


TrainConfig = ProjectConfig  # the training pipeline reads the one project config


class ModelSkipped(RuntimeError):
    """A model cannot be fitted on this data; the message says why (the run goes on)."""


@dataclass
class ModelReport:
    """One model's fit: the estimator, its metrics on the holdout beside the baselines'."""

    name: str
    estimator: object
    params: dict
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    figures: dict[str, Figure] = field(default_factory=dict)
    X_example: pd.DataFrame | None = None

    @property
    def primary(self) -> float:
        return self.metrics[PRIMARY[self.name]]


@dataclass
class TrainResult:
    """``config`` is resolved (no ``auto`` left): what every model records and serving
    rebuilds vectors with. ``skipped``: model -> why it was not fitted; ``dropped``: constant
    or empty columns left out of every model."""

    config: TrainConfig
    dataset: pd.DataFrame | None  # None when no model of the run needed it (CLV, offers)
    holdout_as_of: pd.Timestamp
    reports: dict[str, ModelReport]
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per step
    skipped: dict[str, str] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)


def fit_and_evaluate(
    tables: Tables, config: TrainConfig | None = None, models: Collection[str] | None = None
) -> TrainResult:
    """Training set -> time split -> churn and stage models (+ baselines) -> holdout metrics.

    Each model is fitted or skipped with its reason (``TrainResult.skipped``); the run fails
    only when none can be. ``models``: only these (of :data:`MODELS`; default all the data
    has the tables for). ``TrainResult.seconds`` holds the wall time of each step
    (``training_set``, ``churn``, ``stage``, ``offers``). When ``models`` holds neither churn
    nor stage (e.g. the weekly offers retrain), no training set is built: ``dataset`` is
    None and ``holdout_as_of`` the latest snapshot date, as a full run would report it.
    """
    check_models(models)
    config = resolved(tables, config or TrainConfig())
    dates = check_before_work(tables, config)
    seconds: dict[str, float] = {}
    if not needs_training_set(models):  # CLV and offers read the tables themselves
        reports, skipped = fit_models(_fitters(tables), (None, None), config, models, seconds)
        return TrainResult(config, None, max(dates), reports, seconds, skipped)
    with _timed(seconds, "training_set"):
        frame = build_training_set(tables, config.dataset)
        parts = time_split(frame, config.dataset)
    fit_part = pd.concat([parts["train"], parts["validation"]], ignore_index=True)
    holdout = parts["test"] if len(parts["test"]) else parts["validation"]
    dropped = constant_columns(fit_part) if config.dataset.drop_constant_features else []
    fit_part, holdout = fit_part.drop(columns=dropped), holdout.drop(columns=dropped)
    reports, skipped = fit_models(_fitters(tables), (fit_part, holdout), config, models, seconds)
    return TrainResult(config, frame, holdout["as_of"].max(), reports, seconds, skipped, dropped)


def needs_training_set(models: Collection[str] | None) -> bool:
    """Whether any of ``models`` (default all) learns from the snapshot training set: churn
    and stage do; CLV and offers build their own rows from the tables."""
    return models is None or bool(SNAPSHOT_MODELS & set(models))


def check_models(models: Collection[str] | None) -> None:
    """A ValueError naming any of ``models`` that is not one of :data:`MODELS`."""
    unknown = sorted(set(models or ()) - set(MODELS))
    if unknown:
        raise ValueError(f"models: unknown {', '.join(unknown)}; choose among "
                         f"{', '.join(MODELS)}")  # fmt: skip


def fit_models(
    fitters: list[tuple[str, object]], data: tuple, config: TrainConfig,
    models: Collection[str] | None, seconds: dict[str, float],
) -> tuple[dict[str, ModelReport], dict[str, str]]:  # fmt: skip
    """Each fitter (of ``models``, default all) called with ``*data, config``: its report, or
    why it was skipped; wall times into ``seconds``; every report stamped with ``config``.
    Raises ModelSkipped when none could be trained (both training paths)."""
    reports, skipped = {}, {}
    for name, fit in fitters:
        if models is not None and name not in models:
            continue
        with _timed(seconds, name):
            try:
                reports[name] = fit(*data, config)
            except (ModelSkipped, ValueError) as err:
                skipped[name] = f"{type(err).__name__}: {err}"
    if not reports:
        raise ModelSkipped("no model could be trained: " + "; ".join(
            f"{name}: {why}" for name, why in skipped.items()))  # fmt: skip
    for report in reports.values():
        stamp(report.estimator, config)
    return reports, skipped


def check_before_work(tables: Tables, config: TrainConfig) -> list[pd.Timestamp]:
    """The snapshot dates, once the settings are known to fit the data: the calendar
    (:func:`plan_snapshots`) and the churn model's calibration fold
    (:func:`check_calibration_fold`). Raises :class:`CalendarError` naming what would work."""
    dates = plan_snapshots(tables.start, tables.end, config.dataset, tables.labels)
    check_calibration_fold(tables, config, dates)
    return dates


def check_calibration_fold(tables: Tables, config: TrainConfig, dates: list) -> None:
    """Fail when the churn model's calibration fold (its latest fitting snapshots, about
    ``calibration_fraction`` of the rows) would hold one class of the churn label while the
    fitting snapshots hold both, naming a ``calibration_fraction`` that works. Labels alone
    are built (no features). A label of one class on every fitting snapshot is left to the
    run, which skips the churn model and trains the others."""
    try:
        model = ChurnModel(**config.churn)
    except TypeError:
        return  # an unknown churn parameter: the run reports it
    if model.calibration is None:
        return
    fit_dates = list(dates[: len(dates) - config.dataset.test_snapshots])
    if len(fit_dates) < 2:
        return
    labels = [snapshot_labels(tables, when, config.dataset) for when in fit_dates]
    counts = np.array([len(y) for y in labels])
    churners = np.array([int(np.sum(y == 1)) for y in labels])
    if churners.sum() in (0, counts.sum()):
        return
    snapshot = np.repeat(np.arange(len(fit_dates)), counts)

    def both_classes(k: int) -> bool:  # the latest k dates held out: both classes each side
        fold, rest = slice(len(fit_dates) - k, None), slice(None, len(fit_dates) - k)
        return all(0 < churners[part].sum() < counts[part].sum() for part in (fold, rest))

    held = holdout_mask(len(snapshot), snapshot, model.calibration_fraction)
    k = len(fit_dates) - int(snapshot[held].min())
    if both_classes(k):
        return
    fold = [f"{when:%Y-%m-%d}" for when in fit_dates[len(fit_dates) - k :]]
    d = config.dataset
    what = "every" if churners[-k:].sum() else "none of the"
    message = (
        f"churn.calibration_fraction={model.calibration_fraction} makes the churn model's "
        f"calibration fold the fitting snapshot(s) {fold}, where {what} "
        f"{counts[-k:].sum():,} customers the churn definition ({d.churn_definition}, "
        f"{d.churn_horizon_days} days) applies to churn: one class, nothing to calibrate on; "
        f"the data spans {tables.start:%Y-%m-%d} .. {tables.end:%Y-%m-%d}, the fitting snapshots "
        f"{fit_dates[0]:%Y-%m-%d} .. {fit_dates[-1]:%Y-%m-%d}."
    )
    working = [j for j in range(1, len(fit_dates)) if both_classes(j)]
    if working:
        share = counts[len(fit_dates) - working[0] :].sum() / counts.sum()
        message += (f" calibration_fraction: {share:.3f} would hold out the latest "
                    f"{working[0]} fitting snapshots, with both classes;")  # fmt: skip
    raise CalendarError(message + " churn: {calibration: null} keeps the booster's own "
                        "probabilities")  # fmt: skip


def resolved(tables: Tables, config: TrainConfig) -> TrainConfig:
    """``config`` with its dataset's ``auto`` settings made concrete for these tables."""
    return config.model_copy(update={"dataset": resolve(tables, config.dataset)})


def stamp(estimator: object, config: TrainConfig) -> None:
    """Record on a fitted model the resolved project config it was trained with."""
    estimator.lifecycle_config_ = config.to_json()
    estimator.lifecycle_fingerprint_ = config.fingerprint()


def _fitters(tables: Tables) -> list[tuple[str, object]]:
    fitters = [("churn", fit_churn), ("stage", fit_stage),
               ("clv", lambda fit_part, holdout, config: fit_clv(tables, config))]  # fmt: skip
    if tables.exposures is not None and tables.offers is not None and len(tables.exposures):
        fitters.append(("offers", lambda fit_part, holdout, config: fit_offers(tables, config)))
    return fitters


def constant_columns(frame: pd.DataFrame) -> list[str]:
    """Feature columns holding one value (or nothing) on every row: no model can use them."""
    keep = {"stage"}
    return [c for c in feature_columns(frame)
            if c not in keep and frame[c].nunique(dropna=False) <= 1]  # fmt: skip


@contextmanager
def _timed(seconds: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    seconds[name] = time.perf_counter() - start


def fit_offers(tables: Tables, config: TrainConfig) -> ModelReport:
    """Uplift model on earlier sends; Qini/AUUC and off-policy values on later sends; the
    model kept is refitted on every send (``op.refit_on_every_send``)."""
    from training import offers_pipeline as op

    data = op.offer_data(tables, config.dataset.feature_set)
    train, test = op.split_by_send_day(data)
    params = {"random_state": config.seed, **config.offers}
    evaluated = op.fit_uplift(train, params)
    result = op.evaluate_offers(evaluated, test, tables.offers)
    model = op.refit_on_every_send(evaluated, data, params)
    metrics = result["metrics"]
    baselines = {p: {PRIMARY["offers"]: metrics[f"policy_value_dr.{p}"]}
                 for p in ("propensity", "random")}  # fmt: skip
    return ModelReport("offers", model, params, metrics, baselines, op.offer_figures(result),
                       test.X.head(100))  # fmt: skip


def fit_clv(tables: Tables, config: TrainConfig) -> ModelReport:
    """Customer lifetime value: the learned and the probabilistic estimator on one later
    holdout (``training.clv_pipeline``); the better by normalised Gini is the model, the
    other and past spend x a constant its baselines."""
    from training import clv_pipeline as cp

    try:
        found = cp.evaluate_clv(tables, config)
    except cp.CLVSkipped as err:
        raise ModelSkipped(str(err)) from None
    champion = found["champion"]
    estimator = found["estimators"][champion]
    holdout = found["holdout"]
    columns = found["inputs"] if champion == "learned" else [estimator.column]
    params = {"estimator": champion, **estimator.get_params(),
              **{f"skipped.{k}": v for k, v in found["skipped"].items()}}  # fmt: skip
    baselines = {k: v for k, v in found["metrics"].items() if k != champion}
    figures = {"value_gains.png": cp.value_gains_figure(found["curves"])}
    return ModelReport("clv", estimator, params, found["metrics"][champion], baselines, figures,
                       holdout[columns].head(100))  # fmt: skip


def churn_population(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows the churn model learns from and is scored on (labelled, in the population)."""
    keep = frame["in_churn_population"].to_numpy(dtype=bool) & frame["churned"].notna().to_numpy()
    return frame[keep]


def _two_classes(name: str, train: pd.DataFrame, test: pd.DataFrame) -> None:
    for part, rows in (("training", train), ("holdout", test)):
        classes = rows["churned"].nunique()
        if classes < 2:
            raise ModelSkipped(
                f"the {part} rows of the churn population ({len(rows)}) hold "
                f"{classes} class(es) of the churn label; {name} needs both: check the churn "
                "definition, population and calendar in the project config"
            )


def fit_churn(fit_part: pd.DataFrame, holdout: pd.DataFrame, config: TrainConfig) -> ModelReport:
    """ChurnModel (calibrated on the latest fitting snapshot) vs logistic and RFM baselines,
    and the BG/NBD model's 1 - P(purchase within the horizon) when its features are there."""
    train, test = churn_population(fit_part), churn_population(holdout)
    _two_classes("churn", train, test)
    cols = feature_columns(train)
    params = {"random_state": config.seed, **config.churn}
    model = ChurnModel(**params).fit(train[cols], train["churned"], time=train["as_of"])
    return churn_report(model, params, train, test, cols, config)


def churn_report(
    model: ChurnModel, params: dict, train: pd.DataFrame, test: pd.DataFrame, cols: list[str],
    config: TrainConfig,
) -> ModelReport:  # fmt: skip
    """A fitted churn ``model`` on the holdout ``test`` beside its baselines (logistic, RFM,
    BG/NBD when present) fitted on ``train``: metrics and figures (both training paths)."""
    y = test["churned"].to_numpy()
    curves = {"lightgbm": (y, model.predict_proba(test[cols])[:, 1])}
    baselines = {}
    for name, base in (("logistic", LogisticChurn()), ("rfm", RFMChurnHeuristic())):
        p = base.fit(train[cols], train["churned"]).predict_proba(test[cols])[:, 1]
        curves[name], baselines[name] = (y, p), churn_metrics(y, p)
    btyd = f"btyd_p_purchase_{config.dataset.churn_horizon_days}d"
    if btyd in test.columns and test[btyd].notna().all():  # BG/NBD, fitted without labels
        p = 1.0 - test[btyd].to_numpy(dtype=float)
        curves["bgnbd"], baselines["bgnbd"] = (y, p), churn_metrics(y, p)
    figures = {
        "reliability.png": plots.reliability_diagrams(curves),
        "gains.png": plots.gains_chart(curves),
        "feature_importance.png": plots.feature_importance_plot(model.feature_importance()),
        "risk_histogram.png": plots.risk_histogram(curves["lightgbm"][1]),
    }
    return ModelReport("churn", model, params, churn_metrics(*curves["lightgbm"]), baselines,
                       figures, test[cols].head(100))  # fmt: skip


def fit_stage(fit_part: pd.DataFrame, holdout: pd.DataFrame, config: TrainConfig) -> ModelReport:
    """StageModel (current stage as an input) vs "stays in its current stage"."""
    fit_part = fit_part[fit_part["stage_next"].notna()]
    cols = feature_columns(fit_part)  # the current stage is one of them
    # every stage a category in both parts: a stage first seen in the holdout (a rare one, on
    # small data) is a known category, not a missing value
    train = fit_part.assign(stage=fit_part["stage"].astype(STAGE_DTYPE))
    test = holdout.assign(stage=holdout["stage"].astype(STAGE_DTYPE))
    params = {"random_state": config.seed, **config.stage}
    model = StageModel(**params).fit(train[cols], train["stage_next"], time=train["as_of"])
    y = test["stage_next"].astype("str").to_numpy()
    proba = pd.DataFrame(model.predict_proba(test[cols]), columns=list(model.classes_))
    stay = StayInStage().fit(train[cols], train["stage_next"])
    stay_proba = pd.DataFrame(stay.predict_proba(test[cols]), columns=list(stay.classes_))
    predicted = model.predict(test[cols])
    matrix = confusion(y, predicted, list(proba.columns))
    figures = {"confusion.png": plots.confusion_heatmap(matrix)}
    metrics = stage_metrics(y, proba, predicted) | {"prior_power": model.prior_power_}
    return ModelReport("stage", model, params, metrics,
                       {"stay_in_stage": stage_metrics(y, stay_proba)}, figures,
                       test[cols].head(100))  # fmt: skip
