"""Exact-duplicate detection after normalisation, fast enough for tens of millions of rows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features._columns import Check, failed_by_column


def duplicate_mask(
    norm: pd.DataFrame, frame: pd.DataFrame, extras: list, checks: list[Check]
) -> np.ndarray:
    """Rows equal in every column to an earlier row, after normalisation.

    Rows are hashed first; only rows sharing a hash are compared exactly (much faster than
    ``DataFrame.duplicated`` on big tables).
    """
    key = dedup_key(norm, frame, extras, checks)
    if not key:  # every column is all-missing: every row equals the first
        return np.arange(len(norm)) > 0
    table = pd.DataFrame(key, index=norm.index)
    table.columns = range(len(key))  # extra columns may have any label
    candidates = _shares_a_hash(_row_hashes(table))
    dup = np.zeros(len(table), dtype=bool)
    if candidates.any():
        dup[candidates] = _exact_duplicates(table[candidates])
    return dup


_PRIME = np.uint64(0x100000001B3)


def _row_hashes(table: pd.DataFrame) -> np.ndarray:
    """A 64-bit hash per row, from each column's integer representation (codes, epoch
    microseconds, float bits) where it has one: a few vector operations per column."""
    h = np.zeros(len(table), dtype=np.uint64)
    for _, values in table.items():
        h ^= _column_hash(values)
        h *= _PRIME
    return h


def _column_hash(values: pd.Series) -> np.ndarray:
    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return values.cat.codes.to_numpy().astype(np.uint64)
    if isinstance(dtype, pd.DatetimeTZDtype):
        return values.array.asi8.view(np.uint64)
    if dtype == np.float64:
        return values.to_numpy().view(np.uint64)  # canonical: one NaN, no -0.0
    return pd.util.hash_array(values.to_numpy(dtype=object))


def _shares_a_hash(h: np.ndarray) -> np.ndarray:
    """Rows whose hash occurs more than once (sort-based: steady on tens of millions)."""
    s = np.sort(h)
    repeated = np.unique(s[1:][s[1:] == s[:-1]])
    if len(repeated) == 0:
        return np.zeros(len(h), dtype=bool)
    return np.isin(h, repeated)


def dedup_key(
    norm: pd.DataFrame, frame: pd.DataFrame, extras: list, checks: list[Check]
) -> dict[str, pd.Series]:
    """Columns that decide equality: normalised contract columns (cells that failed
    coercion keep their original text, so two different bad values differ), then extra
    columns as given. All-missing contract columns are left out: they never differ."""
    failed = failed_by_column(checks)
    key = {}
    for name, values in norm.items():
        bad = failed.get(name)
        if bad is not None and bad.any():
            key[name] = values.astype(object).mask(bad, frame[name].astype("str").astype(object))
        elif values.notna().any():
            key[name] = _canonical(values)
    key.update((name, frame[name]) for name in extras)
    return key


def _canonical(values: pd.Series) -> pd.Series:
    """Floats with one NaN and one zero (-0.0 == 0.0), so equal values hash equally."""
    if values.dtype != np.float64:
        return values
    return (values + 0.0).fillna(np.nan)


def _exact_duplicates(table: pd.DataFrame) -> np.ndarray:
    try:
        return table.duplicated().to_numpy()
    except TypeError:  # unhashable cells (lists, dicts) in extra columns
        return table.astype("str").duplicated().to_numpy()
