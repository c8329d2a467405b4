"""The validation pipeline shared by every table.

structure -> normalise types -> find exact duplicates -> derive -> rules -> either raise one
:class:`ContractError` (strict) or split accepted rows from quarantined ones (lenient).
Everything is vectorised; Python loops run over rules, columns or the first few offenders.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import reduce
from typing import Literal

import numpy as np
import pandas as pd

from features._columns import Check, coerce, failed_by_column
from features._dedup import duplicate_mask
from features._rules import RuleContext, TableSpec
from features.contracts import (
    DUPLICATE_REASON,
    MAX_EXAMPLES,
    ContractError,
    Example,
    LoadReport,
    LoadResult,
    Violation,
    format_value,
)

Mode = Literal["strict", "lenient"]


@dataclass(frozen=True)
class Findings:
    """A table after normalisation: contract columns (``norm``), extra column labels, the
    exact-duplicate mask and the broken rules (non-empty checks, duplicates excluded)."""

    norm: pd.DataFrame
    extras: list
    dup: np.ndarray
    checks: list[Check]

    @property
    def bad(self) -> np.ndarray:
        return reduce(np.logical_or, [c.mask for c in self.checks], np.zeros_like(self.dup))


def validate(
    spec: TableSpec,
    frame: pd.DataFrame,
    *,
    source: str,
    mode: Mode,
    raw: pd.DataFrame | None = None,
    source_names: Mapping[str, str] | None = None,
) -> LoadResult:
    """Validate ``frame`` (contract column names) against ``spec``.

    ``raw`` is the table as the caller gave it (default ``frame``); quarantined rows are
    taken from it. ``source_names`` maps renamed contract columns to the caller's names.
    """
    check_structure(spec, frame, source)
    frame = frame.reset_index(drop=True)
    found = find_problems(spec, frame)
    names = dict(source_names or {})
    violations = [to_violation(spec, c, frame, found.norm, names) for c in found.checks]
    if mode == "strict" and violations:
        bad_rows = int(found.bad.sum())
        raise ContractError.from_violations(spec.name, source, violations, bad_rows, len(frame))
    return split(spec, source, frame if raw is None else raw, frame, found, violations)


def find_problems(spec: TableSpec, frame: pd.DataFrame) -> Findings:
    """Normalise, find exact duplicates, derive columns, run every rule."""
    norm, type_checks = normalise(spec, frame)
    extras = extra_columns(spec, frame)
    if spec.deduplicate:
        dup = duplicate_mask(norm, frame, extras, type_checks)
    else:
        dup = np.zeros(len(norm), dtype=bool)
    if spec.derive is not None:
        norm = spec.derive(norm)
    ctx = RuleContext(dup=dup, failed=failed_by_column(type_checks))
    checks = [*type_checks, *null_checks(spec, norm, ctx), *value_checks(spec, norm, ctx)]
    checks = [replace(c, mask=c.mask & ~dup) for c in checks]
    return Findings(norm, extras, dup, [c for c in checks if c.mask.any()])


def split(
    spec: TableSpec, source: str, raw: pd.DataFrame, frame: pd.DataFrame,
    found: Findings, violations: list[Violation],
) -> LoadResult:  # fmt: skip
    """Accepted rows to ``data``, the rest (with reasons) to ``quarantine``, and the report."""
    rejected = found.bad | found.dup
    masks = [c.mask for c in found.checks] + [found.dup]
    quarantine = build_quarantine(raw, rejected, masks, [v.text for v in violations])
    data = assemble(found.norm, frame[found.extras], ~rejected)
    report = make_report(spec, source, rejected, violations, found.dup, found.extras)
    return LoadResult(data=data, quarantine=quarantine, report=report)


def check_structure(spec: TableSpec, frame: pd.DataFrame, source: str) -> None:
    """Raise for problems no quarantine can fix: duplicate or missing columns, no rows."""
    doubled = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
    if doubled:
        raise ContractError.structural(
            spec.name, doubled[0], "duplicate column",
            f"{spec.name} from {source} has duplicate column names: {', '.join(doubled)}",
        )  # fmt: skip
    missing = [c.name for c in spec.columns if c.required and c.name not in frame.columns]
    if missing:
        raise missing_columns_error(spec.name, source, missing, frame.columns)
    if spec.needs_rows and len(frame) == 0:
        raise ContractError.structural(
            spec.name, "*", "has no rows",
            f"{spec.name} from {source} has no rows (a header but no data); "
            f"{spec.name} needs at least one row",
        )  # fmt: skip


def missing_columns_error(
    table: str, source: str, missing: list[str], found: pd.Index
) -> ContractError:
    """The error for absent required columns, listing what was found instead."""
    found_text = ", ".join(map(str, found)) or "(none)"
    message = (
        f"{table} from {source} is missing required column(s): {', '.join(missing)}; "
        f"found columns: {found_text}"
    )
    violations = [Violation(table, name, "is a required column", 0) for name in missing]
    return ContractError(message, violations)


def normalise(spec: TableSpec, frame: pd.DataFrame) -> tuple[pd.DataFrame, list[Check]]:
    """Contract columns with normalised dtypes (absent optional ones all-missing or default),
    plus the type-failure checks."""
    columns, checks = {}, []
    for column in spec.columns:
        raw = frame[column.name] if column.name in frame.columns else None
        columns[column.name], found = coerce(column, raw, len(frame), spec.time_format)
        checks += found
    return pd.DataFrame(columns, index=frame.index), checks


def extra_columns(spec: TableSpec, frame: pd.DataFrame) -> list:
    """Input columns outside the contract (derived columns are recomputed, not kept)."""
    known = set(spec.column_names) | set(spec.derived)
    return [c for c in frame.columns if c not in known]


def null_checks(spec: TableSpec, norm: pd.DataFrame, ctx: RuleContext) -> list[Check]:
    """Missing values in non-nullable columns (wrong-type values are reported as such)."""
    checks = []
    for column in spec.columns:
        if column.nullable:
            continue
        rule = (
            "must not be null or empty" if column.kind in ("str", "lower") else "must not be null"
        )
        mask = norm[column.name].isna().to_numpy() & ~ctx.failed_in(column.name)
        checks.append(Check(column.name, rule, mask))
    return checks


def value_checks(spec: TableSpec, norm: pd.DataFrame, ctx: RuleContext) -> list[Check]:
    """The table's value rules; they quote the normalised value (-3.0, not "-3")."""
    checks = spec.rules(norm, ctx)
    return [c if c.shown is not None else replace(c, shown=norm[c.column]) for c in checks]


