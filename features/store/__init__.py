"""Online feature store: versioned per-customer vectors for the service (SQLite by default).

>>> store = OnlineStore("store/online.sqlite")            # doctest: +SKIP
>>> store.materialize(vectors, as_of, "churn_v1")         # doctest: +SKIP
>>> hit = store.lookup(["c1", "c2"])                      # doctest: +SKIP
>>> hit.numeric, hit.numeric_columns, hit.missing         # doctest: +SKIP
"""

from features.store._types import ColumnSpec, Lookup, NoVersionError, StoreVersion
from features.store.online import OnlineStore

__all__ = ["ColumnSpec", "Lookup", "NoVersionError", "OnlineStore", "StoreVersion"]
