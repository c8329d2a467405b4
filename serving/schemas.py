"""Request and response models of the decision API (pydantic; the OpenAPI at /docs.json)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from serving.ledger import EVENTS


class Strict(BaseModel):
    """A request model: unknown fields are refused (a 422 naming them, not silently dropped)
    and types are strict (``"yes"`` is not a boolean, ``"3"`` not an integer: JSON's own
    types only; an integer is a number)."""

    model_config = ConfigDict(extra="forbid", strict=True)


def _integral(value: object) -> object:
    """``20.0`` as ``20``: JSON (and JSON Schema) make no difference between them; anything
    else is left to the strict check (``"20"`` and ``20.5`` are refused)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def json_int(**bounds) -> object:
    """An integer field type with ``bounds`` (``ge``, ``le``) that takes ``20.0`` for ``20``."""
    return Annotated[int, Field(**bounds), BeforeValidator(_integral)]


CustomerId = Annotated[str, Field(min_length=1, max_length=200)]
MaxOffers = Annotated[json_int(ge=1, le=20), Field(description="ranked offers returned")]


class Reason(BaseModel):
    feature: str
    label: str = Field(description="readable name of the feature")
    value: float | str | None = Field(description="the customer's value of the feature")
    contribution: float = Field(description="push toward churn on the log-odds scale")


class Stage(BaseModel):
    current: str
    next: dict[str, float] = Field(description="probability of each stage at the horizon")


class Churn(BaseModel):
    probability: float
    risk_band: Literal["low", "medium", "high"]
    reasons: list[Reason] = Field(default_factory=list, description="with explain=true")


class CLV(BaseModel):
    """Customer lifetime value: the discounted expected margin over the horizon, in the
    currency units of the data's purchase amounts."""

    value: float = Field(description="expected margin over horizon_days, discounted")
    value_at_risk: float = Field(description="churn probability x value: what churn costs")
    horizon_days: int | None
    estimator: Literal["learned", "probabilistic"] = Field(
        description="learned: the CLV model (LightGBM on realised margins); probabilistic: "
        "BG/NBD purchases x Gamma-Gamma spend, fitted without labels"
    )


class OfferScore(BaseModel):
    offer_id: str
    kind: str
    uplift: float | None = Field(
        description="conversion probability gained vs no offer; null when unknown, e.g. "
        "without an offers model (the cold-start policy: see offers_status)"
    )
    expected_value: float | None = Field(description="uplift x value - cost; null when unknown")
    eligible: bool
    ineligible_reason: str | None = None


class Choice(BaseModel):
    decision_id: str
    offer_id: str | None = Field(description="null = no offer")
    propensity: float = Field(description="probability the policy had of choosing this")
    explored: bool = Field(
        description="a random choice: the exploration draw (not the greedy rule), or the "
        "cold-start policy's draw among several actions"
    )
    expected_value: float | None = Field(
        description="of the chosen action (0 for no offer); null under the cold-start policy"
    )
    policy: Literal["model", "cold_start"] = Field(
        description="the policy that chose: epsilon-greedy on the offers model, or the "
        "cold-start policy (at random, with a control share) while there is no offers model"
    )


class OffersStatus(BaseModel):
    """Which policy decides offers, and why there is no offers model or no offers at all."""

    available: bool = Field(description="offers are decided (by the model or the cold start)")
    policy: Literal["model", "cold_start"] | None = Field(
        description="model: the offers model; cold_start: a catalog but no offers model; "
        "null: no catalog, so no offers and no decision"
    )
    reason: str | None = Field(description="why there is no offers model or no offers")


class ErrorDetail(BaseModel):
    code: str
    message: str


class CustomerResult(BaseModel):
    """One customer's answer: the decision, or ``error`` (and nulls) when there is none, e.g.
    an id the store does not know. One shape, so every client decodes both kinds alike.
    ``decision`` is also null (and ``offers`` empty) when no offer policy runs (no offer
    catalog: the response's ``offers_status`` says why)."""

    customer_id: str
    error: ErrorDetail | None = None
    stage: Stage | None = None
    churn: Churn | None = None
    clv: CLV | None = Field(None, description="null when unknown (no purchase yet, no estimator)")
    p_alive: float | None = Field(
        None, description="BG/NBD P(the customer still buys at all); null for non-buyers"
    )
    offers: list[OfferScore] = Field(default_factory=list)
    decision: Choice | None = None
    models: dict[str, str] = Field(default_factory=dict)
    features_as_of: str | None = None


class DecideResponse(BaseModel):
    results: list[CustomerResult]
    models: dict[str, str]
    features_as_of: str | None
    store_version: int | None = None
    offers_status: OffersStatus


class EventIn(Strict):
    """One event of a cold-start customer (the events contract's columns)."""

    timestamp: str = Field(description="ISO-8601; naive = UTC")
    event_type: str = Field(min_length=1)
    amount: float | None = None
    product: str | None = None
    channel: str | None = None
    offer_id: str | None = None


class PeriodIn(Strict):
    """One billing period of a cold-start customer (the subscriptions contract's columns)."""

    period_start: str = Field(description="ISO-8601; naive = UTC")
    period_end: str = Field(description="ISO-8601, after period_start")
    product: str | None = None
    recurring_value: float | None = Field(None, ge=0.0)
    discount: float | None = Field(None, ge=0.0, le=1.0)


