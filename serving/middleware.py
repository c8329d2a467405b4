"""ASGI middlewares of the service (DESIGN section 11: open-source BentoML has no auth).

``TokenAuth``: with a token configured, every request needs ``Authorization: Bearer <token>``
(or ``X-API-Key: <token>``) except the probes, the metrics and the API docs.
``JsonOnly``: POST bodies must be JSON (415 otherwise, instead of a form-parsing 500).
``ModelsEndpoint``: ``GET /models`` (BentoML APIs are POST only).
``BodyLimit``: request bodies above ``max_body_bytes`` get a 413 before they are buffered.
"""

from __future__ import annotations

import hmac

import bentoml
from starlette.responses import JSONResponse

from serving.config import DEFAULT_MAX_BODY_BYTES
from serving.errors import send_error
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
        # not started yet: refuse rather than guess
        return configured("api_token", "\0not-started") or ""

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


def configured(field: str, before_start):
    """The running service's config ``field``, or ``before_start`` before it has started."""
    try:
        return getattr(bentoml.get_current_service().config, field)
    except bentoml.exceptions.BentoMLException:
        return before_start


def _open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


async def _unauthorised(send) -> None:
    await send_error(send, 401, "missing or invalid API token: send 'Authorization: Bearer "
                     "<token>' (the service's LIFECYCLE_API_TOKEN)",
                     [(b"www-authenticate", b"Bearer")])  # fmt: skip


class BodyLimit:
    """413 for a request body above the limit, before it is read: at once when its
    ``Content-Length`` says so, else (chunked) as soon as the bytes received pass it; the
    body is then never handed on, so the service neither buffers nor parses it."""

    def __init__(self, app, limit: int | None = None) -> None:
        self.app = app
        self._limit = limit

    @property
    def limit(self) -> int:
        if self._limit is not None:
            return self._limit
        return configured("max_body_bytes", DEFAULT_MAX_BODY_BYTES)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None:
            if length.isdigit() and int(length) > limit:
                await _too_large(send, limit)
                return
            await self.app(scope, receive, send)  # the server holds it to its length
            return
        body, more = [], True  # chunked: read up to the limit, then replay
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, replay([message]), send)
                return
            body.append(message)
            more = message.get("more_body", False)
            if sum(len(m.get("body", b"")) for m in body) > limit:
                await _too_large(send, limit)
                return
        await self.app(scope, replay(body, receive), send)


def replay(messages: list[dict], then=None):
    """An ASGI ``receive`` giving ``messages`` first, then ``then``'s (disconnects)."""
    pending = list(messages)

    async def receive() -> dict:
        if pending:
            return pending.pop(0)
        return await then() if then is not None else {"type": "http.disconnect"}

    return receive


async def _too_large(send, limit: int) -> None:
    await send_error(send, 413, f"request body larger than max_body_bytes={limit:,} bytes "
                     "(LIFECYCLE_MAX_BODY_BYTES); send fewer customers or events per request",
                     [(b"connection", b"close")])  # fmt: skip


class JsonOnly:
    """415 for POST bodies that are not JSON (BentoML would try to parse them as forms)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            kind = dict(scope["headers"]).get(b"content-type", b"application/json")
            if not kind.split(b";")[0].strip().lower().endswith(b"json"):
                got = kind.decode("latin-1")
                await send_error(send, 415, f"content-type must be application/json; got {got!r}")
                return
        await self.app(scope, receive, send)


class ModelsEndpoint:
    """``GET /models``: what is loaded (versions, training dates, headline metrics), the
    store's version and the policy. A middleware because BentoML APIs are POST only."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] in ("/models", "/models/"):
            if scope["method"] not in ("GET", "HEAD"):
                await send_error(send, 405, f"{scope['method']} /models: only GET",
                                 [(b"allow", b"GET")])  # fmt: skip
                return
            service = bentoml.get_current_service()
            await JSONResponse(models_summary(service.state))(scope, receive, send)
            return
        await self.app(scope, receive, send)
