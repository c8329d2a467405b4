"""Plain summaries of a data set, for the demo and for a first look in a notebook."""

from __future__ import annotations

import pandas as pd


def events_by_role(events: pd.DataFrame) -> pd.Series:
    """Event count per lifecycle role; ``events`` as returned by ``load_events`` (has ``role``)."""
    return events["role"].value_counts().rename("events")


def conversion_by_arm(exposures: pd.DataFrame) -> pd.DataFrame:
    """Per offer arm (``control`` = held-out): sends, conversions and conversion rate.

    Input columns: ``offer_id`` (NA = control), ``converted``. Output index: arm; columns
    ``sent``, ``converted``, ``conversion_rate``. Rates are not comparable across arms when arms
    go to different segments: estimate uplift with the logged propensities instead.
    """
    arm = exposures["offer_id"].astype("object").where(exposures["offer_id"].notna(), "control")
    conv = exposures["converted"].astype("float64")
    table = conv.groupby(arm).agg(sent="size", converted="sum", conversion_rate="mean")
    return table.sort_values("sent", ascending=False)


def churn_rate(truth_customers: pd.DataFrame, end: pd.Timestamp) -> float:
    """Share of customers who had bought by ``end`` and were churned at ``end`` (ground truth)."""
    bought = truth_customers["first_purchase_at"].notna()
    churned = truth_customers["final_stage"].astype("object") == "churned"
    return float((churned & bought).sum() / max(int(bought.sum()), 1))


def stage_distribution(stages: pd.Series) -> pd.DataFrame:
    """Count and share per stage, in lifecycle order when ``stages`` is categorical."""
    counts = stages.value_counts(sort=False)
    return pd.DataFrame({"customers": counts, "share": counts / counts.sum()})