class ColdCustomer(Strict):
    customer_id: str = Field(min_length=1, max_length=200)
    events: list[EventIn] = Field(min_length=1)
    attributes: dict[str, str] = Field(
        default_factory=dict, description="customers-table attributes, e.g. plan, region"
    )
    subscriptions: list[PeriodIn] = Field(
        default_factory=list,
        description="billing periods (the subscriptions table's rows) for models trained with "
        "one: the contract features are built from them, none sent = no contract",
    )


class BatchFilter(Strict):
    stages: list[str] | None = Field(None, description="current stages to include")
    min_churn: float = Field(0.0, ge=0.0, le=1.0)
    max_churn: float = Field(1.0, ge=0.0, le=1.0)
    min_clv: float | None = Field(None, ge=0.0, description="customers with a CLV at least this")
    min_value_at_risk: float | None = Field(
        None, ge=0.0, description="customers whose churn probability x CLV is at least this"
    )
    sort_by: Literal["churn", "clv", "value_at_risk"] = Field(
        "churn",
        description="the order of the audience, highest first (value_at_risk: how a "
        "retention audience is chosen)",
    )
    limit: json_int(ge=1, le=10_000) = 1000  # type: ignore[valid-type]


class FeedbackEvent(Strict):
    event_id: str = Field(min_length=1, max_length=200, description="idempotency key")
    event: Literal[EVENTS] = Field(description="sent, opened, clicked or converted")  # type: ignore[valid-type]
    decision_id: str | None = Field(None, max_length=200)
    customer_id: str | None = Field(None, max_length=200)
    offer_id: str | None = Field(None, max_length=200)
    revenue: float | None = Field(
        None, ge=0.0, allow_inf_nan=False, description="finite, >= 0 (a conversion's revenue)"
    )
    occurred_at: str | None = Field(None, description="ISO-8601; default: now")


class FeedbackResponse(BaseModel):
    accepted: int
    duplicates: int
    rejected: list[dict] = Field(description="{event_id, error}: events refused, and why")


class ModelsResponse(BaseModel):
    """``GET /models``: what is loaded and why the service is not ready (the README lists
    every field; more may be added)."""

    ready: bool
    error: str | None = Field(description="why the service cannot decide; null when ready")
    source: str | None = Field(description="where the models came from; null before a load")
    models: dict[str, dict[str, Any]]
    offers: dict[str, Any] = Field(description="offers_status (available, policy, reason), catalog")
    clv: dict[str, Any] | None
    store: dict[str, Any] | None
    policy: dict[str, Any]


class DecideRequest(Strict):
    """``POST /decide``: customers in the online store."""

    customer_ids: list[CustomerId] = Field(
        min_length=1, description="at most max_ids (default 1,000); more: POST /batch"
    )
    channel: str | None = None
    explain: bool = False
    max_offers: MaxOffers = 3


class ScoreRequest(Strict):
    """``POST /score``: cold start, customers the store does not know, from their events."""

    customers: list[ColdCustomer] = Field(min_length=1, max_length=100)
    as_of: str | None = Field(None, description="ISO-8601; default: now")
    channel: str | None = None
    explain: bool = False
    max_offers: MaxOffers = 3


def _exactly_one_of_ids_or_filter(schema: dict) -> None:
    """Absent is how ``customer_ids`` and ``filter`` are left out (null is refused), and
    the schema says that exactly one is sent."""
    for name in ("customer_ids", "filter"):
        schema["properties"][name].pop("default", None)
    schema["oneOf"] = [{"required": ["customer_ids"]}, {"required": ["filter"]}]


class BatchRequest(Strict):
    """``POST /batch``: a campaign audience, by ids or by a filter (exactly one)."""

    model_config = ConfigDict(json_schema_extra=_exactly_one_of_ids_or_filter)

    customer_ids: list[CustomerId] = Field(
        None, min_length=1, description="at most batch_max_ids (default 10,000)"
    )  # type: ignore[assignment] - absent, never null
    filter: BatchFilter = None  # type: ignore[assignment]
    channel: str | None = None
    explain: bool = False
    max_offers: MaxOffers = 1

    @model_validator(mode="after")
    def _one_audience(self) -> BatchRequest:
        if (self.customer_ids is None) == (self.filter is None):
            raise ValueError("send exactly one of customer_ids or filter")
        return self


class FeedbackRequest(Strict):
    """``POST /feedback``: sends, opens, clicks and conversions of decided offers."""

    events: list[FeedbackEvent] = Field(min_length=1, max_length=10_000)


class ErrorItem(BaseModel):
    """One field that failed validation."""

    loc: list[str | int] = Field(description="path to the field in the body, e.g. [customers, 0]")
    msg: str = Field(description="the rule it broke")
    type: str = Field(description="pydantic's error type, e.g. extra_forbidden, bool_type")


class ErrorBody(BaseModel):
    """Every error the service answers (4xx and 5xx), in one shape."""

    error: str = Field(description="what went wrong and, when the caller can, what to do")
    details: list[ErrorItem] | None = Field(
        description="for a 422: every field that failed validation; null otherwise"
    )
