"""Render a :class:`training.report.Report` as one self-contained HTML page for business users:
inline CSS, figures embedded as base64 PNG, no scripts and no external links."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from training.insights import KEY_METRICS
from training.report import Report

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1100px; color: #222; line-height: 1.45; padding: 0 1rem; }
h1 { margin-bottom: .2rem; } h2 { border-bottom: 2px solid #ddd; padding-bottom: .2rem;
       margin-top: 2.2rem; }
.meta { color: #555; } .note { color: #555; font-size: .92rem; }
.row { display: flex; flex-wrap: wrap; gap: 1.5rem; align-items: flex-start; }
.row > * { flex: 1 1 420px; } img { max-width: 100%; height: auto; }
table { border-collapse: collapse; font-size: .88rem; margin: .5rem 0; }
th, td { border: 1px solid #ddd; padding: .25rem .55rem; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
.facts { display: flex; gap: 1rem; flex-wrap: wrap; }
.fact { background: #f6f8fa; border-radius: 6px; padding: .6rem 1rem; }
.fact b { display: block; font-size: 1.4rem; }
"""
PERCENT = ("share", "offered_share", "churn_probability", "mean_probability",
           "mean_churn_probability", "clv_share", "value_at_risk_share")  # fmt: skip


def figure_tag(fig: Figure, alt: str, dpi: int = 90) -> str:
    """An ``<img>`` with the figure as an embedded base64 PNG."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _cell(column: str, value: object) -> str:
    if isinstance(value, float):
        if value != value:
            return "–"
        if column in PERCENT or column.endswith("_rate"):
            return f"{value:.1%}"
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def table_html(frame: pd.DataFrame) -> str:
    """A small DataFrame as an HTML table, numbers formatted for reading (shares as %)."""
    shown = frame.copy()
    for column in shown.columns:
        shown[column] = [_cell(str(column), v) for v in shown[column].tolist()]
    shown.columns = [str(c).replace("_", " ") for c in shown.columns]
    shown.index = [str(i) for i in shown.index]
    return shown.to_html(border=0, escape=True, index_names=False)


def section(title: str, intro: str, *parts: str) -> str:
    return (f"<section><h2>{html.escape(title)}</h2><p class='note'>{intro}</p>"
            + "".join(parts) + "</section>")  # fmt: skip


def row(*parts: str) -> str:
    return "<div class='row'>" + "".join(f"<div>{p}</div>" for p in parts) + "</div>"


def _facts(report: Report) -> str:
    f = report.facts
    items = [("customers", f"{report.customers:,}"),
             ("in the churn population", f"{int(f.get('churn_population', 0)):,}"),
             ("expected churners", f"{f.get('expected_churners', 0):,.0f}")]  # fmt: skip
    if "clv_total" in f:
        items += [(f"customer lifetime value (next {f['clv_horizon_days']:,.0f} days)",
                   f"{f['clv_total']:,.0f}"),
                  ("value at risk (churn probability × CLV)",
                   f"{f['value_at_risk_total']:,.0f}")]  # fmt: skip
    if "expected_value_total" in f:
        items.append(("expected value of the offers", f"{f['expected_value_total']:,.0f}"))
    cells = "".join(f"<div class='fact'><b>{v}</b>{html.escape(k)}</div>" for k, v in items)
    return f"<div class='facts'>{cells}</div>"


def _metrics(report: Report) -> str:
    parts = []
    for model, described in KEY_METRICS.items():
        table = report.tables.get(f"metrics_{model}")
        if table is None:
            continue
        cols = [c for c in described if c in table.columns]
        if not cols:
            continue
        notes = "".join(f"<li><b>{c}</b>: {html.escape(described[c])}</li>" for c in cols)
        parts.append(f"<h3>{model}</h3>{table_html(table[cols])}<ul class='note'>{notes}</ul>")
    return "".join(parts) or "<p>No model metrics available.</p>"


def _clv(report: Report) -> str:
    """The "Customer lifetime value" section; "" when the report has no CLV (the header
    says why)."""
    t, f = report.tables, report.facts
    if "clv_by_stage" not in t:
        return ""
    rate = f["clv_annual_discount_rate"]
    intro = (
        f"Customer lifetime value (CLV) is the margin a customer is expected to bring in over "
        f"the next {f['clv_horizon_days']:,.0f} days, in the data's currency: their expected "
        f"spend times the margin share ({f['clv_margin_share']:.0%}), each future purchase "
        f"discounted at {rate:.0%} a year (a margin a year away counts {1 / (1 + rate):.2f} "
        "of one today). "
        f"Estimator: {html.escape(report.notes.get('clv', ''))}. Value at risk = churn "
        "probability × CLV: what the customers the churn model scores are expected to take "
        "with them if nothing is done."
    )
    save = t["who_to_save"].set_index("customer_id")
    return section(
        "Customer lifetime value", intro,
        row(figure_tag(report.figures["clv"], "CLV and value at risk by stage"),
             table_html(t["clv_by_stage"])),
        "<h3>Value at risk by stage</h3>", table_html(t["value_at_risk"]),
        f"<h3>Who to save: the {len(save):,} customers with the most value at risk</h3>"
        "<p class='note'>With the retention or win-back offer of highest expected value, "
        "valued as the service values it (uplift × (margin + c / (1 − c) × CLV) − cost, c the "
        "churn probability), among those the catalog allows for the customer's stage and past "
        "campaigns sent to customers like them; "
        "none when no such offer pays for itself (or there is no offers model).</p>",
        table_html(save),
    )  # fmt: skip


def _loop(report: Report) -> str:
    """The "Closed loop" section (``lifecycle report --loop weeks.json``); "" without it."""
    if "loop" not in report.tables:
        return ""
    share = report.facts.get("loop_gap_closed", float("nan"))
    closed = (
        ""
        if share != share
        else f" In the last week the live service closed "
        f"{share:.0%} of the gap between its week-0 policy and the observable bound."
    )
    intro = (
        "The simulated world, week by week: the running service chose offers for a campaign "
        "audience, the simulated customers answered from their ground truth, and "
        "<code>lifecycle retrain</code> learned from the service's own ledger. Every policy "
        "is valued by its true incremental value per audience member on the same audience: "
        "the live service as served (with exploration) and greedy, the same service frozen at "
        "week 0, random offers, the observable bound (the best any model of the observable "
        "features could do) and the oracle. Right: the off-policy estimate from the week's "
        "logged decisions beside the truth." + closed
    )
    return section("Closed loop (simulation)", intro,
                   row(figure_tag(report.figures["loop"], "closed loop weekly values")),
                   table_html(report.tables["loop"]))  # fmt: skip


def render_html(report: Report) -> str:
    """The report page as one HTML string."""
    t, fig = report.tables, report.figures
    head = (f"<h1>Customer lifecycle report</h1><p class='meta'>Data as of "
            f"<b>{report.as_of:%Y-%m-%d %H:%M} UTC</b> · {report.customers:,} customers · "
            f"models: {html.escape(report.models_source)}</p>{_facts(report)}")  # fmt: skip
    if "clv_by_stage" not in t and report.notes.get("clv"):
        head += f"<p class='note'>{html.escape(report.notes['clv'])}</p>"
    sections = [
        section("Stage funnel", "Where customers are in their lifecycle now, by transparent "
                 "rules over their own activity.",
                 row(figure_tag(fig["funnel"], "stage funnel"), table_html(t["funnel"]))),
        section("Churn risk", "Predicted probability of churning (no activity) within the "
                 "horizon, for customers who have bought and are still active.",
                 row(figure_tag(fig["risk"], "churn risk"), table_html(t["risk"]))),
        section("Top churn reasons", "What pushes the riskiest customers' scores up most "
                 f"(from the model's own feature contributions, for the "
                 f"{int(report.facts.get('reason_customers', 0)):,} riskiest customers).",
                 row(figure_tag(fig["reasons"], "churn reasons"), table_html(t["reasons"]))),
        _clv(report),
    ]  # fmt: skip
    if "policy" in t:
        sections.append(section(
            "Offer policy by stage", "The offer with the highest expected incremental value "
            "(uplift × value − cost) that the catalog allows for the stage, or nothing. These "
            "values are the model's predictions; the policy value under Model metrics is what "
            "past campaigns support.",
            row(figure_tag(fig["offer_mix"], "offers by stage"),
                 figure_tag(fig["value"], "value by stage")),
            table_html(t["policy"])))  # fmt: skip
    sections.append(_loop(report))
    sections.append(section("Model metrics", "Measured on later data than the models were "
                             "trained on, beside simple baselines.", _metrics(report)))  # fmt: skip
    body = head + "".join(sections)
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>Customer lifecycle report</title><style>{CSS}</style></head>"
            f"<body>{body}</body></html>")  # fmt: skip


def write_report(report: Report, path: str | Path) -> Path:
    """Write :func:`render_html` to ``path`` (creating its folder); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report), encoding="utf-8")
    return path
