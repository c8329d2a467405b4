"""The gauges of `lifecycle monitor` re-exposed on the service's /metrics (issue 14, point 4)."""

from __future__ import annotations

import prometheus_client

from serving.metrics import publish_monitor

PROM = """# HELP lifecycle_test_feature_psi PSI per feature
# TYPE lifecycle_test_feature_psi gauge
lifecycle_test_feature_psi{feature="recency_days"} 0.31
lifecycle_test_feature_psi{feature="events_90d"} 0.02
# HELP lifecycle_test_churn_ece ECE of the latest cohort
# TYPE lifecycle_test_churn_ece gauge
lifecycle_test_churn_ece 0.045
# HELP lifecycle_test_runs runs
# TYPE lifecycle_test_runs counter
lifecycle_test_runs_total 3
"""


def exposed() -> str:
    return prometheus_client.generate_latest().decode()


def test_monitor_gauges_are_published_and_updated():
    assert publish_monitor(PROM) == 3  # the counter is not a monitor gauge: left out
    text = exposed()
    assert 'lifecycle_test_feature_psi{feature="recency_days"} 0.31' in text
    assert "lifecycle_test_churn_ece 0.045" in text and "lifecycle_test_runs" not in text
    assert publish_monitor(PROM.replace("0.045", "0.2")) == 3
    assert "lifecycle_test_churn_ece 0.2" in exposed()
    relabelled = PROM.replace('{feature="recency_days"}', '{column="recency_days"}')
    assert publish_monitor(relabelled) == 1  # the family whose labels changed is skipped
