"""``fit_and_evaluate`` on a Dask cluster: the same steps, the training set in partitions.

The training set is built on the cluster (:mod:`training.scale.dataset`) and split there by
snapshot date as ``training.datasets.time_split`` splits it; the churn and stage models are
fitted with ``lightgbm.dask`` (:mod:`training.scale.fit`). The holdout (the latest labelled
snapshot) comes back to this process, where the models and their baselines are scored exactly
as in ``training.pipeline``. What differs from the single-process path:

- the baselines (logistic regression, RFM, stays-in-stage) are fitted on a sample of at most
  ``BASELINE_ROWS`` fitting rows (all of them below that);
- the CLV and offers models, when the data has them, are fitted in this process (their own
  pipelines read the whole tables);
- ``TrainResult.dataset`` is a :class:`~training.scale.dataset.ClusterSet` whose length is the
  number of training rows (its frames go with the cluster).

:func:`train` picks the path from the config: ``dask.scheduler`` set -> here, else
``training.pipeline.fit_and_evaluate``. :func:`fit_and_evaluate_from_folder` is the same run
with the tables read by the workers from a data folder (never loaded in this process), for
the churn and stage models; :func:`train_folder` (``lifecycle train --models churn --models
stage``) takes it where it can.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

import pandas as pd

from features.project import DaskConfig
from features.stages import STAGE_DTYPE
from training import plots
from training.calendar import plan_snapshots
from training.datasets import Tables
from training.metrics import confusion, stage_metrics
from training.models._lgbm import feature_columns
from training.models.baselines import StayInStage
from training.models.churn import ChurnModel
from training.models.stage import StageModel
from training.pipeline import (
    MODELS,
    SNAPSHOT_MODELS,
    ModelReport,
    TrainConfig,
    TrainResult,
    _timed,
    _two_classes,
    check_before_work,
    check_models,
    churn_population,
    churn_report,
    constant_columns,
    fit_and_evaluate,
    fit_clv,
    fit_models,
    fit_offers,
    resolved,
)
from training.scale.cluster import each, open_client, partition_count
from training.scale.dataset import ClusterSet, build_from_parts, build_training_set_on_cluster
from training.scale.facts import overview, resolve_on_cluster
from training.scale.files import id_column, load_on_cluster, parquet_paths
from training.scale.fit import fit_churn_on_cluster, fit_stage_on_cluster

if TYPE_CHECKING:
    from distributed import Client

BASELINE_ROWS = 200_000


def train(
    tables: Tables, config: TrainConfig, models: Collection[str] | None = None
) -> TrainResult:
    """``fit_and_evaluate`` where the config says: on the cluster ``config.dask`` names (the
    cluster is opened and closed here), else in this process."""
    if not config.dask.scheduler:
        return fit_and_evaluate(tables, config, models)
    with open_client(config.dask) as client:
        return fit_and_evaluate_on_cluster(tables, config, client, models)


def reads_on_workers(folder, config: TrainConfig, models: Collection[str] | None) -> bool:
    """Whether :func:`train_folder` can leave the tables to the workers: a scheduler is
    configured, only snapshot models (churn, stage) are asked for, every table is Parquet."""
    snapshot_only = models is not None and set(models) <= SNAPSHOT_MODELS
    return bool(config.dask.scheduler) and snapshot_only and (
        parquet_paths(folder, config) is not None)  # fmt: skip


def train_folder(
    folder, config: TrainConfig, models: Collection[str] | None = None, mode: str = "strict"
) -> TrainResult:
    """:func:`train` of the data folder ``folder``: the workers read it themselves
    (:func:`fit_and_evaluate_from_folder`) when :func:`reads_on_workers`, else its tables
    are loaded here (``training.data.load_tables``) and trained where the config says."""
    if not reads_on_workers(folder, config, models):
        from training.data import load_tables

        return train(load_tables(folder, mode, config), config, models)
    with open_client(config.dask) as client:
        return fit_and_evaluate_from_folder(folder, config, client, models, mode=mode)


def fit_and_evaluate_on_cluster(
    tables: Tables, config: TrainConfig, client: Client,
    models: Collection[str] | None = None, partitions: int | None = None,
) -> TrainResult:  # fmt: skip
    """``training.pipeline.fit_and_evaluate`` with the training set and the churn and stage
    models on ``client``'s cluster (``partitions``: customer partitions, default from the
    config). Models are stamped with the config minus its ``dask`` section, so they are the
    same in kind as the single-process ones."""
    check_models(models)
    config = resolved(tables, config).model_copy(update={"dask": DaskConfig()})
    check_before_work(tables, config)
    seconds: dict[str, float] = {}
    with _timed(seconds, "training_set"):
        n = partitions or partition_count(config.dask, client)
        cset = build_training_set_on_cluster(tables, config.dataset, client, n)
        fits, holdout, dropped, rows = split_on_cluster(cset, config)
    reports, skipped = fit_models(_fitters(tables), (client, fits, holdout), config, models,
                                  seconds)  # fmt: skip
    cset.rows = rows
    return TrainResult(config, cset, holdout["as_of"].max(), reports, seconds, skipped, dropped)


def fit_and_evaluate_from_folder(
    folder, config: TrainConfig, client: Client,
    models: Collection[str] | None = ("churn", "stage"), partitions: int | None = None,
    mode: str = "strict",
) -> TrainResult:  # fmt: skip
    """:func:`fit_and_evaluate_on_cluster` of the data folder ``folder`` without loading its
    tables here: each task reads and validates its own customers' rows of the Parquet files
    (:mod:`training.scale.files`), and what this process needs of the whole data is reduced
    from the partitions (:mod:`training.scale.facts`). The training set, and so the models,
    are those of the driver-loaded path. Only the snapshot models (churn, stage): the CLV
    and offers pipelines read whole tables here (ValueError when asked for, as when a
    table is not Parquet). The churn calibration fold is not checked before the work (a
    one-class fold skips the churn model when it is fitted). ``seconds["tables"]``: the
    load, validation and resolve. The returned set's frames are released once split
    (``len`` holds; ``collect`` has nothing left to gather), to keep the workers' memory
    for the models."""
    check_models(models)
    if set(models or MODELS) - SNAPSHOT_MODELS:
        raise ValueError(f"models: {', '.join(sorted(set(models or MODELS) - SNAPSHOT_MODELS))}"
                         " read the whole tables in this process; train them with "
                         "fit_and_evaluate_on_cluster(load_tables(folder), ...)")  # fmt: skip
    paths = parquet_paths(folder, config)
    if paths is None:
        raise ValueError(f"{folder}: the workers read Parquet tables only; load the tables "
                         "here (training.data.load_tables) for other formats")  # fmt: skip
    seconds: dict[str, float] = {}
    with _timed(seconds, "tables"):
        n = partitions or partition_count(config.dask, client)
        parts = load_on_cluster(paths, config, client, n, mode)
        seen = overview(client, parts, paths["events"], id_column("events", config))
        dataset = resolve_on_cluster(client, parts, seen, config.dataset)
    config = config.model_copy(update={"dataset": dataset, "dask": DaskConfig()})
    dates = plan_snapshots(seen.start, seen.end, dataset, seen.labels)
    with _timed(seconds, "training_set"):
        cset = build_from_parts(client, parts, seen.order, dates, dataset)
        fits, holdout, dropped, rows = split_on_cluster(cset, config)
    del parts  # the workers may drop the tables once the snapshots are built
    cset.rows, cset.parts = rows, []  # and the set's frames once split (fits hold the rows)
    fitters = [("churn", fit_churn), ("stage", fit_stage)]
    reports, skipped = fit_models(fitters, (client, fits, holdout), config, models, seconds)
    return TrainResult(config, cset, holdout["as_of"].max(), reports, seconds, skipped, dropped)


def _fitters(tables: Tables) -> list[tuple[str, object]]:
    found = [("churn", fit_churn), ("stage", fit_stage),
             ("clv", lambda client, fits, holdout, config: fit_clv(tables, config))]  # fmt: skip
    if tables.exposures is not None and tables.offers is not None and len(tables.exposures):
        found.append(("offers", lambda c, f, h, config: fit_offers(tables, config)))
    return found


def split_on_cluster(cset: ClusterSet, config: TrainConfig):
    """``time_split`` by the global snapshot dates: (fitting-row frames on the cluster, the
    holdout here, constant columns dropped from both, training rows)."""
    client, d = cset.client, config.dataset
    dates = sorted(pd.Timestamp(t) for t in cset.dates)
    n_eval = d.validation_snapshots + d.test_snapshots
    if n_eval >= len(dates):
        raise ValueError(f"{len(dates)} snapshots cannot give {d.validation_snapshots} "
                         f"validation and {d.test_snapshots} test snapshots and leave any to "
                         "train on")  # fmt: skip
    valid_from = dates[len(dates) - n_eval]
    test_from = dates[len(dates) - d.test_snapshots] if d.test_snapshots else valid_from
    split = dict(valid_from=valid_from, test_from=test_from, horizon=d.horizon_days)
    holdout = pd.concat(client.gather(each(client, holdout_rows, cset.parts, **split)),
                        ignore_index=True)  # fmt: skip
    dropped = []
    if d.drop_constant_features:
        few = client.gather(each(client, _few_fitting_values, cset.parts, **split))
        dropped = constant_columns(pd.concat(few, ignore_index=True))
    fits = each(client, _fitting_kept, cset.parts, columns=dropped, **split)
    rows = sum(client.gather(each(client, len, cset.parts)))
    cset.sample = client.gather(each(client, _head, cset.parts[:1]))[0]
    return fits, holdout.drop(columns=dropped), dropped, rows


def _head(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.head(1_000)


def _few_fitting_values(frame, **split) -> pd.DataFrame:
    return _few_values(fitting_rows(frame, **split))


def _fitting_kept(frame, columns: list[str], **split) -> pd.DataFrame:
    """The fitting rows without ``columns``, in one step (no intermediate frame kept)."""
    return fitting_rows(frame, **split).drop(columns=columns)


def fitting_rows(frame, valid_from, test_from, horizon) -> pd.DataFrame:
    """Train and validation rows of ``time_split``: label windows ending by the validation
    date, and the validation snapshots."""
    early = frame["as_of"] + pd.Timedelta(days=horizon) <= valid_from
    valid = (frame["as_of"] >= valid_from) & (frame["as_of"] < test_from)
    return frame[early | valid]


def holdout_rows(frame, valid_from, test_from, horizon) -> pd.DataFrame:
    """The holdout of ``fit_and_evaluate``: the test snapshots (the validation ones without)."""
    later = frame[frame["as_of"] >= test_from]
    return later if len(later) else frame[frame["as_of"] >= valid_from]


def _few_values(frame: pd.DataFrame) -> pd.DataFrame:
    """At most two distinct values of each column: enough to tell a constant one."""
    picks = {}
    for name in frame.columns:
        values = frame[name].drop_duplicates()
        picks[name] = values.iloc[[0, min(1, len(values) - 1)] if len(values) else []]
    return pd.DataFrame({k: v.reset_index(drop=True) for k, v in picks.items()})


def _sample(client, parts, config: TrainConfig, keep) -> pd.DataFrame:
    """At most BASELINE_ROWS of the fitting rows ``keep`` selects, for the baselines."""
    sizes = client.gather(each(client, _count, parts, keep=keep))
    share = min(1.0, BASELINE_ROWS / max(1, sum(sizes)))
    taken = each(client, _take, parts, keep=keep, share=share, seed=config.seed)
    return pd.concat(client.gather(taken), ignore_index=True)


def _count(frame: pd.DataFrame, keep) -> int:
    return len(keep(frame))


def _take(frame: pd.DataFrame, keep, share: float, seed: int) -> pd.DataFrame:
    rows = keep(frame)
    return rows.sample(frac=share, random_state=seed) if share < 1 else rows


def _model_rows(frame: pd.DataFrame, keep, columns: list[str]) -> pd.DataFrame:
    """The rows a model learns from (``keep``), its inputs, ``as_of`` and its label."""
    return keep(frame)[columns]


def _stage_rows(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame[frame["stage_next"].notna()]
    return frame.assign(stage=frame["stage"].astype(STAGE_DTYPE))


def fit_churn(client, fits, holdout: pd.DataFrame, config: TrainConfig) -> ModelReport:
    """``training.pipeline.fit_churn`` with the ChurnModel fitted on the cluster."""
    test = churn_population(holdout)
    train = _sample(client, fits, config, churn_population)
    _two_classes("churn", train, test)
    cols = feature_columns(train)
    parts = each(
        client, _model_rows, fits, keep=churn_population, columns=[*cols, "as_of", "churned"]
    )
    params = {"random_state": config.seed, **config.churn}
    model = fit_churn_on_cluster(client, parts, ChurnModel(**params))
    return churn_report(model, params, train, test, cols, config)


def fit_stage(client, fits, holdout: pd.DataFrame, config: TrainConfig) -> ModelReport:
    """``training.pipeline.fit_stage`` with the StageModel fitted on the cluster."""
    train = _sample(client, fits, config, _stage_rows)
    cols = feature_columns(train)
    test = holdout.assign(stage=holdout["stage"].astype(STAGE_DTYPE))
    parts = each(
        client, _model_rows, fits, keep=_stage_rows, columns=[*cols, "as_of", "stage_next"]
    )
    params = {"random_state": config.seed, **config.stage}
    model = fit_stage_on_cluster(client, parts, StageModel(**params))
    y = test["stage_next"].astype("str").to_numpy()
    proba = pd.DataFrame(model.predict_proba(test[cols]), columns=list(model.classes_))
    stay = StayInStage().fit(train[cols], train["stage_next"])
    stay_proba = pd.DataFrame(stay.predict_proba(test[cols]), columns=list(stay.classes_))
    predicted = model.predict(test[cols])
    matrix = confusion(y, predicted, list(proba.columns))
    metrics = stage_metrics(y, proba, predicted) | {"prior_power": model.prior_power_}
    return ModelReport("stage", model, params, metrics,
                       {"stay_in_stage": stage_metrics(y, stay_proba)},
                       {"confusion.png": plots.confusion_heatmap(matrix)},
                       test[cols].head(100))  # fmt: skip
