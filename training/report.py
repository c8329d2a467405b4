"""The business report's content: which models, and what they say about current customers.

:func:`load_models` takes the ``champion`` models from the MLflow registry when one exists
(what the service would use), or trains them on the data (nothing logged);
:func:`build_report` scores every customer as of the data's last event and gathers the
report's tables and figures, customer lifetime value among them (:func:`add_clv`).
``training.report_html`` renders it. No MLflow writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from features.project import ProjectConfig, recorded_config
from features.stages import stage_funnel
from training import insights, plots
from training.datasets import Tables
from training.models.clv import ProbabilisticCLV
from training.names import REGISTERED_NAMES as REGISTERED
from training.pipeline import TrainConfig

ModelSource = Literal["auto", "registry", "train"]
REASON_CUSTOMERS = 500  # reasons (LightGBM contributions) for the riskiest customers only
WHO_TO_SAVE = 20  # customers in the "who to save" table
CLV_PREFIX = "btyd_clv_"  # the vectors' probabilistic CLV column: btyd_clv_<H>d


@dataclass
class ReportModels:
    """The fitted churn, uplift and CLV models, their holdout metrics, and where they came
    from; ``clv_absent``: why there is no CLV model."""

    churn: object
    uplift: object | None
    metrics: dict[str, pd.DataFrame]  # model -> insights.metrics_table
    source: str
    clv: object | None = None
    clv_absent: str = ""


@dataclass
class Report:
    """Everything ``lifecycle report`` shows, as tables and figures."""

    as_of: pd.Timestamp
    customers: int
    models_source: str
    tables: dict[str, pd.DataFrame]
    figures: dict[str, Figure]
    facts: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # e.g. "clv": the estimator, or why none


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
    """The ``alias`` churn, offer and CLV models and every model's run metrics, or None when the
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
    clv, _ = load_alias(REGISTERED["clv"], alias)
    absent = "" if clv is not None else f"{REGISTERED['clv']!r} has no {alias!r} version"
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
    return ReportModels(churn, uplift, metrics, source, clv, absent)


def models_from_training(tables: Tables, config: TrainConfig | None = None) -> ReportModels:
    """Fit the models on ``tables`` (``training.pipeline.fit_and_evaluate``; nothing logged)."""
    from training.pipeline import fit_and_evaluate

    result = fit_and_evaluate(tables, config)
    metrics = {
        name: insights.metrics_table(r.metrics, r.baselines, name)
        for name, r in result.reports.items()
    }
    offers, clv = result.reports.get("offers"), result.reports.get("clv")
    absent = "" if clv else f"not trained: {result.skipped.get('clv', 'no CLV model')}"
    source = (
        f"trained on this data for this report (not registered); metrics on the holdout "
        f"as of {result.holdout_as_of:%Y-%m-%d}"
    )
    return ReportModels(result.reports["churn"].estimator, offers and offers.estimator,
                        metrics, source, clv and clv.estimator, absent)  # fmt: skip


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
    tables: Tables, models: ReportModels, reason_customers: int = REASON_CUSTOMERS,
    save_customers: int = WHO_TO_SAVE,
) -> Report:  # fmt: skip
    """Score every customer as of the data's last event; gather the report's tables/figures
    (the ``save_customers`` customers with the most value at risk in ``who_to_save``)."""
    config = recorded_config(models.churn)
    vectors = insights.current_vectors(tables, config=config)
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
    report = Report(pd.Timestamp(tables.end), len(vectors), models.source, out_tables, figures,
                    facts)  # fmt: skip
    add_clv(report, tables, vectors, p, models, config, save_customers)
    return report


