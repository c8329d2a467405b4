"""One error shape for every error the service answers (issue 15, point 7):
``{"error": "what went wrong and what to do", "details": [{"loc", "msg", "type"}] | null}``.

The service's own middlewares write it with :func:`error_body`. :class:`ErrorShape`, the
innermost middleware, rewrites what BentoML and Starlette answer in their own shapes: a request
body failing validation (BentoML: a 400 ``{"error", "detail": [...]}``) becomes a 422 whose
``details`` name each field; a 4xx ``BentoMLException`` such as ``InvalidArgument`` (BentoML:
a list ``[{"error"}]``) keeps its status; a 500 gains the request id its log line names; a
plain-text 404 or 405 becomes JSON. The shape is declared in the OpenAPI spec
(:mod:`serving.openapi`) as ``ErrorBody``.
"""

from __future__ import annotations

import json

UNPROCESSABLE = 422
_SHOWN_ERRORS = 3  # field errors spelled out in the message (all are in ``details``)


def error_body(message: str, details: list[dict] | None = None) -> bytes:
    """The JSON bytes of one error answer."""
    return json.dumps({"error": message, "details": details}).encode()


def error_headers(body: bytes, extra: list | None = None) -> list[tuple[bytes, bytes]]:
    """ASGI headers of an error answer whose body is ``body``."""
    return [(b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()), *(extra or [])]  # fmt: skip


async def send_error(send, status: int, message: str, headers: list | None = None) -> None:
    """Answer ``status`` with :func:`error_body` of ``message`` (ASGI ``send``)."""
    body = error_body(message)
    await send({"type": "http.response.start", "status": status,
                "headers": error_headers(body, headers)})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


def reshape(status: int, body: bytes) -> tuple[int, bytes]:
    """``status`` and ``body`` of an error answered by BentoML or Starlette, in the one shape
    (a body already in it is kept as it is)."""
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict):
        data = data[0]  # BentoML answers a 4xx BentoMLException as [{"error": ...}]
    if not isinstance(data, dict) or not isinstance(data.get("error"), str):
        text = body.decode("utf-8", "replace").strip() if data is None else json.dumps(data)
        return status, error_body(text or f"HTTP {status}")
    if isinstance(data.get("detail"), list):  # BentoML's answer to a pydantic ValidationError
        details = [_item(error) for error in data["detail"] if isinstance(error, dict)]
        return UNPROCESSABLE, error_body(validation_message(details), details)
    if set(data) == {"error", "details"}:
        return status, body
    if status >= 500:
        return status, error_body(_server_error())
    return status, error_body(data["error"])


def _item(error: dict) -> dict:
    loc = [part if isinstance(part, int) else str(part) for part in error.get("loc", ())]
    return {"loc": loc, "msg": str(error.get("msg", "")), "type": str(error.get("type", ""))}


def validation_message(details: list[dict]) -> str:
    """One line naming the fields and rules that failed, e.g. ``invalid request body (1
    error): explain: Input should be a valid boolean``."""
    parts = [f"{'.'.join(str(p) for p in d['loc']) or 'body'}: {d['msg']}"
             for d in details[:_SHOWN_ERRORS]]  # fmt: skip
    more = f"; and {len(details) - _SHOWN_ERRORS} more" if len(details) > _SHOWN_ERRORS else ""
    return f"invalid request body ({len(details)} error(s)): {'; '.join(parts)}{more}"


def _server_error() -> str:
    from serving.traffic import current

    state = current()
    where = f" with request id {state.request_id}" if state is not None else ""
    return f"an unexpected error occurred; the server log names it{where}"


class ErrorShape:
    """Pure ASGI middleware rewriting every error answer (status >= 400) of the app it wraps
    into the one shape (:func:`reshape`), headers kept (``Allow``, ``Retry-After``, ...) and
    ``Content-Length`` recomputed. Error bodies are small: they are held until complete. A
    499 (the caller left, nobody reads it) passes as it is."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: dict | None = None
        body = bytearray()

        async def reshaping_send(message: dict) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and 400 <= message["status"] != 499:
                start = message
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            body.extend(message.get("body", b""))
            if not message.get("more_body", False):
                await _send_reshaped(send, start, bytes(body))

        await self.app(scope, receive, reshaping_send)


async def _send_reshaped(send, start: dict, body: bytes) -> None:
    status, new_body = reshape(start["status"], body)
    kept = [(k, v) for k, v in start.get("headers", [])
            if k.lower() not in (b"content-type", b"content-length")]  # fmt: skip
    await send({**start, "status": status, "headers": error_headers(new_body, kept)})
    await send({"type": "http.response.body", "body": new_body})
