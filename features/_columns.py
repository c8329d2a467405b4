"""Column declarations and vectorised type normalisation for the data contracts.

Each ``coerce_*`` function takes the caller's column and returns the normalised column plus
the rows whose value could not be read as that type (a :class:`Check` per failure kind).
Output dtypes: strings -> ``str`` (stripped, empty -> missing; categorical input stays
categorical with ``str`` categories), timestamps ->
``datetime64[us, UTC]``, floats -> ``float64``, whole numbers -> ``int64``, bools -> ``boolean``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from features.contracts import STAGES

Kind = Literal["str", "lower", "time", "float", "int", "bool", "stages"]
Coerced = tuple[pd.Series, list["Check"]]

_BOOLS = {"true": True, "false": False, "t": True, "f": False, "yes": True, "no": False}
_BOOLS |= {"y": True, "n": False, "1": True, "0": False, "1.0": True, "0.0": False}
_UTC_UNIT = "datetime64[us, UTC]"
_ABSENT_DTYPE = {"str": "str", "lower": "str", "time": _UTC_UNIT, "float": "float64"}
_ABSENT_DTYPE |= {"int": "float64", "bool": "boolean", "stages": "str"}


@dataclass(frozen=True)
class Column:
    """One contract column.

    ``required``: the column must be present. ``nullable``: cells may be missing.
    ``default``: fills an absent column and missing cells (then the column is never missing).
    """

    name: str
    kind: Kind
    required: bool = False
    nullable: bool = True
    default: object = None


@dataclass(frozen=True)
class Check:
    """Rows (``mask`` True) of ``column`` that break ``rule``; ``shown`` overrides the values
    quoted in messages (default: the caller's own values)."""

    column: str
    rule: str
    mask: np.ndarray
    shown: pd.Series | None = None


def failed_by_column(checks: list[Check]) -> dict[str, np.ndarray]:
    """Rows per column whose value failed type coercion."""
    failed: dict[str, np.ndarray] = {}
    for check in checks:
        failed[check.column] = failed.get(check.column, False) | check.mask
    return failed


def coerce(
    column: Column, raw: pd.Series | None, n_rows: int, time_format: str | None = None
) -> Coerced:
    """Normalise ``raw`` (or an absent column when None) to the column's declared type.

    ``time_format`` (strftime, e.g. ``"%Y%m%d"``) is how the table writes its timestamps;
    None reads ISO 8601 and similar text, and whole numbers of 8 digits as ``YYYYMMDD``.
    """
    if raw is None:
        values, checks = pd.Series(None, pd.RangeIndex(n_rows), _ABSENT_DTYPE[column.kind]), []
    elif column.kind == "time":
        values, checks = coerce_time(raw, column.name, time_format)
    else:
        values, checks = _COERCERS[column.kind](raw, column.name)
    if column.default is not None:
        values = values.fillna(column.default)
    if column.kind == "int":
        values = values.where(values.notna(), 0).astype("int64")
    return values, checks


def coerce_str(raw: pd.Series, name: str = "", lower: bool = False) -> Coerced:
    """Strings stripped of surrounding whitespace; empty strings become missing."""
    if isinstance(raw.dtype, pd.CategoricalDtype):
        return _categorical_to_str(raw, lower), []
    values = raw if isinstance(raw.dtype, pd.StringDtype) else raw.astype("str")
    values = values.str.strip()
    if lower:
        values = values.str.lower()
    return values.mask(values == ""), []


def _categorical_to_str(raw: pd.Series, lower: bool) -> pd.Series:
    """Normalise the (few) categories and keep the column categorical.

    Large event tables arrive categorical from Parquet; expanding 20M codes to strings (and
    factorising them again in the feature builder) would cost seconds, so the values stay
    strings-as-categories. Categories that collide after stripping merge; blanks become missing.
    """
    cleaned, _ = coerce_str(pd.Series(raw.cat.categories.astype("str")), lower=lower)
    categories = pd.Index(cleaned.dropna().unique(), dtype="str")
    if len(categories) == len(cleaned) and categories.equals(raw.cat.categories):
        # already clean: no pass over the codes (categories made `str` if they were not)
        return raw.cat.rename_categories(categories)
    remap = categories.get_indexer(cleaned)  # -1 for blanks
    codes = raw.cat.codes.to_numpy()
    new_codes = np.where(codes >= 0, remap[np.maximum(codes, 0)], -1)
    return pd.Series(pd.Categorical.from_codes(new_codes, categories=categories), index=raw.index)


def coerce_time(raw: pd.Series, name: str, time_format: str | None = None) -> Coerced:
    """UTC timestamps: naive values are read as UTC, aware ones converted; strings parsed as
    ISO 8601, failures retried with ``format="mixed"``; with ``time_format`` every value is
    read as text in that format. Whole numbers that all have 8 digits are ``YYYYMMDD``."""
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        return raw.dt.tz_convert("UTC").astype(_UTC_UNIT), []
    if ptypes.is_datetime64_dtype(raw.dtype):
        return raw.dt.tz_localize("UTC").astype(_UTC_UNIT), []
    if time_format is None and _all_yyyymmdd(raw):
        time_format = "%Y%m%d"
    if time_format is not None:
        return _formatted_time(raw, name, time_format)
    if ptypes.is_numeric_dtype(raw.dtype) or ptypes.is_bool_dtype(raw.dtype):
        values = pd.Series(pd.NaT, index=raw.index, dtype=_UTC_UNIT)
        return values, [Check(name, "must be a parseable timestamp", raw.notna().to_numpy())]
    values = pd.to_datetime(raw, utc=True, format="ISO8601", errors="coerce")
    retry = values.isna() & raw.notna()
    if retry.any():
        again = pd.to_datetime(raw[retry], utc=True, format="mixed", errors="coerce")
        values = values.mask(retry, again)
    failed = _real_failures(values.isna() & raw.notna(), raw)
    return values.astype(_UTC_UNIT), [Check(name, "must be a parseable timestamp", failed)]


def _all_yyyymmdd(raw: pd.Series) -> bool:
    """Whole numbers (or digit strings) of exactly 8 digits, years 1900-2199: ``YYYYMMDD``."""
    if not ptypes.is_integer_dtype(raw.dtype) and not ptypes.is_float_dtype(raw.dtype):
        return False
    values = raw.dropna().to_numpy(dtype="float64")
    whole = len(values) > 0 and bool((values == np.floor(values)).all())
    return whole and bool(((values >= 19000101) & (values <= 21991231)).all())


def _formatted_time(raw: pd.Series, name: str, time_format: str) -> Coerced:
    """Timestamps written as text (or whole numbers) in ``time_format``."""
    text = raw.astype("Int64").astype("str") if ptypes.is_float_dtype(raw.dtype) else raw
    text = text.astype("str").where(raw.notna(), None)
    values = pd.to_datetime(text, utc=True, format=time_format, errors="coerce")
    failed = _real_failures(values.isna() & raw.notna(), raw)
    rule = f"must be a timestamp in the format {time_format!r}"
    return values.astype(_UTC_UNIT), [Check(name, rule, failed)]


def coerce_float(raw: pd.Series, name: str) -> Coerced:
    """float64; non-numeric values fail "must be numeric", infinities "must be finite"."""
    if ptypes.is_numeric_dtype(raw.dtype) and not ptypes.is_bool_dtype(raw.dtype):
        values = pd.Series(raw.to_numpy(dtype="float64", na_value=np.nan), index=raw.index)
        return values, [_infinite(values, name)]
    values = pd.to_numeric(raw, errors="coerce")
    failed = values.isna() & raw.notna()
    if failed.any():  # retry the few failures once with whitespace stripped
        again = pd.to_numeric(raw[failed].astype("str").str.strip(), errors="coerce")
        values = values.mask(failed, again)
    values = values.astype("float64")
    bad = _real_failures(values.isna() & raw.notna(), raw)
    return values, [Check(name, "must be numeric", bad), _infinite(values, name)]


def coerce_int(raw: pd.Series, name: str) -> Coerced:
    """Whole numbers (as float64 here; :func:`coerce` casts to int64 after defaults)."""
    values, checks = coerce_float(raw, name)
    fraction = (values.notna() & (values % 1 != 0)).to_numpy()
    values = values.mask(fraction)
    return values, [*checks[:1], Check(name, "must be a whole number", fraction)]


def coerce_bool(raw: pd.Series, name: str) -> Coerced:
    """pandas ``boolean``; accepts bools, 1/0 and true/false/yes/no/t/f/y/n (any case)."""
    if ptypes.is_bool_dtype(raw.dtype):
        return raw.astype("boolean"), []
    text, _ = coerce_str(raw, lower=True)
    values = text.map(_BOOLS).astype("boolean")
    failed = (values.isna() & text.notna()).to_numpy()
    return values, [Check(name, "must be a boolean (true/false, 1/0, yes/no)", failed)]


def coerce_stages(raw: pd.Series, name: str) -> Coerced:
    """Stage lists -> one "|"-joined string of known stages (missing = all stages).

    Cells may be strings ("retention|advocacy") or lists/tuples/arrays of stage names.
    """
    text, _ = coerce_str(_join_lists(raw), lower=True)
    pieces = text.str.split("|").explode().astype("str").str.strip()
    pieces = pieces[pieces.notna() & (pieces != "")]
    pairs = pd.DataFrame({"row": pieces.index, "stage": pieces.to_numpy()}).drop_duplicates()
    pieces = pd.Series(pairs["stage"].to_numpy(), index=pairs["row"].to_numpy(), dtype="str")
    known = pieces.isin(STAGES)
    unknown = pieces[~known].groupby(level=0).first().reindex(raw.index)
    values = pieces[known].groupby(level=0).agg("|".join).reindex(raw.index).astype("str")
    rule = "must list only known stages (" + "|".join(STAGES) + ")"
    return values, [Check(name, rule, unknown.notna().to_numpy(), shown=unknown)]


def _join_lists(raw: pd.Series) -> pd.Series:
    """Replace list-like cells by their "|"-joined text (object columns only; small tables)."""
    if raw.dtype != object:
        return raw
    listlike = raw.map(lambda v: isinstance(v, list | tuple | np.ndarray))
    if not listlike.any():
        return raw
    joined = raw[listlike].map(lambda v: "|".join(str(x) for x in v))
    return raw.mask(listlike, joined)


def _infinite(values: pd.Series, name: str) -> Check:
    return Check(name, "must be finite", np.isinf(values.to_numpy()))


def _real_failures(failed: pd.Series, raw: pd.Series) -> np.ndarray:
    """Drop blank strings from ``failed``: they count as missing, not as unparseable."""
    mask = failed.to_numpy(copy=True)
    if mask.any():
        blank = raw[mask].astype("str").str.strip() == ""
        mask[np.flatnonzero(mask)[blank.to_numpy()]] = False
    return mask


_COERCERS = {
    "str": coerce_str,
    "lower": lambda raw, name: coerce_str(raw, name, lower=True),
    "time": coerce_time,
    "float": coerce_float,
    "int": coerce_int,
    "bool": coerce_bool,
    "stages": coerce_stages,
}
