"""The snapshot training set built on a Dask cluster, one customer partition per task.

Every column of a snapshot is a function of one customer's own rows (features, rule stage,
labels), with one exception: the buy-till-you-die features refit BG/NBD and Gamma-Gamma at
each as-of date on *every* customer. So each snapshot runs in two steps: the workers
summarise their customers' purchases, this process fits the two models on all the summaries
(in the single-process path's customer order, so the fit is the same), and the workers build
the snapshot with those parameters (``BTYDFeatures(refit=False)``). The result has the rows
and values of :func:`training.datasets.build_training_set`; only the row order differs.

The tables are split here by a hash of ``customer_id`` (as ``str``, as
``features.dask_builder`` does) and sent to the workers once; the partition frames stay there
(:class:`ClusterSet`), so the training data never has to fit in this process.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features.btyd_features import BTYDFeatures
from features.builder import event_arrays, to_utc
from features.families import R
from features.project import DatasetConfig
from training.calendar import plan_snapshots
from training.datasets import Tables, _snapshot, resolve
from training.resolve import vector_options
from training.scale.cluster import each

if TYPE_CHECKING:
    from distributed import Client, Future

NEVER_FIT = 2**62  # min_customers of a partition's BTYDFeatures: score with the given params


@dataclass
class ClusterSet:
    """The training set on the cluster: one pandas frame per customer partition (every
    snapshot of its customers), held by the workers. ``config`` is resolved; ``dates`` are
    the snapshot dates, oldest first (``snapshot`` k is ``dates[k]``)."""

    client: Client
    parts: list[Future]
    config: DatasetConfig
    dates: list[pd.Timestamp]
    rows: int = 0  # training rows, once counted (``len``)
    sample: pd.DataFrame | None = None  # the first rows of one partition, once split

    def __len__(self) -> int:
        return self.rows

    def drop(self, columns: list[str]) -> pd.DataFrame:
        """``sample`` without ``columns``: what ``training.tracking`` logs of a training set
        (its schema and a digest of its first rows), without gathering the set."""
        return (self.sample if self.sample is not None else pd.DataFrame()).drop(
            columns=columns, errors="ignore"
        )

    def collect(self) -> pd.DataFrame:
        """The whole set in this process, by snapshot then ``customer_id`` (for tests and
        small data), with ``attrs["dataset"]`` as the single-process set has it."""
        frame = pd.concat(self.client.gather(self.parts), ignore_index=True)
        frame = frame.sort_values(["snapshot", "customer_id"], ignore_index=True)
        frame.attrs["dataset"] = self.config.model_dump_json()
        return frame


def build_training_set_on_cluster(
    tables: Tables, config: DatasetConfig, client: Client, partitions: int
) -> ClusterSet:
    """:func:`training.datasets.build_training_set` on the cluster of ``client``.

    ``tables`` are split into ``partitions`` customer partitions and scattered; each task
    builds every snapshot of its customers. Raises ``ValueError`` for the one setting whose
    labels would depend on the partition (``rhythm`` churn without a typical gap).
    """
    config = resolve(tables, config)
    _check_partitionable(config)
    dates = plan_snapshots(tables.start, tables.end, config, tables.labels, for_training=False)
    parts = client.scatter(split_tables(tables, partitions))
    return build_from_parts(client, parts, customer_order(tables.events), dates, config)


def build_from_parts(
    client: Client, parts: list[Future], order: pd.Index, dates: list[pd.Timestamp],
    config: DatasetConfig,
) -> ClusterSet:  # fmt: skip
    """The training set of the customer partitions ``parts`` (:class:`Tables` futures, on
    the workers) at ``dates``; ``config`` resolved on the whole data, ``order`` the
    single-process builder's customer order (:func:`customer_order`)."""
    _check_partitionable(config)
    specs = [btyd_specs(client, parts, order, as_of, config) for as_of in dates]
    frames = [client.submit(partition_snapshots, part, dates, config, specs, pure=False)
              for part in parts]  # fmt: skip
    return ClusterSet(client, frames, config, list(dates))


def _check_partitionable(config: DatasetConfig) -> None:
    if config.churn_definition == "rhythm" and config.stages.typical_gap_days is None:
        raise ValueError(
            "dataset.stages.typical_gap_days must be set to build rhythm churn labels on a "
            "cluster (without it each customer's fallback gap is the median of the other "
            "customers', which a partition does not see); got None"
        )


def split_tables(tables: Tables, partitions: int) -> list[Tables]:
    """``tables`` split by a hash of ``customer_id`` (as ``str``); ``offers`` goes whole to
    every part. A customer's rows of every table land in the same part."""
    split = {f.name: _split(getattr(tables, f.name), partitions) for f in fields(tables)
             if f.name != "offers"}  # fmt: skip
    return [Tables(**{name: rows[k] for name, rows in split.items()}, offers=tables.offers)
            for k in range(partitions)]  # fmt: skip


