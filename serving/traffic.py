"""Request ids, quiet logs and load shedding: the service's outermost middlewares.

``RequestLog`` gives every response an ``X-Request-ID`` (the caller's when it is a sane
token, else a new one) and writes one line per failed request: client errors (4xx) at INFO
without a traceback, deliberate server answers (a 503 saying why) at WARNING, an unexpected
exception at ERROR with its one traceback; every line names the request id.
:class:`QuietClientErrors` stops BentoML from logging each 4xx at ERROR with a traceback
(its ``log_exception``), and adds the request id to the tracebacks it still logs.

``LoadShed`` bounds the requests in flight per worker: beyond ``max_in_flight`` a request
gets a 503 with ``Retry-After`` at once, before anything reads its body, so it never queues
and never reaches a handler (no decision is logged for it). The probes and ``/metrics`` are
never shed.

A request whose caller is gone before its decisions are logged (the client disconnected, or
BentoML's traffic timeout cancelled it) is marked *abandoned*; the service then does not log
its decisions (:func:`abandoned`), so nothing learns from decisions nobody received, and a
decision API whose caller left while it waited for the handler thread does no work at all
(:func:`unless_abandoned`). A caller who leaves *after* the decisions were logged (while the
handler finishes, or before the response is complete) gets them marked undelivered in the
ledger instead: the handler registers what it logged (:func:`decisions_logged`), and the
request, when it ends without delivering a complete successful answer, marks them
(:func:`mark_undelivered`, off the event loop, waiting at most ``MARK_TIMEOUT_SECONDS``); a
handler that logs after its caller left marks them itself at once. Best effort: a failure is
logged at WARNING with the decision ids, never raised.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import threading
import uuid
import weakref
from collections.abc import Callable, Sequence
from contextvars import Context, ContextVar
from dataclasses import dataclass, field
from pathlib import Path

from starlette.responses import JSONResponse, Response

from serving.config import DEFAULT_MAX_IN_FLIGHT
from serving.errors import send_error
from serving.middleware import configured, replay

logger = logging.getLogger("serving.requests")
BENTOML_ERROR_LOGGER = "bentoml._internal.server.http_app"  # its log_exception
NEVER_SHED = frozenset({"/livez", "/readyz", "/healthz", "/metrics"})
RETRY_AFTER_SECONDS = 1
_SANE_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
_SERVING = str(Path(__file__).resolve().parent)
_REASON_CHARS = 300
MARK_TIMEOUT_SECONDS = 10.0  # longest a request waits for its decisions' marking (it goes on)
Mark = Callable[[Sequence[str]], int]  # marks decision ids undelivered, returns how many
_DELIVERY = threading.Lock()  # between a handler registering decisions and its request ending


@dataclass
class RequestState:
    """What the middlewares and the handler share about one request."""

    request_id: str
    abandoned: bool = False  # the caller will not get the answer: log no decision
    reason: str | None = None  # why it failed, from the exception BentoML caught
    traceback_logged: bool = False
    shed: bool = False
    logged: list[tuple[Mark, Sequence[str]]] = field(default_factory=list)  # its decisions


_current: ContextVar[RequestState | None] = ContextVar("lifecycle_request", default=None)


def current() -> RequestState | None:
    """The request being served (in its task and in the thread running its handler)."""
    return _current.get()


def abandoned() -> bool:
    """True when the current request's caller is gone (disconnected or timed out)."""
    state = _current.get()
    return state is not None and state.abandoned


def unless_abandoned(api):
    """Skip the work of an API call whose caller left while it waited for the handler thread
    (under overload without a limit, the queue would otherwise be served to nobody): an
    empty 499 that no one receives, and no decision."""

    @functools.wraps(api)
    def run(self, *args, **kwargs):
        state = _current.get()
        if state is not None and state.abandoned:
            state.reason = "the caller left before its handler ran: skipped"
            return Response(status_code=499)
        return api(self, *args, **kwargs)

    return run


def decisions_logged(decision_ids: Sequence[str], mark: Mark) -> None:
    """The handler just wrote ``decision_ids`` to the ledger for the current request (and
    committed them). Its caller already gone: ``mark`` them undelivered now, in this thread;
    else they stay with the request, which marks them if it ends undelivered."""
    state = _current.get()
    if state is None or not len(decision_ids):
        return
    with _DELIVERY:
        gone = state.abandoned
        if not gone:
            state.logged.append((mark, decision_ids))
    if gone:
        mark_undelivered(state.request_id, [(mark, decision_ids)])


