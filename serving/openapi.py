"""The OpenAPI 3.1 spec at ``GET /docs.json``, written from the same pydantic models that
validate the requests and shape the answers, so that the spec is the service (issue 15, point
7): every status each route answers with its body (errors: the one ``ErrorBody``,
:mod:`serving.errors`), the bearer token (and ``X-API-Key``) when one is configured, the
request bodies required, nullable fields nullable, unknown fields refused
(``additionalProperties: false``), and the running config's id limits as ``maxItems``.

BentoML's own spec (OpenAPI 3.0) drops ``null`` from request fields, declares error bodies
the service never sends, no security and no ``GET /models``; it is replaced, not patched.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic.json_schema import models_json_schema
from starlette.responses import JSONResponse

from serving.middleware import configured
from serving.schemas import (
    BatchRequest,
    DecideRequest,
    DecideResponse,
    ErrorBody,
    FeedbackRequest,
    FeedbackResponse,
    ModelsResponse,
    ScoreRequest,
)

REF = "#/components/schemas/{model}"
REQUEST_ID = {
    "description": "the caller's X-Request-ID when sane, else a new one; in the log lines",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,128}$"},
}
RETRY_AFTER = {
    "description": "seconds to wait",
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}
ERRORS = {
    400: "a rule beyond the schema: a limit of the running config, or a domain rule (the "
    "message names the field, the rule and the bad value)",
    401: "missing or wrong API token",
    413: "body larger than max_body_bytes (before it is read)",
    415: "a body that is not application/json",
    422: "the body fails validation: details names every field (wrong type, unknown field, "
    "out of range, missing)",
    500: "an unexpected error; the message gives the request id the server log names",
    503: "cannot decide now (models or store missing, a backend down) or overloaded "
    "(max_in_flight): the message says which; retry after Retry-After seconds",
}
APIS = {  # route: (request, answer, summary, what a 400 means there)
    "/decide": (DecideRequest, DecideResponse, "decisions for customers in the online store",
                "more ids than max_ids"),
    "/score": (ScoreRequest, DecideResponse, "cold start: decisions from a customer's events",
               "events failing the data contract (field, rule, value), more than max_events"),
    "/batch": (BatchRequest, DecideResponse, "a campaign audience, by ids or by a filter",
               "more ids than batch_max_ids; a CLV filter or sort without a CLV model"),
    "/feedback": (FeedbackRequest, FeedbackResponse, "sends, opens, clicks and conversions",
                  None),
}  # fmt: skip


def build_spec(token: bool, max_ids: int, batch_max_ids: int) -> dict:
    """The OpenAPI 3.1 document; ``token``: a token is configured (the APIs declare the
    bearer scheme and 401), ``max_ids``/``batch_max_ids``: the config's id limits."""
    requests = [(model, "validation") for model, *_ in APIS.values()]
    answers = [(m, "serialization") for m in (DecideResponse, FeedbackResponse, ModelsResponse)]
    refs, top = models_json_schema([*requests, *answers, (ErrorBody, "serialization")],
                                   ref_template=REF)  # fmt: skip
    schemas = top["$defs"]
    for model, limit in ((DecideRequest, max_ids), (BatchRequest, batch_max_ids)):
        schemas[model.__name__]["properties"]["customer_ids"]["maxItems"] = limit
    error_ref = refs[(ErrorBody, "serialization")]
    paths = {route: {"post": _api(route, refs, error_ref, token)} for route in APIS}
    paths["/models"] = {"get": _operation(
        "what is loaded: versions, training dates, metrics, the store, the policy, and why "
        "the service is not ready", "200", _json(refs[(ModelsResponse, "serialization")]),
        _errors(error_ref, (401,) if token else (), (500, 503)), token)}  # fmt: skip
    paths.update(_probes(error_ref))
    spec = {
        "openapi": "3.1.0",
        "info": {
            "title": "lifecycle",
            "version": "1",
            "description": "Stage, churn risk with reasons and the next-best offer for "
            "each customer. Every error answers ErrorBody.",
        },  # fmt: skip
        "paths": paths,
        "components": {"schemas": schemas},
    }
    if token:
        spec["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        }
    return spec


def _api(route: str, refs: dict, error_ref: dict, token: bool) -> dict:
    request, answer, summary, bad = APIS[route]
    errors = _errors(error_ref, (400,) if bad else (), (401,) if token else (),
                     (413, 415, 422, 500, 503))  # fmt: skip
    if bad:
        errors["400"]["description"] = f"{ERRORS[400]}: {bad}"
    operation = _operation(summary, "200", _json(refs[(answer, "serialization")]), errors, token)
    operation["operationId"] = route.strip("/")
    operation["requestBody"] = {"required": True,
                                **_json(refs[(request, "validation")])}  # fmt: skip
    return operation


def _operation(summary: str, ok: str, ok_body: dict, errors: dict, token: bool) -> dict:
    ok_answer = {"description": "OK", "headers": {"X-Request-ID": REQUEST_ID}, **ok_body}
    operation = {"summary": summary, "responses": {ok: ok_answer, **errors}}
    operation["security"] = [{"bearer": []}, {"apiKey": []}] if token else []
    return operation


def _errors(error_ref: dict, *groups: tuple[int, ...]) -> dict:
    responses = {}
    for status in (s for group in groups for s in group):
        headers = {"X-Request-ID": REQUEST_ID}
        if status == 503:
            headers["Retry-After"] = {**RETRY_AFTER, "required": True}
        responses[str(status)] = {"description": ERRORS[status], "headers": headers,
                                  **_json(error_ref)}  # fmt: skip
    return responses


def _json(ref: dict) -> dict:
    return {"content": {"application/json": {"schema": ref}}}


def _probes(error_ref: dict) -> dict:
    """The probes and the metrics: open, never shed, plain text."""
    text = {"content": {"text/plain": {"schema": {"type": "string"}}}}

    def probe(summary: str, **more) -> dict:
        ok = {"description": "OK", "headers": {"X-Request-ID": REQUEST_ID}, **text}
        return {"get": {"summary": summary, "security": [], "responses": {"200": ok, **more}}}

    not_ready = {"description": "not ready: the message says what is missing",
                 "headers": {"X-Request-ID": REQUEST_ID, "Retry-After": RETRY_AFTER},
                 **_json(error_ref)}  # fmt: skip
    return {
        "/livez": probe("liveness"),
        "/healthz": probe("liveness (BentoML's older name)"),
        "/readyz": probe(
            "ready once the churn and stage models and the store are loaded", **{"503": not_ready}
        ),  # fmt: skip
        "/metrics": probe("Prometheus metrics"),
    }


@lru_cache(maxsize=4)
def _cached_spec(token: bool, max_ids: int, batch_max_ids: int) -> dict:
    return build_spec(token, max_ids, batch_max_ids)


class OpenApiSpec:
    """Pure ASGI middleware answering ``GET /docs.json`` with :func:`build_spec` for the
    running service's config (BentoML's page at ``/`` reads it)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != "/docs.json" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        spec = _cached_spec(bool(configured("api_token", "")), configured("max_ids", 1000),
                           configured("batch_max_ids", 10_000))  # fmt: skip
        await JSONResponse(spec)(scope, receive, send)
