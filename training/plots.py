"""Evaluation plots for training runs, notebooks and reports.

Every function builds a :class:`matplotlib.figure.Figure` with the object API (no pyplot, no
global state) and returns it, so it works headless and in threads. Functions taking ``ax`` draw
into that axes instead and return its figure. :func:`save_figure` writes a PNG.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import matplotlib
import matplotlib.image
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from training.metrics import expected_calibration_error, gains_table, reliability_table

FIGSIZE = (6.4, 4.8)
DPI = 110
MUTED = "0.45"  # reference lines (random, perfect calibration)
HEATMAP_CMAP = "Blues"


def _axes(ax: Axes | None = None, figsize: tuple[float, float] = FIGSIZE) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.get_figure(root=True), ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _style(ax: Axes, title: str, xlabel: str, ylabel: str, legend: bool = False) -> None:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.set_axisbelow(True)
    if legend:
        ax.legend(loc="best", fontsize="small", frameon=False)


def _unit_square(ax: Axes) -> None:
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG (dpi 110, tight bounding box); creates the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI, bbox_inches="tight")
    return path


# --- churn ----------------------------------------------------------------------------------


def _reliability_curve(ax: Axes, y, p, bins: int, label: str | None) -> None:
    table = reliability_table(y, p, bins=bins)
    ece = expected_calibration_error(y, p, bins=bins)
    name = f"{label} (ECE {ece:.3f})" if label else f"ECE {ece:.3f}"
    ax.plot(table["mean_p"], table["observed_rate"], marker="o", label=name)


def reliability_diagram(
    y, p, bins: int = 10, label: str | None = None, ax: Axes | None = None
) -> Figure:
    """Observed positive rate against mean predicted probability per equal-frequency bin,
    with the diagonal of perfect calibration."""
    return reliability_diagrams({label or "model": (y, p)}, bins=bins, ax=ax)


def reliability_diagrams(
    curves: Mapping[str, tuple], bins: int = 10, ax: Axes | None = None
) -> Figure:
    """Several models' reliability curves overlaid; ``curves`` maps name -> ``(y, p)``."""
    fig, ax = _axes(ax)
    ax.plot([0, 1], [0, 1], ls="--", color=MUTED, label="perfectly calibrated")
    for name, (y, p) in curves.items():
        _reliability_curve(ax, y, p, bins, name)
    _unit_square(ax)
    _style(ax, "Reliability diagram", "mean predicted probability", "observed rate", True)
    return fig


def gains_chart(curves: Mapping[str, tuple], steps: int = 100, ax: Axes | None = None) -> Figure:
    """Cumulative gains: share of positives captured against share targeted, best first;
    ``curves`` maps name -> ``(y, score)``."""
    fig, ax = _axes(ax)
    ax.plot([0, 1], [0, 1], ls="--", color=MUTED, label="random")
    for name, (y, p) in curves.items():
        table = gains_table(y, p, steps=steps)
        ax.plot(table["share_targeted"], table["share_of_positives_captured"], label=name)
    _unit_square(ax)
    _style(ax, "Cumulative gains", "share targeted", "share of positives captured", True)
    return fig


# --- heatmaps -------------------------------------------------------------------------------


def _annotate(ax: Axes, values: np.ndarray, fmt: str) -> None:
    top = np.nanmax(values) if values.size else 0.0
    for (i, j), value in np.ndenumerate(values):
        color = "white" if top > 0 and value > 0.6 * top else "black"
        ax.text(j, i, format(value, fmt), ha="center", va="center", color=color, fontsize=8)


def _heatmap(ax: Axes, table: pd.DataFrame, shares: bool, colorbar_label: str) -> None:
    values = table.to_numpy(dtype=float)
    fmt = ".2f" if shares else ".0f"
    image = ax.imshow(values, cmap=HEATMAP_CMAP, aspect="auto")
    xlabels = [str(c) for c in table.columns]
    ax.set_xticks(range(table.shape[1]), xlabels, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(table.shape[0]), [str(i) for i in table.index])
    _annotate(ax, values, fmt)
    ax.get_figure(root=True).colorbar(image, ax=ax, label=colorbar_label)


def _row_shares(table: pd.DataFrame) -> pd.DataFrame:
    totals = table.sum(axis=1).replace(0, np.nan)
    return table.div(totals, axis=0).fillna(0.0)


def confusion_heatmap(confusion_df: pd.DataFrame, normalize: bool = True) -> Figure:
    """Heatmap of a :func:`training.metrics.confusion` frame (rows true, columns predicted);
    with ``normalize`` each row shows shares of that true class."""
    fig, ax = _axes(figsize=(7.2, 6.0))
    table = _row_shares(confusion_df) if normalize else confusion_df
    _heatmap(ax, table, normalize, "share of true class" if normalize else "count")
    title = "Confusion matrix" + (" (row shares)" if normalize else " (counts)")
    ax.set_title(title)
    ax.set_xlabel(confusion_df.columns.name or "predicted")
    ax.set_ylabel(confusion_df.index.name or "true")
    return fig


