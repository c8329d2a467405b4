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
