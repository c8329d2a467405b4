"""Lifecycle stages by transparent, configurable rules over as-of features (DESIGN section 5).

>>> rules = StageRules()                      # the defaults in default_stages.yaml
>>> stages = assign_stages(build_features(events, as_of), rules)
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from features.contracts import STAGES
from features.yaml_config import load_yaml_model

# Rule-based stages: win_back is a move (churned -> buying again), seen in transitions.
RULE_STAGES = tuple(s for s in STAGES if s != "win_back")
STAGE_DTYPE = pd.CategoricalDtype(list(STAGES))
DEFAULT_STAGES_FILE = "default_stages.yaml"


class StageRules(BaseModel):
    """Thresholds of the stage rules; see ``features/default_stages.yaml`` for their meaning."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    inactivity_days: float = Field(60, gt=0)
    prospect_inactivity_days: float = Field(30, gt=0)
    at_risk_interval_ratio: float = Field(5.0, gt=0)
    at_risk_min_days: float = Field(120, ge=0)
    at_risk_trend_below: float = Field(0.25, ge=0)
    advocacy_window_days: Literal[90, 365] = 90
    advocacy_min_score: float = 10
    new_customer_days: float = Field(60, gt=0)
    recent_days: Literal[7, 30, 90, 365] = 30
    churn_rule: Literal["window", "rhythm"] = "window"
    rhythm_churned_multiple: float = Field(3.0, gt=0)
    rhythm_at_risk_multiple: float = Field(1.5, gt=0)
    typical_gap_days: float | None = Field(None, gt=0)
    min_gap_days: float = Field(7, gt=0)
    p_alive_churned_below: float | None = Field(None, ge=0, le=1)

    @classmethod
    def from_yaml(cls, path: str | Path | None = None) -> StageRules:
        """Rules from a YAML file (default: the packaged defaults); errors name file and field."""
        if path is None:
            text = resources.files("features").joinpath(DEFAULT_STAGES_FILE).read_text()
            return load_yaml_model(cls, DEFAULT_STAGES_FILE, text=text)
        return load_yaml_model(cls, path)

    def required_features(self) -> tuple[str, ...]:
        w, a = self.recent_days, self.advocacy_window_days
        return ("recency_days", "purchases_total", "purchases_30d", "purchase_recency_days",
                "purchase_recency_vs_interval", "events_trend_30d_vs_90d",
                "days_since_first_purchase", "subscription_cancels_365d",
                "subscription_starts_365d", f"referrals_{a}d", f"reviews_{a}d",
                "feedback_last_score", f"intents_{w}d", f"engagements_{w}d",
                f"signups_{w}d")  # fmt: skip

    def optional_features(self) -> tuple[str, ...]:
        """Used when present (missing values count as unknown)."""
        return ("cancel_recency_days", "subscription_start_recency_days",
                "purchase_interval_mean_days", "contract_active", "contract_periods_total",
                "btyd_p_alive")  # fmt: skip


def assign_stages(features: pd.DataFrame, rules: StageRules | None = None) -> pd.Series:
    """The current stage of each row of a feature frame (``build_features`` output).

    Returns a categorical Series over STAGES aligned with ``features`` (never ``win_back``).
    """
    rules = rules or StageRules()
    missing = [c for c in rules.required_features() if c not in features.columns]
    if missing:
        raise ValueError(f"stage rules need features {missing}; use the 'default' feature set")
    f = {c: features[c].to_numpy(dtype="float64") for c in rules.required_features()}
    nan = np.full(len(features), np.nan)
    f |= {c: features[c].to_numpy(dtype="float64") if c in features.columns else nan
          for c in rules.optional_features()}  # fmt: skip
    conditions = _conditions(f, rules)
    choice = np.select(list(conditions.values()), list(conditions), default="awareness")
    return pd.Series(pd.Categorical(choice, dtype=STAGE_DTYPE), index=features.index)


