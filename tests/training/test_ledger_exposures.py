"""The service's decisions as a campaign log (issue 14, point 1): the ledger in the exposures
format, point in time, with outcomes from the events for every arm alike."""

from __future__ import annotations

import sqlite3

import pandas as pd
import pytest

from features.loaders import load_exposures, load_offers
from serving.ledger import Decisions, FeedbackLedger
from tests.shops import decisions_ledger
from training.ledger_exposures import ledger_exposures

T0 = pd.Timestamp("2026-03-01", tz="UTC")
OFFERS = pd.DataFrame({
    "offer_id": ["x", "y"], "kind": ["retention", "upsell"], "product": [None, None],
    "value": [10.0, 20.0], "cost": [1.0, 1.0], "eligible_stages": [None, None],
    "exclude_if_owned": [False, False], "cooldown_days": [7, 7], "channel": [None, None],
})  # fmt: skip


def day(n: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(days=n)


@pytest.fixture
def ledger(tmp_path):
    """Five decisions: x to a (sent on day 1), no offer to b, y to c (never reported sent),
    x to a again on day 25 (its response window still open at the end), no offer to d on
    day 0 from the cold-start policy."""
    path = tmp_path / "ledger.sqlite"
    book = FeedbackLedger(path)
    for ids, customers, offers, p, policy in (
        (["d1", "d2", "d3", "d4"], ["a", "b", "c", "a"], ["x", None, "y", "x"],
         [0.9, 0.05, 0.5, 0.9], "model"),
        (["d5"], ["d"], [None], [0.2], "cold_start"),
    ):  # fmt: skip
        book.record_decisions(Decisions(ids, customers, offers, p, [False] * len(ids), None,
                                        "email", "{}", None, policy))  # fmt: skip
    book.record_feedback([
        {"event_id": "e1", "event": "sent", "decision_id": "d1", "occurred_at": day(1).timestamp()},
        {"event_id": "e2", "event": "sent", "decision_id": "d1", "occurred_at": day(2).timestamp()},
        {"event_id": "e3", "event": "sent", "decision_id": "d4",
         "occurred_at": day(25).timestamp()},
    ])  # fmt: skip
    book.close()
    with sqlite3.connect(path) as conn:  # decided on the data's days, not today
        for decision, n in (("d1", 0.5), ("d2", 0), ("d3", 0), ("d4", 25), ("d5", 0)):
            conn.execute("UPDATE decisions SET decided_at = ? WHERE decision_id = ?",
                         (day(n).timestamp(), decision))  # fmt: skip
    return path


def events() -> pd.DataFrame:
    rows = [("a", day(4), "purchase", 10.0), ("a", day(6), "purchase", 5.0),
            ("a", day(16), "purchase", 7.0),  # 15 days after the send: outside the window
            ("b", day(20), "purchase", 3.0), ("c", day(3), "purchase", 8.0),
            ("d", day(2), "login", None), ("z", day(30), "purchase", 1.0)]  # fmt: skip
    frame = pd.DataFrame(rows, columns=["customer_id", "timestamp", "role", "amount"])
    return frame.assign(role=frame["role"].astype("category"))


def test_decisions_become_exposures_with_outcomes_from_the_events(ledger):
    out = ledger_exposures(ledger, events(), response_window_days=14)
    assert out["exposure_id"].tolist() == ["ledger-d1", "ledger-d2", "ledger-d5"]
    row = out.set_index("exposure_id")
    assert row.loc["ledger-d1", "sent_at"] == day(1)  # the first reported send
    assert row.loc["ledger-d2", "sent_at"] == day(0)  # control: when decided
    assert row["offer_id"].iloc[0] == "x" and row["offer_id"].iloc[1:].isna().all()
    assert row["propensity"].tolist() == [0.9, 0.05, 0.2]
    assert row["converted"].tolist() == [True, False, False]  # b bought after 20 days
    assert row["revenue"].tolist() == [15.0, 0.0, 0.0]  # day 4 and day 6, not day 16
    loaded = load_exposures(out, offers=load_offers(OFFERS))  # the contract, strictly
    assert len(loaded.data) == 3


def test_unreported_sends_count_only_when_asked_and_time_is_respected(ledger):
    every = ledger_exposures(ledger, events(), 14, require_sent=False)
    assert "ledger-d3" in set(every["exposure_id"])
    c = every.set_index("exposure_id").loc["ledger-d3"]
    assert c["sent_at"] == day(0) and c["converted"] and c["revenue"] == 8.0
    early = ledger_exposures(ledger, events(), 14, as_of=day(14.5))
    assert early["exposure_id"].tolist() == ["ledger-d2", "ledger-d5"]  # d1's window is open
    late = ledger_exposures(ledger, events(), 14, as_of=day(40))
    assert "ledger-d4" in set(late["exposure_id"])  # its window closed by day 39


def test_a_ledger_whose_response_windows_are_all_open_gives_no_exposures(ledger):
    none = ledger_exposures(ledger, events(), 14, as_of=day(10))  # every window still open
    assert len(none) == 0 and {"converted", "revenue", "sent_at"} <= set(none.columns)
    assert len(load_exposures(none, offers=load_offers(OFFERS)).data) == 0


def test_a_missing_or_damaged_ledger_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="ledger.*nope.sqlite"):
        ledger_exposures(tmp_path / "nope.sqlite", events(), 14)
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"not a database at all" * 100)
    with pytest.raises(ValueError, match="bad.sqlite is not a readable feedback ledger"):
        ledger_exposures(bad, events(), 14)


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """A simulated data folder and a ledger of decisions for its customers and offers."""
    from features.simulator import SimConfig, simulate, write_simulation
    from training.data import load_tables

    folder = tmp_path_factory.mktemp("shop")
    cfg = SimConfig(customers=800, days=200, seed=3)
    write_simulation(simulate(cfg), folder / "data", cfg)
    tables = load_tables(folder / "data")
    path = folder / "ledger.sqlite"
    return folder, tables, path, decisions_ledger(path, tables)


