"""Data contracts for events: strict errors, lenient quarantine, normalisation, file formats.
Transaction logs, customers, offers and exposures: test_contracts_tables.py."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features import ContractError, LoadReport, load_events
from features.contracts import DUPLICATE_REASON, UnmappedEventTypeWarning
from features.roles import ROLES, default_role_map


def events(**overrides: list) -> pd.DataFrame:
    """Three good events (c1 visit, c1 purchase 10.0, c2 login), columns overridable."""
    columns = {
        "customer_id": ["c1", "c1", "c2"],
        "timestamp": ["2024-03-01T09:00:00Z", "2024-03-02T10:00:00Z", "2024-03-03T11:30:00Z"],
        "event_type": ["page_view", "purchase", "login"],
        "amount": [None, 10.0, None],
    }
    return pd.DataFrame(columns | overrides)


def strict_error(frame: pd.DataFrame) -> str:
    with pytest.raises(ContractError) as info:
        load_events(frame)
    return str(info.value)


# ---- strict mode: one message naming table, column, rule and value ----------------------


def test_good_events_load_with_normalised_dtypes_and_roles():
    result = load_events(events())
    data = result.data
    assert str(data["timestamp"].dtype) == "datetime64[us, UTC]"
    assert data["customer_id"].dtype == "str" and data["amount"].dtype == "float64"
    assert list(data["role"]) == ["visit", "purchase", "engagement"]
    assert list(data["role"].cat.categories) == [*ROLES, "unmapped"]
    assert data["offer_id"].isna().all() and data["product"].dtype == "str"
    assert result.report.rows_accepted == 3 and result.quarantine.empty
    assert result.report.roles == {"visit": 1, "engagement": 1, "purchase": 1}


def test_missing_column_lists_missing_and_found_columns():
    message = strict_error(events().drop(columns="timestamp"))
    assert "events" in message and "missing required column(s): timestamp" in message
    assert "found columns: customer_id, event_type, amount" in message


def test_wrong_type_amount_names_the_value():
    message = strict_error(events(amount=[None, "abc", None]))
    assert "events.amount must be numeric; got 'abc' in 1 row" in message
    assert "customer c1 at 2024-03-02T10:00Z" in message


def test_unparseable_timestamp_names_the_value():
    timestamps = ["2024-03-01T09:00:00Z", "not-a-date", "2024-03-03"]
    message = strict_error(events(timestamp=timestamps))
    assert "events.timestamp must be a parseable timestamp; got 'not-a-date' in 1 row" in message


def test_negative_purchase_amount_matches_the_design_style():
    frame = events(amount=[None, -3.0, None], event_type=["purchase", "purchase", "login"])
    frame.loc[0, "amount"] = -3.0
    message = strict_error(frame)
    assert "events.amount must be >= 0 for purchase events; got -3.0 in 2 rows" in message
    assert "(first: customer c1 at 2024-03-01T09:00Z (row 0); customer c1 at" in message


def test_negative_amount_on_other_roles_is_also_an_error():
    message = strict_error(events(amount=[-1.5, 10.0, None]))
    assert "events.amount must be >= 0; got -1.5 in 1 row" in message


def test_missing_purchase_amount():
    message = strict_error(events(amount=[None, None, None]))
    assert "events.amount must not be null for purchase events; got NA in 1 row" in message


def test_null_and_blank_customer_ids():
    message = strict_error(events(customer_id=[None, "  ", "c2"]))
    assert "events.customer_id must not be null or empty; got NA, '  ' in 2 rows" in message
    assert "row 0 at 2024-03-01T09:00Z" in message


def test_every_broken_rule_is_listed_once_with_structured_violations():
    frame = events(amount=[None, "abc", -2.0], customer_id=["c1", None, "c2"])
    with pytest.raises(ContractError) as info:
        load_events(frame)
    found = {(v.table, v.column, v.rule, v.count) for v in info.value.violations}
    assert found == {
        ("events", "amount", "must be numeric", 1),
        ("events", "customer_id", "must not be null or empty", 1),
        ("events", "amount", "must be >= 0", 1),
    }
    assert len(str(info.value).splitlines()) == 4  # header + one line per rule


def test_duplicate_rows_are_removed_counted_and_quarantined_in_strict_mode():
    frame = pd.concat([events(), events().iloc[[1, 1]]], ignore_index=True)
    result = load_events(frame)
    report = result.report
    assert report.duplicates_removed == 2 and report.rows_accepted == 3
    assert report.rows_in == report.rows_accepted + report.rows_quarantined == 5
    assert list(result.quarantine["source_row"]) == [3, 4]
    assert set(result.quarantine["reason"]) == {DUPLICATE_REASON}
    assert report.reasons == {DUPLICATE_REASON: 2}


def test_duplicates_compare_normalised_values():
    frame = events(customer_id=["c1", " c1", "c2"], timestamp=["2024-03-01"] * 3)
    frame = frame.assign(event_type=["page_view", "page_view", "login"], amount=[None] * 3)
    assert load_events(frame).report.duplicates_removed == 1


def test_different_bad_values_are_not_duplicates():
    frame = events(amount=["abc", "xyz", None], event_type=["visit", "visit", "login"])
    frame = frame.assign(customer_id="c1", timestamp="2024-03-01")
    with pytest.raises(ContractError, match="got 'abc', 'xyz' in 2 rows"):
        load_events(frame)


def test_empty_file_and_header_only_file(tmp_path):
    empty = tmp_path / "events.csv"
    empty.write_bytes(b"")
    with pytest.raises(ContractError, match="events: file is empty"):
        load_events(empty)
    header = tmp_path / "header.csv"
    header.write_text("customer_id,timestamp,event_type,amount\n")
    with pytest.raises(ContractError, match="events from .*header.csv has no rows"):
        load_events(header, mode="lenient")


def test_bad_suffix_and_missing_file(tmp_path):
    with pytest.raises(ContractError, match=r"expected a \.csv, \.tsv, .* file"):
        load_events(tmp_path / "events.json")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_events(tmp_path / "absent.csv")


# ---- lenient mode -------------------------------------------------------------------------


def mixed_frame() -> pd.DataFrame:
    """Rows 0, 2, 6 are good; 1 null id; 3 bad time and bad amount; 4 negative purchase;
    5 duplicate of row 0; 7 unmapped type (kept)."""
    return pd.DataFrame(
        {
            "customer_id": ["c1", None, "c2", "c3", "c4", "c1", "c5", "c6"],
            "timestamp": ["2024-03-01", "2024-03-01", "2024-03-02", "not-a-date",
                          "2024-03-04", "2024-03-01", "2024-03-05", "2024-03-06"],
            "event_type": ["purchase", "login", "login", "purchase",
                           "purchase", "purchase", "visit", "gizmo"],
            "amount": [5.0, None, None, "abc", -3.0, 5.0, None, None],
            "note": ["a", "b", "c", "d", "e", "a", "g", "h"],
        }
    )  # fmt: skip


def test_lenient_mode_quarantines_each_bad_row_with_its_reasons():
    with pytest.warns(UnmappedEventTypeWarning):
        result = load_events(mixed_frame(), mode="lenient")
    report, quarantine = result.report, result.quarantine
    assert report.rows_in == report.rows_accepted + report.rows_quarantined == 8
    assert list(result.data["customer_id"]) == ["c1", "c2", "c5", "c6"]
    reasons = dict(zip(quarantine["source_row"], quarantine["reason"], strict=True))
    assert reasons == {
        1: "events.customer_id must not be null or empty",
        3: "events.timestamp must be a parseable timestamp; events.amount must be numeric",
        4: "events.amount must be >= 0 for purchase events",
        5: DUPLICATE_REASON,
    }
    assert quarantine.loc[quarantine["source_row"] == 3, "amount"].item() == "abc"  # as given
    assert list(quarantine.columns) == [*mixed_frame().columns, "source_row", "reason"]
    assert report.extra_columns == ["note"] and "note" in result.data.columns


def test_report_summary_is_readable():
    with pytest.warns(UnmappedEventTypeWarning):
        report = load_events(mixed_frame(), mode="lenient").report
    text = report.summary()
    assert "8 rows in, 4 accepted, 4 quarantined" in text
    assert "events.amount must be numeric" in text and "gizmo" in text
    with pytest.raises(ValueError, match="rows_in"):
        LoadReport(table="t", source="s", rows_in=3, rows_accepted=1, rows_quarantined=1,
                   duplicates_removed=0)  # fmt: skip


def test_unmapped_types_are_kept_counted_and_warned():
    frame = events(event_type=["gizmo", "purchase", "Gizmo "])
    with pytest.warns(UnmappedEventTypeWarning, match="'gizmo' \\(1 row\\), 'Gizmo' \\(1 row\\)"):
        result = load_events(frame)
    assert result.report.unmapped_event_types == {"gizmo": 1, "Gizmo": 1}
    assert list(result.data["role"]) == ["unmapped", "purchase", "unmapped"]


# ---- normalisation --------------------------------------------------------------------


def test_naive_timestamps_are_utc_and_aware_ones_converted():
    frame = events(timestamp=["2024-03-01 09:00", "2024-03-02T12:00:00+02:00", "03/03/2024"])
    stamps = load_events(frame).data["timestamp"]
    expected = ["2024-03-01 09:00", "2024-03-02 10:00", "2024-03-03 00:00"]
    assert list(stamps) == [pd.Timestamp(t, tz="UTC") for t in expected]
    naive = events(timestamp=pd.to_datetime(["2024-03-01", "2024-03-02", "2024-03-03"]))
    paris = naive.assign(timestamp=naive["timestamp"].dt.tz_localize("Europe/Paris"))
    assert load_events(naive).data["timestamp"].dt.hour.tolist() == [0, 0, 0]
    assert load_events(paris).data["timestamp"].dt.hour.tolist() == [23, 23, 23]
    assert str(load_events(paris).data["timestamp"].dtype) == "datetime64[us, UTC]"


def test_caller_frame_is_not_mutated():
    frame = mixed_frame()
    before = frame.copy(deep=True)
    with pytest.warns(UnmappedEventTypeWarning):
        load_events(frame, mode="lenient")
    pd.testing.assert_frame_equal(frame, before)


def test_csv_parquet_and_dataframe_give_equal_results(tmp_path):
    frame = events(customer_id=["007", "007", "c2"], product=["a", None, "b"])
    frame.to_csv(tmp_path / "e.csv", index=False)
    frame.to_parquet(tmp_path / "e.parquet")
    results = [load_events(src) for src in (frame, tmp_path / "e.csv", tmp_path / "e.parquet")]
    for other in results[1:]:
        pd.testing.assert_frame_equal(results[0].data, other.data)
    assert results[1].data["customer_id"].iloc[0] == "007"
    assert results[1].report.source.endswith("e.csv") and results[0].report.source == "<DataFrame>"


def test_categorical_input_stays_categorical_with_the_same_values():
    frame = events(product=["a ", None, "b"])
    as_categories = frame.astype({"customer_id": "category", "event_type": "category"})
    as_categories["product"] = pd.Categorical(frame["product"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "unmapped (0 rows)" noise from unused categories
        got = load_events(as_categories).data
    assert isinstance(got["customer_id"].dtype, pd.CategoricalDtype)
    assert got["product"].cat.categories.tolist() == ["a", "b"]  # stripped, blanks -> NA
    expected = load_events(frame).data
    cats = ["customer_id", "event_type", "product"]
    pd.testing.assert_frame_equal(got.astype(dict.fromkeys(cats, "str")), expected)


def test_a_custom_role_map_is_used_and_mode_is_checked():
    roles = default_role_map().with_overrides({"gizmo": "purchase"})
    frame = events(event_type=["gizmo", "purchase", "login"], amount=[1.0, 2.0, None])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list(load_events(frame, roles=roles).data["role"])[0] == "purchase"
    with pytest.raises(ValueError, match="mode must be 'strict' or 'lenient'"):
        load_events(frame, mode="relaxed")


# ---- property: lenient mode never loses or invents rows -----------------------------------

GOOD = {"customer_id": "c1", "timestamp": "2024-01-01", "event_type": "purchase", "amount": 1.0}
BAD = [
    {"customer_id": None},
    {"timestamp": "not-a-date"},
    {"amount": "abc"},
    {"amount": -1.0},
    {"amount": None},
]


ROW_CODES = st.one_of(st.integers(0, 50), st.integers(-len(BAD), -1))  # >= 0 good, < 0 bad


@settings(max_examples=60, deadline=None)
@given(st.lists(ROW_CODES, min_size=1, max_size=40))
def test_lenient_counts_add_up_and_no_good_row_is_dropped(codes):
    rows = [{**GOOD, "amount": float(c) + 1} if c >= 0 else {**GOOD, **BAD[-1 - c]} for c in codes]
    frame = pd.DataFrame(rows)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = load_events(frame, mode="lenient")
    report = result.report
    assert report.rows_in == report.rows_accepted + report.rows_quarantined == len(codes)
    good = [i for i, c in enumerate(codes) if c >= 0]
    first_good = {codes[i]: i for i in reversed(good)}  # first occurrence of each good row
    assert sorted(result.data["amount"]) == sorted(float(c) + 1 for c in first_good)
    quarantined = set(result.quarantine["source_row"])
    assert quarantined.isdisjoint(first_good.values())
    assert quarantined | set(first_good.values()) == set(range(len(codes)))
    assert np.isfinite(result.data["amount"]).all()
