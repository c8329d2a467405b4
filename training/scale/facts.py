"""What the driver needs to know of the whole data, reduced from the partitions.

With the tables loaded on the workers (:mod:`training.scale.files`), the driver never holds
the events. What the single-process path reads off the whole tables is computed from small
per-partition summaries instead: the time span (``Tables.start`` / ``end``), the roles
present, the labelled dates, the event-type counts, the repeat buyers' gaps and the BG/NBD
fit of :func:`training.resolve.resolve`; and the builder's customer order (for the BG/NBD
fits) from the events file's ``customer_id`` column alone. :func:`resolve_on_cluster` gives
the config ``resolve`` gives on the whole tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features._columns import coerce_str
from features.btyd_features import BTYDFeatures
from features.event_types import normalise_event_type, slug
from features.project import DatasetConfig
from training.resolve import (
    MIN_REPEAT_BUYERS,
    _repeat_gaps,
    _stage_rules,
    definition_updates,
    is_resolved,
    last_as_of,
)
from training.scale.cluster import each
from training.scale.dataset import customer_order, fit_btyd, purchase_summaries

if TYPE_CHECKING:
    from distributed import Client, Future

    from training.datasets import Tables


@dataclass(frozen=True)
class Overview:
    """The whole data as the driver sees it: ``start`` / ``end`` (of the events), the roles
    present, the labelled dates (None without a labels table), whether there are
    subscriptions, the rows of each table, and the builder's customer order."""

    start: pd.Timestamp
    end: pd.Timestamp
    roles: list[str]
    label_dates: pd.DatetimeIndex | None
    subscriptions: bool
    rows: dict[str, int]
    order: pd.Index

    @property
    def labels(self) -> pd.DataFrame | None:
        """The labelled dates as ``plan_snapshots`` reads a labels table."""
        return None if self.label_dates is None else pd.DataFrame({"as_of": self.label_dates})

    def stand_in(self) -> SimpleNamespace:
        """What ``training.resolve``'s helpers read of a Tables: the roles present (as a
        one-column events frame) and whether there are labels and subscriptions."""
        events = pd.DataFrame({"role": self.roles})
        return SimpleNamespace(events=events, labels=self.labels,
                               subscriptions=self.subscriptions or None)  # fmt: skip


def part_facts(part: Tables) -> dict:
    """One partition's span, roles, labelled dates and rows per table."""
    ts = part.events["timestamp"]
    tables = {"events": part.events, "customers": part.customers,
              "exposures": part.exposures, "subscriptions": part.subscriptions,
              "labels": part.labels}  # fmt: skip
    return {
        "start": ts.min(), "end": ts.max(),
        "roles": set(part.events["role"].unique().astype(str)),
        "label_dates": None if part.labels is None else part.labels["as_of"].unique(),
        "rows": {k: len(v) for k, v in tables.items() if v is not None},
    }  # fmt: skip


def overview(client: Client, parts: list[Future], events_path: Path, id_col: str) -> Overview:
    """The :class:`Overview` of the partitions and the events file they were read from."""
    facts = client.gather(each(client, part_facts, parts))
    starts = [f["start"] for f in facts if pd.notna(f["start"])]
    ends = [f["end"] for f in facts if pd.notna(f["end"])]
    dated = [f["label_dates"] for f in facts if f["label_dates"] is not None]
    dates = pd.DatetimeIndex(np.unique(np.concatenate(dated))) if dated else None
    if dates is not None and dates.tz is None:
        dates = dates.tz_localize("UTC")
    rows: dict[str, int] = {}
    for f in facts:
        rows.update({k: rows.get(k, 0) + n for k, n in f["rows"].items()})
    return Overview(min(starts), max(ends), sorted(set().union(*(f["roles"] for f in facts))),
                    dates, "subscriptions" in rows, rows,
                    file_customer_order(events_path, id_col))  # fmt: skip


def file_customer_order(path: Path, column: str) -> pd.Index:
    """``customer_order`` of the events as loaded, from the file's id column alone (the
    categories of a dictionary-encoded column, else the order of first appearance)."""
    import pyarrow.parquet as pq

    ids = pq.read_table(path, columns=[column]).column(column).to_pandas()
    normal, _ = coerce_str(ids)
    return customer_order(pd.DataFrame({"customer_id": normal}))


def resolve_facts(part: Tables, last: pd.Timestamp, summaries: bool) -> dict:
    """What ``resolve`` counts of one partition up to ``last``: event types (normalised),
    the repeat buyers' mean gaps and (``summaries``) the BG/NBD inputs."""
    events = part.events
    types = events.loc[events["timestamp"] <= last, "event_type"] if len(events) else \
        pd.Series([], dtype="str")  # fmt: skip
    counts = types.dropna().astype("str").map(normalise_event_type).value_counts()
    return {"types": counts, "gaps": np.asarray(_repeat_gaps(events, last)),
            "summaries": purchase_summaries(part, last) if summaries else None}  # fmt: skip


def resolve_on_cluster(
    client: Client, parts: list[Future], seen: Overview, config: DatasetConfig
) -> DatasetConfig:
    """``training.resolve.resolve`` of the partitions' whole tables (idempotent)."""
    if is_resolved(config):
        return config
    last = last_as_of(config, seen.end)
    fit = config.btyd_features != "off" and not config.btyd_params
    found = client.gather(each(client, resolve_facts, parts, last=last, summaries=fit))
    stand_in = seen.stand_in()
    updates = definition_updates(stand_in, config)
    if config.event_types is None:
        counts = [f["types"] for f in found if len(f["types"])]
        total = pd.concat(counts).groupby(level=0).sum() if counts else pd.Series(dtype=int)
        updates["event_types"] = top_types(total, config.event_types_top_n)
    gaps = np.concatenate([f["gaps"] for f in found])
    if config.btyd_features == "auto":
        updates["btyd_features"] = "on" if len(gaps) >= MIN_REPEAT_BUYERS else "off"
    if updates.get("btyd_features", config.btyd_features) == "on" and not config.btyd_params:
        updates["btyd_params"] = btyd_params(found, seen.order, config.churn_horizon_days)
    stages = _stage_rules(stand_in, config, gaps)
    if stages is not config.stages:
        updates["stages"] = stages
    if not updates:
        return config
    return DatasetConfig.model_validate({**config.model_dump(), **updates})


def top_types(counts: pd.Series, n: int) -> tuple[str, ...]:
    """``features.event_types.top_event_types`` from counts per normalised type."""
    if n <= 0:
        return ()
    ranked = sorted(((str(k), int(v)) for k, v in counts.items()), key=lambda kv: (-kv[1], kv[0]))
    chosen: dict[str, str] = {}
    for name, _ in ranked:
        chosen.setdefault(slug(name), name)
    return tuple(chosen.values())[:n]


def btyd_params(found: list[dict], order: pd.Index, horizon: int) -> dict | None:
    """``training.resolve._btyd_params``: the BG/NBD (and Gamma-Gamma) fit on every buyer's
    summary, in the builder's customer order, rounded as there."""
    summaries = pd.concat([f["summaries"] for f in found])
    spec = fit_btyd(summaries, order, BTYDFeatures(horizon_days=horizon))
    return None if spec.fitted is None else {k: round(v, 6) for k, v in spec.fitted.items()}
