"""The decision service with a slow answer the tests can trigger through plain HTTP, served as
``bentoml serve tests.serving.undelivered_service:LifecycleService`` (the same service
otherwise): a ``/decide`` or ``/batch`` whose ids include ``slow-answer-<seconds>`` waits that
long *after* its decisions were logged, before its answer is sent (the other ids are decided
and logged as usual; that id is unknown), so that a test's caller can leave in between.
"""

from __future__ import annotations

import time

from serving.service import LifecycleService

SLOW_ANSWER_PREFIX = "slow-answer-"

_respond = LifecycleService.inner._respond


def _slow_respond(self, engine, rows, *args, **kwargs):
    answer = _respond(self, engine, rows, *args, **kwargs)  # decided and logged
    for customer in rows.customer_ids:
        if customer.startswith(SLOW_ANSWER_PREFIX):
            time.sleep(float(customer.removeprefix(SLOW_ANSWER_PREFIX)))
    return answer


LifecycleService.inner._respond = _slow_respond

__all__ = ["SLOW_ANSWER_PREFIX", "LifecycleService"]
