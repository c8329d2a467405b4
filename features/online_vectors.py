"""What the decision service reads per customer: the feature vector, the rule stage and the
products the customer owns, all as of one time (DESIGN sections 4 and 8).

``serving_vectors`` is the one function behind both ``lifecycle features materialize`` (every
customer, into the online store) and the service's cold-start ``/score`` (the events sent in
the request), so the two can never drift apart.
"""

from __future__ import annotations

import pandas as pd

from features.builder import build_features, to_utc
from features.registry import FeatureSet
from features.stages import StageRules, assign_stages

OWNED = "owned_products"
SEPARATOR = "|"


def owned_products(events: pd.DataFrame, as_of: object) -> pd.Series:
    """Products each customer bought (purchase-role events) up to ``as_of``.

    Parameters
    ----------
    events : validated events with ``customer_id``, ``timestamp``, ``role``, ``product``.
    as_of : timestamp-like (naive = UTC).

    Returns
    -------
    Series of str indexed by ``customer_id`` (str): the distinct products, sorted and joined
    with ``"|"``; customers without a product purchase are absent.
    """
    when = to_utc(as_of)
    bought = events[
        (events["timestamp"] <= when)
        & (events["role"].astype("object") == "purchase")
        & events["product"].notna()
    ]
    ids = bought["customer_id"].astype("str").to_numpy()
    products = bought["product"].astype("str").to_numpy()
    pairs = pd.DataFrame({"customer_id": ids, "product": products}).drop_duplicates()
    joined = pairs.sort_values("product").groupby("customer_id", sort=True)["product"]
    return joined.agg(SEPARATOR.join).astype("str").rename(OWNED)


def parse_owned(value: object) -> frozenset[str]:
    """The set behind one ``owned_products`` value (missing -> empty)."""
    if value is None or (isinstance(value, float) and value != value) or value == "":
        return frozenset()
    return frozenset(str(value).split(SEPARATOR))


def serving_vectors(
    events: pd.DataFrame,
    as_of: object,
    feature_set: str | FeatureSet = "default",
    customers: pd.DataFrame | None = None,
    exposures: pd.DataFrame | None = None,
    offers: pd.DataFrame | None = None,
    rules: StageRules | None = None,
    response_window_days: int = 14,
    **options: object,
) -> pd.DataFrame:
    """``build_features`` plus ``stage`` (the rule stage) and ``owned_products``.

    ``options``: the data-dependent families (``event_types``, ``subscriptions``, ``btyd``).
    Returns one row per customer with events up to ``as_of``: ``customer_id``, the feature
    set's columns, ``stage`` (str) and ``owned_products`` ("|"-joined, "" when none).
    """
    vectors = build_features(events, as_of, feature_set, customers, exposures, offers,
                             response_window_days, **options)  # fmt: skip
    vectors["stage"] = assign_stages(vectors, rules).astype("str").to_numpy()
    owned = owned_products(events, as_of)
    ids = vectors["customer_id"].astype("str")
    vectors[OWNED] = owned.reindex(pd.Index(ids)).fillna("").to_numpy(dtype=object)
    vectors[OWNED] = vectors[OWNED].astype("str")
    return vectors


def store_label(feature_set: str, fingerprint: str) -> str:
    """The online store's label of a version: the feature set and the fingerprint of the
    project config its vectors were built with (``default#3f2a...``)."""
    return f"{feature_set}#{fingerprint}"


def label_fingerprint(label: str) -> str | None:
    """The config fingerprint in a store version's label (None for older versions)."""
    return label.split("#", 1)[1] if "#" in label else None
