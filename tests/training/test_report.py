"""``lifecycle report`` on small simulated data: a self-contained page with every section, from
models trained on the spot or from the registry's champions; clear errors otherwise. The CLV
tables agree with the models' own numbers."""

from __future__ import annotations

import re
from dataclasses import replace

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from threadpoolctl import threadpool_limits
from typer.testing import CliRunner

from features.project import recorded_config
from features.simulator import SimConfig, simulate, write_simulation
from training.cli import app
from training.data import load_tables
from training.insights import current_vectors
from training.pipeline import TrainConfig
from training.registry import log_estimator, setup
from training.report import build_report, models_from_training
from training.report_html import render_html

runner = CliRunner()
SECTIONS = ("Data as of", "Stage funnel", "Churn risk", "Top churn reasons",
            "Customer lifetime value", "Value at risk by stage", "Who to save",
            "Offer policy by stage", "Model metrics")  # fmt: skip
CLV_TABLES = ("clv_by_stage", "value_at_risk", "who_to_save")
SMALL = "dataset:\n  snapshots: 4\nchurn:\n  n_estimators: 60\nstage:\n  n_estimators: 30\n"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    cfg = SimConfig(customers=1500, days=300, seed=5, campaign_share=0.15)
    write_simulation(simulate(cfg), folder / "data", cfg)
    (folder / "train.yaml").write_text(SMALL)
    with pytest.MonkeyPatch.context() as mp, threadpool_limits(1):
        mp.chdir(folder)
        yield folder
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def trained(workdir):
    """The data and the models trained on it (CLV model included), and their report."""
    tables = load_tables("data")
    models = models_from_training(tables, TrainConfig.from_yaml("train.yaml"))
    return tables, models, build_report(tables, models)


def run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def check_page(path) -> str:
    page = path.read_text(encoding="utf-8")
    for section in SECTIONS:
        assert section in page, section
    assert len(re.findall(r'<img alt="[^"]*" src="data:image/png;base64,[A-Za-z0-9+/=]{500,}"',
                          page)) >= 5  # fmt: skip
    assert not re.search(r"https?://", page), "no external resources or links"
    assert "<script" not in page and "<link" not in page
    return page


def test_report_trains_on_the_data_when_there_is_no_registry(workdir, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir / 'none' / 'mlflow.db'}")
    out = run("report", "--data", "data", "--out", "out/report.html", "--config", "train.yaml",
              "--panel", "out/panel.png")  # fmt: skip
    assert "trained on this data" in out
    assert not (workdir / "none").exists(), "looking for a registry must not create one"
    page = check_page(workdir / "out" / "report.html")
    assert "roc auc" in page and "baseline: logistic" in page
    assert (workdir / "out" / "panel.png").read_bytes()[:4] == b"\x89PNG"


def test_report_uses_the_champions_of_the_registry(workdir, trained, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir / 'mlflow.db'}")
    tables, models, _ = trained
    vectors = current_vectors(tables, config=recorded_config(models.churn))
    setup("report-test")
    client = MlflowClient()
    for kind, estimator, name in (("churn", models.churn, "lifecycle-churn"),
                                  ("uplift", models.uplift, "lifecycle-offers"),
                                  ("clv", models.clv, "lifecycle-clv")):  # fmt: skip
        with mlflow.start_run():
            mlflow.log_metrics({"roc_auc": 0.777, "baseline_rfm.roc_auc": 0.6})
            X = vectors[list(estimator.feature_names_in_)].head(20)
            found = log_estimator(estimator, kind, kind, X, register_as=name)
        client.set_registered_model_alias(name, "champion", found.version)
    out = run("report", "--data", "data", "--out", "champions.html", "--models", "registry")
    assert "MLflow registry" in out and "lifecycle-clv v1" in out
    page = check_page(workdir / "champions.html")
    assert "0.777" in page and "Estimator: learned" in page


