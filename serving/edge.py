"""Shedding at the edge: under overload, a request is refused before BentoML's own
middlewares see it.

:class:`serving.traffic.LoadShed` counts the requests in flight after the token check, so
that only callers hold a slot; but a request it refuses has by then crossed BentoML's
request metrics, OpenTelemetry span, access log and traffic timeout, each wrapping its
``send``, and cost the worker about a quarter of an answered request (``bench_shedding``:
0.72 against 2.9 ms of CPU). At twice the capacity, that share of the worker went to
refusing. :class:`EdgeShed` sits first in BentoML's middleware list
(:func:`shed_at_the_edge`, for the pinned bentoml 1.4.39) and refuses a request at once,
without reading its body, while the worker's ``LoadShed`` is full; otherwise it passes the
request on untouched, and ``LoadShed`` stays the exact count. A request refused here gets
the same 503, ``Retry-After`` and ``X-Request-ID`` and counts on ``/metrics`` as shed; it
is not in BentoML's access log or request metrics, and the server log gets one line per
``SUMMARY_SECONDS`` with how many were refused, not one per request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from serving.traffic import NEVER_SHED, LoadShed, request_id, shed

logger = logging.getLogger("serving.requests")
SUMMARY_SECONDS = 10.0


class EdgeShed:
    """503 at once while the worker's :class:`LoadShed` has ``limit`` requests in flight."""

    def __init__(self, app, clock: Callable[[], float] = time.monotonic) -> None:
        self.app, self._clock = app, clock
        self._refused = 0
        self._since = -SUMMARY_SECONDS

    async def __call__(self, scope, receive, send) -> None:
        full = LoadShed.full() if scope["type"] == "http" else None
        if full is None or scope["path"] in NEVER_SHED:
            await self.app(scope, receive, send)
            return
        rid = request_id(dict(scope.get("headers", [])))
        await shed(send, full, [(b"x-request-id", rid.encode())])
        self._note(full)

    def _note(self, limit: int) -> None:
        """One log line for the first refusal after a quiet spell, then one per
        ``SUMMARY_SECONDS`` with the count."""
        now, self._refused = self._clock(), self._refused + 1
        if now - self._since >= SUMMARY_SECONDS:
            logger.info("shed %d request(s) at the edge: %d in flight (max_in_flight); the "
                        "next such line in %g s at the earliest", self._refused, limit,
                        SUMMARY_SECONDS)  # fmt: skip
            self._refused, self._since = 0, now


def shed_at_the_edge() -> None:
    """Put :class:`EdgeShed` first among BentoML's middlewares (once)."""
    from _bentoml_impl.server.app import ServiceAppFactory
    from starlette.middleware import Middleware

    built = ServiceAppFactory.middlewares
    if getattr(built.fget, "edge_shed", False):
        return

    def middlewares(self) -> list[Middleware]:
        return [Middleware(EdgeShed), *built.fget(self)]

    middlewares.edge_shed = True
    ServiceAppFactory.middlewares = property(middlewares)
