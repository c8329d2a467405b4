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
``training.pipeline.fit_and_evaluate``.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

import pandas as pd

from features.project import DaskConfig
from features.stages import STAGE_DTYPE
from training import plots
from training.datasets import Tables
from training.metrics import confusion, stage_metrics
from training.models._lgbm import feature_columns
from training.models.baselines import StayInStage
from training.models.churn import ChurnModel
from training.models.stage import StageModel
from training.pipeline import (
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
from training.scale.dataset import ClusterSet, build_training_set_on_cluster
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
    fits = each(client, fitting_rows, cset.parts, **split)
    holdout = pd.concat(client.gather(each(client, holdout_rows, cset.parts, **split)),
                        ignore_index=True)  # fmt: skip
    dropped = []
    if d.drop_constant_features:
        few = pd.concat(client.gather(each(client, _few_values, fits)), ignore_index=True)
        dropped = constant_columns(few)
    fits = each(client, _drop, fits, columns=dropped)
    rows = sum(client.gather(each(client, len, cset.parts)))
    return fits, holdout.drop(columns=dropped), dropped, rows


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


def _drop(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    return frame.drop(columns=columns)


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
