"""Online feature store: versioned per-customer vectors for the service, chosen by URL
(SQLite file by default, Redis or PostgreSQL).

>>> store = open_store("store/online.sqlite")             # doctest: +SKIP
>>> store = open_store("redis://127.0.0.1:6390/0")        # doctest: +SKIP
>>> store = open_store("postgresql://lifecycle@127.0.0.1:5440/lifecycle")  # doctest: +SKIP
>>> store.materialize(vectors, as_of, "churn_v1")         # doctest: +SKIP
>>> hit = store.lookup(["c1", "c2"])                      # doctest: +SKIP
>>> hit.numeric, hit.numeric_columns, hit.missing         # doctest: +SKIP
"""

from features.store._types import (
    ColumnSpec,
    Lookup,
    NoVersionError,
    StoreUnavailableError,
    StoreVersion,
)
from features.store.factory import absolute_location, open_store
from features.store.online import OnlineStore
from features.store.postgres_store import PostgresStore
from features.store.redis_store import RedisStore

Store = OnlineStore | RedisStore | PostgresStore

__all__ = [
    "ColumnSpec",
    "Lookup",
    "NoVersionError",
    "OnlineStore",
    "PostgresStore",
    "RedisStore",
    "Store",
    "StoreUnavailableError",
    "StoreVersion",
    "absolute_location",
    "open_store",
]