def to_violation(
    spec: TableSpec, check: Check, frame: pd.DataFrame, norm: pd.DataFrame, names: dict
) -> Violation:
    """Count the offenders and describe the first few with their original values."""
    positions = np.flatnonzero(check.mask)
    if check.shown is not None:
        shown = check.shown
    else:
        shown = frame[check.column] if check.column in frame.columns else None
    examples = tuple(
        Example(
            value=format_value(None if shown is None else shown.iat[pos]),
            where=spec.describe_row(norm, int(pos)),
            row=int(pos),
        )
        for pos in positions[:MAX_EXAMPLES]
    )
    return Violation(spec.name, check.column, check.rule, len(positions), examples,
                     names.get(check.column))  # fmt: skip


def row_reasons(rows: np.ndarray, masks: list[np.ndarray], texts: list[str]) -> np.ndarray:
    """Reason text per row: its broken rules joined with "; " (one label per distinct
    combination, so the cost does not grow with the number of bad rows)."""
    codes = np.zeros(len(rows), dtype=np.int64)
    for bit, mask in enumerate(masks):
        codes |= mask[rows].astype(np.int64) << bit
    combos, inverse = np.unique(codes, return_inverse=True)
    labels = ["; ".join(t for bit, t in enumerate(texts) if combo >> bit & 1) for combo in combos]
    return np.asarray(labels, dtype=object)[inverse] if len(rows) else np.array([], dtype=object)


def build_quarantine(
    raw: pd.DataFrame, rejected: np.ndarray, masks: list[np.ndarray], texts: list[str]
) -> pd.DataFrame:
    """Rejected rows as given, plus ``source_row`` and ``reason``."""
    rows = np.flatnonzero(rejected)
    reasons = row_reasons(rows, masks, [*texts, DUPLICATE_REASON])
    quarantine = raw.iloc[rows].reset_index(drop=True)
    return quarantine.assign(source_row=rows, reason=pd.Series(reasons, dtype="str"))


def assemble(norm: pd.DataFrame, extras: pd.DataFrame, keep: np.ndarray) -> pd.DataFrame:
    """Accepted rows: normalised contract columns, then extra columns as given."""
    data = pd.concat([norm, extras], axis=1) if len(extras.columns) else norm
    return data if keep.all() else data[keep].reset_index(drop=True)


def make_report(
    spec: TableSpec, source: str, rejected: np.ndarray, violations: list[Violation],
    dup: np.ndarray, extras: list,
) -> LoadReport:  # fmt: skip
    """Counts for the report (per-role counts are added by the events loader)."""
    reasons: dict[str, int] = {}
    for violation in violations:
        reasons[violation.text] = reasons.get(violation.text, 0) + violation.count
    if dup.any():
        reasons[DUPLICATE_REASON] = int(dup.sum())
    n_rejected = int(rejected.sum())
    return LoadReport(
        table=spec.name,
        source=source,
        rows_in=len(rejected),
        rows_accepted=len(rejected) - n_rejected,
        rows_quarantined=n_rejected,
        duplicates_removed=int(dup.sum()),
        reasons=reasons,
        extra_columns=[] if spec.attributes else [str(c) for c in extras],
    )