def _looks_like_counts(table: pd.DataFrame) -> bool:
    values = table.to_numpy(dtype=float)
    return bool(values.size) and np.allclose(values, np.round(values)) and values.max() > 1


def transition_heatmap(matrix_df: pd.DataFrame, normalized: bool | None = None) -> Figure:
    """Heatmap of :func:`features.stages.transition_matrix` (rows: stage before, columns:
    stage after). ``normalized``: cells are row shares (True) or counts (False); None = detect
    (counts when every cell is a whole number and some exceed 1)."""
    fig, ax = _axes(figsize=(7.2, 6.0))
    shares = not _looks_like_counts(matrix_df) if normalized is None else normalized
    _heatmap(ax, matrix_df, shares, "share of row" if shares else "count")
    ax.set_title("Stage transitions")
    ax.set_xlabel(f"stage after ({matrix_df.columns.name or 'to'})")
    ax.set_ylabel(f"stage before ({matrix_df.index.name or 'from'})")
    return fig


# --- offers ---------------------------------------------------------------------------------


def qini_plot(curves: Mapping[str, pd.DataFrame], ax: Axes | None = None) -> Figure:
    """Qini curves (``training.metrics.qini_curve`` frames, by name), each with its random
    line (dashed, same colour) from (0, 0) to its end point."""
    fig, ax = _axes(ax)
    ax.axhline(0.0, color=MUTED, lw=0.8)
    for name, curve in curves.items():
        x, q = curve["share_targeted"], curve["incremental_conversions"]
        (line,) = ax.plot(x, q, label=name)
        ax.plot([0, 1], [0, q.iloc[-1]], ls="--", color=line.get_color(), alpha=0.6)
    ax.set_xlim(0, 1)
    ax.plot([], [], ls="--", color=MUTED, label="random targeting")
    _style(ax, "Qini curve", "share targeted", "incremental conversions", True)
    return fig


def policy_value_plot(values: pd.DataFrame) -> Figure:
    """Estimated value per policy with its interval (bars and error bars); an optional
    ``true`` column is drawn as markers. ``values``: ``policy, estimate, lo, hi[, true]``."""
    fig, ax = _axes()
    x = np.arange(len(values))
    est = values["estimate"].to_numpy(dtype=float)
    err = np.vstack([est - values["lo"].to_numpy(float), values["hi"].to_numpy(float) - est])
    ax.bar(x, est, alpha=0.8, label="estimate")
    ax.errorbar(x, est, yerr=err, fmt="none", ecolor="0.2", capsize=4, label="interval")
    if "true" in values and values["true"].notna().any():
        ax.scatter(x, values["true"], marker="D", s=40, color="C3", edgecolor="white",
                   zorder=3, label="true value")  # fmt: skip
    ax.set_xticks(x, [str(p) for p in values["policy"]], rotation=30, ha="right")
    _style(ax, "Policy value", "policy", "value per decision", True)
    return fig


def loop_figure(weeks: pd.DataFrame) -> Figure:
    """The closed loop's weekly curves (``lifecycle simulate-loop``): each policy's true
    value per audience member, and the OPE estimate of the live greedy policy with its
    interval beside its truth. ``weeks``: one row per week with the columns of
    :class:`serving.closed_loop.Week`."""
    fig = Figure(figsize=(11, 4.4), layout="constrained")
    left, right = fig.subplots(1, 2)
    x = weeks["week"].to_numpy()
    lines = {"oracle": ("oracle (truth)", ":"), "bound": ("observable bound", "--"),
             "greedy": ("live service, greedy", "-"), "served": ("live service, as served", "-"),
             "frozen": ("frozen at week 0", "-."), "random": ("random offers", ":")}  # fmt: skip
    for column, (label, style) in lines.items():
        left.plot(x, weeks[column], ls=style, marker="o", ms=3, label=label)
    promoted = weeks.loc[weeks["promoted"].fillna(False).astype(bool), "week"] + 1
    for i, w in enumerate(promoted):  # the new champion serves from the next week
        left.axvline(w, color=MUTED, lw=0.6, alpha=0.5, label="offers promoted" if i == 0 else None)
    if "drift" in weeks:  # the world changed at these weeks' start
        changed = weeks[weeks["drift"].fillna("").astype(str) != ""]
        for w, what in zip(changed["week"], changed["drift"], strict=True):
            left.axvline(w - 0.5, color="C3", ls="--", lw=1.0, label=f"world: {what}")
    left.axhline(0.0, color=MUTED, lw=0.8)
    _style(left, "True incremental value per audience member", "week",
           "value per audience member", True)  # fmt: skip
    est = weeks["ope_greedy"].to_numpy(float)
    err = np.vstack([est - weeks["ope_greedy_lo"].to_numpy(float),
                     weeks["ope_greedy_hi"].to_numpy(float) - est])  # fmt: skip
    right.errorbar(x, est, yerr=err, fmt="o", capsize=3, label="OPE estimate (IPS, 95%)")
    right.plot(x, weeks["greedy"], marker="D", ls="", color="C3", label="truth")
    right.axhline(0.0, color=MUTED, lw=0.8)
    _style(right, "Off-policy estimate of the greedy policy", "week", "value per audience member",
           True)  # fmt: skip
    return fig


