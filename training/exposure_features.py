"""Customer features as of each exposure's send, one builder call per campaign day.

The uplift model learns from the campaign log: every exposure needs the features its customer
had just before the offer was sent (DESIGN section 4). Campaigns send on a few dozen days a
year, so the builder runs once per send day, vectorised over that day's exposed customers
only (features are per customer, so the other customers' events need not be read), at the
end of the day before (nothing sent that day, nor its outcome, can leak in).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.builder import build_features
from features.registry import FeatureSet

ONE_US = pd.Timedelta(microseconds=1)


def send_days(exposures: pd.DataFrame) -> pd.Series:
    """Midnight UTC of each exposure's send day (aligned with ``exposures``)."""
    return exposures["sent_at"].dt.floor("D")


def exposure_features(
    events: pd.DataFrame,
    exposures: pd.DataFrame,
    customers: pd.DataFrame | None = None,
    feature_set: str | FeatureSet = "default",
    offers: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Features of each exposure's customer as of one microsecond before its send day.

    Parameters
    ----------
    events : validated events (``load_events(...).data``).
    exposures : validated campaign log (``exposure_id``, ``customer_id``, ``sent_at``, ...).
        Passed to the builder too, so offer-history features count earlier contacts only.
    customers : optional customers table (static attributes, signup dates).
    feature_set : the builder's feature set.
    offers : optional catalog (offer kinds for the offer-history features).

    Returns
    -------
    DataFrame aligned with ``exposures`` (same index and order) holding the feature set's
    columns (no ``customer_id``). A customer with no events before the send gets missing
    values.
    """
    ids = CustomerIndex(exposures["customer_id"])
    tables = {"events": events, "exposures": exposures, "customers": customers}
    keys = {name: ids.codes(t["customer_id"]) for name, t in tables.items() if t is not None}
    parts = []
    for day, rows in exposures.groupby(send_days(exposures), sort=True).groups.items():
        wanted = ids.flags(keys["exposures"][exposures.index.get_indexer(rows)])
        subset = {name: tables[name][wanted[keys[name]]] for name in keys}
        subset.setdefault("customers", None)
        ids_today = exposures.loc[rows, "customer_id"]
        parts.append(_day_features(**subset, rows=rows, day=day, feature_set=feature_set,
                                   offers=offers, ids=ids_today))  # fmt: skip
    return pd.concat(parts).reindex(exposures.index)


class CustomerIndex:
    """Integer codes of the exposed customers, to select any table's rows of a few of them.

    ``codes(column)`` maps a ``customer_id`` column to codes (-1 = never exposed, one hash
    join per table); ``flags(codes)`` is a lookup array, so ``flags(day)[codes]`` selects the
    rows of that day's customers in one vectorised pass.
    """

    def __init__(self, customer_id: pd.Series) -> None:
        self.labels = pd.Index(pd.unique(customer_id.astype("str")))

    def codes(self, column: pd.Series) -> np.ndarray:
        if isinstance(column.dtype, pd.CategoricalDtype):  # join the categories, not the rows
            lookup = self.labels.get_indexer(column.cat.categories.astype("str"))
            return np.r_[lookup, -1][column.cat.codes.to_numpy()]
        return self.labels.get_indexer(column.astype("str"))

    def flags(self, codes: np.ndarray) -> np.ndarray:
        """Booleans over codes (plus a last False for code -1) marking ``codes``."""
        out = np.zeros(len(self.labels) + 1, dtype=bool)
        out[codes] = True
        out[-1] = False
        return out


def _day_features(
    events: pd.DataFrame,
    exposures: pd.DataFrame,
    customers: pd.DataFrame | None,
    rows: pd.Index,
    day: pd.Timestamp,
    feature_set: str | FeatureSet,
    offers: pd.DataFrame | None,
    ids: pd.Series,
) -> pd.DataFrame:
    """The features of the exposures ``rows`` (all sent on ``day``, to customers ``ids``),
    indexed by ``rows``; the tables hold those customers' rows only."""
    frame = build_features(events, day - ONE_US, feature_set, customers, exposures, offers)
    table = frame.set_index("customer_id")
    out = table.reindex(pd.Index(ids.astype("str"), dtype="str"))
    out.index = rows
    return out
