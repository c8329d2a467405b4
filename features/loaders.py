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

import pandas as pd

from features._columns import coerce_str
from features._engine import Mode, missing_columns_error, validate
from features._rules import CUSTOMERS, EVENTS, EXPOSURES, OFFERS, TableSpec, add_roles
from features._rules import exposure_rules as _exposure_rules
from features.contracts import ContractError, LoadResult, UnmappedEventTypeWarning, plural
from features.roles import UNMAPPED, RoleMap, default_role_map

__all__ = [
    "LoadResult",
    "load_customers",
    "load_events",
    "load_exposures",
    "load_offers",
    "load_transactions",
]

Source = str | PathLike[str] | pd.DataFrame
SUFFIXES = (".csv", ".parquet")


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


# ---- reading --------------------------------------------------------------------------


def read_table(
    source: Source, table: str, string_columns: Iterable[str]
) -> tuple[pd.DataFrame, str]:
    """Return the caller's frame (not copied) or the file's table, and a source label.

    CSV columns named in ``string_columns`` are read as text (ids like "007" stay intact).
    """
    if isinstance(source, pd.DataFrame):
        return source, "<DataFrame>"
    if not isinstance(source, str | PathLike):
        raise TypeError(
            f"{table}: source must be a path or a DataFrame, not {type(source).__name__}"
        )
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ContractError(f"{table}: cannot read {path}: expected a .csv or .parquet file")
    if not path.is_file():
        raise FileNotFoundError(f"{table}: no such file: {path}")
    if path.stat().st_size == 0:
        raise ContractError.structural(
            table, "*", "file is empty", f"{table}: file is empty: {path}"
        )
    reader = _read_csv if suffix == ".csv" else _read_parquet
    return reader(path, table, list(string_columns)), str(path)


def _read_csv(path: Path, table: str, string_columns: list[str]) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=dict.fromkeys(string_columns, "str"))
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
    frame: pd.DataFrame, label: str, mode: Mode, roles: RoleMap | None, **kwargs: object
) -> LoadResult:
    role_map = roles if roles is not None else default_role_map()
    spec = replace(EVENTS, derive=partial(add_roles, role_map=role_map))
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


def _offer_ids(offers: pd.DataFrame | LoadResult) -> list[str]:
    """Distinct normalised offer ids of a catalog (frame or LoadResult)."""
    frame = offers.data if isinstance(offers, LoadResult) else offers
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"offers must be a DataFrame or LoadResult, not {type(offers).__name__}")
    if "offer_id" not in frame.columns:
        raise missing_columns_error("offers", "the offers argument", ["offer_id"], frame.columns)
    ids, _ = coerce_str(frame["offer_id"])
    return ids.dropna().unique().tolist()
