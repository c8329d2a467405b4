"""The decision service with two faults the tests can trigger through plain HTTP, served as
``bentoml serve tests.serving.fault_service:LifecycleService`` (the same service otherwise):

- a ``/decide`` whose ids include ``FAULT_ID`` raises an unexpected error (a 500);
- one whose ids include ``slow-<seconds>`` waits that long before looking them up (its
  other ids are decided and logged as usual).
"""

from __future__ import annotations

import time

from serving.service import LifecycleService

FAULT_ID = "fault-injected-by-the-tests"
SLOW_PREFIX = "slow-"

_lookup = LifecycleService.inner._lookup


def _faulty_lookup(self, ids, engine):
    if FAULT_ID in ids:
        raise RuntimeError("a fault injected by the tests")
    for customer in ids:
        if customer.startswith(SLOW_PREFIX):
            time.sleep(float(customer.removeprefix(SLOW_PREFIX)))
    return _lookup(self, ids, engine)


LifecycleService.inner._lookup = _faulty_lookup

__all__ = ["FAULT_ID", "SLOW_PREFIX", "LifecycleService"]
