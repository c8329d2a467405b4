"""CLV and P(alive) served (issue 13, point 2): in every answer, and a retention audience
chosen by value at risk (churn probability x CLV) through ``/batch``."""

from __future__ import annotations

import numpy as np
import pytest
from starlette.testclient import TestClient

from serving.bundle import ModelBundle, from_folder
from serving.engine import clv_status


@pytest.fixture
def client(app, service_env):
    with TestClient(app) as test_client:
        yield test_client


def test_every_answer_carries_clv_value_at_risk_and_p_alive(client, world):
    status = client.get("/models").json()["clv"]
    assert status["estimator"] in ("learned", "probabilistic") and status["horizon_days"] == 90
    ids = world["vectors"]["customer_id"].astype("str").head(40).tolist()
    results = client.post("/decide", json={"customer_ids": ids}).json()["results"]
    valued = [r for r in results if r["clv"] is not None]
    assert len(valued) >= 20
    for r in valued:
        clv = r["clv"]
        assert clv["value"] >= 0 and clv["horizon_days"] == 90
        assert clv["estimator"] == status["estimator"]
        assert clv["value_at_risk"] == pytest.approx(clv["value"] * r["churn"]["probability"],
                                                     rel=1e-3, abs=1e-3)  # fmt: skip
    alive = [r["p_alive"] for r in results if r["p_alive"] is not None]
    assert alive and all(0.0 <= p <= 1.0 for p in alive)


def test_batch_sorts_and_filters_by_value_at_risk_and_clv(client):
    body = {"filter": {"sort_by": "value_at_risk", "limit": 50}}
    results = client.post("/batch", json=body).json()["results"]
    at_risk = [r["clv"]["value_at_risk"] for r in results]
    assert len(at_risk) == 50 and at_risk == sorted(at_risk, reverse=True) and at_risk[0] > 0
    floor = float(np.median([r["clv"]["value"] for r in results]))
    body = {"filter": {"min_clv": floor, "sort_by": "clv", "stages": ["at_risk", "retention"]}}
    picked = client.post("/batch", json=body).json()["results"]
    values = [r["clv"]["value"] for r in picked]
    assert values and min(values) >= floor - 1e-3 and values == sorted(values, reverse=True)
    assert {r["stage"]["current"] for r in picked} <= {"at_risk", "retention"}


def test_without_a_clv_model_the_probabilistic_column_is_served_or_the_reason_given(world):
    bundle = from_folder(world["folder"] / "export")
    fields = {k: getattr(bundle, k) for k in ("churn", "stage", "offers", "info", "source")}
    bare = ModelBundle(**fields, absent={"clv": "no CLV model: none trained"})
    status = clv_status(bare)
    names = [str(c) for c in bundle.churn.feature_names_in_]
    if "btyd_clv_90d" in names:  # the churn model reads the buy-till-you-die CLV column
        assert status["estimator"] == "probabilistic" and status["column"] == "btyd_clv_90d"
        assert status["horizon_days"] == 90 and "none trained" in status["reason"]

    class NoCLVColumn:
        feature_names_in_ = np.array(["recency_days"], dtype=object)

    status = clv_status(ModelBundle(**{**fields, "churn": NoCLVColumn()}, absent={}))
    assert status["estimator"] is None and "btyd_features" in status["reason"]


def test_a_clv_model_trained_with_another_config_is_left_out_with_the_reason(world):
    import copy

    from serving.consistency import agreeing_clv, models_config

    bundle = from_folder(world["folder"] / "export")
    _, fingerprint = models_config(bundle)
    assert agreeing_clv(bundle, fingerprint) is bundle  # one training run: kept
    other = copy.copy(bundle.clv)
    other.lifecycle_fingerprint_ = "0123456789abcdef"
    fields = {k: getattr(bundle, k) for k in ("churn", "stage", "offers", "info", "source")}
    mixed = agreeing_clv(ModelBundle(**fields, clv=other), fingerprint)
    assert mixed.clv is None and "clv" not in mixed.info
    assert "0123456789abcdef" in mixed.absent["clv"] and fingerprint in mixed.absent["clv"]
    assert clv_status(mixed)["reason"].startswith("the CLV model was trained with")
