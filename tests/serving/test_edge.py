"""serving.edge: under overload a request is refused before BentoML's middlewares, in
process on small ASGI apps; through a real server in test_http_server.py."""

from __future__ import annotations

import asyncio
import logging

from serving import edge
from serving.edge import EdgeShed
from serving.traffic import LoadShed, RequestLog
from tests.serving.test_traffic import body_then, call, ok_app


def counting(app, calls: list):
    """``app``, recording each path that reaches it (what BentoML's middlewares would see)."""

    async def counted(scope, receive, send) -> None:
        calls.append(scope["path"])
        await app(scope, receive, send)

    return counted


def test_while_the_worker_is_full_a_request_is_refused_before_the_stack():
    async def scenario():
        gate, calls, read = asyncio.Event(), [], []
        stack = EdgeShed(counting(RequestLog(LoadShed(ok_app(gate=gate), limit=1)), calls))
        first = asyncio.ensure_future(call(stack))
        await asyncio.sleep(0.01)  # in flight, held by the gate

        async def body() -> dict:
            read.append(True)
            return await body_then()()

        shed = await asyncio.wait_for(call(stack, receive=body, request_id=b"caller-7"), 1)
        probe = await asyncio.wait_for(call(stack, "/readyz"), 1)
        gate.set()
        return await first, shed, probe, await call(stack), calls, read

    first, shed, probe, after, calls, read = asyncio.run(scenario())
    assert shed["status"] == 503 and shed["headers"][b"retry-after"] == b"1"
    assert b"max_in_flight" in shed["body"] and shed["headers"][b"x-request-id"] == b"caller-7"
    assert read == [], "the refused request's body was read"
    assert calls == ["/decide", "/readyz", "/decide"], "the refused request reached the stack"
    assert (first["status"], probe["status"], after["status"]) == (200, 200, 200)


def test_nothing_is_refused_at_the_edge_while_a_slot_is_free():
    async def scenario():
        gate, calls = asyncio.Event(), []
        stack = EdgeShed(counting(LoadShed(ok_app(gate=gate), limit=2), calls))
        first = asyncio.ensure_future(call(stack))
        await asyncio.sleep(0.01)
        second = asyncio.ensure_future(call(stack))
        await asyncio.sleep(0.01)
        gate.set()
        return await first, await second, calls

    first, second, calls = asyncio.run(scenario())
    assert (first["status"], second["status"], calls) == (200, 200, ["/decide", "/decide"])
    assert LoadShed.full() is None  # both finished: nothing in flight


def test_refusals_are_logged_as_one_line_per_interval(caplog):
    clock = [0.0]

    async def scenario():
        gate = asyncio.Event()
        stack = EdgeShed(LoadShed(ok_app(gate=gate), limit=1), clock=lambda: clock[0])
        first = asyncio.ensure_future(call(stack))
        await asyncio.sleep(0.01)
        for _ in range(5):
            await call(stack)
        clock[0] += edge.SUMMARY_SECONDS
        for _ in range(3):
            await call(stack)
        gate.set()
        await first

    with caplog.at_level(logging.INFO, logger="serving.requests"):
        asyncio.run(scenario())
    lines = [r.getMessage() for r in caplog.records if "at the edge" in r.getMessage()]
    assert [line.split(" request")[0] for line in lines] == ["shed 1", "shed 5"]
