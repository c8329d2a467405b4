"""Data contracts: vocabulary, violations, the error type and the load report (DESIGN.md s. 3).

The per-table rules live in :mod:`features._rules` (column declarations and value rules),
type normalisation in :mod:`features._columns`, the validation pipeline in
:mod:`features._engine`; the public load functions are in :mod:`features.loaders`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

STAGES: tuple[str, ...] = (
    "awareness",
    "engagement",
    "evaluation",
    "purchase",
    "retention",
    "advocacy",
    "at_risk",
    "churned",
    "win_back",
)
OFFER_KINDS: tuple[str, ...] = ("upsell", "cross_sell", "retention", "winback")
DUPLICATE_REASON = "exact duplicate of an earlier row"
MAX_EXAMPLES = 3
_MAX_VALUE_CHARS = 40


class UnmappedEventTypeWarning(UserWarning):
    """Events whose type has no role mapping were loaded with role ``"unmapped"``."""


@dataclass(frozen=True)
class Example:
    """One offending value: ``value`` as shown, ``where`` it was (customer, time), ``row``."""

    value: str
    where: str
    row: int


@dataclass(frozen=True)
class Violation:
    """A broken rule: ``count`` rows of ``table.column`` break ``rule``.

    ``source_column`` is the caller's own column name when it was renamed on loading (e.g.
    ``date`` for ``events.timestamp`` in a transaction log).
    """

    table: str
    column: str
    rule: str
    count: int
    examples: tuple[Example, ...] = ()
    source_column: str | None = None

    @property
    def text(self) -> str:
        """The rule as a sentence, e.g. ``events.amount must be >= 0``; used as a reason."""
        subject = f"{self.table}.{self.column}"
        if self.source_column and self.source_column != self.column:
            subject += f" (column {self.source_column!r})"
        return f"{subject} {self.rule}"

    @property
    def message(self) -> str:
        """One line: the rule, the first few bad values, how many rows, and where."""
        rows = plural(self.count, "row")
        if not self.examples:
            return f"{self.text}; {rows}"
        values = ", ".join(dict.fromkeys(e.value for e in self.examples))
        wheres = "; ".join(e.where for e in self.examples)
        return f"{self.text}; got {values} in {rows} (first: {wheres})"


class ContractError(ValueError):
    """Input data breaks its contract. ``violations`` lists the broken rules."""

    def __init__(self, message: str, violations: Sequence[Violation] = ()) -> None:
        super().__init__(message)
        self.violations: list[Violation] = list(violations)

    @classmethod
    def from_violations(
        cls, table: str, source: str, violations: Sequence[Violation], bad_rows: int, rows_in: int
    ) -> ContractError:
        """One error listing every broken rule, one line each."""
        head = (
            f"{table} from {source} breaks {len(violations)} rule(s) in {bad_rows} of "
            f"{rows_in} rows; nothing was loaded (mode='lenient' quarantines bad rows instead):"
        )
        lines = [f"  - {v.message}" for v in violations]
        return cls("\n".join([head, *lines]), violations)

    @classmethod
    def structural(cls, table: str, column: str, rule: str, message: str) -> ContractError:
        """An error that no quarantine can fix (missing column, empty file, no rows)."""
        return cls(message, [Violation(table=table, column=column, rule=rule, count=0)])


class LoadReport(BaseModel):
    """What a load did. Always ``rows_in == rows_accepted + rows_quarantined``.

    ``reasons`` maps each rule text (or the duplicate reason) to the number of rows it sent to
    quarantine; a row breaking several rules counts once per rule. ``roles`` and
    ``unmapped_event_types`` are filled for events only.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    table: str
    source: str
    rows_in: int = Field(ge=0)
    rows_accepted: int = Field(ge=0)
    rows_quarantined: int = Field(ge=0)
    duplicates_removed: int = Field(ge=0)
    reasons: dict[str, int] = Field(default_factory=dict)
    extra_columns: list[str] = Field(default_factory=list)
    unmapped_event_types: dict[str, int] = Field(default_factory=dict)
    roles: dict[str, int] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _rows_add_up(self) -> LoadReport:
        if self.rows_in != self.rows_accepted + self.rows_quarantined:
            raise ValueError(
                f"rows_in ({self.rows_in}) != rows_accepted ({self.rows_accepted}) + "
                f"rows_quarantined ({self.rows_quarantined})"
            )
        return self

    def summary(self) -> str:
        """A few readable lines for logs and notebooks."""
        lines = [
            f"{self.table} from {self.source}: {self.rows_in} rows in, {self.rows_accepted} "
            f"accepted, {self.rows_quarantined} quarantined "
            f"(exact duplicates removed: {self.duplicates_removed})"
        ]
        lines += _counted("quarantine reasons", self.reasons)
        lines += _counted("roles (accepted rows)", self.roles)
        lines += _counted("unmapped event types (kept, role 'unmapped')", self.unmapped_event_types)
        if self.extra_columns:
            lines.append(f"  extra columns kept: {', '.join(self.extra_columns)}")
        return "\n".join(lines)


def _counted(title: str, counts: dict[str, int]) -> list[str]:
    if not counts:
        return []
    width = max(len(str(n)) for n in counts.values())
    return [f"  {title}:"] + [f"    {n:>{width}}  {name}" for name, n in counts.items()]


def plural(count: int, noun: str) -> str:
    """``1 row``, ``2 rows``."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def format_time(value: datetime) -> str:
    """Compact UTC time for messages: ``2024-03-02T10:00Z`` (seconds only when non-zero)."""
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    if stamp.second or stamp.microsecond:
        return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    return stamp.strftime("%Y-%m-%dT%H:%MZ")


def format_value(value: Any) -> str:
    """An offending value as quoted in messages: strings quoted, missing values as NA."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return "NA"
    if isinstance(value, datetime):
        return format_time(value)
    text = repr(value)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 3] + "..."


@dataclass(frozen=True)
class LoadResult:
    """Output of a loader.

    ``data``: accepted rows with normalised dtypes, fresh RangeIndex. ``quarantine``: rejected
    rows with their original values and columns, plus ``source_row`` (0-based position in the
    input) and ``reason`` (broken rules joined with "; "). ``report``: counts and reasons.
    """

    data: pd.DataFrame
    quarantine: pd.DataFrame
    report: LoadReport
