"""``reserve_contacts`` in the service, in process: what it changes for ``/decide`` (a decided
offer is a contact for the next request, before any ``sent`` is reported), what it keeps (a
caller who left records no decision), and when it is on. Across real replicas on PostgreSQL:
``tests/serving/test_replicas.py``."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from serving.config import ServiceConfig, load_config
from serving.ledger import FeedbackLedger


def capped(monkeypatch, tmp_path, reserve: bool | None) -> None:
    """A service config with a contact cap of 1, no exploration and ``reserve_contacts``."""
    path = tmp_path / "service.yaml"
    text = "seed: 1\ncompile_trees: false\npolicy: {exploration: 0.0, contact_cap: 1}\n"
    if reserve is not None:
        text += f"reserve_contacts: {str(reserve).lower()}\n"
    path.write_text(text)
    monkeypatch.setenv("LIFECYCLE_SERVICE_CONFIG", str(path))


def offered(body: dict) -> set[str]:
    return {r["customer_id"] for r in body["results"] if r["decision"]["offer_id"]}


def ids(world, n: int = 30) -> list[str]:
    return world["vectors"]["customer_id"].astype("str").head(n).tolist()


@pytest.mark.parametrize("reserve", [True, False])
def test_a_decided_offer_counts_against_the_cap_only_when_reserving(
    app, service_env, monkeypatch, tmp_path, world, reserve
):
    capped(monkeypatch, tmp_path, reserve)
    body = {"customer_ids": ids(world)}
    with TestClient(app) as client:
        first = offered(client.post("/decide", json=body).json())
        second = offered(client.post("/decide", json=body).json())
    assert first  # some customers get an offer
    # reserving: one offer per customer within the window; not: sends count, none reported
    assert second == (set() if reserve else first)
    decisions = FeedbackLedger(service_env["LIFECYCLE_LEDGER"]).counts()["decisions"]
    assert decisions == 2 * len(body["customer_ids"])  # offers and "no offer" alike


def test_a_caller_who_left_reserves_nothing(app, service_env, monkeypatch, tmp_path, world):
    capped(monkeypatch, tmp_path, True)
    body = {"customer_ids": ids(world)}
    left = [True]
    monkeypatch.setattr("serving.service.abandoned", lambda: left[0])
    with TestClient(app) as client:
        gone = client.post("/decide", json=body)  # decided, but its caller is gone
        left[0] = False
        later = client.post("/decide", json=body)
    assert gone.status_code == later.status_code == 200
    assert offered(gone.json()) == offered(later.json())  # nothing was recorded in between
    ledger = FeedbackLedger(service_env["LIFECYCLE_LEDGER"])
    assert ledger.counts()["decisions"] == len(body["customer_ids"])  # the second request's


@pytest.mark.parametrize(
    ("ledger", "setting", "on"),
    [
        ("store/ledger.sqlite", None, False),
        ("sqlite:///ledger.sqlite", None, False),
        ("postgresql://u@db:5432/ledger", None, True),
        ("postgresql://u@db:5432/ledger", False, False),
        ("store/ledger.sqlite", True, True),
    ],
)
def test_reserving_is_on_by_default_for_a_postgresql_ledger_only(ledger, setting, on):
    assert ServiceConfig(ledger=ledger, reserve_contacts=setting).reserves_contacts is on


def test_reserve_contacts_from_the_environment():
    config = load_config({"LIFECYCLE_RESERVE_CONTACTS": "false",
                          "LIFECYCLE_LEDGER": "postgresql://u@db:5432/ledger"})  # fmt: skip
    assert config.reserve_contacts is False and not config.reserves_contacts
    with pytest.raises(ValueError, match="reserve_contacts"):
        load_config({"LIFECYCLE_RESERVE_CONTACTS": "maybe"})