# --- features and stages --------------------------------------------------------------------


def feature_importance_plot(importances: pd.Series, top: int = 20) -> Figure:
    """Horizontal bars of the ``top`` features by absolute importance, largest on top."""
    order = importances.abs().sort_values(ascending=False).index[:top]
    shown = importances.loc[order][::-1]
    fig, ax = _axes(figsize=(6.4, max(2.5, 0.3 * len(shown) + 1.2)))
    ax.barh([str(i) for i in shown.index], shown.to_numpy(dtype=float))
    ax.axvline(0.0, color=MUTED, lw=0.8)
    ax.tick_params(axis="y", labelsize="small")
    _style(ax, f"Feature importance (top {len(shown)})", importances.name or "importance", "")
    ax.grid(False, axis="y")
    return fig


def stage_funnel_plot(funnel_df: pd.DataFrame) -> Figure:
    """Customers per stage (:func:`features.stages.stage_funnel`), in lifecycle order, each bar
    labelled with its share."""
    fig, ax = _axes()
    customers = funnel_df["customers"].to_numpy(dtype=float)
    bars = ax.bar([str(s) for s in funnel_df.index], customers)
    share = funnel_df["share"] if "share" in funnel_df else customers / max(customers.sum(), 1)
    ax.bar_label(bars, labels=[f"{s:.0%}" for s in share], fontsize="small", padding=2)
    ax.tick_params(axis="x", labelrotation=30)
    ax.margins(y=0.12)
    _style(ax, "Customers per lifecycle stage", "stage", "customers")
    ax.grid(False, axis="x")
    return fig


def cohort_retention_plot(table: pd.DataFrame) -> Figure:
    """One line per first-purchase cohort (:func:`features.summary.cohort_retention`): the
    share active in each month since the first purchase, early cohorts light, late dark."""
    fig, ax = _axes()
    colors = matplotlib.colormaps["viridis_r"](np.linspace(0.15, 0.95, max(len(table), 1)))
    for color, (cohort, row) in zip(colors, table.iterrows(), strict=False):
        ax.plot(row.index.astype(int), row.to_numpy(float), marker=".", color=color, label=cohort)
    ax.set_ylim(0, 1.02)
    _style(ax, "Cohort retention", "months since first purchase", "share active", False)
    ax.legend(title="cohort", fontsize="x-small", ncols=2, frameon=False, loc="upper right")
    return fig


def stage_rate_plot(table: pd.DataFrame, column: str = "churn_rate") -> Figure:
    """A rate per stage as bars labelled with the stage's customers
    (:func:`features.summary.churn_rate_by_stage`: ``customers`` and ``column``)."""
    fig, ax = _axes()
    bars = ax.bar([str(s) for s in table.index], table[column].to_numpy(float), color="C3")
    labels = [f"{v:.0%}\n(n={n:,})" for v, n in zip(table[column], table["customers"], strict=True)]
    ax.bar_label(bars, labels=labels, fontsize="x-small", padding=2)
    ax.tick_params(axis="x", labelrotation=30)
    ax.margins(y=0.2)
    _style(
        ax, f"{column.replace('_', ' ').capitalize()} by stage", "stage", column.replace("_", " ")
    )
    return fig


def risk_histogram(p, bins: int = 20) -> Figure:
    """Distribution of predicted churn probabilities, with their mean marked."""
    fig, ax = _axes()
    p = np.asarray(p, dtype=float)
    ax.hist(p, bins=np.linspace(0, max(float(p.max(initial=0)), 1e-9), bins + 1), color="C3")
    ax.axvline(p.mean() if p.size else 0, color=MUTED, ls="--", label=f"mean {p.mean():.1%}")
    _style(ax, "Churn risk of current customers", "churn probability", "customers", True)
    return fig


def reasons_plot(table: pd.DataFrame) -> Figure:
    """Top churn reasons (:func:`training.insights.top_reasons`): share of at-risk customers
    citing each feature, most cited on top."""
    shown = table["share"][::-1]
    fig, ax = _axes(figsize=(6.4, max(2.5, 0.3 * len(shown) + 1.2)))
    ax.barh([str(i) for i in shown.index], shown.to_numpy(dtype=float), color="C3")
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.tick_params(axis="y", labelsize="small")
    _style(ax, "Top churn reasons", "share of customers citing it", "")
    return fig


