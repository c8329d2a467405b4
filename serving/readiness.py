"""``GET /readyz`` that says why: BentoML's own 503 says only that ``__is_ready__`` returned
False, while an operator (or a load balancer's log) needs to know what is missing: the models,
the store (its server down, empty, built for other models) or the ledger (its server down).
"""

from __future__ import annotations

import bentoml
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, PlainTextResponse

RETRY_AFTER = "5"  # seconds: a backend restart is usually over within a few


class ReadyzSaysWhy:
    """Pure ASGI middleware answering ``/readyz`` once the service exists: a 503 with
    ``{"error": why, "details": null}`` (the one error shape, :mod:`serving.errors`) when it
    cannot decide, else BentoML's 200 (a newline). It answers both from one check: handing a
    ready one on to BentoML would check again, and a backend failing in between would get
    BentoML's 503 that says nothing."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        probe = scope["type"] == "http" and scope["path"] == "/readyz"
        state = _state() if probe and scope["method"] in ("GET", "HEAD") else None
        if state is None:  # another path or method, or the service is still being created
            await self.app(scope, receive, send)
            return
        try:  # it asks the servers and opens the files: off the loop
            why = await run_in_threadpool(state.not_ready)
        except Exception as err:  # noqa: BLE001 - a probe answers, with why, never a 500
            why = f"the readiness check failed: {type(err).__name__}: {err}"
        if why:
            response = JSONResponse({"error": why, "details": None}, status_code=503,
                                    headers={"retry-after": RETRY_AFTER})  # fmt: skip
        else:
            response = PlainTextResponse("\n")
        await response(scope, receive, send)


def _state():
    """The running service's :class:`serving.state.ServiceState`, or None while it starts."""
    try:
        return getattr(bentoml.get_current_service(), "state", None)
    except bentoml.exceptions.BentoMLException:
        return None