def add_loop(report: Report, weeks_file: str | Path) -> None:
    """Add the closed loop's weekly figures (``lifecycle simulate-loop``'s ``weeks.json``):
    table ``loop``, figure ``loop`` and the last week's share of the gap closed."""
    import json

    from training.loop_values import gap_closed, loop_summary

    try:
        weeks = pd.DataFrame(json.loads(Path(weeks_file).read_text())["weeks"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"--loop {weeks_file}: not a simulate-loop weeks.json ({err})") from None
    if weeks.empty:
        raise ValueError(f"--loop {weeks_file}: the loop recorded no week")
    report.tables["loop"] = loop_summary(weeks)
    report.figures["loop"] = plots.loop_figure(weeks)
    report.facts["loop_gap_closed"] = gap_closed(weeks)


def add_clv(
    report: Report, tables: Tables, vectors: pd.DataFrame, churn: np.ndarray,
    models: ReportModels, config: ProjectConfig | None, top: int = WHO_TO_SAVE,
) -> None:  # fmt: skip
    """Add to ``report`` the CLV tables (``clv_by_stage`` over every customer,
    ``value_at_risk`` and ``who_to_save`` over the churn population, the rows of ``vectors``
    with ``in_churn_population``, whose churn probabilities ``churn`` are), the ``clv``
    figure, the facts (totals, horizon, discount rate, margin share) and ``notes["clv"]``
    (the estimator in words, or why there is no CLV)."""
    estimator, report.notes["clv"] = clv_estimator(models, vectors, config)
    if estimator is None:
        return
    clv = clv_values(estimator, tables, vectors, config)
    scored = vectors["in_churn_population"].to_numpy(bool)
    stage = vectors["stage"]
    by_stage = insights.clv_by_stage(stage, clv)
    at_risk = insights.value_at_risk_by_stage(stage[scored], churn, clv[scored])
    save = insights.who_to_save(vectors[scored], churn, clv[scored], models.uplift,
                                tables.offers, top)  # fmt: skip
    report.tables.update(clv_by_stage=by_stage, value_at_risk=at_risk, who_to_save=save)
    report.figures["clv"] = plots.clv_by_stage_plot(by_stage, at_risk)
    report.facts.update(clv_total=float(np.nansum(clv)),
                        value_at_risk_total=float(np.nansum(churn * clv[scored])),
                        **clv_terms(estimator, config))  # fmt: skip


def clv_estimator(
    models: ReportModels, vectors: pd.DataFrame, config: ProjectConfig | None
) -> tuple[object | None, str]:
    """The report's CLV estimator and a sentence on it: the CLV model (registry champion or
    trained); else BG/NBD x Gamma-Gamma, the vectors' ``btyd_clv_<H>d`` column
    (:class:`ProbabilisticCLV`); else None and why."""
    if models.clv is not None:
        return models.clv, describe_clv(models.clv)
    absent = models.clv_absent or "no CLV model"
    wanted = f"{CLV_PREFIX}{(config or ProjectConfig()).dataset.clv_horizon_days}d"
    found = [c for c in vectors.columns if str(c).startswith(CLV_PREFIX)]
    if not found:
        return None, (f"No customer lifetime value: no CLV model ({absent}), and the feature "
                      f"vectors hold no buy-till-you-die CLV (btyd_features off, or too few "
                      f"repeat buyers).")  # fmt: skip
    estimator = ProbabilisticCLV(wanted if wanted in found else found[0]).fit(vectors)
    return estimator, f"{describe_clv(estimator)}; no CLV model ({absent})"


def describe_clv(estimator: object) -> str:
    """What a CLV estimator is, in words."""
    if isinstance(estimator, ProbabilisticCLV):
        return (f"probabilistic: BG/NBD purchases x Gamma-Gamma spend per purchase, fitted "
                f"without labels (feature column {estimator.column})")  # fmt: skip
    if hasattr(estimator, "booster_"):
        return ("learned: LightGBM on the realised discounted margin of earlier snapshots "
                "(the CLV model)")  # fmt: skip
    return type(estimator).__name__


def clv_values(
    estimator, tables: Tables, vectors: pd.DataFrame, config: ProjectConfig | None
) -> np.ndarray:
    """The estimator's CLV per row of ``vectors``; from vectors rebuilt with the estimator's
    own recorded config when it differs from ``config`` (e.g. champions of other runs)."""
    own = recorded_config(estimator)
    if own is None or (config is not None and own.fingerprint() == config.fingerprint()):
        return np.asarray(estimator.predict(vectors), dtype=float)
    rebuilt = insights.current_vectors(tables, config=own).set_index("customer_id")
    X = rebuilt.reindex(vectors["customer_id"].to_numpy()).reset_index()
    return np.asarray(estimator.predict(X), dtype=float)


def clv_terms(estimator: object, config: ProjectConfig | None) -> dict[str, float]:
    """The CLV's horizon (days), annual discount rate and margin share: the estimator's
    recorded config's, else ``config``'s; a probabilistic column names its horizon."""
    dataset = (recorded_config(estimator) or config or ProjectConfig()).dataset
    horizon = float(dataset.clv_horizon_days)
    if isinstance(estimator, ProbabilisticCLV):
        horizon = float(estimator.column.removeprefix(CLV_PREFIX).removesuffix("d"))
    return {"clv_horizon_days": horizon,
            "clv_annual_discount_rate": float(dataset.clv_annual_discount_rate),
            "clv_margin_share": float(dataset.clv_margin_share)}  # fmt: skip


def report_panel(report: Report) -> Figure:
    """The report's main charts in one figure (the picture in the README)."""
    names = ("funnel", "risk", "reasons", "clv", "offer_mix")
    shown = {name: report.figures[name] for name in names if name in report.figures}
    return plots.figure_panel(shown, title=f"Customer lifecycle report, data as of "
                              f"{report.as_of:%Y-%m-%d}")  # fmt: skip


def describe(feature: str) -> str:
    """A feature's one-line definition (the feature registry's), for readers of the report."""
    from features.registry import REGISTRY

    if feature in REGISTRY:
        return REGISTRY[feature].definition
    return "current lifecycle stage" if feature == "stage" else "customer attribute"