def offer_mix_plot(mix: pd.DataFrame) -> Figure:
    """Stacked bars: per stage, the share of customers given each offer
    (:func:`training.insights.offer_mix_by_stage`); "no offer" in grey."""
    fig, ax = _axes(figsize=(7.2, 4.8))
    left = np.zeros(len(mix))
    for k, offer in enumerate(mix.columns):
        share = mix[offer].to_numpy(float)
        color = "0.85" if offer == "no offer" else f"C{k % 10}"
        ax.barh([str(s) for s in mix.index], share, left=left, color=color, label=str(offer))
        left += share
    ax.invert_yaxis()
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    _style(ax, "Offer chosen by the policy, per stage", "share of customers", "stage")
    ax.legend(fontsize="x-small", frameon=False, loc="center left", bbox_to_anchor=(1, 0.5))
    return fig


def value_by_stage_plot(table: pd.DataFrame) -> Figure:
    """Expected incremental value per customer by stage
    (:func:`training.insights.policy_by_stage`), bars labelled with the stage total."""
    fig, ax = _axes()
    bars = ax.bar([str(s) for s in table.index], table["expected_value_mean"].to_numpy(float))
    labels = [f"total {v:,.0f}" for v in table["expected_value_total"]]
    ax.bar_label(bars, labels=labels, fontsize="x-small", padding=2)
    ax.tick_params(axis="x", labelrotation=30)
    ax.margins(y=0.15)
    _style(ax, "Expected value of the policy by stage", "stage", "value per customer")
    return fig


def clv_by_stage_plot(clv_table: pd.DataFrame, risk_table: pd.DataFrame) -> Figure:
    """Per stage, in lifecycle order: the customers' total lifetime value
    (:func:`training.insights.clv_by_stage`, ``clv_total``) beside their value at risk
    (:func:`training.insights.value_at_risk_by_stage`, ``value_at_risk_total``: churn
    probability x CLV over the customers the churn model scores)."""
    stages = [*clv_table.index, *(s for s in risk_table.index if s not in clv_table.index)]
    x = np.arange(len(stages))
    total = clv_table["clv_total"].reindex(stages).fillna(0.0).to_numpy(float)
    at_risk = risk_table["value_at_risk_total"].reindex(stages).fillna(0.0).to_numpy(float)
    fig, ax = _axes()
    ax.bar(x - 0.2, total, 0.4, label="total CLV")
    ax.bar(x + 0.2, at_risk, 0.4, color="C3", label="value at risk (churn probability x CLV)")
    ax.set_xticks(x, [str(s) for s in stages], rotation=30, ha="right")
    _style(ax, "Customer lifetime value by stage", "stage", "value", True)
    ax.grid(False, axis="x")
    return fig


def uplift_by_offer_plot(table: pd.DataFrame) -> Figure:
    """Predicted vs observed uplift per offer (:func:`training.insights.uplift_by_offer`):
    bars for ``predicted`` and ``observed`` (with ``se`` error bars), ``true`` as markers."""
    fig, ax = _axes(figsize=(7.2, 4.8))
    x = np.arange(len(table))
    ax.bar(x - 0.2, table["predicted"], 0.4, label="predicted (mean)")
    ax.bar(x + 0.2, table["observed"], 0.4, yerr=table.get("se"), capsize=3,
           label="observed (weighted)", color="C1")  # fmt: skip
    if "true" in table and table["true"].notna().any():
        ax.scatter(x, table["true"], marker="D", color="C3", zorder=3, label="true")
    ax.axhline(0.0, color=MUTED, lw=0.8)
    ax.set_xticks(x, [str(i) for i in table.index], rotation=30, ha="right")
    _style(ax, "Uplift per offer", "offer", "uplift in conversion probability", True)
    return fig


def figure_panel(figures: Mapping[str, Figure], ncols: int = 2, title: str = "") -> Figure:
    """Several figures in a grid, row by row, each rasterised at :data:`DPI` (e.g. a picture
    of a report); ``figures`` maps a name to each figure (the figures keep their titles)."""
    nrows = -(-len(figures) // ncols)
    panel = Figure(figsize=(6.0 * ncols, 4.4 * nrows), layout="constrained")
    axes = np.atleast_1d(panel.subplots(nrows, ncols)).ravel()
    for ax, fig in zip(axes, figures.values(), strict=False):
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
        buffer.seek(0)
        ax.imshow(matplotlib.image.imread(buffer, format="png"))
    for ax in axes:
        ax.set_axis_off()
    if title:
        panel.suptitle(title, fontsize="x-large")
    return panel
