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
    candidates = pd.util.hash_pandas_object(table, index=False).duplicated(keep=False)
    dup = np.zeros(len(table), dtype=bool)
    if candidates.any():
        dup[np.flatnonzero(candidates)] = _exact_duplicates(table[candidates.to_numpy()])
    return dup


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
