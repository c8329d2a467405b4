"""Data contracts for transaction logs, customers, offers and exposures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import (
    ContractError,
    load_customers,
    load_exposures,
    load_offers,
    load_transactions,
)


def offers(**overrides: list) -> pd.DataFrame:
    columns = {
        "offer_id": ["o1", "o2"],
        "kind": ["upsell", "retention"],
        "value": [10.0, 5.0],
        "cost": [0.5, 0.2],
    }
    return pd.DataFrame(columns | overrides)


def exposures(**overrides: list) -> pd.DataFrame:
    columns = {
        "exposure_id": ["e1", "e2", "e3"],
        "customer_id": ["c1", "c2", "c3"],
        "offer_id": ["o1", None, "o2"],
        "sent_at": ["2024-03-01", "2024-03-01", "2024-03-02"],
        "propensity": [0.5, 0.25, 1.0],
    }
    return pd.DataFrame(columns | overrides)


def message_of(loader, frame: pd.DataFrame, **kwargs: object) -> str:
    with pytest.raises(ContractError) as info:
        loader(frame, **kwargs)
    return str(info.value)


# ---- transaction logs -----------------------------------------------------------------


def test_transaction_log_loads_in_one_call_as_purchases(tmp_path):
    log = pd.DataFrame({"customer_id": ["c1", "c2"], "date": ["2024-01-05", "2024-01-06"],
                        "amount": [12.5, 3.0], "store": ["s1", "s2"]})  # fmt: skip
    log.to_csv(tmp_path / "tx.csv", index=False)
    result = load_transactions(tmp_path / "tx.csv")
    data = result.data
    assert list(data["event_type"]) == ["purchase", "purchase"]
    assert list(data["role"]) == ["purchase", "purchase"]
    assert data["timestamp"].iloc[0] == pd.Timestamp("2024-01-05", tz="UTC")
    assert list(data["store"]) == ["s1", "s2"] and result.report.roles == {"purchase": 2}


def test_transaction_messages_name_the_callers_columns():
    log = pd.DataFrame({"cust": ["c1", "c2"], "day": ["2024-01-05", "nope"], "eur": [1.0, -2.0]})
    with pytest.raises(ContractError) as info:
        load_transactions(log, customer_col="cust", time_col="day", amount_col="eur")
    message = str(info.value)
    assert "events.timestamp (column 'day') must be a parseable timestamp; got 'nope'" in message
    assert "events.amount (column 'eur') must be >= 0 for purchase events; got -2.0" in message
    quarantine = load_transactions(
        log, customer_col="cust", time_col="day", amount_col="eur", mode="lenient"
    ).quarantine
    assert list(quarantine.columns) == ["cust", "day", "eur", "source_row", "reason"]


def test_transaction_log_missing_column_names_it():
    expected = r"missing required column\(s\): date \(for timestamp\)"
    with pytest.raises(ContractError, match=expected):
        load_transactions(pd.DataFrame({"customer_id": ["c1"], "amount": [1.0]}))


# ---- customers ------------------------------------------------------------------------


def test_customers_keep_attributes_and_parse_signup():
    frame = pd.DataFrame({"customer_id": ["c1", "c2"], "signup_at": ["2024-01-01", None],
                          "plan": ["pro", "free"], "age": [31, 40]})  # fmt: skip
    result = load_customers(frame)
    assert list(result.data.columns) == ["customer_id", "signup_at", "plan", "age"]
    assert result.data["signup_at"].isna().tolist() == [False, True]
    assert result.data["age"].dtype == np.int64 and result.report.extra_columns == []


def test_customers_may_be_empty_and_signup_is_optional():
    result = load_customers(pd.DataFrame({"customer_id": pd.Series([], dtype="str")}))
    assert result.report.rows_in == 0 and "signup_at" in result.data.columns


def test_duplicate_customer_id_with_different_values():
    frame = pd.DataFrame({"customer_id": ["c1", "c1", "c2", "c2"], "plan": ["a", "b", "x", "x"]})
    message = message_of(load_customers, frame)
    assert "customers.customer_id must be unique; got 'c1' in 2 rows" in message
    result = load_customers(frame, mode="lenient")
    assert result.report.duplicates_removed == 1  # c2 rows are exact duplicates
    assert list(result.data["customer_id"]) == ["c2"]
    assert list(result.quarantine["source_row"]) == [0, 1, 3]


# ---- offers ---------------------------------------------------------------------------


def test_offers_defaults_and_normalised_stages():
    frame = offers(eligible_stages=["Retention | advocacy", None], product=["p", None])
    data = load_offers(frame).data
    assert list(data["eligible_stages"].fillna("ALL")) == ["retention|advocacy", "ALL"]
    assert data["exclude_if_owned"].dtype == "boolean" and not data["exclude_if_owned"].any()
    assert data["cooldown_days"].dtype == np.int64 and data["cooldown_days"].tolist() == [0, 0]


def test_offers_accept_lists_and_boolean_words(tmp_path):
    frame = offers(eligible_stages=[["retention", "advocacy"], np.array(["churned"])],
                   exclude_if_owned=["yes", "0"], cooldown_days=[7.0, None])  # fmt: skip
    data = load_offers(frame).data
    assert data["eligible_stages"].tolist() == ["retention|advocacy", "churned"]
    assert data["exclude_if_owned"].tolist() == [True, False]
    assert data["cooldown_days"].tolist() == [7, 0]
    frame.to_parquet(tmp_path / "offers.parquet")  # list cells come back as arrays
    pd.testing.assert_frame_equal(load_offers(tmp_path / "offers.parquet").data, data)


def test_unknown_stage_in_eligible_stages():
    message = message_of(load_offers, offers(eligible_stages=["retention|purchse", None]))
    assert "offers.eligible_stages must list only known stages" in message
    assert "got 'purchse' in 1 row (first: offer o1 (row 0))" in message


def test_bad_kind():
    message = message_of(load_offers, offers(kind=["upsell", "discount"]))
    assert "offers.kind must be one of upsell, cross_sell, retention, winback" in message
    assert "got 'discount' in 1 row (first: offer o2 (row 1))" in message


def test_offer_value_cost_and_cooldown_rules():
    frame = offers(value=[-1.0, None], cost=["x", 1.0], cooldown_days=[1.5, -2])
    message = message_of(load_offers, frame)
    assert "offers.value must be >= 0; got -1.0" in message
    assert "offers.value must not be null; got NA" in message
    assert "offers.cost must be numeric; got 'x'" in message
    assert "offers.cooldown_days must be a whole number; got 1.5" in message
    assert "offers.cooldown_days must be >= 0; got -2" in message


def test_offers_need_rows_and_unique_ids():
    with pytest.raises(ContractError, match="offers from <DataFrame> has no rows"):
        load_offers(offers().iloc[:0])
    assert "offers.offer_id must be unique" in message_of(load_offers, offers(offer_id=["o", "o"]))


# ---- exposures ------------------------------------------------------------------------


def test_exposures_load_with_control_rows_and_outcomes():
    frame = exposures(converted=["true", None, "0"], revenue=[3.0, None, 0.0])
    data = load_exposures(frame, offers=offers()).data
    assert data["offer_id"].isna().tolist() == [False, True, False]
    assert data["converted"].dtype == "boolean"
    assert data["converted"].tolist() == [True, pd.NA, False]
    assert str(data["sent_at"].dtype) == "datetime64[us, UTC]"


@pytest.mark.parametrize("bad", [0.0, 1.5])
def test_propensity_must_be_in_open_closed_unit_interval(bad):
    message = message_of(load_exposures, exposures(propensity=[bad, 0.5, 1.0]))
    assert f"exposures.propensity must be in (0, 1]; got {bad} in 1 row" in message
    assert "exposure e1 (row 0)" in message


def test_propensity_one_is_accepted():
    assert load_exposures(exposures(propensity=[1.0, 1.0, 1.0])).report.rows_accepted == 3


def test_unknown_offer_id_in_exposures():
    frame = exposures(offer_id=["o1", "o9", "o9"])
    message = message_of(load_exposures, frame, offers=offers())
    assert "exposures.offer_id must exist in offers; got 'o9' in 2 rows" in message
    catalog = load_offers(offers())
    result = load_exposures(frame, offers=catalog, mode="lenient")
    assert result.quarantine["reason"].tolist() == ["exposures.offer_id must exist in offers"] * 2
    assert load_exposures(frame).report.rows_accepted == 3  # no catalog, no check
    with pytest.raises(ContractError, match="offers from the offers argument is missing"):
        load_exposures(frame, offers=offers().drop(columns="offer_id"))


def test_exposures_may_be_empty_but_need_their_columns():
    empty = exposures().iloc[:0]
    assert load_exposures(empty).report.rows_in == 0
    message = message_of(load_exposures, empty.drop(columns=["propensity", "sent_at"]))
    assert "exposures from <DataFrame> is missing required column(s): sent_at, propensity" in (
        message
    )