def test_the_clv_tables_agree_with_the_models(trained):
    tables, models, report = trained
    vectors = current_vectors(tables, config=recorded_config(models.churn))
    scored = vectors["in_churn_population"].to_numpy(bool)
    p = models.churn.predict_proba(vectors[scored])[:, 1]
    clv = models.clv.predict(vectors)
    by_stage, at_risk, save = (report.tables[name] for name in CLV_TABLES)
    assert by_stage["customers"].sum() == len(vectors) == report.customers
    assert by_stage["clv_total"].sum() == pytest.approx(clv.sum())
    assert at_risk["customers"].sum() == scored.sum()
    assert at_risk["value_at_risk_total"].sum() == pytest.approx(np.sum(p * clv[scored]))
    assert report.facts["value_at_risk_total"] == pytest.approx(np.sum(p * clv[scored]))
    assert len(save) == 20 and save["value_at_risk"].is_monotonic_decreasing
    assert save["value_at_risk"].iloc[0] == pytest.approx(np.max(p * clv[scored]))
    np.testing.assert_allclose(save["value_at_risk"], save["churn_probability"] * save["clv"])
    offered = save[save["retention_offer"] != "none"]
    assert len(offered), "some of the most valuable at-risk customers get a retention offer"
    rows = vectors.set_index("customer_id").loc[offered["customer_id"]].reset_index()
    uplift = models.uplift.predict_uplift(rows)
    catalog = tables.offers.set_index("offer_id")
    for i, (offer, c, clv_i) in enumerate(zip(offered["retention_offer"],
                                              offered["churn_probability"], offered["clv"],
                                              strict=True)):  # fmt: skip
        assert catalog.loc[offer, "kind"] in ("retention", "winback")
        worth = catalog.loc[offer, "value"] + min(c, 0.99) / (1 - min(c, 0.99)) * clv_i
        expected = uplift[offer].iloc[i] * worth - catalog.loc[offer, "cost"]
        assert offered["offer_value"].iloc[i] == pytest.approx(expected) and expected > 0
    assert "learned" in report.notes["clv"] and report.facts["clv_horizon_days"] == 365


def test_without_clv_the_report_says_why_in_one_line(trained):
    _, _, report = trained
    why = "No customer lifetime value: no CLV model (not trained), and no btyd column."
    plain = replace(report, tables={k: v for k, v in report.tables.items()
                                    if k not in CLV_TABLES}, notes={"clv": why})  # fmt: skip
    page = render_html(plain)
    assert f"<p class='note'>{why}</p>" in page
    assert "Customer lifetime value</h2>" not in page and "Who to save" not in page


def test_report_fails_clearly_without_data_or_champions(workdir, monkeypatch):
    result = runner.invoke(app, ["report", "--data", "missing", "--out", "x.html"])
    assert result.exit_code == 1
    assert "data folder missing does not exist" in result.output and "make demo" in result.output
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir / 'empty' / 'mlflow.db'}")
    result = runner.invoke(app, ["report", "--data", "data", "--models", "registry"])
    assert result.exit_code == 1 and "no 'champion' churn model" in result.output
    result = runner.invoke(app, ["report", "--data", "data", "--models", "best"])
    assert result.exit_code == 2 and "auto, registry or train" in result.output


def loop_weeks(n: int = 3) -> list[dict]:
    """A simulate-loop weeks.json's weeks: the live greedy policy climbing from the frozen
    one (1.0) towards the bound (2.0): 0%, 25%, 50% of the gap."""
    return [{"week": w, "as_of": f"2026-01-{1 + 7 * (w - 1):02d}", "audience": 500,
             "offers_sent": 300, "served": 0.9 + 0.25 * (w - 1), "greedy": 1.0 + 0.25 * (w - 1),
             "frozen": 1.0, "random": 0.1, "oracle": 3.0, "bound": 2.0, "exploration_cost": 0.1,
             "ope_greedy": 1.1, "ope_greedy_lo": 0.5, "ope_greedy_hi": 1.7,
             "offers_version": str(w), "retrain_exit": 0, "retrain_seconds": 10.0,
             "promoted": w < n, "vs_previous": None, "vs_previous_lo": None,
             "vs_previous_hi": None, "drift": "prices x1.5" if w == 2 else "",
             "monitor_exit": 4 if w == 3 else 0, "monitor_crossed": "score_psi" if w == 3 else ""}
            for w in range(1, n + 1)]  # fmt: skip


def test_the_report_shows_a_closed_loop_run_and_refuses_another_file(trained, tmp_path):
    import json

    from training.report import add_loop

    _, _, report = trained
    weeks = tmp_path / "weeks.json"
    weeks.write_text(json.dumps({"config": {}, "weeks": loop_weeks()}))
    looped = replace(report, tables=dict(report.tables), figures=dict(report.figures),
                     facts=dict(report.facts))  # fmt: skip
    add_loop(looped, weeks)
    assert looped.facts["loop_gap_closed"] == pytest.approx(0.5)
    table = looped.tables["loop"]
    assert table["live (greedy)"].tolist() == [1.0, 1.25, 1.5]
    assert table["promoted"].tolist() == ["yes", "yes", "no"]
    assert table["world changed"].tolist() == ["", "prices x1.5", ""]
    assert table["monitor"].tolist() == ["ok", "ok", "flagged: score_psi"]
    page = render_html(looped)
    assert "Closed loop (simulation)</h2>" in page and "closed 50% of the gap" in page
    assert "Closed loop" not in render_html(report)  # only when asked
    bad = tmp_path / "other.json"
    bad.write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError, match="not a simulate-loop weeks.json"):
        add_loop(looped, bad)
