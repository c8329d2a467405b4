"""Customer features as of each exposure's send, one builder call per campaign day.

The uplift model learns from the campaign log: every exposure needs the features its customer
had just before the offer was sent (DESIGN section 4). Campaigns send on a few dozen days a
year, so the builder runs once per send day, vectorised over customers, at the end of the day
before (nothing sent that day, nor its outcome, can leak in).
"""

from __future__ import annotations

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
    days = send_days(exposures)
    parts = [
        _day_features(events, exposures, rows, day, customers, feature_set, offers)
        for day, rows in exposures.groupby(days, sort=True).groups.items()
    ]
    return pd.concat(parts).reindex(exposures.index)


def _day_features(
    events: pd.DataFrame,
    exposures: pd.DataFrame,
    rows: pd.Index,
    day: pd.Timestamp,
    customers: pd.DataFrame | None,
    feature_set: str | FeatureSet,
    offers: pd.DataFrame | None,
) -> pd.DataFrame:
    """The features of the exposures ``rows`` (all sent on ``day``), indexed by ``rows``."""
    frame = build_features(events, day - ONE_US, feature_set, customers, exposures, offers)
    table = frame.set_index("customer_id")
    ids = exposures.loc[rows, "customer_id"].astype("str")
    out = table.reindex(pd.Index(ids, dtype="str"))
    out.index = rows
    return out
