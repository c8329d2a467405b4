"""Rows -> arrays (the hot path, no pandas) and arrays -> a typed frame (for notebooks)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from features.store._encode import FLOAT
from features.store._types import ID_COLUMN, ColumnSpec, Lookup, StoreVersion


def _object_array(values: Sequence[str | None]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _scatter(values: Sequence[str | None], positions: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, None, dtype=object)
    out[positions] = _object_array(values)
    return out


def _all_found(columns: list[tuple], ids: Sequence[str], version: StoreVersion) -> Lookup:
    n, k = len(ids), len(version.numeric_columns)
    numeric = np.frombuffer(b"".join(columns[1]), dtype=FLOAT).reshape(n, k).copy()
    names = version.categorical_columns
    categorical = {c: _object_array(v) for c, v in zip(names, columns[2:], strict=True)}
    return Lookup(version, tuple(ids), numeric, categorical, np.ones(n, dtype=bool), ())


def decode_rows(rows: list[tuple], ids: Sequence[str], version: StoreVersion) -> Lookup:
    """Turn ``(position, x, c0, ...)`` rows into a :class:`Lookup` in request order.

    Parameters
    ----------
    rows : list of tuple
        One row per requested id that was found: its position in ``ids``, the float64 BLOB
        of numeric features and the categorical values, in ``version``'s column order.
    ids : sequence of str
        The requested ids.
    version : StoreVersion
        The version the rows were read from.
    """
    n, k = len(ids), len(version.numeric_columns)
    columns = list(zip(*rows, strict=True)) or [()] * (2 + len(version.categorical_columns))
    if len(rows) == n and columns[0] == tuple(range(n)):  # all found, in order: no scatter
        return _all_found(columns, ids, version)
    positions = np.fromiter(columns[0], dtype=np.intp, count=len(rows))
    numeric = np.full((n, k), np.nan)
    numeric[positions] = np.frombuffer(b"".join(columns[1]), dtype=FLOAT).reshape(len(rows), k)
    found = np.zeros(n, dtype=bool)
    found[positions] = True
    names = version.categorical_columns
    categorical = {c: _scatter(v, positions, n) for c, v in zip(names, columns[2:], strict=True)}
    missing = tuple(dict.fromkeys(ids[i] for i in np.flatnonzero(~found)))
    return Lookup(version, tuple(ids), numeric, categorical, found, missing)


def _restore(values: np.ndarray, spec: ColumnSpec) -> pd.Series:
    if spec.dtype == "category":
        return pd.Series(pd.Categorical(values, categories=list(spec.categories or ())))
    return pd.Series(values).astype(pd.api.types.pandas_dtype(spec.dtype))


def lookup_to_frame(result: Lookup) -> pd.DataFrame:
    """Return the found rows of ``result`` as a frame with the materialised dtypes.

    Output columns: ``customer_id`` then the feature columns in materialised order; one row
    per found requested id, in request order. ``frame.attrs`` holds ``version``,
    ``feature_set``, ``as_of`` and ``missing`` (unknown ids).
    """
    found = result.found
    ids = np.array(result.customer_ids, dtype=object)[found]
    numeric = dict(zip(result.numeric_columns, result.numeric[found].T, strict=True))
    data = {ID_COLUMN: pd.Series(ids, dtype="str")}
    for spec in result.version.columns:
        is_numeric = spec.kind == "numeric"
        values = numeric[spec.name] if is_numeric else result.categorical[spec.name][found]
        data[spec.name] = _restore(values, spec)
    frame = pd.DataFrame(data)
    version = result.version
    frame.attrs.update(
        version=version.version,
        feature_set=version.feature_set,
        as_of=version.as_of,
        missing=list(result.missing),
    )
    return frame
