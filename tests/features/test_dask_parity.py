"""The Dask builder gives exactly the pandas builder's vectors, on a real multi-process cluster.

Both sides are sorted by customer_id (Dask's row order is per hash partition). customer_id is
``str`` on both sides: the Dask path casts it to ``str`` before shuffling, and the pandas
builder always returns ``str`` ids, so no alignment is needed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from dask import dataframe as dd

from features.builder import build_features
from features.contracts import ContractError
from features.dask_builder import (
    SCHEDULER_ENV,
    build_features_dask,
    connect,
    load_events_dask,
    local_cluster,
)
from features.loaders import load_customers, load_events, load_exposures, load_offers
from features.simulator import SimConfig, simulate

AS_OF = ("2025-04-15", "2025-07-20")  # mid-log (open response windows) and after the log


@pytest.fixture(scope="module")
def client():
    with local_cluster(n_workers=2) as client:
        yield client


@pytest.fixture(scope="module")
def sim():
    return simulate(SimConfig(customers=2500, days=200, seed=1))


@pytest.fixture(scope="module")
def tables(sim):
    offers = load_offers(sim.offers).data
    return {
        "events": load_events(sim.events).data,
        "customers": load_customers(sim.customers).data,
        "exposures": load_exposures(sim.exposures, offers=offers).data,
        "offers": offers,
    }


def assert_same(lazy, expected: pd.DataFrame) -> None:
    """Declared schema, then computed values, equal to the pandas result (dtype-exact)."""
    pd.testing.assert_series_equal(lazy.dtypes, expected.dtypes)
    got = lazy.compute().sort_values("customer_id").reset_index(drop=True)
    want = expected.sort_values("customer_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_dtype=True, check_exact=True)
    assert got.attrs == expected.attrs  # as_of and feature_set


@pytest.mark.parametrize("as_of", AS_OF)
def test_parity_with_broadcast_tables(client, tables, as_of):
    events = dd.from_pandas(tables["events"], npartitions=4)
    small = {k: tables[k] for k in ("customers", "exposures", "offers")}
    lazy = build_features_dask(events, as_of, **small)
    assert lazy.npartitions == 4
    assert_same(lazy, build_features(tables["events"], as_of, **small))


def test_parity_with_co_partitioned_exposures_and_customers(client, tables):
    events = dd.from_pandas(tables["events"], npartitions=4)
    exposures = dd.from_pandas(tables["exposures"], npartitions=3)
    customers = dd.from_pandas(tables["customers"], npartitions=2)
    lazy = build_features_dask(
        events, AS_OF[0], customers=customers, exposures=exposures, offers=tables["offers"],
        npartitions=5,
    )  # fmt: skip
    assert lazy.npartitions == 5
    expected = build_features(
        tables["events"], AS_OF[0], customers=tables["customers"],
        exposures=tables["exposures"], offers=tables["offers"],
    )  # fmt: skip
    assert expected["contacts_total"].sum() > 0  # the exposures really reach the features
    assert_same(lazy, expected)


def test_parity_when_most_partitions_have_no_customer_yet(client, tables):
    """Early as_of: 4 customers with events, 8 partitions -> empty partition results."""
    events = dd.from_pandas(tables["events"], npartitions=4)
    lazy = build_features_dask(events, "2022-03-01", customers=tables["customers"], npartitions=8)
    expected = build_features(tables["events"], "2022-03-01", customers=tables["customers"])
    assert len(expected) == 4
    assert_same(lazy, expected)


def write_parts(raw: pd.DataFrame, folder, n_files: int = 3) -> str:
    for i, rows in enumerate(np.array_split(np.arange(len(raw)), n_files)):
        raw.iloc[rows].to_parquet(folder / f"part-{i}.parquet", row_group_size=6_000)
    return str(folder / "*.parquet")


def test_parquet_path_matches_pandas(client, sim, tables, tmp_path):
    glob = write_parts(sim.events, tmp_path)
    events = load_events_dask(glob, split_row_groups=True)
    assert events.npartitions > 3  # several row groups per file
    loaded = events.compute()
    assert len(loaded) == len(tables["events"])
    assert loaded["role"].dtype == tables["events"]["role"].dtype
    expected = build_features(load_events(pd.read_parquet(tmp_path)).data, AS_OF[1])
    assert_same(build_features_dask(events, AS_OF[1]), expected)


def test_parquet_contract_error_names_partition_and_rule(client, sim, tmp_path):
    bad = sim.events.iloc[:200].copy()
    bad.loc[bad.index[5], ["event_type", "amount"]] = ["purchase", -3.0]
    glob = write_parts(sim.events.iloc[200:], tmp_path, n_files=2)
    bad.to_parquet(tmp_path / "part-9.parquet")
    with pytest.raises(ContractError, match=r"events from partition 2 of .*\*\.parquet") as err:
        load_events_dask(glob).compute()
    assert "events.amount must be >= 0 for purchase events; got -3.0" in str(err.value)
    assert err.value.violations[0].column == "amount"


def test_parquet_missing_column_fails_before_compute(sim, tmp_path):
    path = tmp_path / "events.parquet"
    sim.events.drop(columns="timestamp").to_parquet(path)
    with pytest.raises(ContractError, match=r"events from .*\.parquet is missing .*timestamp"):
        load_events_dask(str(path))


def test_connect_reads_scheduler_address_from_env(client, monkeypatch):
    monkeypatch.setenv(SCHEDULER_ENV, client.scheduler.address)
    with connect() as remote:
        assert len(remote.scheduler_info()["workers"]) == 2
    monkeypatch.delenv(SCHEDULER_ENV)
    with pytest.raises(ValueError, match=SCHEDULER_ENV):
        connect()
