"""Plain summaries of a data set, for the demo and for a first look in a notebook."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.contracts import STAGES


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


def _month_number(timestamps: pd.Series) -> pd.Series:
    """Months since year 0 of each (UTC) timestamp: 2025-01 -> 2025 * 12 + 0."""
    ts = pd.to_datetime(timestamps, utc=True)
    return ts.dt.year * 12 + ts.dt.month - 1


def cohort_retention(
    events: pd.DataFrame,
    roles: tuple[str, ...] = ("purchase",),
    max_months: int = 12,
    min_customers: int = 1,
) -> pd.DataFrame:
    """Share of each first-purchase cohort active in each month after its first purchase.

    Parameters
    ----------
    events : validated events with ``customer_id``, ``timestamp`` and ``role``.
    roles : the roles that count as "active" in a month (default: a purchase).
    max_months : the last month since the first purchase to report.
    min_customers : cohorts with fewer customers are left out (their shares are noise).

    Returns
    -------
    DataFrame indexed by cohort (the calendar month of the first purchase, ``"2025-03"``),
    one column per month since it (``0..max_months``): the share of the cohort's customers
    with an event of ``roles`` in that calendar month. Months after the data's last month are
    NaN (not observed yet); the last month may be partly observed.
    """
    frame = pd.DataFrame({"id": events["customer_id"].astype("str").to_numpy(),
                          "month": _month_number(events["timestamp"]).to_numpy(),
                          "role": events["role"].astype("str").to_numpy()})  # fmt: skip
    first = frame[frame["role"] == "purchase"].groupby("id")["month"].min()
    active = frame[frame["role"].isin(roles)]
    cohort = first.reindex(active["id"]).to_numpy()
    pairs = pd.DataFrame({"cohort": cohort, "k": active["month"].to_numpy() - cohort,
                          "id": active["id"].to_numpy()}).dropna(subset=["cohort"])  # fmt: skip
    pairs = (
        pairs[(pairs["k"] >= 0) & (pairs["k"] <= max_months)]
        .drop_duplicates()
        .astype({"cohort": int, "k": int})
    )
    counts = pairs.groupby(["cohort", "k"]).size().unstack(fill_value=0)
    months = range(max_months + 1)
    sizes = first.value_counts().sort_index()
    sizes = sizes[sizes >= min_customers]
    table = counts.reindex(index=sizes.index, columns=months, fill_value=0).div(sizes, axis=0)
    last = frame["month"].max()
    observed = (sizes.index.to_numpy()[:, None] + np.arange(max_months + 1)) <= last
    table = table.where(observed)
    table.index = [f"{m // 12:04d}-{m % 12 + 1:02d}" for m in sizes.index.astype(int)]
    table.index.name, table.columns.name = "cohort", "months_since_first_purchase"
    return table


def churn_rate_by_stage(stages: pd.Series, churned) -> pd.DataFrame:
    """Customers, churners and churn rate per stage, in lifecycle order.

    ``stages`` (stage per customer at some date) and ``churned`` (0/1 label over the horizon
    after it) are aligned by position. Stages without customers are left out.
    """
    frame = pd.DataFrame({"stage": stages.astype("object").to_numpy(),
                          "churned": np.asarray(churned, dtype=float)})  # fmt: skip
    table = frame.groupby("stage")["churned"].agg(customers="size", churned="sum")
    order = [s for s in STAGES if s in table.index] + sorted(set(table.index) - set(STAGES))
    table = table.reindex(order)
    table["churned"] = table["churned"].astype(int)
    table["churn_rate"] = table["churned"] / table["customers"]
    return table