def mark_undelivered(request: str, logged: list[tuple[Mark, Sequence[str]]]) -> None:
    """Mark each batch of decisions undelivered; never raises: a failure is logged at WARNING
    with the request and decision ids (to mark them by hand: ``UPDATE decisions SET
    undelivered_at = ... WHERE decision_id IN (...)``)."""
    from serving.metrics import count_undelivered

    for mark, ids in logged:
        try:
            marked = mark(ids)
        except Exception as err:  # noqa: BLE001 - best effort: the request is over anyway
            logger.warning("request_id=%s: its answer never reached the caller, but %d "
                           "decision(s) could not be marked undelivered in the ledger (%s): %s",
                           request, len(ids), err, " ".join(map(str, ids)))  # fmt: skip
            continue
        count_undelivered(marked)
        logger.info("request_id=%s: its answer never reached the caller (it left, timed out or "
                    "got an error): %d logged decision(s) marked undelivered (not contacts, not "
                    "learnt from)", request, marked)  # fmt: skip


def _undelivered(state: RequestState, response: _Response) -> list[tuple[Mark, Sequence[str]]]:
    """The decisions a request that ends now logged for a caller who did not get them: its
    caller left, or it ends without a complete successful answer. The request then counts as
    abandoned, so that a handler still running (a timeout does not stop its thread) marks
    what it logs later itself."""
    delivered = response.complete and response.status is not None and response.status < 400
    if delivered and not state.abandoned:  # the handler has returned: nothing more to come
        return []
    with _DELIVERY:
        state.abandoned = True
        taken, state.logged = state.logged, []
    return taken


async def _settle(state: RequestState, response: _Response) -> None:
    """Mark the request's undelivered decisions in a thread (the ledger may wait on a lock
    or its server), waiting at most ``MARK_TIMEOUT_SECONDS`` for it."""
    taken = _undelivered(state, response)
    if not taken:
        return
    loop = asyncio.get_running_loop()
    marking = loop.run_in_executor(None, mark_undelivered, state.request_id, taken)
    try:
        await asyncio.wait_for(asyncio.shield(marking), MARK_TIMEOUT_SECONDS)
    except TimeoutError:
        logger.warning("request_id=%s: marking its decisions undelivered took more than %g s; "
                       "it goes on in the background", state.request_id,
                       MARK_TIMEOUT_SECONDS)  # fmt: skip


def request_id(headers: dict[bytes, bytes]) -> str:
    """The caller's ``X-Request-ID`` when it is 1-128 of ``[A-Za-z0-9._-]``, else a new one
    (a caller's id is echoed in logs and headers: nothing else may pass)."""
    given = headers.get(b"x-request-id", b"").decode("latin-1")
    return given if _SANE_ID.fullmatch(given) else uuid.uuid4().hex


