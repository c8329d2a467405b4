"""A :class:`~training.monitoring.checks.MonitorResult` as ``monitor.json`` and as
``monitor.prom``: Prometheus gauges in the text exposition format, for a node-exporter
textfile collector or for the service's ``/metrics`` to re-expose.

Gauges (every value a float; NaN when not computed):

| gauge | labels | meaning |
|---|---|---|
| ``lifecycle_feature_psi`` | ``feature`` | PSI of one of the ``top`` most drifting features |
| ``lifecycle_feature_psi_max`` | | the largest feature PSI |
| ``lifecycle_score_psi`` | | PSI of the churn scores |
| ``lifecycle_score_mean`` | ``sample`` (reference, current) | mean churn probability |
| ``lifecycle_churn_ece`` | | realised calibration error of the latest closed cohort |
| ``lifecycle_churn_realised_rate`` / ``lifecycle_churn_predicted_rate`` | | of that cohort |
| ``lifecycle_activity_change`` | ``role`` | a role's event rate, last window / reference - 1 |
| ``lifecycle_activity_shift_max`` | | the largest shift beyond noise (``activity_shift``) |
| ``lifecycle_amount_change`` | ``role`` | a money role's amount per event, window / ref. - 1 |
| ``lifecycle_amount_shift_max`` | | the largest shift beyond noise (``amount_shift``) |
| ``lifecycle_offer_conversion_lift`` | ``offer`` | conversion rate minus the control's |
| ``lifecycle_offer_sends`` | ``offer`` | exposures in the window (``control`` included) |
| ``lifecycle_ledger_<figure>`` | | ``training.monitoring.ledger_health`` figures |
| ``lifecycle_ledger_offer_training_sends`` | ``offer`` | an offer's sends in the model's data |
| ``lifecycle_monitor_threshold_crossed`` | ``check`` | 1 when the check crossed its threshold |
| ``lifecycle_monitor_threshold`` | ``check`` | the threshold |
| ``lifecycle_monitor_last_run_timestamp_seconds`` | | when this run finished |
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from training.monitoring.checks import MonitorResult

TOP = 10  # features with a gauge of their own


def _float(value: object) -> float | None:
    """A JSON-safe number (None for NaN/inf)."""
    value = float(value)  # type: ignore[arg-type]
    return value if math.isfinite(value) else None


def _records(frame: pd.DataFrame | None) -> list[dict] | None:
    if frame is None:
        return None
    return json.loads(frame.to_json(orient="records", double_precision=6))


def _when(ts: pd.Timestamp | None) -> str | None:
    return None if ts is None else pd.Timestamp(ts).isoformat()


def to_json(result: MonitorResult, generated_at: pd.Timestamp) -> dict:
    """The run as a JSON-ready dict: sources, checks, every table."""
    cal = result.calibration
    return {
        "generated_at": _when(generated_at),
        "model": result.model,
        "reference": {"as_of": _when(result.reference.as_of), "source": result.reference.source,
                      "customers": len(result.reference.frame)},
        "current": {"as_of": _when(result.current.as_of), "source": result.current.source,
                    "customers": len(result.current.frame)},
        "thresholds": {"psi": result.thresholds.psi, "ece": result.thresholds.ece,
                       "activity": result.thresholds.activity,
                       "amount": result.thresholds.amount},
        "checks": [{"name": c.name, "value": _float(c.value), "threshold": c.threshold,
                    "crossed": c.crossed, "detail": c.detail} for c in result.checks],
        "crossed": [c.name for c in result.crossed],
        "feature_drift": _records(result.features),
        "score_drift": {k: _float(v) for k, v in result.scores.items()},
        "calibration": None if cal is None else {
            "as_of": _when(cal.as_of), "horizon_days": cal.horizon_days, "ece": _float(cal.ece),
            "customers": cal.customers, "churn_rate": _float(cal.churn_rate),
            "mean_predicted": _float(cal.mean_predicted), "deciles": _records(cal.table)},
        "activity": None if result.activity is None else {
            "days": result.activity.days, "reference_end": _when(result.activity.reference_end),
            "current_end": _when(result.activity.current_end),
            "roles": _records(result.activity.table)},
        "amounts": None if result.amounts is None else {
            "days": result.amounts.days, "reference_end": _when(result.amounts.reference_end),
            "current_end": _when(result.amounts.current_end),
            "roles": _records(result.amounts.table)},
        "offers": _records(result.offers),
        "ledger": None if result.ledger is None else {
            "summary": {k: _float(v) for k, v in result.ledger.summary.items()},
            "daily": _records(result.ledger.daily),
            "offers": _records(result.ledger.offers)},
        "notes": result.notes,
    }  # fmt: skip


def _label(value: object) -> str:
    """A label value escaped for the text format (backslash, quote, newline)."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _gauge(lines: list[str], name: str, help_text: str, samples) -> None:
    """Append one gauge family: ``samples`` is a float or an iterable of (labels, value)."""
    lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
    if isinstance(samples, int | float | np.floating):
        samples = [({}, samples)]
    for labels, value in samples:
        text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
        lines.append(f"{name}{{{text}}} {_number(value)}" if text else f"{name} {_number(value)}")