def _split(table: pd.DataFrame | None, partitions: int) -> list[pd.DataFrame | None]:
    if table is None:
        return [None] * partitions
    table = table.assign(customer_id=table["customer_id"].astype("str"))
    bucket = pd.util.hash_pandas_object(table["customer_id"], index=False).to_numpy()
    bucket = bucket % np.uint64(partitions)
    return [table[bucket == k].reset_index(drop=True) for k in range(partitions)]


def customer_order(events: pd.DataFrame) -> pd.Index:
    """The customer order of the single-process builder (``features.builder.event_arrays``):
    the categories of a categorical ``customer_id``, else first appearance; as ``str``."""
    ids = events["customer_id"]
    labels = ids.cat.categories if isinstance(ids.dtype, pd.CategoricalDtype) else ids.unique()
    return pd.Index(labels).astype("str")


def btyd_specs(
    client: Client, parts: list[Future], order: pd.Index, as_of: pd.Timestamp,
    config: DatasetConfig,
) -> tuple[BTYDFeatures | None, BTYDFeatures | None]:  # fmt: skip
    """The BG/NBD features of one snapshot as the partitions must build them: (at ``as_of``,
    for the stage after the horizon), fitted on every customer; None when not asked for."""
    if config.btyd_features != "on":
        return None, None
    now = _global_btyd(client, parts, order, to_utc(as_of), config)
    if not config.stages.p_alive_churned_below:  # the later stage does not read P(alive)
        return now, now
    later = to_utc(as_of) + pd.Timedelta(days=config.stage_horizon_days)
    return now, _global_btyd(client, parts, order, later, config)


def _global_btyd(client, parts, order, when: pd.Timestamp, config) -> BTYDFeatures:
    """Fit as ``BTYDFeatures.features`` does on all customers; a spec that only scores."""
    summaries = pd.concat(client.gather(each(client, purchase_summaries, parts, when=when)))
    spec = fit_btyd(summaries, order, BTYDFeatures.for_config(config))
    params = {**(config.btyd_params or {}), **(spec.fitted or {})}
    return replace(spec, params=params, refit=False, min_customers=NEVER_FIT)


def fit_btyd(summaries: pd.DataFrame, order: pd.Index, spec: BTYDFeatures) -> BTYDFeatures:
    """``spec`` after fitting BG/NBD then Gamma-Gamma as ``BTYDFeatures.features`` does, on
    the buyers' ``summaries`` (``purchase_summaries`` of every partition) put in ``order``:
    the fitted parameters are in ``spec.fitted``."""
    from features.btyd import BGNBD
    from features.spend import GammaGamma

    summaries = summaries.set_index("customer_id")
    summaries = summaries.loc[order[order.isin(summaries.index)]]
    x, t_x, age, m = (summaries[c].to_numpy() for c in ("x", "t_x", "age", "m"))
    if len(x) and spec._model(BGNBD, x, t_x, age) is not None:
        spec._model(GammaGamma, np.where(np.nan_to_num(m) > 0, x, 0.0), m)
    return spec


def purchase_summaries(part: Tables, when: pd.Timestamp) -> pd.DataFrame:
    """Per buyer of ``part`` up to ``when``: ``customer_id``, BG/NBD's ``x, t_x, age`` and
    Gamma-Gamma's mean spend ``m`` (the inputs ``BTYDFeatures.features`` fits on)."""
    from features.btyd import purchase_summary
    from features.spend import spend_summary

    ev, labels = event_arrays(part.events, when)
    buys = ev.role == R["purchase"]
    x, t_x, age = purchase_summary(ev.code[buys], ev.ts[buys], ev.as_of, ev.n)
    amount = np.nan_to_num(ev.amount[buys])
    _, m = spend_summary(ev.code[buys], ev.ts[buys], amount, ev.as_of, ev.n)
    known = ~np.isnan(x)
    columns = {"x": x, "t_x": t_x, "age": age, "m": m}
    return pd.DataFrame({"customer_id": np.asarray(labels, dtype=object)[known]}
                        | {k: v[known] for k, v in columns.items()})  # fmt: skip


def partition_snapshots(
    part: Tables, dates: list[pd.Timestamp], config: DatasetConfig,
    specs: list[tuple[BTYDFeatures | None, BTYDFeatures | None]],
) -> pd.DataFrame:  # fmt: skip
    """Every snapshot of one partition's customers, oldest first, with ``snapshot``."""
    frames = []
    for k, (as_of, (now, then)) in enumerate(zip(dates, specs, strict=True)):
        options = later = vector_options(part, config)
        if now is not None:
            options, later = options | {"btyd": now}, options | {"btyd": then}
        frames.append(_snapshot(part, to_utc(as_of), config, options, later).assign(snapshot=k))
    return pd.concat(frames, ignore_index=True)
