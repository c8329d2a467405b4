"""The simulator's one config object."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from features.yaml_config import load_yaml_model


class SimConfig(BaseModel):
    """Everything that shapes a simulated data set; the same config and seed give the same data.

    Loaded from YAML with :meth:`from_yaml`; unknown keys are rejected.

    ``profile`` picks the data shape (:mod:`features.simulator.profiles`). The other profiles
    read ``customers``, ``days``, ``start`` and ``seed`` (``purchase_only`` also
    ``initial_share``); every other field shapes the default profile only: the profiles ignore
    it, and the cross-field checks of the campaign windows apply to the default profile only.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    customers: int = Field(10_000, ge=1, description="number of customers ever seen")
    days: int = Field(365, ge=30, le=3650, description="length of the event log in days")
    start: date = Field(date(2025, 1, 1), description="first day of the event log (UTC)")
    seed: int = Field(0, ge=0)
    initial_share: float = Field(
        0.5, ge=0, le=1, description="share of customers already known on day 0 (with history)"
    )
    event_rate_scale: float = Field(0.5, gt=0, description="multiplies every event rate")
    campaign_every_days: int = Field(7, ge=1, description="a randomised campaign every N days")
    campaign_first_day: int = Field(21, ge=0)
    campaign_share: float = Field(
        0.06, gt=0, le=1, description="share of contactable customers in each campaign"
    )
    response_window_days: int = Field(14, ge=1, description="conversion window after a send")
    snapshot_every_days: int = Field(30, ge=1, description="spacing of ground-truth snapshots")
    snapshot_first_day: int = Field(90, ge=0)
    churn_horizons_days: tuple[int, ...] = Field(
        (30, 60, 90), description="horizons of the true churn probabilities in the snapshots"
    )
    stage_horizon_days: int = Field(30, ge=1, description="horizon of the true next-stage mix")
    future_days: int = Field(
        365,
        ge=0,
        le=3650,
        description="days simulated after the log for the truth only (no campaigns, no "
        "arrivals): each customer's purchases_next_<d>d and spend_next_<d>d in truth/customers",
    )
    held_back_offers: tuple[str, ...] = Field(
        (), description="offers of the catalog the log's campaigns never send and the written "
        "catalog lacks until the closed loop adds them (World.add_offer): a new offer mid-run",
    )  # fmt: skip
    profile: Literal["default", "purchase_only", "subscription"] = Field(
        "default",
        description="data shape: 'default' (rich lifecycle events, campaigns, truth snapshots), "
        "'purchase_only' (a retailer's transaction log) or 'subscription' (a social app's "
        "events, accounts and billing periods)",
    )

    @model_validator(mode="after")
    def _check_windows(self) -> SimConfig:
        if self.profile != "default":
            return self  # the windows below shape the default profile only
        from features.simulator.catalog import ARMS

        unknown = sorted(set(self.held_back_offers) - set(ARMS[1:]))
        if unknown:
            raise ValueError(f"held_back_offers: {unknown} are not offers of the catalog "
                             f"({', '.join(ARMS[1:])})")  # fmt: skip
        if not self.churn_horizons_days or min(self.churn_horizons_days) < 1:
            raise ValueError("churn_horizons_days must list horizons >= 1 day")
        if self.campaign_first_day >= self.days - self.response_window_days:
            raise ValueError(
                f"campaign_first_day must leave a response window before the end: "
                f"got {self.campaign_first_day} with days={self.days}"
            )
        return self

    @property
    def max_horizon(self) -> int:
        return max(max(self.churn_horizons_days), self.stage_horizon_days)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: object) -> SimConfig:
        """Read a config file; errors name the file and the field."""
        return load_yaml_model(cls, path, **overrides)
