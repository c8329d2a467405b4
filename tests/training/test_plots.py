"""Every plot renders headless on small data, with a title and axis labels, and saves a PNG."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from training import plots
from training.metrics import confusion, qini_curve

STAGES = ["awareness", "engagement", "evaluation", "purchase", "retention", "churned"]


def _binary(seed: int, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.uniform(size=n)
    return (rng.uniform(size=n) < p).astype(int), p


def _reliability():
    y, p = _binary(0)
    return plots.reliability_diagram(y, p, bins=5, label="lgbm")


def _reliabilities():
    return plots.reliability_diagrams({"raw": _binary(1), "calibrated": _binary(2)})


def _gains():
    return plots.gains_chart({"lgbm": _binary(3), "baseline": _binary(4)})


def _confusion():
    rng = np.random.default_rng(5)
    truth, pred = rng.choice(STAGES, 100), rng.choice(STAGES, 100)
    return plots.confusion_heatmap(confusion(truth, pred, STAGES))


def _confusion_counts():
    table = confusion(["a", "b", "b"], ["a", "a", "b"], ["a", "b", "c"])
    return plots.confusion_heatmap(table, normalize=False)


def _qini():
    rng = np.random.default_rng(6)
    y, t, s = rng.integers(0, 2, 300), rng.integers(0, 2, 300), rng.uniform(size=300)
    return plots.qini_plot({"discount": qini_curve(y, t, s), "bundle": qini_curve(y, t, -s)})


def _importance():
    names = [f"feature_{i}_30d_amount" for i in range(30)]
    series = pd.Series(np.random.default_rng(7).normal(size=30), index=names, name="gain")
    return plots.feature_importance_plot(series, top=12)


def _funnel():
    counts = pd.Series([40, 25, 10, 8, 30, 12], index=pd.Index(STAGES, name="stage"))
    return plots.stage_funnel_plot(pd.DataFrame({"customers": counts, "share": counts / 125}))


def _transitions():
    rng = np.random.default_rng(8)
    counts = rng.integers(0, 20, (len(STAGES) + 1, len(STAGES)))
    matrix = pd.DataFrame(counts, index=pd.Index(["new", *STAGES], name="from"),
                          columns=pd.Index(STAGES, name="to"))  # fmt: skip
    return plots.transition_heatmap(matrix.div(matrix.sum(axis=1), axis=0))


def _policy_values():
    values = pd.DataFrame({
        "policy": ["logging", "ips", "snips", "dr"],
        "estimate": [0.10, 0.14, 0.13, 0.135],
        "lo": [0.09, 0.11, 0.115, 0.12],
        "hi": [0.11, 0.17, 0.145, 0.15],
        "true": [0.10, 0.132, 0.132, 0.132],
    })  # fmt: skip
    return plots.policy_value_plot(values)


def _cohorts():
    months = pd.Index([0, 1, 2], name="months_since_first_purchase")
    table = pd.DataFrame([[1.0, 0.4, 0.3], [1.0, 0.5, np.nan]], index=["2025-01", "2025-02"],
                         columns=months)  # fmt: skip
    return plots.cohort_retention_plot(table)


def _stage_rates():
    table = pd.DataFrame({"customers": [10, 30, 5], "churn_rate": [0.1, 0.05, 0.4]},
                         index=["purchase", "retention", "at_risk"])  # fmt: skip
    return plots.stage_rate_plot(table)


def _risk():
    return plots.risk_histogram(np.random.default_rng(10).beta(1, 8, 500))


def _reasons():
    table = pd.DataFrame({"customers": [50, 20], "share": [0.5, 0.2]}, index=["recency", "nps"])
    return plots.reasons_plot(table)


def _offer_mix():
    mix = pd.DataFrame({"up": [0.6, 0.0], "ret": [0.1, 0.5], "no offer": [0.3, 0.5]},
                       index=["retention", "at_risk"])  # fmt: skip
    return plots.offer_mix_plot(mix)


def _value_by_stage():
    table = pd.DataFrame({"expected_value_mean": [2.0, 0.5], "expected_value_total": [600, 20]},
                         index=["retention", "at_risk"])  # fmt: skip
    return plots.value_by_stage_plot(table)


def _uplift_by_offer():
    table = pd.DataFrame({"predicted": [0.05, -0.01], "observed": [0.07, 0.0], "se": [0.02, 0.01],
                          "true": [0.06, -0.005]}, index=["up", "ret"])  # fmt: skip
    return plots.uplift_by_offer_plot(table)


BUILDERS = {
    "reliability_diagram": _reliability,
    "reliability_diagrams": _reliabilities,
    "gains_chart": _gains,
    "confusion_heatmap": _confusion,
    "confusion_heatmap_counts": _confusion_counts,
    "qini_plot": _qini,
    "feature_importance_plot": _importance,
    "stage_funnel_plot": _funnel,
    "transition_heatmap": _transitions,
    "policy_value_plot": _policy_values,
    "cohort_retention_plot": _cohorts,
    "stage_rate_plot": _stage_rates,
    "risk_histogram": _risk,
    "reasons_plot": _reasons,
    "offer_mix_plot": _offer_mix,
    "value_by_stage_plot": _value_by_stage,
    "uplift_by_offer_plot": _uplift_by_offer,
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_plot_renders_with_title_and_labels_and_saves(name, tmp_path):
    fig = BUILDERS[name]()
    assert isinstance(fig, Figure)
    FigureCanvasAgg(fig).draw()
    ax = fig.axes[0]
    assert ax.get_title() and ax.get_xlabel()
    if name not in ("feature_importance_plot", "reasons_plot"):  # bars labelled by feature
        assert ax.get_ylabel()
    path = plots.save_figure(fig, tmp_path / "sub" / f"{name}.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000


def test_overlays_draw_one_line_per_model_and_a_legend():
    fig = _gains()
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["random", "lgbm", "baseline"]
    labels = [t.get_text() for t in _reliabilities().axes[0].get_legend().get_texts()]
    assert labels[0] == "perfectly calibrated" and labels[1].startswith("raw (ECE ")


def test_reliability_diagram_draws_into_a_given_axes():
    fig = Figure()
    left, right = fig.subplots(1, 2)
    y, p = _binary(9)
    assert plots.reliability_diagram(y, p, ax=right) is fig
    assert right.get_title() == "Reliability diagram" and not left.lines


def test_feature_importance_keeps_the_top_by_absolute_value():
    series = pd.Series({"a": 0.1, "b": -3.0, "c": 2.0, "d": 0.5})
    ax = plots.feature_importance_plot(series, top=2).axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["c", "b"]  # largest on top


def test_plots_leave_pyplot_alone():
    _funnel()
    pyplot = sys.modules.get("matplotlib.pyplot")
    assert pyplot is None or not pyplot.get_fignums()


def _cell_texts(fig: Figure) -> list[str]:
    return [t.get_text() for t in fig.axes[0].texts]


def test_heatmaps_write_counts_as_integers_and_shares_with_decimals():
    table = confusion(["a", "b", "b"], ["a", "a", "b"], ["a", "b"])
    assert _cell_texts(plots.confusion_heatmap(table, normalize=False)) == ["1", "0", "1", "1"]
    assert _cell_texts(plots.confusion_heatmap(table)) == ["1.00", "0.00", "0.50", "0.50"]
    counts = pd.DataFrame([[3, 0], [1, 2]], index=["new", "a"], columns=["a", "b"])
    assert _cell_texts(plots.transition_heatmap(counts)) == ["3", "0", "1", "2"]
    assert _cell_texts(plots.transition_heatmap(counts / 3, normalized=True))[0] == "1.00"


def test_figure_panel_tiles_figures_as_images(tmp_path):
    panel = plots.figure_panel({"funnel": _funnel(), "risk": _risk(), "mix": _offer_mix()},
                               title="Report")  # fmt: skip
    FigureCanvasAgg(panel).draw()
    assert len(panel.axes) == 4 and sum(bool(ax.images) for ax in panel.axes) == 3
    assert panel.get_suptitle() == "Report"
    path = plots.save_figure(panel, tmp_path / "panel.png")
    assert path.stat().st_size > 10_000
