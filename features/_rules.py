"""The per-table contracts (DESIGN.md section 3): declared columns and value rules.

A value rule is a vectorised function ``(norm, ctx) -> list[Check]`` over the normalised
table (contract columns, RangeIndex). Rules ignore missing values: nullability and type
failures are checked once, generically, from the column declarations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features._columns import Check, Column
from features.contracts import OFFER_KINDS, format_time
from features.roles import RoleMap


@dataclass(frozen=True)
class RuleContext:
    """What rules may need besides the table: ``dup`` marks exact duplicates (ignored by
    uniqueness rules), ``failed`` the rows per column whose value had the wrong type."""

    dup: np.ndarray
    failed: dict[str, np.ndarray] = field(default_factory=dict)

    def failed_in(self, column: str) -> np.ndarray:
        return self.failed.get(column, np.zeros(len(self.dup), dtype=bool))


Rules = Callable[[pd.DataFrame, RuleContext], list[Check]]


@dataclass(frozen=True)
class TableSpec:
    """A table's contract.

    ``needs_rows``: zero rows is a structural error. ``attributes``: extra columns are
    expected (customers) and not listed in the report. ``derive`` adds ``derived`` columns
    to the normalised table before the value rules run (input columns of those names are
    replaced). ``time_format`` is how the source writes its timestamps (None: ISO 8601 and
    the like). ``deduplicate``: exact duplicate rows are removed (off for logs with genuine
    repeats).
    """

    name: str
    columns: tuple[Column, ...]
    rules: Rules
    describe_row: Callable[[pd.DataFrame, int], str]
    needs_rows: bool = False
    attributes: bool = False
    derive: Callable[[pd.DataFrame], pd.DataFrame] | None = None
    derived: tuple[str, ...] = ()
    time_format: str | None = None
    deduplicate: bool = True

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


# ---- reusable rules -------------------------------------------------------------------


def non_negative(norm: pd.DataFrame, column: str, where: np.ndarray | None = None) -> Check:
    """Finite values below zero (restricted to ``where`` rows when given)."""
    values = norm[column].to_numpy(dtype="float64", na_value=np.nan)
    mask = np.isfinite(values) & (values < 0)
    return Check(column, "must be >= 0", mask if where is None else mask & where)


def one_of(norm: pd.DataFrame, column: str, allowed: Iterable[str]) -> Check:
    """Present values outside ``allowed``."""
    allowed = tuple(allowed)
    values = norm[column]
    mask = (values.notna() & ~values.isin(allowed)).to_numpy()
    return Check(column, "must be one of " + ", ".join(allowed), mask)


def unique(norm: pd.DataFrame, ctx: RuleContext, column: str) -> Check:
    """Every row whose id also appears on another (non-duplicate) row."""
    return Check(column, "must be unique", repeated(norm[column], ctx))


def repeated(keys: pd.Series, ctx: RuleContext) -> np.ndarray:
    """Rows whose (present) key also appears on another row; exact duplicates excluded."""
    candidates = keys[~ctx.dup & keys.notna().to_numpy()]
    again = candidates.duplicated(keep=False)
    mask = np.zeros(len(keys), dtype=bool)
    mask[again.index[again.to_numpy()]] = True
    return mask


# ---- events ---------------------------------------------------------------------------


def add_roles(norm: pd.DataFrame, role_map: RoleMap) -> pd.DataFrame:
    """Input: normalised events. Output: the same plus ``role`` (Categorical)."""
    return norm.assign(role=role_map.roles_for(norm["event_type"]))


def event_rules(norm: pd.DataFrame, ctx: RuleContext) -> list[Check]:
    """Amounts are >= 0, and present on purchase-role events."""
    purchase = (norm["role"] == "purchase").to_numpy()
    negative = non_negative(norm, "amount")
    missing = norm["amount"].isna().to_numpy() & ~ctx.failed_in("amount")
    return [
        Check("amount", "must be >= 0 for purchase events", negative.mask & purchase),
        Check("amount", negative.rule, negative.mask & ~purchase),
        Check("amount", "must not be null for purchase events", missing & purchase),
    ]


def describe_event(norm: pd.DataFrame, pos: int) -> str:
    """``customer c17 at 2024-03-02T10:00Z (row 4)``, or ``row 4 at ...`` without a customer."""
    customer, stamp = norm["customer_id"].iat[pos], norm["timestamp"].iat[pos]
    who = f"row {pos}" if pd.isna(customer) else f"customer {customer}"
    when = "" if pd.isna(stamp) else f" at {format_time(stamp)}"
    return f"{who}{when}" + ("" if pd.isna(customer) else f" (row {pos})")


EVENTS = TableSpec(
    name="events",
    columns=(
        Column("customer_id", "str", required=True, nullable=False),
        Column("timestamp", "time", required=True, nullable=False),
        Column("event_type", "str", required=True, nullable=False),
        Column("amount", "float"),
        Column("product", "str"),
        Column("channel", "str"),
        Column("offer_id", "str"),
    ),
    rules=event_rules,
    describe_row=describe_event,
    needs_rows=True,
    derived=("role",),
)


# ---- customers, offers, exposures -----------------------------------------------------


def _describe_by(label: str, column: str) -> Callable[[pd.DataFrame, int], str]:
    def describe(norm: pd.DataFrame, pos: int) -> str:
        key = norm[column].iat[pos]
        return f"row {pos}" if pd.isna(key) else f"{label} {key} (row {pos})"

    return describe


def customer_rules(norm: pd.DataFrame, ctx: RuleContext) -> list[Check]:
    """One row per customer."""
    return [unique(norm, ctx, "customer_id")]


CUSTOMERS = TableSpec(
    name="customers",
    columns=(
        Column("customer_id", "str", required=True, nullable=False),
        Column("signup_at", "time"),
    ),
    rules=customer_rules,
    describe_row=_describe_by("customer", "customer_id"),
    attributes=True,
)


def offer_rules(norm: pd.DataFrame, ctx: RuleContext) -> list[Check]:
    """Unique ids, a known kind, non-negative value/cost/cooldown."""
    return [
        unique(norm, ctx, "offer_id"),
        one_of(norm, "kind", OFFER_KINDS),
        non_negative(norm, "value"),
        non_negative(norm, "cost"),
        non_negative(norm, "cooldown_days"),
    ]


OFFERS = TableSpec(
    name="offers",
    columns=(
        Column("offer_id", "str", required=True, nullable=False),
        Column("kind", "lower", required=True, nullable=False),
        Column("product", "str"),
        Column("value", "float", required=True, nullable=False),
        Column("cost", "float", required=True, nullable=False),
        Column("eligible_stages", "stages"),
        Column("exclude_if_owned", "bool", default=False),
        Column("cooldown_days", "int", default=0),
        Column("channel", "str"),
    ),
    rules=offer_rules,
    describe_row=_describe_by("offer", "offer_id"),
    needs_rows=True,
)


def exposure_rules(
    norm: pd.DataFrame, ctx: RuleContext, known_offers: Iterable[str] | None = None
) -> list[Check]:
    """Unique ids, propensity in (0, 1], revenue >= 0, offer ids in the catalog if given."""
    propensity = norm["propensity"].to_numpy(dtype="float64", na_value=np.nan)
    in_range = (propensity > 0) & (propensity <= 1)
    checks = [
        unique(norm, ctx, "exposure_id"),
        Check("propensity", "must be in (0, 1]", np.isfinite(propensity) & ~in_range),
        non_negative(norm, "revenue"),
    ]
    if known_offers is not None:
        offer = norm["offer_id"]
        unknown = (offer.notna() & ~offer.isin(list(known_offers))).to_numpy()
        checks.append(Check("offer_id", "must exist in offers", unknown))
    return checks


EXPOSURES = TableSpec(
    name="exposures",
    columns=(
        Column("exposure_id", "str", required=True, nullable=False),
        Column("customer_id", "str", required=True, nullable=False),
        Column("offer_id", "str", required=True),
        Column("sent_at", "time", required=True, nullable=False),
        Column("channel", "str"),
        Column("propensity", "float", required=True, nullable=False),
        Column("converted", "bool"),
        Column("revenue", "float"),
    ),
    rules=exposure_rules,
    describe_row=_describe_by("exposure", "exposure_id"),
)


# ---- subscriptions and user-supplied labels ---------------------------------------------


def subscription_rules(norm: pd.DataFrame, ctx: RuleContext) -> list[Check]:
    """A period ends after it starts; value >= 0; discount a fraction in [0, 1]."""
    start, end = norm["period_start"], norm["period_end"]
    backwards = (start.notna() & end.notna() & (end <= start)).to_numpy()
    discount = norm["discount"].to_numpy(dtype="float64", na_value=np.nan)
    return [
        Check("period_end", "must be after period_start", backwards),
        non_negative(norm, "recurring_value"),
        Check(
            "discount",
            "must be in [0, 1]",
            np.isfinite(discount) & ((discount < 0) | (discount > 1)),
        ),
    ]


SUBSCRIPTIONS = TableSpec(
    name="subscriptions",
    columns=(
        Column("customer_id", "str", required=True, nullable=False),
        Column("product", "str"),
        Column("period_start", "time", required=True, nullable=False),
        Column("period_end", "time", required=True, nullable=False),
        Column("recurring_value", "float"),
        Column("discount", "float"),
    ),
    rules=subscription_rules,
    describe_row=_describe_by("customer", "customer_id"),
    needs_rows=True,
)


def label_rules(norm: pd.DataFrame, ctx: RuleContext) -> list[Check]:
    """Labels are 0 or 1; one label per customer and as-of date."""
    label = norm["label"].to_numpy(dtype="float64", na_value=np.nan)
    key = norm["customer_id"].astype("str") + "@" + norm["as_of"].astype("str")
    return [
        Check("label", "must be 0 or 1", np.isfinite(label) & ~np.isin(label, (0, 1))),
        Check("customer_id", "must have one label per as_of", repeated(key, ctx)),
    ]


LABELS = TableSpec(
    name="labels",
    columns=(
        Column("customer_id", "str", required=True, nullable=False),
        Column("as_of", "time", required=True, nullable=False),
        Column("label", "float", required=True, nullable=False),
    ),
    rules=label_rules,
    describe_row=_describe_by("customer", "customer_id"),
    needs_rows=True,
)
