"""Frame -> rows: validation of the vectors frame, column specs, row encoding, ``as_of``.

Rows are ``(rid, customer_id, x, c0, c1, ...)`` where ``x`` is the numeric features of the row
as one little-endian float64 BLOB (NaN for missing) and ``c*`` the categorical columns as TEXT.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_complex_dtype, is_numeric_dtype, is_string_dtype

from features.store._types import ID_COLUMN, ColumnSpec, Kind

CHUNK_ROWS = 65_536
FLOAT = np.dtype("<f8")
_EXAMPLES = 3


def normalise_as_of(as_of: Any) -> pd.Timestamp:
    """Return ``as_of`` as a UTC timestamp; naive input is read as UTC.

    Raises
    ------
    ValueError
        If ``as_of`` is missing or not a time.
    """
    ts = pd.Timestamp(as_of) if as_of is not None else pd.NaT
    if ts is pd.NaT:
        raise ValueError(f"as_of must be a timestamp; got {as_of!r}")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _examples(values: Sequence[Any]) -> str:
    return ", ".join(repr(v) for v in list(values)[:_EXAMPLES])


def _check_columns(vectors: pd.DataFrame) -> None:
    if not isinstance(vectors, pd.DataFrame):
        raise TypeError(f"vectors must be a pandas DataFrame; got {type(vectors).__name__}")
    if ID_COLUMN not in vectors.columns:
        in_index = vectors.index.name == ID_COLUMN
        hint = "; it is the index: call .reset_index() first" if in_index else ""
        got = _examples([str(c) for c in vectors.columns])
        raise ValueError(f"vectors must have a {ID_COLUMN} column{hint}; got columns {got}, ...")
    bad = [c for c in vectors.columns if not isinstance(c, str)]
    if bad:
        raise ValueError(f"vectors column names must be str; got {_examples(bad)}")
    dup = vectors.columns[vectors.columns.duplicated()].unique()
    if len(dup):
        raise ValueError(f"vectors column names must be unique; repeated: {_examples(dup)}")
    if len(vectors.columns) < 2:
        raise ValueError(f"vectors must have at least one feature column besides {ID_COLUMN}")


def _check_ids(ids: pd.Series) -> None:
    if len(ids) == 0:
        raise ValueError("vectors must have at least one row; got an empty frame")
    null = np.flatnonzero(ids.isna().to_numpy())
    if len(null):
        raise ValueError(
            f"vectors.{ID_COLUMN} must not be missing; got {len(null)} rows (first at rows "
            f"{_examples(null.tolist())})"
        )
    text = ids.astype(str)
    dup = text[text.duplicated()].unique()
    if len(dup):
        raise ValueError(
            f"vectors.{ID_COLUMN} must be unique; got {len(dup)} ids more than once "
            f"(first: {_examples(dup)})"
        )


def _kind(dtype: Any) -> Kind | None:
    if isinstance(dtype, pd.CategoricalDtype) or is_string_dtype(dtype):
        return "categorical"
    if is_bool_dtype(dtype) or (is_numeric_dtype(dtype) and not is_complex_dtype(dtype)):
        return "numeric"
    return None


def _spec(name: str, series: pd.Series, kind: Kind) -> ColumnSpec:
    categories = None
    if isinstance(series.dtype, pd.CategoricalDtype):
        categories = tuple(str(c) for c in series.dtype.categories)
    return ColumnSpec(name, str(series.dtype), kind, categories)


def column_specs(vectors: pd.DataFrame) -> tuple[ColumnSpec, ...]:
    """Validate ``vectors`` and return the specs of its feature columns, in frame order.

    Parameters
    ----------
    vectors : pandas.DataFrame
        ``customer_id`` (unique, non-missing; stored as ``str(id)``) plus feature columns that
        are numeric (float, int, bool, nullable variants) or categorical (``category``, ``str``,
        ``object``).

    Raises
    ------
    ValueError
        Naming the rule and a few bad values: no ``customer_id``, no rows, missing or duplicate
        ids, bad column names, or unsupported dtypes (times, complex, ...).
    """
    _check_columns(vectors)
    _check_ids(vectors[ID_COLUMN])
    kinds = {n: _kind(vectors[n].dtype) for n in vectors.columns if n != ID_COLUMN}
    bad = [f"{n} ({vectors[n].dtype})" for n, kind in kinds.items() if kind is None]
    if bad:
        raise ValueError(
            f"vectors feature columns must be numeric, bool, str or category; got {len(bad)} "
            f"others: {', '.join(bad[:_EXAMPLES])} (convert times to numbers, e.g. days, first)"
        )
    return tuple(_spec(n, vectors[n], kind) for n, kind in kinds.items() if kind is not None)


def _numeric_matrix(frame: pd.DataFrame, names: Sequence[str]) -> np.ndarray:
    out = np.empty((len(frame), len(names)), dtype=FLOAT)
    for j, name in enumerate(names):
        out[:, j] = frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def _text_values(series: pd.Series) -> list[str | None]:
    values = series.astype(str).to_numpy(dtype=object)
    values[series.isna().to_numpy()] = None
    return values.tolist()


def _blobs(matrix: np.ndarray) -> list[bytes]:
    buf, width = matrix.tobytes(), matrix.shape[1] * FLOAT.itemsize
    return [buf[i * width : (i + 1) * width] for i in range(matrix.shape[0])]


def encode_rows(vectors: pd.DataFrame, specs: Sequence[ColumnSpec]) -> Iterator[tuple]:
    """Yield ``(rid, customer_id, x, c0, ...)`` rows for ``executemany``, chunk by chunk.

    ``rid`` is the frame position; ``x`` the numeric columns of ``specs`` (in order) as a
    float64 BLOB; ``c*`` the categorical columns as ``str`` or ``None``.
    """
    numeric = [s.name for s in specs if s.kind == "numeric"]
    categorical = [s.name for s in specs if s.kind == "categorical"]
    for start in range(0, len(vectors), CHUNK_ROWS):
        chunk = vectors.iloc[start : start + CHUNK_ROWS]
        rids = range(start, start + len(chunk))
        ids = chunk[ID_COLUMN].astype(str).tolist()
        texts = [_text_values(chunk[name]) for name in categorical]
        yield from zip(rids, ids, _blobs(_numeric_matrix(chunk, numeric)), *texts, strict=True)