def to_prometheus(result: MonitorResult, generated_at: pd.Timestamp, top: int = TOP) -> str:
    """The gauges of the module docstring in the Prometheus text format."""
    lines: list[str] = []
    drift = result.features.head(top)
    _gauge(
        lines,
        "lifecycle_feature_psi",
        "PSI of a churn model feature, current vs the "
        "training snapshot (the most drifting features).",
        [({"feature": f}, v) for f, v in zip(drift["feature"], drift["psi"], strict=True)],
    )
    _gauge(
        lines,
        "lifecycle_feature_psi_max",
        "Largest feature PSI.",
        float(result.features["psi"].max()) if len(result.features) else np.nan,
    )
    _gauge(
        lines,
        "lifecycle_score_psi",
        "PSI of the churn scores, current vs reference.",
        result.scores["psi"],
    )
    _gauge(
        lines,
        "lifecycle_score_mean",
        "Mean churn probability.",
        [
            ({"sample": "reference"}, result.scores["reference_mean"]),
            ({"sample": "current"}, result.scores["current_mean"]),
        ],
    )
    cal = result.calibration
    for name, help_text, value in (
        (
            "lifecycle_churn_ece",
            "Realised expected calibration error of the latest cohort "
            "whose churn horizon has passed.",
            cal.ece if cal else np.nan,
        ),
        (
            "lifecycle_churn_realised_rate",
            "Realised churn rate of that cohort.",
            cal.churn_rate if cal else np.nan,
        ),
        (
            "lifecycle_churn_predicted_rate",
            "Mean predicted churn probability of that cohort.",
            cal.mean_predicted if cal else np.nan,
        ),
    ):
        _gauge(lines, name, help_text, value)
    if result.activity is not None:
        table = result.activity.table
        _gauge(
            lines,
            "lifecycle_activity_change",
            "A role's event rate per active customer, last window vs the reference, minus 1.",
            [({"role": r}, v) for r, v in zip(table["role"], table["change"], strict=True)],
        )
        _gauge(
            lines,
            "lifecycle_activity_shift_max",
            "The largest change of a role's event rate beyond noise (0: none).",
            result.activity.shift,
        )
    if result.amounts is not None:
        table = result.amounts.table
        _gauge(
            lines,
            "lifecycle_amount_change",
            "A money role's (geometric) mean amount per event, last window vs the reference, "
            "minus 1.",
            [({"role": r}, v) for r, v in zip(table["role"], table["change"], strict=True)],
        )
        _gauge(
            lines,
            "lifecycle_amount_shift_max",
            "The largest change of a money role's amount per event beyond noise (0: none).",
            result.amounts.shift,
        )
    if result.offers is not None:
        offers = result.offers
        _gauge(
            lines,
            "lifecycle_offer_conversion_lift",
            "Realised conversion rate minus the control arm's, exposures in the window.",
            [
                ({"offer": a}, v)
                for a, v in zip(offers["arm"], offers["lift"], strict=True)
                if a != "control"
            ],
        )
        _gauge(
            lines,
            "lifecycle_offer_sends",
            "Exposures in the window, per arm.",
            [({"offer": a}, v) for a, v in zip(offers["arm"], offers["sends"], strict=True)],
        )
    if result.ledger is not None:
        for key, value in result.ledger.summary.items():
            _gauge(
                lines,
                f"lifecycle_ledger_{key}",
                f"Feedback ledger: {key.replace('_', ' ')} "
                f"(last {result.ledger.summary['days']:.0f} days).",
                value,
            )
        support = result.ledger.offers
        if support is not None:
            _gauge(
                lines,
                "lifecycle_ledger_offer_training_sends",
                "Training sends of an offer decided in the window, in the champion offers "
                "model's data (0: a new offer, without training support).",
                [({"offer": o}, v) for o, v in zip(support["offer_id"],
                                                   support["training_sends"], strict=True)],
            )  # fmt: skip
    _gauge(
        lines,
        "lifecycle_monitor_threshold_crossed",
        "1 when the check crossed its threshold.",
        [({"check": c.name}, float(c.crossed)) for c in result.checks],
    )
    _gauge(
        lines,
        "lifecycle_monitor_threshold",
        "The check's threshold.",
        [({"check": c.name}, c.threshold) for c in result.checks],
    )
    _gauge(
        lines,
        "lifecycle_monitor_last_run_timestamp_seconds",
        "When this run finished.",
        pd.Timestamp(generated_at).timestamp(),
    )
    return "\n".join(lines) + "\n"


def write_outputs(result: MonitorResult, out: str | Path, generated_at: pd.Timestamp,
                  html: str) -> dict[str, Path]:  # fmt: skip
    """Write ``monitor.json``, ``monitor.prom`` and ``monitor.html`` (``html``) to ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "monitor.json", "prom": out / "monitor.prom",
             "html": out / "monitor.html"}  # fmt: skip
    body = json.dumps(to_json(result, generated_at), indent=2, allow_nan=False)
    paths["json"].write_text(body + "\n", encoding="utf-8")
    paths["prom"].write_text(to_prometheus(result, generated_at), encoding="utf-8")
    paths["html"].write_text(html, encoding="utf-8")
    return paths
