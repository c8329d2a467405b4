"""The models and the store must be built with one config (issue 12, point 1): a store built
another way (another role map, here) is refused with a message instead of being scored, and
cold-start ``/score`` builds vectors with the models' own recorded config."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from features.project import ProjectConfig, RolesConfig, recorded_config
from features.store import OnlineStore
from serving import bundle as bundles
from serving.cold_start import feature_rows
from serving.consistency import ConfigMismatch, models_config, store_problem
from serving.schemas import ColdCustomer
from training.resolve import store_vectors


@pytest.fixture
def other_store(world, tmp_path, monkeypatch, service_env):
    """The world's data materialised with a different role map than the models were
    trained with (what a CLI run without the user's config would build)."""
    other = ProjectConfig(roles=RolesConfig(mapping={"login": "visit", "app_open": "visit"}))
    vectors, label = store_vectors(world["tables"], other)
    path = tmp_path / "other.sqlite"
    OnlineStore(path).materialize(vectors, world["tables"].end, label)
    monkeypatch.setenv("LIFECYCLE_STORE", str(path))
    return path


def test_a_store_built_with_another_config_is_refused_until_rematerialised(app, world, other_store):
    ids = world["vectors"]["customer_id"].astype("str").head(2).tolist()
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 503
        models = client.get("/models").json()
        assert not models["ready"]
        assert "was built with config fingerprint" in models["error"]
        assert models["config_fingerprint"] in models["error"]
        for path, body in (("/decide", {"customer_ids": ids}),
                           ("/batch", {"filter": {"limit": 5}})):  # fmt: skip
            response = client.post(path, json=body)
            assert response.status_code == 503, response.text  # BentoML hides 5xx messages:
        assert "re-materialise with `lifecycle features materialize" in models["error"]  # here
        # the same data built with the models' own recorded config: served at once
        OnlineStore(other_store).materialize(world["vectors"], world["tables"].end,
                                             world["label"])  # fmt: skip
        assert client.get("/readyz").status_code == 200
        assert client.post("/decide", json={"customer_ids": ids}).status_code == 200


def test_models_record_the_resolved_config_and_must_agree(world):
    loaded = bundles.from_folder(world["folder"] / "export")
    project, fingerprint = models_config(loaded)
    assert project == world["config"] and fingerprint == world["config"].fingerprint()
    assert project.dataset.churn_definition == "inactivity"  # resolved: no "auto" left
    assert project.dataset.event_types  # the event types chosen at training
    loaded.stage.lifecycle_fingerprint_ = "someone-else"
    with pytest.raises(ConfigMismatch, match="different project configs"):
        models_config(loaded)
    assert store_problem(None, "default@2", 1) is None  # models from before: nothing to check
    assert "an older store" in store_problem(fingerprint, "default@2", 3)


def test_cold_start_builds_with_the_recorded_role_map(world):
    config = recorded_config(bundles.from_folder(world["folder"] / "export").churn)
    mapped = config.model_copy(update={"roles": RolesConfig(mapping={"tap": "purchase"})})
    events = [
        {"timestamp": "2025-09-01T10:00:00Z", "event_type": "tap", "amount": 3.0},
        {"timestamp": "2025-09-20T10:00:00Z", "event_type": "tap", "amount": 5.0},
    ]
    customer = [ColdCustomer.model_validate({"customer_id": "n1", "events": events})]
    as_of = "2025-10-01T00:00:00Z"
    with_map = feature_rows(customer, as_of, mapped)
    without = feature_rows(customer, as_of, config)
    purchases = with_map.numeric_columns.index("purchases_total")
    assert with_map.numeric[0, purchases] == 2 and without.numeric[0, purchases] == 0


def test_cold_start_builds_contract_features_from_the_periods_sent():
    events = [{"timestamp": "2025-09-01T10:00:00Z", "event_type": "login"}]

    def contract(periods: list[dict], contracts: bool = True) -> dict[str, float]:
        customer = ColdCustomer.model_validate(
            {"customer_id": "n1", "events": events, "subscriptions": periods}
        )
        rows = feature_rows([customer], "2025-10-01T00:00:00Z", ProjectConfig(), contracts)
        names = rows.numeric_columns
        return {n: rows.numeric[0, names.index(n)] for n in names if n.startswith("contract_")}

    period = {"period_start": "2025-09-15T00:00:00Z", "period_end": "2025-10-15T00:00:00Z",
              "recurring_value": 9.99, "discount": 0.1}  # fmt: skip
    held = contract([period])
    assert held["contract_active"] == 1 and held["contract_days_to_period_end"] == 14
    assert held["contract_recurring_value"] == pytest.approx(9.99)
    assert contract([])["contract_active"] == 0  # models read contracts: none sent = none held
    assert contract([], contracts=False) == {}  # models without them: no contract columns
    backwards = {**period, "period_end": "2025-09-01T00:00:00Z"}
    with pytest.raises(ValueError, match="subscriptions.*period_end must be after period_start"):
        contract([backwards])
    with pytest.raises(ValueError, match=r"subscriptions\[\]\.period_start .*'soon'"):
        contract([{**period, "period_start": "soon"}])
