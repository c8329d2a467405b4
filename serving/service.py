"""The decision service: ``bentoml serve serving.service:LifecycleService`` (or ``lifecycle
serve``). A thin shell (DESIGN section 10): validate -> look up / build features with the same
code as training -> predict and decide -> respond, logging every decision to the ledger.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import sys
import threading

import bentoml
import numpy as np
import orjson
import pandas as pd
from bentoml.exceptions import InvalidArgument, ServiceUnavailable
from pydantic import ValidationError
from starlette.responses import JSONResponse, Response

from features.store import NoVersionError, StoreUnavailableError
from serving import cold_start, metric_labels
from serving.config import load_config
from serving.edge import shed_at_the_edge
from serving.engine import Contacts, DecisionEngine, Scores
from serving.errors import ErrorShape
from serving.inputs import FeatureRows
from serving.ledger_common import Decisions
from serving.metrics import count_decisions, count_feedback, count_unlogged
from serving.middleware import BodyLimit, JsonOnly, ModelsEndpoint, TokenAuth
from serving.openapi import OpenApiSpec
from serving.readiness import ReadyzSaysWhy
from serving.schemas import (
    BatchFilter,
    BatchRequest,
    ColdCustomer,
    CustomerId,
    DecideRequest,
    DecideResponse,
    FeedbackEvent,
    FeedbackRequest,
    FeedbackResponse,
    MaxOffers,
    ScoreRequest,
)
from serving.state import ServiceState
from serving.traffic import (
    LoadShed,
    RequestLog,
    abandoned,
    decisions_logged,
    install_logging,
    patch_bentoml_timeout,
    unless_abandoned,
)


class ServerBug(RuntimeError):
    """A pydantic ``ValidationError`` raised by the service's own code after the request
    was accepted: a 500 (the server's fault), not the 422 BentoML gives a ValidationError."""


def unavailable_says_why(api):
    """A ``ServiceUnavailable`` from ``api`` becomes a 503 whose body names what is missing
    (models, store, a store that cannot serve them) with ``Retry-After``; BentoML's own
    handler answers every 5xx with a generic message. A pydantic ``ValidationError`` from
    ``api`` (the request body was valid: BentoML validated it before) is re-raised as
    :class:`ServerBug`, so it answers 500 with the request id, not a 422 blaming the
    caller."""

    @functools.wraps(api)
    def answer(self, *args, **kwargs):
        try:
            return api(self, *args, **kwargs)
        except ServiceUnavailable as err:
            return JSONResponse({"error": str(err), "details": None}, status_code=503,
                                headers={"retry-after": "30"})  # fmt: skip
        except ValidationError as err:
            raise ServerBug(f"{api.__name__}: the service built an invalid value: {err}") \
                from err  # fmt: skip

    return answer


def stop_with_supervisor() -> None:
    """On Linux, have the kernel send this worker SIGTERM (a clean stop: the ledger closed)
    when the process that started it, BentoML's supervisor, dies, even by SIGKILL or the OOM
    killer: an orphaned worker would go on holding the port, the ledger and a core with nobody
    left to stop it. A supervisor already gone stops it at once."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


@bentoml.service(name="lifecycle", traffic={"timeout": 120}, workers=1)
class LifecycleService:
    """Stage, churn risk with reasons and the next-best offer for each customer.

    Each API validates its body with its request model (``input_spec``, strict, unknown
    fields refused: :mod:`serving.schemas`); the parameters below receive its fields."""

    def __init__(self) -> None:
        stop_with_supervisor()
        install_logging()
        self.config = load_config()
        self.state = ServiceState(self.config)
        self.state.try_load()
        self.state.start_reloader()
        self.state.start_monitor_metrics()
        self._rng = np.random.default_rng(self.config.seed)
        self._rng_lock = threading.Lock()
        self._reserves = self.config.reserves_contacts  # decide inside the customers' locks

    def __is_ready__(self) -> bool:
        return self.state.ready()

    @bentoml.on_shutdown
    def _stop_reloader(self) -> None:
        self.state.stop()

    @bentoml.api(route="/decide", input_spec=DecideRequest)
    @unavailable_says_why
    @unless_abandoned
    def decide(
        self,
        customer_ids: list[CustomerId],
        channel: str | None = None,
        explain: bool = False,
        max_offers: MaxOffers = 3,
    ) -> DecideResponse:
        """Decisions for customers in the online store (unknown ids get an error entry)."""
        _limit("customer_ids", customer_ids, self.config.max_ids, "use POST /batch for more")
        engine = self._engine()
        rows, scores = self._lookup(customer_ids, engine)
        return self._respond(engine, rows, channel, max_offers, explain, scores)

    @bentoml.api(route="/score", input_spec=ScoreRequest)
    @unavailable_says_why
    @unless_abandoned
    def score(
        self,
        customers: list[ColdCustomer],
        as_of: str | None = None,
        channel: str | None = None,
        explain: bool = False,
        max_offers: MaxOffers = 3,
    ) -> DecideResponse:
        """Cold start: decisions for customers not in the store, from their recent events."""
        n_events = sum(len(c.events) for c in customers)
        if n_events > self.config.max_events:
            raise InvalidArgument(f"customers[].events: at most {self.config.max_events} events "
                                  f"per request; got {n_events}")  # fmt: skip
        engine = self._engine()
        try:
            rows = cold_start.feature_rows(customers, as_of or self.state.clock.timestamp(),
                                           engine.project,
                                           engine.reads_contracts)  # fmt: skip
        except ValueError as err:
            raise InvalidArgument(str(err)) from None
        return self._respond(engine, rows, channel, max_offers, explain)

    @bentoml.api(route="/batch", input_spec=BatchRequest)
    @unavailable_says_why
    @unless_abandoned
    def batch(
        self,
        customer_ids: list[CustomerId] | None = None,
        filter: BatchFilter | None = None,  # noqa: A002 - the API's field name
        channel: str | None = None,
        explain: bool = False,
        max_offers: MaxOffers = 1,
    ) -> DecideResponse:
        """A campaign audience: up to ``batch_max_ids`` ids, or a filter on stage and churn."""
        engine = self._engine()
        scores = None
        if customer_ids is not None:
            _limit("customer_ids", customer_ids, self.config.batch_max_ids, "split the audience")
            rows, scores = self._lookup(customer_ids, engine)
        else:
            rows, scores = self._audience(engine, filter)
        return self._respond(engine, rows, channel, max_offers, explain, scores)

    @bentoml.api(route="/feedback", input_spec=FeedbackRequest)
    @unavailable_says_why  # the ledger's server down: a 503 naming it, nothing acknowledged
    def feedback(self, events: list[FeedbackEvent]) -> FeedbackResponse:
        """Sends, opens, clicks and conversions; idempotent on event_id, on disk before 200."""
        records, refused = [], []
        now, c = self.state.clock.timestamp(), self.state.config
        window = (now - pd.Timedelta(days=c.feedback_max_age_days),
                  now + pd.Timedelta(seconds=c.feedback_max_future_seconds))  # fmt: skip
        for event in events:
            record, error = _feedback_record(event, now, window)
            if error:
                refused.append((event.model_dump(), error))
            else:
                records.append(record)
        result = self.state.ledger.record_feedback(records, refused)
        count_feedback(result.accepted, result.duplicates, len(result.rejected))
        return FeedbackResponse(accepted=result.accepted, duplicates=result.duplicates,
                                rejected=result.rejected)  # fmt: skip

    # ---- shared private logic (never call one @bentoml.api from another) ------------

    def _engine(self) -> DecisionEngine:
        engine = self.state.engine
        if engine is None:
            raise ServiceUnavailable(f"models are not loaded: {self.state.error}")
        return engine

    def _store_agrees(self) -> None:
        """503 when the store was built with another config than the models (never score
        vectors that mean something else)."""
        problem = self.state.store_problem()
        if problem:
            raise ServiceUnavailable(problem)

    def _lookup(self, ids: list[str], engine: DecisionEngine) -> tuple[FeatureRows, Scores | None]:
        """The ids' rows, and their scores when precomputed (see ServiceState.lookup_scored)."""
        self._store_agrees()
        try:
            return self.state.lookup_scored(ids, engine)
        except StoreUnavailableError as err:  # went down since _store_agrees: names its server
            raise ServiceUnavailable(str(err)) from None
        except NoVersionError as err:
            raise ServiceUnavailable(f"{err}; run `lifecycle features materialize`") from None

    def _audience(self, engine: DecisionEngine, f: BatchFilter) -> tuple[FeatureRows, Scores]:
        """The customers the filter picks, riskiest first, with their (cached) scores."""
        self._store_agrees()
        try:
            rows, scores = self.state.all_scores(engine)
        except NoVersionError as err:
            raise ServiceUnavailable(str(err)) from None
        keep = (scores.churn >= f.min_churn) & (scores.churn <= f.max_churn)
        if f.stages:
            keep &= np.isin(scores.stage, f.stages)
        needs_clv = f.sort_by != "churn" or f.min_clv is not None or f.min_value_at_risk is not None
        if needs_clv and engine.clv_status["estimator"] is None:
            raise InvalidArgument(f"filter: no CLV to filter or sort by: "
                                  f"{engine.clv_status['reason']}")  # fmt: skip
        at_risk = scores.churn * scores.clv  # NaN (unknown CLV) never passes a CLV filter
        if f.min_clv is not None:
            keep &= scores.clv >= f.min_clv
        if f.min_value_at_risk is not None:
            keep &= at_risk >= f.min_value_at_risk
        key = {"churn": scores.churn, "clv": scores.clv, "value_at_risk": at_risk}[f.sort_by]
        picked = np.flatnonzero(keep)
        order = np.argsort(-np.nan_to_num(key[picked], nan=-np.inf), kind="stable")
        picked = picked[order][: f.limit]
        return rows.take(picked), scores.take(picked)

    def _respond(
        self, engine, rows: FeatureRows, channel, max_offers, explain,
        scores: Scores | None = None,
    ) -> Response:  # fmt: skip
        """The decisions as a :class:`DecideResponse` body, already JSON (see
        :func:`json_response`); ``scores``: those of ``rows`` when at hand (every row found)."""
        found = np.flatnonzero(rows.found)
        if len(found) == len(rows.found):
            known = rows
        else:
            known, scores = rows.take(found), None if scores is None else scores.take(found)
        explain = explain and len(found) <= self.config.explain_max
        decide = functools.partial(self._decide, engine, known, self._draws(engine, len(found)),
                                   channel or None, max_offers, explain, scores)  # fmt: skip
        if len(found) and self._reserves and engine.offer_policy is not None:
            decided, logged = self._reserve(engine, known, decide)
        else:
            decided, logged = decide(self._contacts(engine, known))
            if logged:  # decisions with their propensities (none without an offer policy)
                self.state.ledger.record_decisions(logged, self.state.clock.now())
        if logged:
            count_decisions(logged)
            decisions_logged(logged.decision_id, self.state.ledger.mark_undelivered)  # caller left?
        results: list[dict] = [{}] * len(rows.customer_ids)
        for i, out in zip(found, decided, strict=True):
            results[i] = out
        for i in np.flatnonzero(~rows.found):
            results[i] = _unknown(rows, i)
        return json_response({
            "results": results,
            "models": engine.versions,
            "features_as_of": None if rows.as_of is None else rows.as_of.isoformat(),
            "store_version": rows.layout[1] if rows.layout[0] == "store" else None,
            "offers_status": engine.offers_status,
        })  # fmt: skip

    def _draws(self, engine: DecisionEngine, n: int) -> np.ndarray:
        """The offer policy's randomness, one uniform number per customer (no policy: no
        decision, no draw)."""
        if engine.offer_policy is None:
            return np.zeros(n)
        with self._rng_lock:
            return self._rng.random(n)

    def _decide(
        self, engine: DecisionEngine, rows: FeatureRows, draws: np.ndarray, channel, max_offers,
        explain, scores: Scores | None, contacts: Contacts,
    ) -> tuple[list[dict], Decisions | None]:  # fmt: skip
        """The engine's answers for ``rows`` (all found) and the decisions to log: none when
        the caller left (nobody will get them, so nothing may learn from them)."""
        if not len(rows.customer_ids):
            return [], None
        try:
            decided, logged = engine.decide(rows, contacts, draws, channel, max_offers, explain,
                                            scores)  # fmt: skip
        except ValueError as err:  # the store does not hold what the models need
            self.state.error = str(err)
            raise ServiceUnavailable(str(err)) from None
        if logged and abandoned():
            count_unlogged(len(logged.decision_id))
            return decided, None
        return decided, logged

    def _reserve(
        self, engine: DecisionEngine, rows: FeatureRows, decide
    ) -> tuple[list[dict], Decisions | None]:
        """``decide(contacts)`` inside the ledger's :meth:`reserve_contacts`: the contacts
        (counting offers decided but not reported sent), the decision and its record are one
        transaction holding the customers' locks, so that no other request or replica passes
        a contact cap meanwhile (``reserve_contacts`` in the config)."""

        def locked(sends: np.ndarray, days_since: np.ndarray):
            decided, logged = decide(Contacts(sends, days_since))
            return (decided, logged), logged

        return self.state.ledger.reserve_contacts(
            rows.customer_ids, engine.catalog.ids, self.state.clock.now(),
            self.config.policy.contact_window_days, locked)  # fmt: skip

    def _contacts(self, engine: DecisionEngine, rows: FeatureRows) -> Contacts:
        """Sends and days since each catalog offer, from the ledger (no catalog: no query)."""
        if not engine.catalog.ids:
            return Contacts(np.zeros(len(rows.customer_ids)), np.zeros((len(rows.customer_ids), 0)))
        return Contacts(*self.state.ledger.contacts(
            rows.customer_ids, engine.catalog.ids, self.state.clock.now(),
            self.config.policy.contact_window_days))  # fmt: skip


def json_response(body: dict) -> Response:
    """``body`` as JSON, without validating it against the response model first.

    The engine and :func:`_unknown` build every field of :class:`DecideResponse` in its order
    and type (plain dicts, lists, str, float, bool, None), so orjson writes byte for byte
    ``DecideResponse.model_validate(body).model_dump_json()`` (the tests check it) at a
    seventh of the cost: for 1,000 customers validation alone took ~16 ms,
    ``pydantic_core.to_json`` 6.8 ms, orjson 3.5 ms. The API methods keep ``DecideResponse``
    as their return annotation for the OpenAPI schema and the clients; BentoML sends a
    returned ``Response`` as it is.
    """
    return Response(orjson.dumps(body), media_type="application/json")


def _limit(field: str, values: list, limit: int, hint: str) -> None:
    if len(values) > limit:
        raise InvalidArgument(f"{field}: at most {limit} per request; got {len(values)} ({hint})")


def _unknown(rows: FeatureRows, i: int) -> dict:
    customer = rows.customer_ids[i]
    return {"customer_id": customer, "error": {
        "code": "unknown_customer",
        "message": f"customer {customer!r} is not in the online store (features as of "
                   f"{rows.as_of}); send its events to POST /score for a cold-start decision",
    }, "stage": None, "churn": None, "clv": None, "p_alive": None, "offers": [],
        "decision": None, "models": {}, "features_as_of": None}  # fmt: skip


def _feedback_record(
    event: FeedbackEvent, now: pd.Timestamp, window: tuple[pd.Timestamp, pd.Timestamp]
) -> tuple[dict | None, str | None]:
    """The ledger row of ``event``, or why it is refused (no id to match, a time that is
    not ISO-8601 or outside ``window``: ``feedback_max_age_days`` before ``now`` ..
    ``feedback_max_future_seconds`` after)."""
    if not event.decision_id and not event.customer_id:
        return None, "needs decision_id, or customer_id (with offer_id for offer events)"
    bad = f"occurred_at must be an ISO-8601 time; got {event.occurred_at!r}"
    try:
        at = pd.Timestamp(event.occurred_at) if event.occurred_at else now
    except (ValueError, TypeError, OverflowError):
        return None, bad
    if pd.isna(at):
        return None, bad
    at = at.tz_localize("UTC") if at.tzinfo is None else at.tz_convert("UTC")
    if not window[0] <= at <= window[1]:
        return None, (f"occurred_at {at.isoformat()} is outside the accepted window "
                      f"{window[0]:%Y-%m-%dT%H:%M:%SZ} .. {window[1]:%Y-%m-%dT%H:%M:%SZ} "
                      "(feedback_max_age_days before the server's time .. "
                      "feedback_max_future_seconds after)")  # fmt: skip
    return {**event.model_dump(exclude={"occurred_at"}), "occurred_at": at.timestamp()}, None


patch_bentoml_timeout()  # BentoML's traffic timeout kept every request alive for 120 s
shed_at_the_edge()  # under overload, refused before BentoML's middlewares: serving/edge.py
LifecycleService.add_asgi_middleware(RequestLog)  # the first added is the outermost
LifecycleService.add_asgi_middleware(BodyLimit)
LifecycleService.add_asgi_middleware(TokenAuth)
LifecycleService.add_asgi_middleware(LoadShed)  # after the token check: only callers count
LifecycleService.add_asgi_middleware(ModelsEndpoint)
LifecycleService.add_asgi_middleware(JsonOnly)
LifecycleService.add_asgi_middleware(ReadyzSaysWhy)
LifecycleService.add_asgi_middleware(OpenApiSpec)  # GET /docs.json: serving/openapi.py
LifecycleService.add_asgi_middleware(ErrorShape)  # innermost: BentoML's errors, one shape
metric_labels.install(frozenset(api.route for api in LifecycleService.apis.values()))