def test_training_reads_the_ledger_beside_the_campaign_logs(shop):
    from training.ledger_exposures import with_ledger
    from training.offers_pipeline import offer_data

    _, tables, path, ids = shop
    both, added = with_ledger(tables, path, response_window_days=14)
    assert added == len(ids) and len(both.exposures) == len(tables.exposures) + added
    data = offer_data(both)
    mine = data.exposures["exposure_id"].str.startswith("ledger-").to_numpy()
    assert mine.sum() == added and len(data.X) == len(data.y) == len(both.exposures)
    assert data.X[mine]["purchases_total"].notna().any()  # features as of each send day
    assert set(data.arm[mine]) == {"control", *tables.offers["offer_id"].astype(str)}


def test_the_ledger_needs_the_catalog_and_offers_in_it(shop, tmp_path):
    from dataclasses import replace

    from features.contracts import ContractError
    from training.ledger_exposures import with_ledger

    _, tables, path, _ = shop
    with pytest.raises(ValueError, match="need the offer catalog"):
        with_ledger(replace(tables, offers=None), path, 14)
    fewer = tables.offers[tables.offers["offer_id"] != tables.offers["offer_id"].iloc[0]]
    with pytest.raises(ContractError, match="offer_id"):
        with_ledger(replace(tables, offers=fewer), path, 14)


def test_lifecycle_train_with_a_missing_ledger_fails_before_any_work(shop, tmp_path):
    from typer.testing import CliRunner

    from training.cli import app

    folder, _, _, _ = shop
    result = CliRunner().invoke(app, ["train", str(folder / "data"), "--ledger",
                                      str(tmp_path / "gone.sqlite")])  # fmt: skip
    assert result.exit_code == 1 and "gone.sqlite does not exist" in result.output
