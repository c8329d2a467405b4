"""The decision service's one config: where models, features and the ledger live, the offer
policy's knobs and the request limits (YAML via ``LIFECYCLE_SERVICE_CONFIG``, or env vars).

Nothing is read at import time: the service calls :func:`load_config` in its ``__init__``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from features.yaml_config import describe, load_yaml_model

CONFIG_ENV = "LIFECYCLE_SERVICE_CONFIG"
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_IN_FLIGHT = 16  # see README, "Overload"
ENV_FIELDS = {  # env var -> config field (override the YAML file)
    "LIFECYCLE_MODELS": "models",
    "LIFECYCLE_STORE": "store",
    "LIFECYCLE_LEDGER": "ledger",
    "LIFECYCLE_OFFERS": "offers",
    "LIFECYCLE_API_TOKEN": "api_token",
    "LIFECYCLE_EXPLORATION": "exploration",
    "LIFECYCLE_COLD_START_CONTROL_SHARE": "cold_start_control_share",
    "LIFECYCLE_RELOAD_SECONDS": "reload_seconds",
    "LIFECYCLE_COMPILE_TREES": "compile_trees",
    "LIFECYCLE_COMPILE_CACHE": "compile_cache",
    "LIFECYCLE_PRECOMPUTE_SCORES": "precompute_scores",
    "LIFECYCLE_MONITOR_METRICS": "monitor_metrics",
    "LIFECYCLE_MAX_BODY_BYTES": "max_body_bytes",
    "LIFECYCLE_MAX_IN_FLIGHT": "max_in_flight",
    "LIFECYCLE_FEEDBACK_MAX_AGE_DAYS": "feedback_max_age_days",
    "LIFECYCLE_FEEDBACK_MAX_FUTURE_SECONDS": "feedback_max_future_seconds",
    "LIFECYCLE_CLOCK_FILE": "clock_file",
    "LIFECYCLE_RESERVE_CONTACTS": "reserve_contacts",
    "LIFECYCLE_LEDGER_DURABILITY": "ledger_durability",
}
POLICY_FIELDS = ("exploration", "cold_start_control_share")  # env fields of ``policy``


class PolicyConfig(BaseModel):
    """How the next-best offer is chosen among the eligible ones (``serving/policies.py``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    exploration: float = Field(0.05, ge=0.0, le=0.5, description="epsilon of epsilon-greedy")
    cold_start_control_share: float = Field(
        0.2, gt=0.0, lt=1.0, description="without an offers model (the cold-start policy): the "
        "share of decisions held out as control (no offer) when some offer is eligible; the "
        "rest is uniform over the eligible offers",
    )  # fmt: skip
    retention_value: Literal["clv", "catalog"] = Field(
        "clv", description="what a retention or win-back conversion is worth: 'clv' its margin "
        "(the catalog's value) plus what keeping the customer saves, c / (1 - c) x CLV with c "
        "their churn probability (when the service has a CLV for them); 'catalog' its margin",
    )  # fmt: skip
    keeping_offers: Literal["auto", "retention", "every"] = Field(
        "auto", description="which offers' conversions keep a customer (and so are worth the "
        "saving with retention_value 'clv'): 'auto' every offer when the models learnt churn "
        "as inactivity with purchases qualifying, or rhythm (a purchase is activity: a "
        "customer who buys has not churned by that definition), else retention and win-back "
        "offers (contract, cancel or labels churn); 'retention' or 'every' to say so",
    )  # fmt: skip
    contact_cap: int = Field(3, ge=0, description="max offers sent per customer per window")
    contact_window_days: int = Field(30, ge=1)
    churn_bands: tuple[float, float] = Field(
        (0.2, 0.5), description="churn probability from which risk is medium, then high"
    )

    @field_validator("churn_bands")
    @classmethod
    def _ordered(cls, bands: tuple[float, float]) -> tuple[float, float]:
        low, high = bands
        if not 0.0 < low < high < 1.0:
            raise ValueError(f"churn_bands must satisfy 0 < low < high < 1; got {bands}")
        return bands


class ServiceConfig(BaseModel):
    """Everything the service needs to start.

    ``models`` is ``"registry"`` (the MLflow registry at ``MLFLOW_TRACKING_URI`` or the
    embedded ``sqlite:///mlflow.db``, alias ``alias``) or a folder written by
    ``lifecycle export`` (deployment without the registry).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    models: str = "registry"
    alias: str = "champion"
    store: Path | str = Field(
        Path("store/online.sqlite"), description="the online store: a SQLite file (a path or "
        "sqlite:///PATH), a Redis server, redis://HOST:PORT/DB[?prefix=NAME], or a PostgreSQL "
        "database, postgresql://USER[:PASSWORD]@HOST:PORT/DATABASE[?prefix=SCHEMA]",
    )  # fmt: skip
    ledger: str | Path = Field(
        Path("store/ledger.sqlite"), description="the feedback ledger: a SQLite file (a path "
        "or sqlite:///PATH) or postgresql://USER[:PASSWORD]@HOST:PORT/DATABASE, shared by "
        "replicas (serving/ledger.py)",
    )  # fmt: skip
    ledger_durability: Literal["normal", "full"] = Field(
        "normal", description="how decisions are committed to the ledger: 'normal' (SQLite "
        "synchronous=NORMAL, PostgreSQL synchronous_commit=off: a power loss or an OS crash "
        "may lose the last decisions, a crash of the service never) or 'full' (on disk before "
        "the answer; README, 'Durability'). Feedback is always on disk before its 200",
    )  # fmt: skip
    reserve_contacts: bool | None = Field(
        None, description="read the contacts, decide and record the decisions in one ledger "
        "transaction holding a lock per customer, counting offers decided but not yet reported "
        "sent, so that replicas sharing the ledger cannot both pass a contact cap; None = on "
        "for a PostgreSQL ledger (shared by replicas), off for SQLite",
    )  # fmt: skip
    offers: Path | None = Field(
        None, description="offer catalog (.parquet/.csv); default: the one exported with models"
    )
    api_token: str | None = Field(None, description="require 'Authorization: Bearer <token>'")
    max_ids: int = Field(1000, ge=1, description="customer ids per /decide request")
    batch_max_ids: int = Field(10_000, ge=1, description="customers per /batch request")
    max_events: int = Field(5000, ge=1, description="events per /score request")
    explain_max: int = Field(1000, ge=0, description="customers explained per request")
    reload_seconds: float = Field(10.0, ge=0.0, description="registry poll period; 0 = never")
    lightgbm_threads: int = Field(
        1, ge=1, description="LightGBM threads for requests of at least parallel_rows customers"
    )
    parallel_rows: int = Field(256, ge=1, description="customers from which to use them")
    compile_trees: bool = Field(
        True, description="compile the models' trees to native code in the background after "
        "each load (same answers, ~8x faster for many customers per request)",
    )  # fmt: skip
    compile_cache: Path | None = Field(
        None, description="folder of compiled trees; default ~/.cache/lifecycle/trees"
    )
    precompute_scores: bool = Field(
        True, description="score every stored customer once per store version and models "
        "(in the background) and decide for stored customers from those scores",
    )  # fmt: skip
    max_body_bytes: int = Field(
        DEFAULT_MAX_BODY_BYTES, ge=1024, description="request bodies above this get a 413 "
        "before they are read (a /batch of 10,000 ids is about 150 KB)",
    )  # fmt: skip
    max_in_flight: int = Field(
        DEFAULT_MAX_IN_FLIGHT, ge=0, description="requests in flight per worker (their body "
        "received) beyond which a request gets a 503 with Retry-After at once instead of "
        "queueing; the probes and /metrics are never refused; 0 = no limit",
    )  # fmt: skip
    monitor_metrics: Path | None = Field(
        None, description="a `lifecycle monitor` gauges file (monitor.prom) to re-expose on "
        "/metrics, re-read when it changes",
    )  # fmt: skip
    monitor_refresh_seconds: float = Field(
        60.0, gt=0, description="how often to look for a new monitor_metrics file"
    )
    feedback_max_age_days: float = Field(
        400.0, gt=0, description="feedback whose occurred_at is older than this is refused "
        "(kept in feedback_rejected with the reason): a year-1 time is a client's bug",
    )  # fmt: skip
    feedback_max_future_seconds: float = Field(
        300.0, ge=0, description="clock skew allowed for feedback times ahead of the server's "
        "clock; later ones are refused (a 'sent' dated 2999 would block an offer until then)",
    )  # fmt: skip
    clock_file: Path | None = Field(
        None, description="simulations and replays only: read 'now' from this file (ISO-8601, "
        "re-read when it changes) instead of the system clock (serving/clock.py)",
    )  # fmt: skip
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    seed: int | None = Field(
        None, description="seed of the offer policies' RNG (exploration, cold start); None = random"
    )

    @field_validator("store", mode="before")
    @classmethod
    def _store_location(cls, value: object) -> object:
        """Paths stay paths; a URL stays text (a Path would fold ``//``), its kind checked."""
        from features.store import open_store
        from features.store.factory import is_url

        if isinstance(value, str) and is_url(value):
            open_store(value)  # ValueError naming the supported kinds; connects to nothing
            return value
        return Path(value) if isinstance(value, str) else value

    @property
    def exploration(self) -> float:
        return self.policy.exploration

    @property
    def reserves_contacts(self) -> bool:
        """Whether ``/decide`` reserves contacts (``reserve_contacts``, None resolved by the
        ledger's kind: a PostgreSQL ledger is the one replicas share)."""
        if self.reserve_contacts is not None:
            return self.reserve_contacts
        from training.ledger_tables import parse_location

        return parse_location(self.ledger)[0] == "postgresql"


def load_config(environ: dict[str, str] | None = None) -> ServiceConfig:
    """The YAML file named by ``LIFECYCLE_SERVICE_CONFIG`` (if any), then env overrides."""
    env = os.environ if environ is None else environ
    data: dict = {}
    if env.get(CONFIG_ENV):
        data = load_yaml_model(ServiceConfig, env[CONFIG_ENV]).model_dump(exclude_unset=True)
    used = {var: field for var, field in ENV_FIELDS.items() if env.get(var)}
    for var, field in used.items():
        if field in POLICY_FIELDS:
            data["policy"] = {**dict(data.get("policy", {})), field: env[var]}
        else:
            data[field] = env[var]
    try:
        return ServiceConfig.model_validate(data)
    except ValidationError as err:
        source = ", ".join([env.get(CONFIG_ENV) or "", *used]).strip(", ") or "defaults"
        raise ValueError(f"service config ({source}): {describe(err)}") from None
