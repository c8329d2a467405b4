"""serving.traffic on small ASGI apps (in process, no server): request ids, load shedding,
callers who leave, one traceback per unexpected error, and the filter on BentoML's error
logger. The same behaviour through a real ``bentoml serve`` is in test_http_server.py."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from contextvars import ContextVar

import pytest
from bentoml.exceptions import InternalServerError, InvalidArgument, ServiceUnavailable
from pydantic import BaseModel, ValidationError

from serving.traffic import (
    LoadShed,
    QuietClientErrors,
    RequestLog,
    RequestState,
    _current,
    abandoned,
    patch_bentoml_timeout,
    unless_abandoned,
)


def scope(path: str = "/decide", request_id: bytes | None = None) -> dict:
    headers = [(b"content-type", b"application/json")]
    if request_id is not None:
        headers.append((b"x-request-id", request_id))
    return {"type": "http", "method": "POST", "path": path, "headers": headers}


def body_then(after=None):
    """An ASGI receive: the whole body, then ``await after()`` (default: wait forever)."""
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"{}", "more_body": False}
        if after is None:
            await asyncio.Event().wait()
        return await after()

    return receive


async def call(app, path="/decide", receive=None, request_id=None) -> dict:
    """Run one request through ``app``; its status, headers and body."""
    out: dict = {"body": b""}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            out["status"], out["headers"] = message["status"], dict(message["headers"])
        else:
            out["body"] += message.get("body", b"")

    await app(scope(path, request_id), receive or body_then(), send)
    return out


def ok_app(seen: list | None = None, gate: asyncio.Event | None = None):
    async def app(scope, receive, send) -> None:
        await receive()
        if gate is not None and scope["path"] == "/decide":
            await gate.wait()
        if seen is not None:
            seen.append(abandoned())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


def test_past_the_limit_a_request_is_shed_at_once_but_never_a_probe():
    async def scenario():
        gate = asyncio.Event()
        app = RequestLog(LoadShed(ok_app(gate=gate), limit=1))
        first = asyncio.ensure_future(call(app))
        await asyncio.sleep(0.01)  # in flight, held by the gate
        shed = await asyncio.wait_for(call(app), 1)
        probe = await asyncio.wait_for(call(app, "/readyz"), 1)
        gate.set()
        return await first, shed, probe, await call(app)

    first, shed, probe, after = asyncio.run(scenario())
    assert first["status"] == 200 and probe["status"] == 200 and after["status"] == 200
    assert shed["status"] == 503 and shed["headers"][b"retry-after"] == b"1"
    assert b"max_in_flight" in shed["body"] and b"x-request-id" in shed["headers"]


def test_a_slow_upload_holds_no_slot():
    async def scenario():
        app = LoadShed(ok_app(), limit=1)
        stalled = asyncio.Event()

        async def never_done() -> dict:
            stalled.set()
            await asyncio.Event().wait()
            return {}

        async def slow_receive() -> dict:  # the first bytes, then nothing
            return {"type": "http.request", "body": b"{", "more_body": True}

        parts = iter([slow_receive, never_done])
        upload = asyncio.ensure_future(call(app, receive=lambda: next(parts)()))
        await stalled.wait()
        answer = await asyncio.wait_for(call(app), 1)
        upload.cancel()
        return answer

    assert asyncio.run(scenario())["status"] == 200


def test_a_caller_who_leaves_before_the_answer_abandons_the_request():
    async def scenario():
        seen: list[bool] = []
        gate = asyncio.Event()
        app = RequestLog(ok_app(seen, gate))

        async def leave() -> dict:
            await asyncio.sleep(0.01)
            gate.set()  # the handler resumes once its caller is gone
            return {"type": "http.disconnect"}

        await call(app, receive=body_then(leave))
        await call(RequestLog(ok_app(seen)))  # answered: never abandoned
        return seen

    assert asyncio.run(scenario()) == [True, False]


def test_an_answered_request_leaves_no_garbage_in_reference_cycles():
    """The disconnect watch ends by itself once the response is complete (the server's
    receive then answers http.disconnect, as uvicorn's does); cancelling it raised a
    CancelledError through the receive frames on every request, garbage in reference cycles
    that only Python's full collections free: 120-960 ms pauses of the worker under load."""

    async def one_request() -> None:
        complete = asyncio.Event()  # uvicorn: the cycle's message_event, set on completion
        out: dict = {}

        async def send(message: dict) -> None:
            out.setdefault("status", message.get("status"))
            if message["type"] == "http.response.body" and not message.get("more_body"):
                complete.set()

        async def disconnect_once_complete() -> dict:
            await complete.wait()
            return {"type": "http.disconnect"}

        await RequestLog(ok_app())(scope(), body_then(disconnect_once_complete), send)
        assert out["status"] == 200

    async def scenario() -> None:
        for _ in range(20):
            await one_request()
        await asyncio.sleep(0.01)  # the watches end

    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        asyncio.run(scenario())
        gc.collect()
        cancelled = [o for o in gc.garbage if isinstance(o, asyncio.CancelledError)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert cancelled == []


def test_bentoml_traffic_timeout_keeps_nothing_of_a_finished_request():
    """BentoML's TimeoutMiddleware left its timer scheduled for the whole timeout (120 s)
    with a copy of the request's context; patched (serving.traffic.patch_bentoml_timeout),
    a finished request's context values are freed at once, and a slow one still gets 504."""
    from bentoml._internal.server.http.traffic import TimeoutMiddleware

    patch_bentoml_timeout()
    marker: ContextVar = ContextVar("marker")

    class Thing:
        pass

    async def slow_app(scope, receive, send) -> None:
        await asyncio.sleep(10)

    async def scenario():
        refs = []
        for _ in range(3):
            thing = Thing()
            refs.append(weakref.ref(thing))
            token = marker.set(thing)  # as an outer middleware's span or request
            answered = await call(TimeoutMiddleware(ok_app(), timeout=120))
            marker.reset(token)
            del thing
            assert answered["status"] == 200
        gc.collect()
        alive = [r() is not None for r in refs]
        timed_out = await call(TimeoutMiddleware(slow_app, timeout=0.05))
        return alive, timed_out

    alive, timed_out = asyncio.run(scenario())
    assert alive == [False, False, False]
    assert timed_out["status"] == 504 and b"0.05 seconds" in timed_out["body"]


def test_request_ids_are_echoed_when_sane_and_made_otherwise():
    async def scenario():
        app = RequestLog(ok_app())
        return [(await call(app, request_id=given))["headers"][b"x-request-id"]
                for given in (b"abc-1.2_3", b"two words", b"x" * 129, None)]  # fmt: skip

    echoed, *made = asyncio.run(scenario())
    assert echoed == b"abc-1.2_3"
    assert all(len(m) == 32 and int(m, 16) >= 0 for m in made) and len(set(made)) == 3


def test_a_middleware_error_is_one_500_and_one_traceback(caplog):
    async def broken(scope, receive, send) -> None:
        raise RuntimeError("broken middleware")

    with caplog.at_level(logging.INFO, logger="serving.requests"):
        out = asyncio.run(call(RequestLog(broken), request_id=b"req-9"))
    assert out["status"] == 500 and out["headers"][b"x-request-id"] == b"req-9"
    assert b"req-9" in out["body"]
    (record,) = caplog.records
    assert record.levelno == logging.ERROR and record.exc_info and "req-9" in record.message


def test_client_errors_are_answered_in_one_info_line(caplog):
    async def refuse(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b'{"error": "no such route"}'})

    with caplog.at_level(logging.INFO, logger="serving.requests"):
        asyncio.run(call(RequestLog(refuse), request_id=b"r1"))
    (record,) = caplog.records
    assert record.levelno == logging.INFO and not record.exc_info
    assert record.message == "POST /decide 404 request_id=r1: no such route"


class Body(BaseModel):
    customer_ids: list[str]


def raised(error: Exception) -> logging.LogRecord:
    try:
        raise error
    except Exception as caught:
        return logging.LogRecord("bentoml", logging.ERROR, __file__, 1, "Exception on %s [%s]",
                                 ("/decide", "POST"), (type(caught), caught,
                                                       caught.__traceback__))  # fmt: skip


def validation_error() -> ValidationError:
    try:
        Body.model_validate_json(b'{"customer_ids": 3}')
    except ValidationError as err:
        return err
    raise AssertionError("validated")


@pytest.mark.parametrize(
    ("error", "expected"),
    [(InvalidArgument("customer_ids: at most 1000"), True),
     (ServiceUnavailable("models are not loaded"), True),
     (InternalServerError("boom"), False), (RuntimeError("boom"), False)],
)  # fmt: skip
def test_bentoml_errors_are_quiet_only_when_expected(error, expected):
    state = RequestState("rid-1")
    token = _current.set(state)
    try:
        record = raised(error)
        kept = QuietClientErrors().filter(record)
    finally:
        _current.reset(token)
    assert kept is not expected
    if expected:  # RequestLog writes the line, with this reason
        assert state.reason == str(error) and not state.traceback_logged
    else:  # the traceback stays, naming the request
        assert record.exc_info and record.getMessage().endswith("request_id=rid-1")
        assert state.traceback_logged


def test_bad_input_outside_a_request_becomes_an_info_line_without_traceback():
    record = raised(validation_error())
    assert QuietClientErrors().filter(record)
    assert record.levelno == logging.INFO and record.exc_info is None
    assert "customer_ids: Input should be a valid array" in record.getMessage()


def test_a_decision_api_does_no_work_for_a_caller_who_left():
    calls = []

    @unless_abandoned
    def decide(self, ids):
        calls.append(ids)
        return "decided"

    for gone_already in (False, True):
        state = RequestState("r", abandoned=gone_already)
        token = _current.set(state)
        try:
            answer = decide(None, ["c1"])
        finally:
            _current.reset(token)
    assert calls == [["c1"]] and answer.status_code == 499 and "skipped" in state.reason