def _conditions(f: dict[str, np.ndarray], r: StageRules) -> dict[str, np.ndarray]:
    """Stage -> boolean mask, in precedence order (first match wins)."""
    bought = f["purchases_total"] > 0
    silent, lapsing = _lapse(f, r)
    fading = (f["events_trend_30d_vs_90d"] < r.at_risk_trend_below) & (f["purchases_total"] >= 2)
    a, w = r.advocacy_window_days, r.recent_days
    promoter = (f[f"referrals_{a}d"] + f[f"reviews_{a}d"] > 0) | (
        f["feedback_last_score"] >= r.advocacy_min_score
    )
    return {
        "churned": np.where(bought, silent, f["recency_days"] > r.prospect_inactivity_days)
        | _cancelled(f),
        "at_risk": bought & (lapsing | fading),
        "advocacy": (f["purchases_total"] >= 2) & promoter,
        "purchase": bought
        & (
            (f["days_since_first_purchase"] <= r.new_customer_days) | (f["purchases_total"] == 1)
        ),  # fmt: skip
        "retention": bought,
        "evaluation": f[f"intents_{w}d"] > 0,
        "engagement": (f[f"engagements_{w}d"] > 0) | (f[f"signups_{w}d"] > 0),
    }


def _lapse(f: dict[str, np.ndarray], r: StageRules) -> tuple[np.ndarray, np.ndarray]:
    """(silent long enough to be churned, lapsing enough to be at risk) for buyers.

    ``window``: no activity for ``inactivity_days``; at risk past ``at_risk_interval_ratio``
    times the own mean gap (and ``at_risk_min_days``). ``rhythm``: days since the last purchase
    over the usual gap (own mean gap for repeat buyers, else ``typical_gap_days``, at least
    ``min_gap_days``) above ``rhythm_churned_multiple`` / ``rhythm_at_risk_multiple``; or
    P(alive) below ``p_alive_churned_below`` when the buy-till-you-die features are there.
    """
    if r.churn_rule == "window":
        lapsing = (f["purchase_recency_vs_interval"] > r.at_risk_interval_ratio) & (
            f["purchase_recency_days"] > r.at_risk_min_days
        )
        return f["recency_days"] > r.inactivity_days, lapsing
    typical = r.typical_gap_days or _median_gap(f)
    own = np.where(f["purchases_total"] >= 2, f["purchase_interval_mean_days"], np.nan)
    gap = np.maximum(np.where(np.isnan(own), typical, own), r.min_gap_days)
    overdue = f["purchase_recency_days"] / gap
    silent = overdue > r.rhythm_churned_multiple
    if r.p_alive_churned_below is not None:
        silent |= f["btyd_p_alive"] < r.p_alive_churned_below
    return silent, overdue > r.rhythm_at_risk_multiple


def _median_gap(f: dict[str, np.ndarray]) -> float:
    gaps = f["purchase_interval_mean_days"][f["purchases_total"] >= 2]
    gaps = gaps[np.isfinite(gaps)]
    return float(np.median(gaps)) if len(gaps) else 90.0


def _cancelled(f: dict[str, np.ndarray]) -> np.ndarray:
    """The latest contract event is a cancel (no start and no purchase since), or the
    subscriptions table shows every contract ended."""
    cancel = f["cancel_recency_days"]
    since = np.fmin(f["subscription_start_recency_days"], f["purchase_recency_days"])
    by_event = ~np.isnan(cancel) & (np.isnan(since) | (cancel < since))
    ended = (f["contract_periods_total"] > 0) & (f["contract_active"] == 0)
    return by_event | ended


def stage_funnel(stages: pd.Series) -> pd.DataFrame:
    """Customers and share per stage, in lifecycle order (zero rows kept)."""
    counts = stages.astype(STAGE_DTYPE).value_counts(sort=False).reindex(STAGES, fill_value=0)
    return pd.DataFrame({"customers": counts, "share": counts / max(int(counts.sum()), 1)})


def transition_matrix(
    before: pd.DataFrame, after: pd.DataFrame, normalize: bool = True
) -> pd.DataFrame:
    """Stage-to-stage moves between two dates.

    ``before`` and ``after`` have ``customer_id`` and ``stage``; customers present only in
    ``after`` count as coming from ``new``. Rows: stage before; columns: stage after; with
    ``normalize`` each row sums to 1 (the share of that stage's customers moving to each).
    """
    prev = before.set_index("customer_id")["stage"].astype("object")
    now = after.set_index("customer_id")["stage"].astype("object")
    src = prev.reindex(now.index).fillna("new")
    table = pd.crosstab(pd.Categorical(src, ["new", *STAGES]), pd.Categorical(now, STAGES),
                        rownames=["from"], colnames=["to"], dropna=False)  # fmt: skip
    if normalize:
        table = table.div(table.sum(axis=1).replace(0, np.nan), axis=0).fillna(0.0)
    return table
