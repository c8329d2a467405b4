"""The service's own Prometheus counters, beside BentoML's request metrics at ``/metrics``.

Created on first use, inside the worker (BentoML sets ``PROMETHEUS_MULTIPROC_DIR`` there
after importing the service module), once per process.
"""

from __future__ import annotations

from collections import Counter
from functools import cache


@cache
def _counters() -> dict:
    import prometheus_client

    return {
        "decisions": prometheus_client.Counter(
            "lifecycle_decisions", "Decisions made, by offer chosen (none = no offer), "
            "whether it was a random choice and the policy that made it (model, cold_start)",
            ["offer", "explored", "policy"],
        ),
        "feedback": prometheus_client.Counter(
            "lifecycle_feedback_events", "Feedback events received, by result",
            ["result"],
        ),
        "shed": prometheus_client.Counter(
            "lifecycle_requests_shed", "Requests refused with a 503 because max_in_flight "
            "requests were already in flight in the worker",
        ),
        "unlogged": prometheus_client.Counter(
            "lifecycle_decisions_unlogged", "Decisions not written to the ledger because "
            "their caller was gone (disconnected or timed out) before they were logged",
        ),
        "undelivered": prometheus_client.Counter(
            "lifecycle_decisions_undelivered", "Decisions logged, then marked undelivered in "
            "the ledger because their caller left (disconnected or timed out) before the answer",
        ),
    }  # fmt: skip


def count_decisions(decisions) -> None:
    """Count one request's ``serving.ledger.Decisions`` by (offer, explored); one policy."""
    counter = _counters()["decisions"]
    chosen = zip(decisions.offer_id, decisions.explored, strict=True)
    for (offer, explored), n in Counter(chosen).items():
        counter.labels(offer=offer or "none", explored=str(explored).lower(),
                       policy=decisions.policy).inc(n)  # fmt: skip


def count_feedback(accepted: int, duplicates: int, rejected: int) -> None:
    counter = _counters()["feedback"]
    for result, n in (("accepted", accepted), ("duplicate", duplicates), ("rejected", rejected)):
        if n:
            counter.labels(result=result).inc(n)


def count_shed() -> None:
    _counters()["shed"].inc()


def count_unlogged(n: int) -> None:
    _counters()["unlogged"].inc(n)


def count_undelivered(n: int) -> None:
    _counters()["undelivered"].inc(n)


_monitor_gauges: dict[str, object] = {}


def publish_monitor(text: str) -> int:
    """Re-expose the gauges of a ``lifecycle monitor`` run (its ``monitor.prom``, Prometheus
    text format) on the service's ``/metrics``: every gauge family becomes a gauge of this
    process (``mostrecent`` across workers), set to the file's values. A family whose label
    names changed since the first publication, or that is not a gauge, is skipped. Returns
    the number of samples set."""
    import prometheus_client
    from prometheus_client.parser import text_string_to_metric_families

    done = 0
    for family in text_string_to_metric_families(text):
        if family.type != "gauge" or not family.samples:
            continue
        labels = tuple(sorted(family.samples[0].labels))
        gauge = _monitor_gauges.get(family.name)
        if gauge is None:
            gauge = prometheus_client.Gauge(family.name, family.documentation or family.name,
                                            labels, multiprocess_mode="mostrecent")  # fmt: skip
            _monitor_gauges[family.name] = gauge
        if tuple(sorted(gauge._labelnames)) != labels:
            continue
        for sample in family.samples:
            if tuple(sorted(sample.labels)) != labels:
                continue
            (gauge.labels(**sample.labels) if labels else gauge).set(sample.value)
            done += 1
    return done
