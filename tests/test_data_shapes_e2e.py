"""The whole command-line path on data shaped unlike our simulator's, as a new user would run it:
simulate a profile, write its lifecycle.yaml, validate, train, promote, materialise, then a
real ``bentoml serve`` answers ``/decide`` for a stored customer (issue 12, point 8)."""

from __future__ import annotations

import httpx
import mlflow
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.simulator import SimConfig, simulate, write_simulation
from serving.client import LocalService
from training.cli import app
from training.profiles import write_profile_config

pytestmark = pytest.mark.slow

runner = CliRunner()
SHAPES = {  # small and quick; the benchmark runs them at scale
    "purchase_only": SimConfig(profile="purchase_only", customers=1_200, days=730, seed=5),
    "subscription": SimConfig(profile="subscription", customers=1_000, days=365, seed=5),
}
MODELS = "churn:\n  n_estimators: 60\nstage:\n  n_estimators: 40\n"


def run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module", params=sorted(SHAPES))
def trained(request, tmp_path_factory):
    """A data folder of one shape with its lifecycle.yaml, trained, promoted, materialised."""
    profile = request.param
    folder = tmp_path_factory.mktemp(profile)
    cfg = SHAPES[profile]
    write_simulation(simulate(cfg), folder / "data", cfg, "csv")
    config = write_profile_config(folder / "data", profile)
    config.write_text(config.read_text() + MODELS)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        mp.delenv("LIFECYCLE_CONFIG", raising=False)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
        outputs = {
            "validate": run("validate", "data"),
            "train": run("train", "data"),
            "promote": run("promote", "data"),
            "materialize": run("features", "materialize", "data", "--store", "store.sqlite"),
        }
        yield profile, folder, outputs
    mlflow.set_tracking_uri(None)


def test_the_cli_reads_the_users_own_shape(trained):
    profile, _, out = trained
    assert "accepted, 0 quarantined" in out["validate"], out["validate"]
    expected = {"purchase_only": "churn: rhythm", "subscription": "churn: contract"}[profile]
    assert expected in out["train"], out["train"]
    assert "lifecycle-churn v1 @challenger" in out["train"]
    assert "lifecycle-stage v1 @challenger" in out["train"]
    assert "-> champion" in out["promote"]
    assert "built with the champion models' recorded config" in out["materialize"]


def test_served_on_each_shape_without_offers(trained):
    _, folder, _ = trained
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with LocalService(store=folder / "store.sqlite", ledger=folder / "ledger.sqlite",
                      tracking_uri=uri, workdir=folder / "service") as service:  # fmt: skip
        summary = httpx.get(f"{service.url}/models", timeout=30).json()
        ids = _stored_ids(folder / "store.sqlite")
        answer = httpx.post(f"{service.url}/decide", json={"customer_ids": ids, "explain": True},
                            headers=service.headers, timeout=60).json()  # fmt: skip
        request = _score_request(folder, ids, answer["features_as_of"])
        cold = httpx.post(f"{service.url}/score", json=request, headers=service.headers,
                          timeout=60).json()  # fmt: skip
    assert summary["error"] is None and summary["offers"]["available"] is False
    assert summary["config_fingerprint"] in summary["store"]["feature_set"]
    assert answer["offers_status"]["reason"]
    result = answer["results"][0]
    assert result["error"] is None
    assert 0.0 <= result["churn"]["probability"] <= 1.0
    assert result["stage"]["current"]
    assert result["offers"] == []
    # the same customers sent as events (and billing periods) score as from the store
    stored = {r["customer_id"]: r["churn"]["probability"] for r in answer["results"]}
    scored = {r["customer_id"]: r["churn"]["probability"] for r in cold["results"]}
    assert scored == pytest.approx(stored, abs=1e-9)


def _score_request(folder, ids: list[str], as_of: str) -> dict:
    """``/score`` for stored customers: their events and periods, as the contracts hold them."""
    from training.cli_common import load_data, project_config

    tables = load_data(folder / "data", project_config(None, folder / "data"))
    customers = []
    for cid in ids:
        events = tables.events[tables.events["customer_id"] == cid]
        fields = [c for c in ("event_type", "amount", "product", "channel", "offer_id")
                  if c in events.columns]  # fmt: skip
        customers.append({"customer_id": cid, "events": [
            {"timestamp": row["timestamp"].isoformat(),
             **{f: None if pd.isna(row[f]) else row[f] for f in fields}}
            for row in events.to_dict("records")
        ]})  # fmt: skip
        if tables.subscriptions is not None:
            periods = tables.subscriptions[tables.subscriptions["customer_id"] == cid]
            customers[-1]["subscriptions"] = [
                {"period_start": row.period_start.isoformat(),
                 "period_end": row.period_end.isoformat(), "product": row.product,
                 "recurring_value": row.recurring_value, "discount": row.discount}
                for row in periods.itertuples()
            ]  # fmt: skip
    return {"customers": customers, "as_of": as_of}


def _stored_ids(path) -> list[str]:
    from features.store import OnlineStore

    return OnlineStore(path).customer_ids()[:3]
