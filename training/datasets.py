"""Training sets stacked over as-of snapshots, with time-ordered splits.

Each snapshot holds the features as of that date (the same builder as serving), the current
rule stage, and the labels looking forward from it. Later snapshots validate earlier ones;
nothing is shuffled across time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from features.builder import build_features, to_utc
from features.labels import churn_labels, future_stage
from features.stages import StageRules, assign_stages
from features.yaml_config import load_yaml_model

CHURN_POPULATION = ("purchase", "retention", "advocacy", "at_risk")


class DatasetConfig(BaseModel):
    """The one config of the training-set pipeline (YAML via :meth:`from_yaml`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    feature_set: str = "default"
    response_window_days: int = Field(14, ge=1)
    churn_definition: Literal["inactivity", "cancel"] = "inactivity"
    churn_horizon_days: int = Field(60, ge=1)
    stage_horizon_days: int = Field(30, ge=1)
    snapshot_every_days: int = Field(30, ge=1)
    snapshots: int = Field(6, ge=1)
    validation_snapshots: int = Field(1, ge=0)
    test_snapshots: int = Field(1, ge=0)

    @property
    def horizon_days(self) -> int:
        return max(self.churn_horizon_days, self.stage_horizon_days)

    @classmethod
    def from_yaml(cls, path: str | Path) -> DatasetConfig:
        return load_yaml_model(cls, path)


@dataclass(frozen=True)
class Tables:
    """Validated input tables (``.data`` of the loaders); only ``events`` is required."""

    events: pd.DataFrame
    customers: pd.DataFrame | None = None
    offers: pd.DataFrame | None = None
    exposures: pd.DataFrame | None = None

    @property
    def end(self) -> pd.Timestamp:
        return self.events["timestamp"].max()


def snapshot_dates(end: pd.Timestamp, config: DatasetConfig) -> list[pd.Timestamp]:
    """``config.snapshots`` as-of dates (midnight UTC), the last one leaving a full horizon
    before ``end``, spaced ``snapshot_every_days`` apart, oldest first."""
    last = (to_utc(end) - pd.Timedelta(days=config.horizon_days)).floor("D")
    step = pd.Timedelta(days=config.snapshot_every_days)
    return [last - step * k for k in reversed(range(config.snapshots))]


def build_snapshot(tables: Tables, as_of: pd.Timestamp, config: DatasetConfig) -> pd.DataFrame:
    """Features, current stage and labels of every customer known at ``as_of``.

    Added columns: ``as_of``, ``stage`` (rule stage now), ``in_churn_population`` (bought and
    not churned now), ``churned`` (0/1 label), ``stage_next`` (rule stage after the horizon).
    """
    frame = build_features(tables.events, as_of, config.feature_set, tables.customers,
                           tables.exposures, tables.offers,
                           config.response_window_days)  # fmt: skip
    ids = frame["customer_id"]
    frame.insert(0, "as_of", as_of)
    frame["stage"] = assign_stages(frame, StageRules()).to_numpy()
    frame["in_churn_population"] = frame["stage"].isin(CHURN_POPULATION).to_numpy()
    frame["churned"] = churn_labels(tables.events, ids, as_of, config.churn_horizon_days,
                                    config.churn_definition)  # fmt: skip
    frame["stage_next"] = future_stage(
        tables.events, ids, as_of, config.stage_horizon_days, tables.customers
    ).to_numpy()
    return frame


def build_training_set(
    tables: Tables, config: DatasetConfig | None = None, progress: bool = False
) -> pd.DataFrame:
    """All snapshots stacked, oldest first, with a ``snapshot`` index column (0 = oldest)."""
    config = config or DatasetConfig()
    dates = snapshot_dates(tables.end, config)
    parts = []
    for k, as_of in enumerate(tqdm(dates, desc="snapshots", disable=not progress)):
        parts.append(build_snapshot(tables, as_of, config).assign(snapshot=k))
    return pd.concat(parts, ignore_index=True)


def time_split(frame: pd.DataFrame, config: DatasetConfig) -> dict[str, pd.DataFrame]:
    """Split by snapshot: the last ``test_snapshots`` test, the ``validation_snapshots``
    before them validate, the rest train. Training snapshots whose label window reaches past
    the first later snapshot are dropped (no overlap of label windows and evaluation dates).
    """
    dates = np.sort(frame["as_of"].unique())
    n_eval = config.validation_snapshots + config.test_snapshots
    if n_eval >= len(dates):
        raise ValueError(
            f"{len(dates)} snapshots cannot give {config.validation_snapshots} validation and "
            f"{config.test_snapshots} test snapshots and leave any to train on"
        )
    test_from = dates[len(dates) - config.test_snapshots] if config.test_snapshots else None
    valid_from = dates[len(dates) - n_eval]
    horizon = pd.Timedelta(days=config.horizon_days)
    train = frame[frame["as_of"] + horizon <= valid_from]
    rest = frame[frame["as_of"] >= valid_from]
    if test_from is None:
        return {"train": train, "validation": rest, "test": rest.iloc[:0]}
    return {
        "train": train,
        "validation": rest[rest["as_of"] < test_from],
        "test": rest[rest["as_of"] >= test_from],
    }
