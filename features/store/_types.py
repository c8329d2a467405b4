"""Value types of the online store: column specs, versions, lookup results and errors."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np
import pandas as pd

Kind = Literal["numeric", "categorical"]
ID_COLUMN = "customer_id"


class NoVersionError(RuntimeError):
    """The store has no materialised version yet, so there is nothing to read."""


class StoreUnavailableError(NoVersionError):
    """The store's server cannot be reached (or its client is missing), so nothing can be read.

    A kind of :class:`NoVersionError` on purpose: whoever handles "no version to read" (the
    service answers 503 with the message) handles an unreachable server the same way.
    """


@dataclass(frozen=True)
class ColumnSpec:
    """One feature column as it was materialised.

    Attributes
    ----------
    name : str
        Column name in the materialised frame.
    dtype : str
        The frame's pandas dtype as text (``float32``, ``Int64``, ``bool``, ``category``, ``str``).
    kind : {"numeric", "categorical"}
        Numeric columns are served as float64 in one matrix; categorical ones as strings.
    categories : tuple of str, optional
        For ``category`` columns, the categories in order (as strings), so that models can
        re-apply their training categories.
    """

    name: str
    dtype: str
    kind: Kind
    categories: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready dict (stored in ``store_versions.columns``)."""
        categories = None if self.categories is None else list(self.categories)
        return {"name": self.name, "dtype": self.dtype, "kind": self.kind, "categories": categories}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ColumnSpec:
        """Inverse of :meth:`to_json`."""
        categories = data.get("categories")
        categories = None if categories is None else tuple(categories)
        return cls(data["name"], data["dtype"], data["kind"], categories)


@dataclass(frozen=True)
class StoreVersion:
    """Metadata of one materialised version (one table of the store).

    Attributes
    ----------
    version : int
        Increasing id, never reused within a store file.
    feature_set : str
        Name of the feature set the vectors belong to (e.g. ``churn_v3``).
    as_of : pandas.Timestamp
        UTC time the features were computed as of.
    created_at : pandas.Timestamp
        UTC time the version was written.
    n_customers : int
        Number of rows (customers).
    columns : tuple of ColumnSpec
        Feature columns (``customer_id`` excluded) in the order of the materialised frame.
    """

    version: int
    feature_set: str
    as_of: pd.Timestamp
    created_at: pd.Timestamp
    n_customers: int
    columns: tuple[ColumnSpec, ...]

    @property
    def table(self) -> str:
        """Name of the SQLite table holding this version's rows."""
        return f"vectors_v{self.version}"

    @cached_property
    def numeric_columns(self) -> tuple[str, ...]:
        """Names of the numeric columns, in the column order of :attr:`Lookup.numeric`."""
        return tuple(c.name for c in self.columns if c.kind == "numeric")

    @cached_property
    def categorical_columns(self) -> tuple[str, ...]:
        """Names of the categorical / str columns, in storage order."""
        return tuple(c.name for c in self.columns if c.kind == "categorical")


@dataclass(frozen=True)
class Lookup:
    """Feature vectors for a list of requested ids, all read from one version.

    Attributes
    ----------
    version : StoreVersion
        The version every row was read from.
    customer_ids : tuple of str
        The requested ids, in request order (duplicates kept); row ``i`` of every array is
        ``customer_ids[i]``.
    numeric : numpy.ndarray
        ``(len(customer_ids), len(version.numeric_columns))`` float64; NaN for missing values
        and for whole rows of unknown ids.
    categorical : dict of str to numpy.ndarray
        One object array of ``str`` per categorical column; ``None`` where missing or unknown.
    found : numpy.ndarray
        Bool, one per requested id: whether the id is in the version.
    missing : tuple of str
        Unknown ids, once each, in request order.
    """

    version: StoreVersion
    customer_ids: tuple[str, ...]
    numeric: np.ndarray
    categorical: dict[str, np.ndarray]
    found: np.ndarray
    missing: tuple[str, ...]

    @property
    def numeric_columns(self) -> tuple[str, ...]:
        """Column names of :attr:`numeric`."""
        return self.version.numeric_columns

    def __repr__(self) -> str:
        n, hits, v = len(self.customer_ids), int(self.found.sum()), self.version.version
        return f"Lookup(version={v}, requested={n}, found={hits}, missing={len(self.missing)})"
