"""The project config, ``lifecycle.yaml``: one object read by every command, the Python API
and the service (DESIGN section 12).

It says how to read the user's tables (file, format, column names, date format), which role
each of their event types plays, what churn means for this business and who gets scored, the
stage-rule thresholds, the snapshot calendar, the feature families, and the models' settings.
Every section is optional; unknown keys are rejected with the file and field named.

>>> config = ProjectConfig.from_yaml("lifecycle.yaml")   # or load_project_config(None)
>>> config.dataset.churn_definition
'auto'
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from features.roles import Role, RoleMap, default_role_map
from features.stages import StageRules
from features.yaml_config import load_yaml_model

CONFIG_ENV = "LIFECYCLE_CONFIG"
FileFormat = Literal["auto", "csv", "tsv", "whitespace", "parquet"]
ChurnDefinition = Literal["auto", "inactivity", "rhythm", "contract", "cancel", "labels"]
Population = Literal["auto", "all", "buyers", "active_buyers", "contract_holders", "labelled"]
QUALIFYING_ROLES: tuple[Role, ...] = ("visit", "engagement", "intent", "purchase", "support")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TableConfig(_Strict):
    """How to read one of the user's tables.

    ``path``: the file, relative to the data folder (default ``<table>`` with any known
    suffix: .parquet, .csv, .tsv, .txt). ``format``: csv, tsv, whitespace (columns separated
    by runs of spaces or tabs), parquet, or auto (from the suffix). ``columns``: contract
    column -> the file's column name (``{customer_id: cust, timestamp: day}``).
    ``constants``: contract column -> one value for every row (``{event_type: purchase}`` for a
    transaction log). ``time_format``: strftime format of the timestamp columns, e.g.
    ``"%Y%m%d"`` (integer dates like 20250314 are also recognised without it); None reads
    ISO 8601 and similar text.
    """

    path: str | None = None
    format: FileFormat = "auto"
    columns: dict[str, str] = Field(default_factory=dict)
    constants: dict[str, str] = Field(default_factory=dict)
    time_format: str | None = None


class DataConfig(_Strict):
    """The user's tables. Only events are required; the others are read when their file is
    there (or named). ``deduplicate``: drop exact duplicate rows (switch off for logs with
    genuine repeats, e.g. two identical purchases on one day)."""

    events: TableConfig = Field(default_factory=TableConfig)
    customers: TableConfig = Field(default_factory=TableConfig)
    offers: TableConfig = Field(default_factory=TableConfig)
    exposures: TableConfig = Field(default_factory=TableConfig)
    subscriptions: TableConfig = Field(default_factory=TableConfig)
    labels: TableConfig = Field(default_factory=TableConfig)
    deduplicate: bool = True


class RolesConfig(_Strict):
    """Event type -> role. ``mapping`` adds to (or overrides) the packaged defaults; with
    ``use_defaults: false`` it replaces them."""

    mapping: dict[str, Role] = Field(default_factory=dict)
    use_defaults: bool = True

    def role_map(self) -> RoleMap:
        base = default_role_map() if self.use_defaults else RoleMap(mapping={})
        return base.with_overrides(self.mapping) if self.mapping else base


class DatasetConfig(_Strict):
    """What a training set is: labels, population, calendar and features.

    Churn (``churn_definition``; ``auto`` picks from the data: ``labels`` with a labels table,
    ``contract`` with a subscriptions table, ``rhythm`` for purchase-only logs, else
    ``inactivity``):

    - ``inactivity``: no event of ``qualifying_roles`` in ``(as_of, as_of + horizon]``;
    - ``rhythm``: no purchase in the horizon, and by its end the customer is overdue by more
      than ``rhythm_multiple`` times their own usual gap between purchases (one-time buyers:
      the population's median gap);
    - ``contract``: a contract active at ``as_of`` ends within the horizon and is not renewed
      within ``grace_days`` (subscriptions table), or, without one, a subscription cancel
      event in the horizon (``cancel`` is the same rule on events only);
    - ``labels``: the user's table ``customer_id, as_of, label``.

    ``population`` (who is scored and trained on; ``auto`` = everyone the definition applies
    to: buyers for inactivity and rhythm, contract holders for contract, the labelled rows
    for labels): ``all`` customers, ``buyers`` (bought at least once), ``active_buyers``
    (buyers whose rule stage is not churned), ``contract_holders``, ``labelled``.

    Calendar (``training.calendar``): the test and validation dates end at ``last_as_of``
    (default: the data's end minus the horizon), ``snapshot_every_days`` apart; then
    ``train_snapshots`` training dates going back from the validation date minus the horizon,
    none before ``first_as_of`` (default: the data's start plus ``min_history_days``). With
    ``snapshots: N``, N consecutive dates ending at ``last_as_of`` instead.

    Features: the ``feature_set``, plus per-type features for ``event_types`` (None: the
    ``event_types_top_n`` most frequent types), buy-till-you-die features
    (``btyd_features``; auto: on when customers buy repeatedly; ``btyd_params``: the BG/NBD
    and Gamma-Gamma parameters fitted at the last as-of date, recorded at training: training
    refits at each snapshot, serving scores with them), among them customer lifetime value
    (``clv_*``: the discounted expected margin over ``clv_horizon_days``), contract features
    when there is a subscriptions table; constant or empty columns are dropped before a model
    sees them (``drop_constant_features``).
    """

    feature_set: str = "default"
    event_types_top_n: int = Field(20, ge=0)
    btyd_features: Literal["auto", "on", "off"] = "auto"
    btyd_params: dict[str, float] | None = None
    clv_horizon_days: int = Field(365, ge=1)
    clv_annual_discount_rate: float = Field(0.1, ge=0.0, lt=10.0)
    clv_margin_share: float = Field(1.0, gt=0.0, le=1.0)
    drop_constant_features: bool = True
    response_window_days: int = Field(14, ge=1)
    churn_definition: ChurnDefinition = "auto"
    churn_horizon_days: int = Field(60, ge=1)
    qualifying_roles: tuple[Role, ...] = QUALIFYING_ROLES
    rhythm_multiple: float = Field(3.0, gt=0)
    grace_days: int = Field(7, ge=0)
    population: Population = "auto"
    stage_horizon_days: int = Field(30, ge=1)
    stages: StageRules = Field(default_factory=StageRules)
    snapshot_every_days: int = Field(30, ge=1)
    snapshots: int | None = Field(None, ge=1)
    train_snapshots: int = Field(4, ge=1)
    event_types: tuple[str, ...] | None = None
    first_as_of: date | None = None
    last_as_of: date | None = None
    min_history_days: int = Field(60, ge=0)
    validation_snapshots: int = Field(1, ge=0)
    test_snapshots: int = Field(1, ge=0)

    @property
    def horizon_days(self) -> int:
        return max(self.churn_horizon_days, self.stage_horizon_days)

    @model_validator(mode="after")
    def _calendar_order(self) -> DatasetConfig:
        if self.first_as_of and self.last_as_of and self.first_as_of > self.last_as_of:
            raise ValueError(
                f"first_as_of ({self.first_as_of}) must not be after last_as_of ({self.last_as_of})"
            )
        return self

    @classmethod
    def from_yaml(cls, path: str | Path) -> DatasetConfig:
        return load_yaml_model(cls, path)


class DaskConfig(_Strict):
    """Where training and batch scoring run (DESIGN section 9). ``scheduler``: None runs in
    this process (pandas); ``"local"`` starts a ``LocalCluster`` of ``workers`` processes with
    one thread each (``memory_limit`` per worker, e.g. ``"2GiB"``); ``"env"`` connects to
    ``$DASK_SCHEDULER_ADDRESS``; any other value is a scheduler address (``tcp://host:8786``),
    as ``features.dask_builder.connect`` takes it. ``partitions``: customer partitions of the
    training set and of ``lifecycle score --all`` (default: 4 per worker)."""

    scheduler: str | None = None
    workers: int = Field(2, ge=1)
    memory_limit: str | None = None
    partitions: int | None = Field(None, ge=1)


class ProjectConfig(_Strict):
    """``lifecycle.yaml``: data, roles, dataset (labels, population, stages, calendar,
    features) and the models' parameters (``churn``, ``stage``, ``offers``, ``clv``: keyword
    arguments of ChurnModel, StageModel, UpliftModel and CLVModel), ``seed``, and where the
    work runs (``dask``: :class:`DaskConfig`; not part of the fingerprint)."""

    data: DataConfig = Field(default_factory=DataConfig)
    roles: RolesConfig = Field(default_factory=RolesConfig)
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    churn: dict = Field(default_factory=dict, description="ChurnModel parameters")
    stage: dict = Field(default_factory=dict, description="StageModel parameters")
    offers: dict = Field(default_factory=dict, description="UpliftModel parameters")
    clv: dict = Field(default_factory=dict, description="CLVModel parameters")
    seed: int = 0
    dask: DaskConfig = Field(default_factory=DaskConfig)

    @classmethod
    def from_yaml(cls, path: str | Path) -> ProjectConfig:
        return load_yaml_model(cls, path)

    def role_map(self) -> RoleMap:
        return self.roles.role_map()

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)

    def fingerprint(self) -> str:
        """A short digest of everything that shapes feature vectors (roles, dataset)."""
        parts = {"roles": self.role_map().mapping, "dataset": self.dataset.model_dump(mode="json")}
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def find_project_config(
    path: str | Path | None = None, data_dir: str | Path | None = None
) -> Path | None:
    """Which config file applies: ``path``, else ``$LIFECYCLE_CONFIG``, else
    ``<data_dir>/lifecycle.yaml`` when it exists, else None (the defaults). A named file that
    does not exist is an error."""
    named = path or os.environ.get(CONFIG_ENV)
    if named:
        if not Path(named).is_file():
            where = "--config" if path else CONFIG_ENV
            raise FileNotFoundError(f"project config {named} ({where}) does not exist")
        return Path(named)
    beside = Path(data_dir) / "lifecycle.yaml" if data_dir is not None else None
    return beside if beside is not None and beside.is_file() else None


def load_project_config(
    path: str | Path | None = None, data_dir: str | Path | None = None
) -> ProjectConfig:
    """The project config :func:`find_project_config` picks, or the defaults."""
    found = find_project_config(path, data_dir)
    return ProjectConfig.from_yaml(found) if found else ProjectConfig()


def recorded_config(model: object) -> ProjectConfig | None:
    """The resolved project config a trained model records (``lifecycle_config_``), or None
    for a model trained before models recorded it."""
    text = getattr(model, "lifecycle_config_", None)
    return ProjectConfig.model_validate_json(text) if text else None
