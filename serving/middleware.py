"""ASGI middlewares of the service (DESIGN section 11: open-source BentoML has no auth).

``TokenAuth``: with a token configured, every request needs ``Authorization: Bearer <token>``
(or ``X-API-Key: <token>``) except the probes, the metrics and the API docs.
``JsonOnly``: POST bodies must be JSON (415 otherwise, instead of a form-parsing 500).
``ModelsEndpoint``: ``GET /models`` (BentoML APIs are POST only).
"""

from __future__ import annotations

import hmac
import json

import bentoml
from starlette.responses import JSONResponse

from serving.state import models_summary

OPEN_PATHS = ("/livez", "/readyz", "/healthz", "/metrics", "/", "/docs.json")
OPEN_PREFIXES = ("/static_content/",)


class TokenAuth:
    """Pure ASGI middleware: 401 with a JSON error unless the token matches."""

    def __init__(self, app, token: str | None = None) -> None:
        self.app = app
        self._token = token

    @property
    def token(self) -> str:
        """The token ("" = no auth): given, else the running service's configured one."""
        if self._token is not None:
            return self._token
        try:
            return bentoml.get_current_service().config.api_token or ""
        except bentoml.exceptions.BentoMLException:  # not started yet: refuse rather than guess
            return "\0not-started"

    async def __call__(self, scope, receive, send) -> None:
        guarded = scope["type"] == "http" and self.token and not _open(scope["path"])
        if guarded and not self._authorised(dict(scope.get("headers", []))):
            await _unauthorised(send)
            return
        await self.app(scope, receive, send)

    def _authorised(self, headers: dict[bytes, bytes]) -> bool:
        given = headers.get(b"authorization", b"").decode("latin-1")
        if given.lower().startswith("bearer "):
            given = given[7:].strip()
        else:
            given = headers.get(b"x-api-key", b"").decode("latin-1")
        return hmac.compare_digest(given.encode(), self.token.encode())


def _open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


async def _unauthorised(send) -> None:
    body = json.dumps(
        {
            "error": "missing or invalid API token: send 'Authorization: Bearer "
            "<token>' (the service's LIFECYCLE_API_TOKEN)"
        }
    ).encode()
    await send({"type": "http.response.start", "status": 401,
                "headers": [(b"content-type", b"application/json"),
                            (b"www-authenticate", b"Bearer")]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


class JsonOnly:
    """415 for POST bodies that are not JSON (BentoML would try to parse them as forms)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            kind = dict(scope["headers"]).get(b"content-type", b"application/json")
            if not kind.split(b";")[0].strip().lower().endswith(b"json"):
                got = kind.decode("latin-1")
                body = {"error": f"content-type must be application/json; got {got!r}"}
                await JSONResponse(body, status_code=415)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class ModelsEndpoint:
    """``GET /models``: what is loaded (versions, training dates, headline metrics), the
    store's version and the policy. A middleware because BentoML APIs are POST only."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] in ("/models", "/models/"):
            service = bentoml.get_current_service()
            await JSONResponse(models_summary(service.state))(scope, receive, send)
            return
        await self.app(scope, receive, send)
