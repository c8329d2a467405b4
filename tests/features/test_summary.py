"""Data summaries on tiny hand-made frames with hand-computed answers."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.summary import churn_rate_by_stage, cohort_retention


def _events(rows):
    frame = pd.DataFrame(rows, columns=["customer_id", "timestamp", "role"])
    frame["customer_id"] = frame["customer_id"].astype("category")
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame


EVENTS = _events([
    ("a", "2025-01-05", "purchase"),
    ("a", "2025-02-03", "purchase"),
    ("a", "2025-03-09", "visit"),
    ("b", "2025-01-20", "purchase"),
    ("b", "2025-03-01", "purchase"),
    ("b", "2025-03-02", "purchase"),  # twice in one month counts once
    ("c", "2025-02-10", "visit"),  # before c's first purchase: not in any month
    ("c", "2025-02-11", "purchase"),
    ("d", "2025-03-15", "visit"),  # never bought: in no cohort
])  # fmt: skip


def test_cohort_retention_counts_active_buyers_per_month_since_first_purchase():
    table = cohort_retention(EVENTS, max_months=3)
    assert list(table.index) == ["2025-01", "2025-02"]
    assert list(table.columns) == [0, 1, 2, 3]
    np.testing.assert_allclose(table.loc["2025-01"], [1.0, 0.5, 0.5, np.nan])  # March: b only
    np.testing.assert_allclose(table.loc["2025-02"], [1.0, 0.0, np.nan, np.nan])  # unobserved


def test_cohort_retention_with_other_roles_and_small_cohorts_left_out():
    visits = cohort_retention(EVENTS, roles=("purchase", "visit"), max_months=2)
    np.testing.assert_allclose(visits.loc["2025-01"], [1.0, 0.5, 1.0])  # a visits in March
    assert list(cohort_retention(EVENTS, max_months=2, min_customers=2).index) == ["2025-01"]


def test_churn_rate_by_stage_in_lifecycle_order_without_empty_stages():
    stages = pd.Series(["retention", "at_risk", "retention", "purchase", "retention"])
    table = churn_rate_by_stage(stages, [0, 1, 1, 0, 0])
    assert list(table.index) == ["purchase", "retention", "at_risk"]
    assert table["customers"].tolist() == [1, 3, 1]
    assert table["churned"].tolist() == [0, 1, 1]
    np.testing.assert_allclose(table["churn_rate"], [0.0, 1 / 3, 1.0])
