"""``monitor.html``: one self-contained page (inline CSS, figures as base64 PNG, no scripts),
made with the business report's helpers (``training.report_html``)."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from training.monitoring.activity import BASE_DAYS
from training.monitoring.checks import MonitorResult
from training.report_html import CSS, figure_tag, row, section, table_html

TOP = 15  # features in the PSI chart and table
STATUS_CSS = ".crossed { color: #b00020; font-weight: 600; } .ok { color: #1b7f3b; }"


def _figure(height: float = 4.2) -> tuple[Figure, object]:
    fig = Figure(figsize=(6.4, height), layout="constrained")
    return fig, fig.add_subplot()


def psi_chart(drift: pd.DataFrame, threshold: float, top: int = TOP) -> Figure:
    """Horizontal bars: the ``top`` features by PSI, largest on top, the threshold marked."""
    shown = drift.head(top).iloc[::-1]
    fig, ax = _figure(max(2.5, 0.3 * len(shown) + 1.2))
    colors = ["C3" if v > threshold else "C0" for v in shown["psi"].fillna(0)]
    ax.barh(shown["feature"].astype(str), shown["psi"].fillna(0).to_numpy(float), color=colors)
    ax.axvline(threshold, color="0.45", ls="--", label=f"threshold {threshold:g}")
    ax.set(title="Feature drift (PSI), current vs training snapshot", xlabel="PSI")
    ax.tick_params(axis="y", labelsize="small")
    ax.legend(frameon=False, fontsize="small")
    return fig


def score_chart(reference: np.ndarray, current: np.ndarray) -> Figure:
    """Churn-score distributions of both samples (shares per bin, same bins)."""
    fig, ax = _figure()
    both = np.concatenate([reference, current])
    edges = np.linspace(0.0, max(float(both.max(initial=0.0)), 1e-9), 26)
    for values, name, color in ((reference, "reference", "0.55"), (current, "current", "C3")):
        if len(values):
            weights = np.full(len(values), 1.0 / len(values))
            ax.hist(values, bins=edges, weights=weights, histtype="step", lw=2, color=color,
                    label=f"{name} (mean {values.mean():.1%}, n={len(values):,})")  # fmt: skip
    ax.set(title="Churn scores, reference vs current", xlabel="churn probability",
           ylabel="share of customers")  # fmt: skip
    ax.legend(frameon=False, fontsize="small")
    return fig


def calibration_chart(table: pd.DataFrame, ece: float) -> Figure:
    """Observed churn rate against mean predicted probability per decile, with the diagonal."""
    fig, ax = _figure()
    ax.plot([0, 1], [0, 1], ls="--", color="0.45", label="perfectly calibrated")
    ax.plot(table["mean_predicted"], table["observed_rate"], marker="o", color="C0",
            label=f"deciles (ECE {ece:.3f})")  # fmt: skip
    ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), xlabel="mean predicted churn probability",
           ylabel="observed churn rate", title="Realised calibration by decile")  # fmt: skip
    ax.legend(frameon=False, fontsize="small")
    return fig


def _checks(result: MonitorResult) -> str:
    rows = "".join(
        f"<tr><td>{c.name}</td><td>{c.value:.4f}</td><td>{c.threshold:g}</td>"
        f"<td class='{'crossed' if c.crossed else 'ok'}'>{'CROSSED' if c.crossed else 'ok'}"
        f"</td><td>{html.escape(c.detail)}</td></tr>" for c in result.checks)  # fmt: skip
    return ("<table><tr><th>check</th><th>value</th><th>threshold</th><th>status</th>"
            f"<th>detail</th></tr>{rows}</table>")  # fmt: skip


def _calibration(result: MonitorResult) -> str:
    cal = result.calibration
    if cal is None:
        return section("Realised calibration", "Not computed (see the notes above).")
    intro = (
        f"The {cal.customers:,} customers of the churn population on {cal.as_of:%Y-%m-%d}, "
        f"whose {cal.horizon_days}-day horizon has passed, scored by the champion: mean "
        f"predicted {cal.mean_predicted:.1%}, realised churn {cal.churn_rate:.1%}."
    )
    return section("Realised calibration", intro,
                    row(figure_tag(calibration_chart(cal.table, cal.ece), "calibration"),
                         table_html(cal.table.set_index("decile"))))  # fmt: skip


def _activity(result: MonitorResult) -> str:
    a = result.activity
    if a is None:
        return section("Activity", "Not computed (see the notes above).")
    intro = (
        f"Each role's events per active customer (any event in the {BASE_DAYS} days before) "
        f"in the {a.days} days to {a.current_end:%Y-%m-%d} against the {a.days} days to "
        f"{a.reference_end:%Y-%m-%d}, with Bonferroni-adjusted 95% intervals; the shift is the "
        f"smallest change an interval allows (0 when it covers no change). Roles with too few "
        f"events in either window are not tested."
    )
    return section("Activity", intro, table_html(a.table.set_index("role")))


def _amounts(result: MonitorResult) -> str:
    a = result.amounts
    if a is None:
        return section("Amounts", "Not computed (see the notes above).")
    intro = (
        f"What customers pay per event of each money role (purchases and renewals, refunds, "
        f"subscription starts: the geometric mean of the positive amounts) in the {a.days} "
        f"days to {a.current_end:%Y-%m-%d} against the {a.days} days to "
        f"{a.reference_end:%Y-%m-%d}, with Bonferroni-adjusted 95% intervals clustered by "
        f"customer; the shift is the smallest change an interval allows (0 when it covers no "
        f"change). Roles with too few amounts in either window are not tested; 'unpriced' "
        f"counts the events without an amount or with a zero one."
    )
    return section("Amounts", intro, table_html(a.table.set_index("role")))


def _offers(result: MonitorResult) -> str:
    if result.offers is None:
        return section("Offer performance", "No exposures in the window.")
    intro = (
        "Conversion per arm among the exposures in the window whose response window has "
        "closed, and the lift over the control arm with its 95% normal interval. Plain "
        "rates: a targeting policy sends offers to different customers than the control "
        "arm holds, so this is a health signal, not the offers' causal effect."
    )
    return section("Offer performance", intro, table_html(result.offers.set_index("arm")))


def _ledger(result: MonitorResult) -> str:
    if result.ledger is None:
        return section("Ledger health", "No ledger given (--ledger).")
    summary = pd.DataFrame({"value": result.ledger.summary}).rename_axis("figure")
    daily = result.ledger.daily.set_index("until")
    parts = [row(table_html(summary), table_html(daily))]
    if result.ledger.offers is not None:
        parts.append("<p>Offers decided in the window and their sends in the champion offers "
                     "model's training data: an offer without any (a new one) has no known "
                     "uplift and is only explored. Reported, not a threshold.</p>"
                     + table_html(result.ledger.offers.set_index("offer_id")))  # fmt: skip
    return section("Ledger health", "The service's decisions and the feedback on them.",
                    *parts)  # fmt: skip


def render(result: MonitorResult, generated_at: pd.Timestamp) -> str:
    """The monitoring page as one HTML string."""
    ref, cur = result.reference, result.current
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in result.notes)
    head = (f"<h1>Lifecycle monitor</h1><p class='meta'>Run {generated_at:%Y-%m-%d %H:%M} UTC "
            f"· model {html.escape(result.model)}<br>reference: {html.escape(ref.source)} "
            f"({len(ref.frame):,} customers)<br>current: {html.escape(cur.source)} "
            f"({len(cur.frame):,} customers)</p>{_checks(result)}"
            + (f"<ul class='note'>{notes}</ul>" if notes else ""))  # fmt: skip
    drift = result.features.head(TOP).set_index("feature")
    sections = [
        section("Feature drift", "PSI of each churn model feature (bins of the reference; "
                 "< 0.1 stable, 0.1-0.25 moderate, > 0.25 large) with a two-sample test (KS "
                 "for numbers, chi-square for categories).",
                 row(figure_tag(psi_chart(result.features, result.thresholds.psi), "psi"),
                      table_html(drift[["psi", "test", "statistic", "p_value"]]))),
        section("Score drift", f"Churn probabilities of the scored population: PSI "
                 f"{result.scores['psi']:.4f}, KS {result.scores['ks_statistic']:.4f} "
                 f"(p {result.scores['p_value']:.3g}).",
                 figure_tag(score_chart(*result.score_samples), "scores")),
        _calibration(result), _activity(result), _amounts(result), _offers(result),
        _ledger(result),
    ]  # fmt: skip
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>Lifecycle monitor</title><style>{CSS}{STATUS_CSS}</style></head>"
            f"<body>{head}{''.join(sections)}</body></html>")  # fmt: skip
