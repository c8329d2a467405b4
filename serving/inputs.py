"""Feature rows in the form the hot path wants, and each model's input matrix from them.

The online store returns a float64 matrix of numeric columns plus one string array per
categorical column (``features.store.Lookup``); a cold-start request builds a frame with the
same feature code. Both become :class:`FeatureRows`. :class:`InputPlan` maps one model's
training columns onto those rows once per (store layout, model) and then builds the model's
input matrix with numpy indexing only (categoricals as the model's training codes, unseen or
missing values as NaN, DESIGN section 11), so no pandas runs per request.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.store import Lookup


@dataclass(frozen=True)
class FeatureRows:
    """Per-customer feature values, row ``i`` = ``customer_ids[i]``."""

    customer_ids: tuple[str, ...]
    numeric: np.ndarray  # (n, len(numeric_columns)) float64, NaN = missing
    numeric_columns: tuple[str, ...]
    categorical: dict[str, np.ndarray]  # column -> object array of str / None
    found: np.ndarray  # bool per row
    as_of: pd.Timestamp | None
    layout: object  # hashable key of the column layout (store version or a frame's columns)

    @classmethod
    def from_lookup(cls, hit: Lookup) -> FeatureRows:
        return cls(hit.customer_ids, hit.numeric, hit.numeric_columns, hit.categorical,
                   hit.found, hit.version.as_of, ("store", hit.version.version))  # fmt: skip

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, as_of: pd.Timestamp) -> FeatureRows:
        """Rows of a ``serving_vectors`` frame (every row found)."""
        features = frame.drop(columns="customer_id")
        text = [c for c in features.columns if _is_text(features[c])]
        numeric = features.drop(columns=text)
        categorical = {c: _strings(features[c]) for c in text}
        return cls(
            tuple(frame["customer_id"].astype("str")),
            numeric.to_numpy(dtype=np.float64, na_value=np.nan),
            tuple(numeric.columns), categorical, np.ones(len(frame), bool), as_of,
            ("frame", tuple(numeric.columns), tuple(text)),
        )  # fmt: skip

    def take(self, rows: np.ndarray, customer_ids: tuple[str, ...] | None = None) -> FeatureRows:
        """The subset ``rows`` (positions), same layout; ``customer_ids``: theirs, if known."""
        ids = tuple(self.customer_ids[i] for i in rows) if customer_ids is None else customer_ids
        return FeatureRows(
            ids, self.numeric[rows], self.numeric_columns,
            {c: v[rows] for c, v in self.categorical.items()}, self.found[rows], self.as_of,
            self.layout,
        )  # fmt: skip

    def unknown(self, rows: np.ndarray) -> FeatureRows:
        """These rows with the rows ``rows`` (bool mask) marked not found, as the store marks
        unknown ids: NaN numbers, None texts."""
        numeric = self.numeric.copy()
        numeric[rows] = np.nan
        categorical = {c: v.copy() for c, v in self.categorical.items()}
        for v in categorical.values():
            v[rows] = None
        return FeatureRows(self.customer_ids, numeric, self.numeric_columns, categorical,
                           self.found & ~rows, self.as_of, self.layout)  # fmt: skip

    def text(self, column: str) -> np.ndarray | None:
        """A categorical column as an object array (None if the rows do not have it)."""
        return self.categorical.get(column)

    def value(self, column: str) -> np.ndarray | None:
        """A numeric column (None if the rows do not have it)."""
        if column not in self.numeric_columns:
            return None
        return self.numeric[:, self.numeric_columns.index(column)]


class InputPlan:
    """How to build one model's input matrix from rows of one layout."""

    def __init__(self, model, rows: FeatureRows) -> None:
        names = [str(c) for c in model.feature_names_in_]
        categories = getattr(model, "categories_", {})
        absent = [c for c in names if c not in rows.numeric_columns and c not in rows.categorical]
        if absent and rows.layout[0] == "store":
            raise ValueError(
                f"the feature store lacks {len(absent)} column(s) the model was trained on: "
                f"{absent[:10]}; materialise the model's feature set"
            )
        self.width = len(names)
        position = {c: i for i, c in enumerate(rows.numeric_columns)}
        numeric = [(j, position[c]) for j, c in enumerate(names) if c in position]
        self.numeric_to = np.array([j for j, _ in numeric], dtype=np.intp)
        self.numeric_from = np.array([i for _, i in numeric], dtype=np.intp)
        self.categorical = [
            (j, c, {str(v): float(k) for k, v in enumerate(categories.get(c, []))})
            for j, c in enumerate(names)
            if c in rows.categorical
        ]
        self.absent = np.array([j for j, c in enumerate(names) if c in absent], dtype=np.intp)

    def matrix(self, rows: FeatureRows) -> np.ndarray:
        out = np.empty((len(rows.customer_ids), self.width), dtype=np.float64)
        out[:, self.numeric_to] = rows.numeric[:, self.numeric_from]
        for j, column, codes in self.categorical:  # unseen, missing: None -> NaN
            out[:, j] = np.array(list(map(codes.get, rows.categorical[column])), np.float64)
        out[:, self.absent] = np.nan  # cold start: attributes the request did not send
        return out


def _is_text(column: pd.Series) -> bool:
    dtype = column.dtype
    return isinstance(dtype, pd.CategoricalDtype) or dtype == "str" or dtype is np.dtype(object)


def _strings(column: pd.Series) -> np.ndarray:
    values = column.astype("object").to_numpy()
    return np.array([None if pd.isna(v) else str(v) for v in values], dtype=object)
