"""What the service reads per customer: owned products and the serving vectors (hand-computed),
and the store's list of ids."""

from __future__ import annotations

import pandas as pd

from features.builder import build_features
from features.loaders import load_events
from features.online_vectors import owned_products, parse_owned, serving_vectors
from features.stages import assign_stages
from features.store import OnlineStore

EVENTS = pd.DataFrame({
    "customer_id": ["a", "a", "a", "a", "b", "b"],
    "timestamp": pd.to_datetime(["2025-01-01", "2025-01-05", "2025-01-06", "2025-02-01",
                                 "2025-01-02", "2025-01-03"], utc=True),
    "event_type": ["purchase", "purchase", "page_view", "purchase", "signup", "add_to_cart"],
    "amount": [10.0, 20.0, None, 5.0, None, None],
    "product": ["kit", "case", None, "cable", None, "kit"],
})  # fmt: skip


def events() -> pd.DataFrame:
    return load_events(EVENTS).data


def test_owned_products_are_the_distinct_products_bought_up_to_as_of():
    owned = owned_products(events(), "2025-01-31")
    assert owned.to_dict() == {"a": "case|kit"}  # cable came later; b only carted a kit
    assert parse_owned(owned["a"]) == {"case", "kit"} and parse_owned("") == frozenset()
    assert parse_owned(None) == frozenset()


def test_serving_vectors_add_stage_and_owned_products(tmp_path):
    vectors = serving_vectors(events(), "2025-02-02", "default")
    row = vectors.set_index("customer_id")
    assert (
        row.loc["a", "owned_products"] == "cable|case|kit" and row.loc["b", "owned_products"] == ""
    )
    rule = assign_stages(build_features(events(), "2025-02-02", "default")).astype("str")
    assert vectors["stage"].tolist() == rule.tolist() and vectors["stage"].dtype == "str"
    store = OnlineStore(tmp_path / "s.sqlite")
    store.materialize(vectors, "2025-02-02", "default")
    assert store.customer_ids() == ["a", "b"]
    hit = store.lookup(["b", "a"])
    assert list(hit.categorical["owned_products"]) == ["", "cable|case|kit"]
