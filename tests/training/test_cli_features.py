"""``lifecycle features``: build, materialize, stages, list."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.simulator import SimConfig, simulate, write_simulation
from training.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    cfg = SimConfig(customers=400, days=120, seed=2)
    write_simulation(simulate(cfg), folder, cfg)
    return folder


def test_build_writes_vectors_as_of_a_date(data, tmp_path):
    out = tmp_path / "v.parquet"
    result = runner.invoke(app, ["features", "build", str(data), "--out", str(out),
                                 "--as-of", "2025-03-01", "--feature-set", "rfm_core"])  # fmt: skip
    assert result.exit_code == 0, result.output
    vectors = pd.read_parquet(out)
    assert list(vectors.columns[:2]) == ["customer_id", "purchases_7d"]
    assert vectors.shape[1] == 10 and "2025-03-01T00:00:00Z" in result.output


def test_build_rejects_unknown_feature_sets_and_bad_dates(data, tmp_path):
    out = str(tmp_path / "v.parquet")
    bad_set = runner.invoke(app, ["features", "build", str(data), "-o", out, "--feature-set", "x"])
    assert bad_set.exit_code == 1 and "unknown feature set 'x'" in bad_set.output
    bad_date = runner.invoke(app, ["features", "build", str(data), "-o", out, "--as-of", "soon"])
    assert bad_date.exit_code == 1 and "as_of must be a timestamp" in bad_date.output


def test_stages_prints_funnel_and_transitions(data):
    result = runner.invoke(app, ["features", "stages", str(data), "--compare-to", "2025-02-01"])
    assert result.exit_code == 0, result.output
    assert "Stage funnel" in result.output and "retention" in result.output
    assert "Moves from 2025-02-01" in result.output


def test_list_shows_definitions():
    result = runner.invoke(app, ["features", "list"])
    assert result.exit_code == 0
    assert "purchase_interval_mean_days" in result.output
    assert "feature set default@3" in result.output and "first_order_amount" in result.output


def test_materialize_then_look_up(data, tmp_path):
    from features.store import OnlineStore

    store = tmp_path / "store" / "online.sqlite"
    for as_of in ("2025-03-01", "2025-04-01"):
        result = runner.invoke(app, ["features", "materialize", str(data), "--store", str(store),
                                     "--as-of", as_of])  # fmt: skip
        assert result.exit_code == 0, result.output
    assert "version 2 is current" in result.output
    online = OnlineStore(store)
    assert [v.version for v in online.versions()] == [1, 2]
    current = online.current()
    assert current.as_of == pd.Timestamp("2025-04-01", tz="UTC")
    hit = online.lookup(["c0000001", "nobody"])
    assert hit.missing == ("nobody",) and "stage" in hit.categorical
    assert hit.categorical["stage"][0] in {
        "retention",
        "purchase",
        "churned",
        "at_risk",
        "advocacy",
        "awareness",
        "engagement",
        "evaluation",
    }
