"""The business report's content: which models, and what they say about current customers.

:func:`load_models` takes the ``champion`` models from the MLflow registry when one exists
(what the service would use), or trains them on the data (nothing logged);
:func:`build_report` scores every customer as of the data's last event and gathers the
report's tables and figures. ``training.report_html`` renders it. No MLflow writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from features.stages import stage_funnel
from training import insights, plots
from training.datasets import Tables
from training.pipeline import TrainConfig

ModelSource = Literal["auto", "registry", "train"]
REGISTERED = {"churn": "lifecycle-churn", "stage": "lifecycle-stage", "offers": "lifecycle-offers"}
REASON_CUSTOMERS = 500  # reasons (LightGBM contributions) for the riskiest customers only


@dataclass
class ReportModels:
    """The fitted churn and uplift models, their holdout metrics, and where they came from."""

    churn: object
    uplift: object | None
    metrics: dict[str, pd.DataFrame]  # model -> insights.metrics_table
    source: str


@dataclass
class Report:
    """Everything ``lifecycle report`` shows, as tables and figures."""

    as_of: pd.Timestamp
    customers: int
    models_source: str
    tables: dict[str, pd.DataFrame]
    figures: dict[str, Figure]
    facts: dict[str, float] = field(default_factory=dict)


def registry_exists(uri: str) -> bool:
    """Whether ``uri`` may hold a registry: a SQLite file must exist (reading a missing one
    would create it); any other store is assumed to exist."""
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).exists()
    return True


def split_run_metrics(run_metrics: dict[str, float]) -> tuple[dict, dict[str, dict]]:
    """MLflow run metrics as logged by ``training.tracking`` -> (model metrics, baselines):
    ``baseline_<name>.<metric>`` keys go to ``baselines[name][metric]``."""
    own, baselines = {}, {}
    for key, value in sorted(run_metrics.items()):
        if key.startswith("baseline_") and "." in key:
            name, metric = key.removeprefix("baseline_").split(".", 1)
            baselines.setdefault(name, {})[metric] = value
        else:
            own[key] = value
    return own, baselines


def models_from_registry(alias: str = "champion") -> ReportModels | None:
    """The ``alias`` churn and offer models and every model's run metrics, or None when the
    registry (``training.registry.tracking_uri``) has no churn model under ``alias``."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from training.registry import load_alias, tracking_uri

    if not registry_exists(tracking_uri()):
        return None
    mlflow.set_tracking_uri(tracking_uri())
    churn, churn_version = load_alias(REGISTERED["churn"], alias)
    if churn is None:
        return None
    uplift, _ = load_alias(REGISTERED["offers"], alias)
    client, metrics, versions = MlflowClient(), {}, []
    for model, name in REGISTERED.items():
        try:
            version = client.get_model_version_by_alias(name, alias)
        except mlflow.exceptions.MlflowException:
            continue
        own, baselines = split_run_metrics(client.get_run(version.run_id).data.metrics)
        metrics[model] = insights.metrics_table(own, baselines, model)
        versions.append(f"{name} v{version.version}")
    source = f"MLflow registry at {tracking_uri()}, alias {alias!r}: {', '.join(versions)}"
    return ReportModels(churn, uplift, metrics, source)


def models_from_training(tables: Tables, config: TrainConfig | None = None) -> ReportModels:
    """Fit the models on ``tables`` (``training.pipeline.fit_and_evaluate``; nothing logged)."""
    from training.pipeline import fit_and_evaluate

    result = fit_and_evaluate(tables, config)
    metrics = {
        name: insights.metrics_table(r.metrics, r.baselines, name)
        for name, r in result.reports.items()
    }
    offers = result.reports.get("offers")
    source = (
        f"trained on this data for this report (not registered); metrics on the holdout "
        f"as of {result.holdout_as_of:%Y-%m-%d}"
    )
    return ReportModels(result.reports["churn"].estimator, offers and offers.estimator,
                        metrics, source)  # fmt: skip


def load_models(
    tables: Tables, source: ModelSource = "auto", config: TrainConfig | None = None
) -> ReportModels:
    """``registry``: the champions (LookupError if none); ``train``: fit on ``tables``;
    ``auto``: the champions when the registry has them, else train."""
    if source != "train":
        found = models_from_registry()
        if found is not None:
            return found
        if source == "registry":
            raise LookupError(
                "the MLflow registry has no 'champion' churn model; run `lifecycle train` and "
                "`lifecycle promote` (or `make demo`), or use --models train"
            )
    return models_from_training(tables, config)


def build_report(
    tables: Tables, models: ReportModels, reason_customers: int = REASON_CUSTOMERS
) -> Report:
    """Score every customer as of the data's last event; gather the report's tables/figures."""
    from features.project import recorded_config

    vectors = insights.current_vectors(tables, config=recorded_config(models.churn))
    funnel = stage_funnel(vectors["stage"])
    out_tables: dict[str, pd.DataFrame] = {"funnel": funnel}
    figures: dict[str, Figure] = {"funnel": plots.stage_funnel_plot(funnel)}
    population = vectors[vectors["in_churn_population"].to_numpy(bool)]
    p = models.churn.predict_proba(population)[:, 1]
    out_tables["risk"] = insights.risk_bands(p)
    figures["risk"] = plots.risk_histogram(p)
    riskiest = population.iloc[np.argsort(-p, kind="stable")[:reason_customers]]
    reasons = insights.top_reasons(models.churn.reasons(riskiest, top=3))
    out_tables["reasons"] = reasons.assign(definition=[describe(f) for f in reasons.index])
    figures["reasons"] = plots.reasons_plot(reasons)
    facts = {"churn_population": len(population), "expected_churners": float(p.sum()),
             "mean_churn_probability": float(p.mean()) if len(p) else np.nan,
             "reason_customers": len(riskiest)}  # fmt: skip
    if models.uplift is not None and tables.offers is not None:
        choices = insights.policy_choices(models.uplift, vectors, tables.offers)
        policy = insights.policy_by_stage(choices.stage, choices.best_offer, choices.best_value)
        mix = insights.offer_mix_by_stage(choices.stage, choices.best_offer)
        out_tables.update(policy=policy, offer_mix=mix)
        figures.update(offer_mix=plots.offer_mix_plot(mix),
                       value=plots.value_by_stage_plot(policy))  # fmt: skip
        facts["expected_value_total"] = float(np.sum(choices.best_value))
    out_tables.update({f"metrics_{k}": v for k, v in models.metrics.items()})
    return Report(pd.Timestamp(tables.end), len(vectors), models.source, out_tables, figures,
                  facts)  # fmt: skip


def report_panel(report: Report) -> Figure:
    """The report's main charts in one figure (the picture in the README)."""
    names = ("funnel", "risk", "reasons", "offer_mix")
    shown = {name: report.figures[name] for name in names if name in report.figures}
    return plots.figure_panel(shown, title=f"Customer lifecycle report, data as of "
                              f"{report.as_of:%Y-%m-%d}")  # fmt: skip


def describe(feature: str) -> str:
    """A feature's one-line definition (the feature registry's), for readers of the report."""
    from features.registry import REGISTRY

    if feature in REGISTRY:
        return REGISTRY[feature].definition
    return "current lifecycle stage" if feature == "stage" else "customer attribute"
