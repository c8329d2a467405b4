"""Plain summaries of a data set, for the demo and for a first look in a notebook."""

from __future__ import annotations

import pandas as pd


def events_by_role(events: pd.DataFrame) -> pd.Series:
    """Event count per lifecycle role; ``events`` as returned by ``load_events`` (has ``role``)."""
    return events["role"].value_counts().rename("events")


def conversion_by_arm(exposures: pd.DataFrame) -> pd.DataFrame:
    """Per offer arm (``control`` = held-out): sends, conversion rate and the naive lift.

    Input columns: ``offer_id`` (NA = control), ``converted``. Output index: arm; columns
    ``sent``, ``converted``, ``conversion_rate``, ``diff_vs_control`` (conversion rate minus the
    control's over all sends: a naive difference, since arms go to different segments).
    """
    arm = exposures["offer_id"].astype("object").where(exposures["offer_id"].notna(), "control")
    conv = exposures["converted"].astype("float64")
    table = conv.groupby(arm).agg(sent="size", converted="sum", conversion_rate="mean")
    control_rate = (
        table.loc["control", "conversion_rate"] if "control" in table.index else float("nan")
    )
    table["diff_vs_control"] = table["conversion_rate"] - control_rate
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
