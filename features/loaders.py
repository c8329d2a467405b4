"""Public loaders: read a table once at the boundary and validate it against its contract.

Every loader takes ``source`` (a ``.csv`` or ``.parquet`` path, or a DataFrame, never
mutated) and ``mode``: ``"strict"`` raises one :class:`ContractError` listing every broken
rule; ``"lenient"`` moves bad rows to ``LoadResult.quarantine`` with a reason each. Exact
duplicate rows are removed in both modes. See DESIGN.md section 3 for the tables.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import replace
from functools import partial
from os import PathLike
from pathlib import Path
from typing import Literal

import pandas as pd

from features._columns import coerce_str
from features._engine import Mode, missing_columns_error, validate
from features._rules import (
    CUSTOMERS,
    EVENTS,
    EXPOSURES,
    LABELS,
    OFFERS,
    SUBSCRIPTIONS,
    TableSpec,
    add_roles,
)
from features._rules import exposure_rules as _exposure_rules
from features.contracts import ContractError, LoadResult, UnmappedEventTypeWarning, plural
from features.roles import UNMAPPED, RoleMap, default_role_map

__all__ = [
    "LoadResult",
    "load_customers",
    "load_events",
    "load_exposures",
    "load_offers",
    "load_mapped",
    "load_transactions",
]

Source = str | PathLike[str] | pd.DataFrame
FileFormat = Literal["auto", "csv", "tsv", "whitespace", "parquet"]
FORMAT_OF_SUFFIX = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".txt": "whitespace",
                    ".dat": "whitespace", ".parquet": "parquet", ".pq": "parquet"}  # fmt: skip
SUFFIXES = tuple(FORMAT_OF_SUFFIX)
SPECS = {spec.name: spec for spec in (EVENTS, CUSTOMERS, OFFERS, EXPOSURES, SUBSCRIPTIONS, LABELS)}


def load_events(
    source: Source, mode: Mode = "strict", *, roles: RoleMap | None = None
) -> LoadResult:
    """Load an events table (one row per event).

    Parameters
    ----------
    source : path to .csv/.parquet, or DataFrame
        Columns ``customer_id``, ``timestamp``, ``event_type`` (required), ``amount``,
        ``product``, ``channel``, ``offer_id`` (optional); other columns are kept as given.
    mode : "strict" or "lenient"
    roles : RoleMap, optional
        Event type -> role; default :func:`features.roles.default_role_map`.

    Returns
    -------
    LoadResult
        ``data``: the contract columns (normalised dtypes), ``role`` (Categorical over ROLES
        and "unmapped"), then extra columns. Unmapped types are kept, counted in
        ``report.unmapped_event_types`` and warned about (:class:`UnmappedEventTypeWarning`).
        An input column named ``role`` is ignored: roles are always recomputed.
    """
    mode = _checked(mode)
    frame, label = read_table(source, EVENTS.name, _string_columns(EVENTS))
    return _load_events(frame, label, mode, roles)


def load_transactions(
    source: Source,
    *,
    customer_col: str = "customer_id",
    time_col: str = "date",
    amount_col: str = "amount",
    event_type: str = "purchase",
    mode: Mode = "strict",
    roles: RoleMap | None = None,
) -> LoadResult:
    """Load a plain transaction log (customer, date, amount, ...) as purchase events.

    The three named columns are renamed to ``customer_id``, ``timestamp``, ``amount``, and
    ``event_type`` is set to ``event_type`` on every row; then the events contract applies.
    Messages name the caller's columns; the quarantine keeps the rows as given.
    """
    mode = _checked(mode)
    renames = {customer_col: "customer_id", time_col: "timestamp", amount_col: "amount"}
    raw, label = read_table(source, "transactions", [customer_col])
    _check_transaction_columns(raw, label, renames)
    frame = raw.rename(columns=renames).assign(event_type=event_type)
    names = {new: old for old, new in renames.items() if old != new}
    return _load_events(frame, label, mode, roles, raw=raw, source_names=names)


def load_customers(source: Source, mode: Mode = "strict") -> LoadResult:
    """Load customers: ``customer_id`` (unique), ``signup_at`` (optional timestamp), and any
    static attributes (kept as given)."""
    mode = _checked(mode)
    frame, label = read_table(source, CUSTOMERS.name, _string_columns(CUSTOMERS))
    return validate(CUSTOMERS, frame, source=label, mode=mode)


def load_offers(source: Source, mode: Mode = "strict") -> LoadResult:
    """Load the offer catalog.

    Output columns: ``offer_id``, ``kind`` (one of OFFER_KINDS), ``product``, ``value``,
    ``cost``, ``eligible_stages`` ("|"-joined stages; missing = all stages),
    ``exclude_if_owned`` (boolean, default False), ``cooldown_days`` (int64, default 0),
    ``channel``, then extra columns.
    """
    mode = _checked(mode)
    frame, label = read_table(source, OFFERS.name, _string_columns(OFFERS))
    return validate(OFFERS, frame, source=label, mode=mode)


def load_exposures(
    source: Source, *, offers: pd.DataFrame | LoadResult | None = None, mode: Mode = "strict"
) -> LoadResult:
    """Load the campaign log: ``exposure_id`` (unique), ``customer_id``, ``offer_id``
    (missing = held-out control), ``sent_at``, ``channel``, ``propensity`` in (0, 1], and
    optional outcomes ``converted`` (boolean) and ``revenue`` (>= 0).

    With ``offers`` (a catalog frame or its LoadResult), every ``offer_id`` must be in it.
    """
    mode = _checked(mode)
    spec = EXPOSURES
    if offers is not None:
        spec = replace(spec, rules=partial(_exposure_rules, known_offers=_offer_ids(offers)))
    frame, label = read_table(source, spec.name, _string_columns(spec))
    return validate(spec, frame, source=label, mode=mode)


def load_mapped(
    table: str,
    source: Source,
    *,
    columns: dict[str, str] | None = None,
    constants: dict[str, str] | None = None,
    time_format: str | None = None,
    deduplicate: bool = True,
    file_format: FileFormat = "auto",
    mode: Mode = "strict",
    roles: RoleMap | None = None,
    offers: pd.DataFrame | LoadResult | None = None,
) -> LoadResult:
    """Load any contract table (events, customers, offers, exposures, subscriptions, labels)
    from a file laid out the user's way.

    ``columns`` maps contract columns to the file's names; ``constants`` sets a contract
    column to one value on every row (``{"event_type": "purchase"}`` for a transaction log);
    ``time_format`` is the strftime format of its timestamps; ``deduplicate`` drops exact
    duplicate rows; ``file_format`` overrides the suffix (csv, tsv, whitespace, parquet).
    Messages name the file's own columns; the quarantine keeps the rows as given.
    """
    mode = _checked(mode)
    if table not in SPECS:
        raise ValueError(f"unknown table {table!r}; known: {', '.join(SPECS)}")
    spec = replace(SPECS[table], time_format=time_format, deduplicate=deduplicate)
    renames = {old: new for new, old in (columns or {}).items()}
    text = _string_columns(spec)
    text += [old for old, new in renames.items() if new in text]
    raw, label = read_table(source, table, text, file_format)
    _check_mapped_columns(raw, label, table, renames, constants or {})
    frame = raw.rename(columns=renames).assign(**(constants or {}))
    names = {new: old for old, new in renames.items() if old != new}
    if table == "events":
        return _load_events(frame, label, mode, roles, raw=raw, source_names=names, spec=spec)
    if table == "exposures" and offers is not None:
        spec = replace(spec, rules=partial(_exposure_rules, known_offers=_offer_ids(offers)))
    result = validate(spec, frame, source=label, mode=mode, raw=raw, source_names=names)
    if table == "customers":
        result = replace(result, data=date_attributes(result.data, time_format))
    return result


def date_attributes(customers: pd.DataFrame, time_format: str | None = None) -> pd.DataFrame:
    """Text attribute columns whose every value reads as a timestamp become UTC datetimes
    (the feature builder turns them into days since); other columns are left as they are."""
    out = customers
    for name in customers.columns:
        column = customers[name]
        if name in ("customer_id", "signup_at") or not pd.api.types.is_string_dtype(column):
            continue
        present = column.dropna()
        if present.empty or not present.astype("str").str.match(r"\d{4}-?\d{2}-?\d{2}").all():
            continue
        parsed = pd.to_datetime(column, utc=True, format=time_format or "ISO8601",
                                errors="coerce")  # fmt: skip
        if parsed[column.notna()].notna().all():
            out = out.assign(**{name: parsed.astype("datetime64[us, UTC]")})
    return out


# ---- reading --------------------------------------------------------------------------


def read_table(
    source: Source, table: str, string_columns: Iterable[str], file_format: FileFormat = "auto"
) -> tuple[pd.DataFrame, str]:
    """Return the caller's frame (not copied) or the file's table, and a source label.

    Text columns named in ``string_columns`` are read as text (ids like "007" stay intact).
    ``file_format`` auto: from the suffix (.csv, .tsv/.tab, .txt/.dat whitespace, .parquet).
    """
    if isinstance(source, pd.DataFrame):
        return source, "<DataFrame>"
    if not isinstance(source, str | PathLike):
        raise TypeError(
            f"{table}: source must be a path or a DataFrame, not {type(source).__name__}"
        )
    path = Path(source)
    fmt = FORMAT_OF_SUFFIX.get(path.suffix.lower()) if file_format == "auto" else file_format
    if fmt is None:
        raise ContractError(
            f"{table}: cannot read {path}: expected a {', '.join(SUFFIXES)} file, or name its "
            "format (csv, tsv, whitespace, parquet) in the project config"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{table}: no such file: {path}")
    if path.stat().st_size == 0:
        raise ContractError.structural(
            table, "*", "file is empty", f"{table}: file is empty: {path}"
        )
    if fmt == "parquet":
        return _read_parquet(path, table, list(string_columns)), str(path)
    return _read_csv(path, table, list(string_columns), SEPARATORS[fmt]), str(path)


SEPARATORS = {"csv": ",", "tsv": "\t", "whitespace": r"\s+"}


def _read_csv(path: Path, table: str, string_columns: list[str], sep: str = ",") -> pd.DataFrame:
    try:
        return pd.read_csv(path, sep=sep, dtype=dict.fromkeys(string_columns, "str"))
    except pd.errors.EmptyDataError:
        raise ContractError.structural(
            table, "*", "file is empty", f"{table}: file is empty (no header, no rows): {path}"
        ) from None


def _read_parquet(path: Path, table: str, string_columns: list[str]) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for truncated or foreign files
        raise ContractError.structural(
            table, "*", "file is empty",
            f"{table}: file is empty or not a readable Parquet table: {path} ({exc})",
        ) from exc  # fmt: skip


def _string_columns(spec: TableSpec) -> list[str]:
    return [c.name for c in spec.columns if c.kind in ("str", "lower")]


def _checked(mode: str) -> Mode:
    if mode not in ("strict", "lenient"):
        raise ValueError(f"mode must be 'strict' or 'lenient', not {mode!r}")
    return mode  # type: ignore[return-value]


# ---- events helpers -------------------------------------------------------------------


def _load_events(
    frame: pd.DataFrame,
    label: str,
    mode: Mode,
    roles: RoleMap | None,
    spec: TableSpec = EVENTS,
    **kwargs: object,
) -> LoadResult:
    role_map = roles if roles is not None else default_role_map()
    spec = replace(spec, derive=partial(add_roles, role_map=role_map))
    result = validate(spec, frame, source=label, mode=mode, **kwargs)
    return _with_role_counts(result)


def _with_role_counts(result: LoadResult) -> LoadResult:
    """Add accepted-row counts per role and per unmapped type; warn about unmapped types."""
    data = result.data
    roles = {str(role): int(n) for role, n in data["role"].value_counts(sort=False).items() if n}
    unmapped_types = data.loc[data["role"] == UNMAPPED, "event_type"].value_counts()
    unmapped = {str(name): int(n) for name, n in unmapped_types.items() if n}
    if unmapped:
        listed = ", ".join(f"{name!r} ({plural(n, 'row')})" for name, n in unmapped.items())
        warnings.warn(
            f"events: {len(unmapped)} event type(s) have no role and were kept with role "
            f"'unmapped': {listed}; map them with RoleMap.with_overrides",
            UnmappedEventTypeWarning,
            stacklevel=4,
        )
    report = result.report.model_copy(update={"roles": roles, "unmapped_event_types": unmapped})
    return replace(result, report=report)


def _check_transaction_columns(raw: pd.DataFrame, label: str, renames: dict[str, str]) -> None:
    """The named columns exist, and renaming them does not collide with other columns."""
    missing = [f"{old} (for {new})" for old, new in renames.items() if old not in raw.columns]
    if missing:
        raise missing_columns_error("transactions", label, missing, raw.columns)
    taken = [new for old, new in renames.items() if old != new and new in raw.columns]
    taken += ["event_type"] if "event_type" in raw.columns else []
    if taken:
        raise ContractError.structural(
            "transactions", taken[0], "column name collision",
            f"transactions from {label} already has column(s) {', '.join(taken)}, which "
            "loading as events would overwrite; rename them or use load_events",
        )  # fmt: skip


def _check_mapped_columns(
    raw: pd.DataFrame, label: str, table: str, renames: dict[str, str], constants: dict
) -> None:
    """Mapped columns exist; renames and constants do not overwrite other columns."""
    missing = [f"{old} (for {new})" for old, new in renames.items() if old not in raw.columns]
    if missing:
        raise missing_columns_error(table, label, missing, raw.columns)
    targets = [new for old, new in renames.items() if old != new] + list(constants)
    taken = [c for c in targets if c in raw.columns and c not in renames]
    if taken:
        raise ContractError.structural(
            table, taken[0], "column name collision",
            f"{table} from {label} already has column(s) {', '.join(taken)}, which the "
            "column mapping or constants would overwrite; map or drop them",
        )  # fmt: skip


def _offer_ids(offers: pd.DataFrame | LoadResult) -> list[str]:
    """Distinct normalised offer ids of a catalog (frame or LoadResult)."""
    frame = offers.data if isinstance(offers, LoadResult) else offers
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"offers must be a DataFrame or LoadResult, not {type(offers).__name__}")
    if "offer_id" not in frame.columns:
        raise missing_columns_error("offers", "the offers argument", ["offer_id"], frame.columns)
    ids, _ = coerce_str(frame["offer_id"])
    return ids.dropna().unique().tolist()