class RequestLog:
    """``X-Request-ID`` on every response and one log line per failed request (above)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = RequestState(request_id(dict(scope.get("headers", []))))
        token = _current.set(state)
        response = _Response(send, state)
        watch = _DisconnectWatch(receive, state, response)
        try:
            await self.app(scope, watch.receive, response.send)
        except asyncio.CancelledError:  # BentoML's traffic timeout gave up on it
            state.abandoned = True
            raise
        except Exception:  # a middleware's bug: one traceback, one 500 with the id
            state.abandoned = True
            logger.exception("%s %s 500 request_id=%s: unexpected error", scope["method"],
                             scope["path"], state.request_id)  # fmt: skip
            state.traceback_logged = True
            if response.status is None:
                await send_error(response.send, 500, "an unexpected error occurred; the server log "
                             f"names it with request id {state.request_id}")  # fmt: skip
        finally:
            watch.stop()
            _current.reset(token)
            await _settle(state, response)  # after a cancel too: the 504 is answered already
        _log_outcome(scope, state, response)


class _Response:
    """A ``send`` adding the request id header and keeping the start of an error's body."""

    def __init__(self, send, state: RequestState) -> None:
        self._send, self._state = send, state
        self.status: int | None = None
        self.complete = False
        self.body = bytearray()

    async def send(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            headers = [h for h in message.get("headers", []) if h[0].lower() != b"x-request-id"]
            headers.append((b"x-request-id", self._state.request_id.encode()))
            message = {**message, "headers": headers}
        elif message["type"] == "http.response.body":
            if self.status is not None and self.status >= 400 and len(self.body) < 4096:
                self.body.extend(message.get("body", b"")[:4096])
            self.complete = self.complete or not message.get("more_body", False)
        await self._send(message)


class _DisconnectWatch:
    """Once the app has read the whole body, wait for the caller to disconnect: a caller
    gone before the response is complete marks the request abandoned."""

    def __init__(self, receive, state: RequestState, response: _Response) -> None:
        self._receive, self._state, self._response = receive, state, response
        self._task: asyncio.Task | None = None

    async def receive(self) -> dict:
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self._gone()
        elif not message.get("more_body", False) and self._task is None:
            self._task = asyncio.ensure_future(self._watch())
        return message

    async def _watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self._gone()

    def _gone(self) -> None:
        if not self._response.complete:
            self._state.abandoned = True

    def stop(self) -> None:
        """End the watch. Once the response is complete the server's ``receive`` has been
        woken to answer ``http.disconnect`` (uvicorn, Starlette's test client), so the task
        ends by itself on the loop's next turn; cancelling it then raised a CancelledError
        through five middlewares' ``receive`` frames on every request, ~100 objects in
        reference cycles that only a full collection frees (120-960 ms pauses under load).
        A task still waiting a second later (another server) is cancelled then."""
        task = self._task
        if task is None or task.done():
            return
        if self._response.complete:  # an empty context and a weak reference: the pending
            loop = asyncio.get_running_loop()  # timer keeps nothing of the request alive
            loop.call_later(1.0, _cancel_if_pending, weakref.ref(task), context=Context())
        else:
            task.cancel()


def _cancel_if_pending(task: weakref.ref) -> None:
    alive = task()
    if alive is not None:
        alive.cancel()


async def timeout_without_leak(self, scope, receive, send) -> None:
    """BentoML 1.4's ``TimeoutMiddleware.__call__`` (bentoml/_internal/server/http/
    traffic.py, the traffic timeout: a 504 and the handler cancelled after ``timeout`` s),
    with its timer cancelled when the request ends and scheduled in an empty context.
    BentoML's timer stayed scheduled for the whole timeout after every request, holding a
    copy of the request's context (its OpenTelemetry span, Starlette request, ~50 objects):
    at 150 requests/s with a 120 s timeout, 18,000 requests' objects alive at any time, which
    every full garbage collection walked (60-430 ms pauses of the worker, growing with the
    load's duration; measured with a census of ``gc.get_objects()`` in a real worker)."""
    if scope["type"] not in ("http", "websocket"):
        return await self.app(scope, receive, send)
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()
    timer = loop.call_later(self.timeout, self._set_timer_out, waiter, context=Context())

    async def _send(message) -> None:
        if not waiter.done():
            waiter.set_result(None)
        await send(message)

    fut = asyncio.ensure_future(self.app(scope, receive, _send), loop=loop)
    try:
        await waiter
    except TimeoutError:
        if fut.cancel():
            answer = JSONResponse(
                {"error": f"Not able to process the request in {self.timeout} seconds"},
                status_code=504,
            )
            await answer(scope, receive, send)
    else:
        await fut
    finally:
        timer.cancel()


def patch_bentoml_timeout() -> None:
    """Install :func:`timeout_without_leak` on BentoML's ``TimeoutMiddleware`` (idempotent;
    the pinned bentoml 1.4.39)."""
    from bentoml._internal.server.http.traffic import TimeoutMiddleware

    TimeoutMiddleware.__call__ = timeout_without_leak


def _log_outcome(scope, state: RequestState, response: _Response) -> None:
    """INFO for a 4xx, WARNING for a 5xx answered on purpose (nothing more when a
    traceback was logged for it); nothing for a success, nor for the probes (a 503 from
    ``/readyz`` is their answer while the models load)."""
    status = response.status
    if status is None or status < 400 or state.traceback_logged or scope["path"] in NEVER_SHED:
        return
    level = logging.INFO if status < 500 or state.shed else logging.WARNING
    if logger.isEnabledFor(level):
        reason = state.reason or _body_reason(bytes(response.body))
        logger.log(level, "%s %s %d request_id=%s: %s", scope["method"], scope["path"], status,
                   state.request_id, reason)  # fmt: skip


def _body_reason(body: bytes) -> str:
    """The ``error`` of a JSON error body (the one shape, :mod:`serving.errors`), cut to a
    line."""
    try:
        data = json.loads(body)
    except ValueError:
        return _short(body.decode("utf-8", "replace")) or "(no body)"
    if not isinstance(data, dict):
        return _short(str(data))
    return _short(str(data.get("error", data)))  # a validation error's message names its fields


def _short(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _REASON_CHARS else line[: _REASON_CHARS - 3] + "..."


class LoadShed:
    """503 + ``Retry-After`` at once for a request beyond ``limit`` in flight in this worker
    (0 = no limit); the probes and ``/metrics`` always pass. A request counts once its body
    has arrived (a slow upload holds no slot, so a few slow clients cannot shed everyone);
    the body is then handed on as received. One event loop per worker: a plain counter is
    exact."""

    _worker: weakref.ref | None = None  # the last built: the worker's own (one app each)

    def __init__(self, app, limit: int | None = None) -> None:
        self.app = app
        self._limit = limit
        self.in_flight = 0
        LoadShed._worker = weakref.ref(self)

    @property
    def limit(self) -> int:
        if self._limit is not None:
            return self._limit
        return configured("max_in_flight", DEFAULT_MAX_IN_FLIGHT)

    @classmethod
    def full(cls) -> int | None:
        """The worker's limit when its ``LoadShed`` has that many requests in flight, else
        None (:mod:`serving.edge`)."""
        shed = cls._worker() if cls._worker is not None else None
        if shed is None or not shed.in_flight:
            return None
        limit = shed.limit
        return limit if limit and shed.in_flight >= limit else None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] in NEVER_SHED:
            await self.app(scope, receive, send)
            return
        messages = await _whole_body(receive)
        limit = self.limit
        if limit and self.in_flight >= limit:
            await shed(send, limit)
            return
        self.in_flight += 1
        try:
            await self.app(scope, replay(messages, receive), send)
        finally:
            self.in_flight -= 1


async def _whole_body(receive) -> list[dict]:
    """The request's messages up to its last body part (or a disconnect)."""
    messages = [await receive()]
    while messages[-1]["type"] == "http.request" and messages[-1].get("more_body", False):
        messages.append(await receive())
    return messages


async def shed(send, limit: int, headers: list | None = None) -> None:
    """The 503 of a request refused with ``limit`` in flight, counted on ``/metrics``."""
    from serving.metrics import count_shed

    message = (f"overloaded: {limit} requests already in flight in this worker "
               f"(max_in_flight, LIFECYCLE_MAX_IN_FLIGHT); retry after "
               f"{RETRY_AFTER_SECONDS} s")  # fmt: skip
    state = current()
    if state is not None:
        state.shed, state.reason = True, message
    count_shed()
    retry = (b"retry-after", str(RETRY_AFTER_SECONDS).encode())
    await send_error(send, 503, message, [retry, *(headers or [])])


class QuietClientErrors(logging.Filter):
    """On BentoML's error logger: a client error (bad input, a 4xx it raised, a 503 said on
    purpose) loses its ERROR line and traceback (``RequestLog`` writes its one line with the
    reason); an unexpected exception keeps its traceback and gains the request id."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is None:
            return True
        state = current()
        if _expected(error):
            reason = _exception_reason(error)
            if state is not None:
                state.reason = reason
                return False
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = f"{record.getMessage()}: {reason}", ()
            record.exc_info = record.exc_text = None
            return True
        if state is not None:
            state.traceback_logged = True
            record.msg, record.args = f"{record.getMessage()} request_id=%s", (state.request_id,)
        return True


def _expected(error: BaseException) -> bool:
    """A status the code chose (a ``BentoMLException`` other than 500), or the caller's
    input failing validation (a pydantic error raised outside the service's own code)."""
    from bentoml.exceptions import BentoMLException
    from pydantic import ValidationError

    if isinstance(error, BentoMLException):
        return error.error_code.value != 500
    if isinstance(error, ValidationError):
        return not _raised_in_serving(error)
    return False


def _raised_in_serving(error: BaseException) -> bool:
    frame = error.__traceback__
    while frame is not None:
        if frame.tb_frame.f_code.co_filename.startswith(_SERVING):
            return True
        frame = frame.tb_next
    return False


def _exception_reason(error: BaseException) -> str:
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        first = error.errors(include_url=False, include_input=False)[0]
        loc = ".".join(str(part) for part in first["loc"]) or "body"
        return _short(f"{error.error_count()} validation error(s); {loc}: {first['msg']}")
    return _short(str(error))


def install_logging() -> None:
    """The request logger at INFO (BentoML's logging config disables loggers created before
    it and leaves the root at WARNING), and :class:`QuietClientErrors` on BentoML's error
    logger. Idempotent; called when the service starts, never at import."""
    for ours in (logger, logging.getLogger("serving.state")):  # requests; model reloads
        ours.disabled = False
        ours.setLevel(logging.INFO)
    bentoml_errors = logging.getLogger(BENTOML_ERROR_LOGGER)
    if not any(isinstance(f, QuietClientErrors) for f in bentoml_errors.filters):
        bentoml_errors.addFilter(QuietClientErrors())
