"""The cluster path that reads the data folder on the workers (issue 16, point 5) builds what
the driver-loaded path builds, and rejects bad data with the same error.

One small simulated world (events written in several row groups, so a partition gathers rows
from each), one real multi-process LocalCluster for the module, as in test_dask_training.py.
"""

from __future__ import annotations

import pandas as pd
import pytest

from features.contracts import ContractError
from features.project import ProjectConfig
from features.simulator import SimConfig, simulate, write_simulation
from training.data import load_tables

pytest.importorskip("distributed")
pytestmark = pytest.mark.slow

PARTITIONS = 4


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A simulated world whose events file has row groups of 4,000 rows."""
    folder = tmp_path_factory.mktemp("files_world") / "data"
    cfg = SimConfig(customers=1000, days=300, seed=7)
    write_simulation(simulate(cfg), folder, cfg)
    events = pd.read_parquet(folder / "events.parquet")
    events.to_parquet(folder / "events.parquet", row_group_size=4000)
    return folder


@pytest.fixture(scope="module")
def tables(folder):
    return load_tables(folder, "strict", ProjectConfig())


def _parts(folder, client, config=None):
    from training.scale.files import load_on_cluster, parquet_paths

    config = config or ProjectConfig()
    paths = parquet_paths(folder, config)
    return paths, load_on_cluster(paths, config, client, PARTITIONS)


def test_partitions_are_the_driver_split(folder, tables, client):
    from dataclasses import fields

    import pyarrow.parquet as pq

    from training.scale.dataset import split_tables

    assert pq.ParquetFile(folder / "events.parquet").num_row_groups > 3
    _, parts = _parts(folder, client)
    on_workers = client.gather(parts)
    expected = split_tables(tables, PARTITIONS)
    for got, want in zip(on_workers, expected, strict=True):
        for f in fields(want):
            a, b = getattr(got, f.name), getattr(want, f.name)
            assert (a is None) == (b is None), f.name
            if b is not None:
                pd.testing.assert_frame_equal(a, b, check_exact=True, obj=f.name)
    assert sum(len(p.events) for p in on_workers) == len(tables.events)  # no row lost


def test_training_set_from_files_equals_the_driver_one(folder, tables, client):
    from training.calendar import plan_snapshots
    from training.datasets import build_training_set, resolve
    from training.scale.dataset import (
        build_from_parts,
        build_training_set_on_cluster,
        customer_order,
    )
    from training.scale.facts import overview, resolve_on_cluster
    from training.scale.files import id_column

    config = ProjectConfig()
    paths, parts = _parts(folder, client, config)
    seen = overview(client, parts, paths["events"], id_column("events", config))
    assert (seen.start, seen.end) == (tables.start, tables.end)
    assert seen.order.equals(customer_order(tables.events))
    assert seen.rows["events"] == len(tables.events)
    dataset = resolve_on_cluster(client, parts, seen, config.dataset)
    assert dataset == resolve(tables, config.dataset)
    assert dataset.btyd_params  # the globally fitted parameters are covered
    dates = plan_snapshots(seen.start, seen.end, dataset, seen.labels, for_training=False)
    got = build_from_parts(client, parts, seen.order, dates, dataset).collect()
    want = build_training_set_on_cluster(tables, config.dataset, client, PARTITIONS).collect()
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    single = build_training_set(tables, config.dataset)
    assert len(got) == len(single)


def test_training_from_folder_never_loads_the_tables_here(folder, tables, client, monkeypatch):
    import training.data
    from training.datasets import build_training_set
    from training.scale.pipeline import fit_and_evaluate_from_folder

    def refuse(*args, **kwargs):
        raise AssertionError("the driver loaded the whole tables")

    monkeypatch.setattr(training.data, "load_tables", refuse)
    monkeypatch.setattr(training.data, "load_folder", refuse)
    result = fit_and_evaluate_from_folder(folder, ProjectConfig(), client, ("churn", "stage"),
                                          PARTITIONS)  # fmt: skip
    assert set(result.reports) == {"churn", "stage"} and "tables" in result.seconds
    assert len(result.dataset) == len(build_training_set(tables, ProjectConfig().dataset))
    assert result.reports["churn"].primary > 0.8
    with pytest.raises(ValueError, match="clv"):
        fit_and_evaluate_from_folder(folder, ProjectConfig(), client, ("churn", "clv"))


def _broken_copy(folder, tmp_path, change):
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(folder, copy)
    events = change(pd.read_parquet(copy / "events.parquet"))
    events.to_parquet(copy / "events.parquet", row_group_size=4000)
    return copy


def _negative_purchases(events: pd.DataFrame) -> pd.DataFrame:
    """-3.0 on the first purchase of five customers (spread over the partitions)."""
    buys = events.index[events["event_type"] == "purchase"]
    firsts = events.loc[buys].drop_duplicates("customer_id").index[:5]
    amount = events["amount"].copy()
    amount[firsts] = -3.0
    return events.assign(amount=amount)


@pytest.mark.parametrize(
    "change",
    [_negative_purchases, lambda events: events.drop(columns=["timestamp"])],
    ids=["rule", "missing-column"],
)
def test_bad_data_gives_the_driver_error(folder, client, tmp_path, change):
    bad = _broken_copy(folder, tmp_path, change)
    with pytest.raises(ContractError) as driver:
        load_tables(bad, "strict", ProjectConfig())
    with pytest.raises(ContractError) as workers:
        _parts(bad, client)
    assert str(workers.value) == str(driver.value)
    assert "events.amount" in str(workers.value) or "timestamp" in str(workers.value)


def test_train_command_lets_the_workers_read(folder, client, tmp_path, monkeypatch):
    import mlflow
    from typer.testing import CliRunner

    import training.data
    from training.cli import app

    def refuse(*args, **kwargs):
        raise AssertionError("the driver loaded the whole tables")

    monkeypatch.setattr(training.data, "load_tables", refuse)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    address = client.scheduler.address
    (tmp_path / "train.yaml").write_text(
        f"dask:\n  scheduler: {address}\n  partitions: {PARTITIONS}\n"
        "churn:\n  n_estimators: 30\nstage:\n  n_estimators: 20\n"
    )
    try:
        done = CliRunner().invoke(app, ["train", str(folder), "--config", "train.yaml",
                                        "--models", "churn", "--models", "stage",
                                        "--no-register"])  # fmt: skip
    finally:
        mlflow.set_tracking_uri(None)
    assert done.exit_code == 0, done.output
    assert "workers read" in done.output and "roc_auc" in done.output
