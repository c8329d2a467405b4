"""Customer lifetime value in the training run (issue 13): both estimators on one later holdout.

Calendar: the holdout is the latest as-of whose CLV horizon lies inside the data (the data's
end minus ``clv_horizon_days``), the training dates the ``train_snapshots`` before it,
``snapshot_every_days`` apart, none before ``first_as_of``. Their label windows overlap the
holdout's in time (a one-year horizon would otherwise need three years of data), so the
holdout figures can flatter the learned model when the whole market moves; the simulator's
truth beyond the log's end (benchmarks/bench_clv.py) has no such overlap.

Label: the realised discounted margin (``features.labels.future_margin``). Primary metric:
the normalised Gini of the realised values ordered by the estimate (``PRIMARY["clv"]``); the
estimator with the higher one on the holdout is the champion, the other and "past spend x a
constant" are its baselines.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from features.labels import future_margin
from training.calendar import bounds
from training.datasets import Tables, build_snapshot
from training.metrics import value_curve, value_metrics
from training.models._lgbm import NON_FEATURES, feature_columns
from training.models.clv import CLVModel, ProbabilisticCLV

LABEL = "clv_realised"
PAST = "spend_365d_amount"  # the past-spend baseline's column


class CLVSkipped(RuntimeError):
    """Neither CLV estimator can be evaluated on this data (the message says why)."""


def clv_dates(tables: Tables, dataset) -> list[pd.Timestamp]:
    """The labelled as-of dates, oldest first; the last one is the holdout."""
    first, _ = bounds(tables.start, tables.end, dataset)
    last = (tables.end - pd.Timedelta(days=dataset.clv_horizon_days)).floor("D")
    step = pd.Timedelta(days=dataset.snapshot_every_days)
    dates = [last - step * k for k in reversed(range(dataset.train_snapshots + 1))]
    return [d for d in dates if d >= first]


def clv_frame(tables: Tables, dataset, dates: list[pd.Timestamp]) -> pd.DataFrame:
    """Every customer's vector at each date (the training builder) and its realised CLV."""
    parts = []
    for as_of in dates:
        frame = build_snapshot(tables, as_of, dataset)
        frame[LABEL] = future_margin(tables.events, frame["customer_id"], as_of,
                                     dataset.clv_horizon_days, dataset.clv_annual_discount_rate,
                                     dataset.clv_margin_share)  # fmt: skip
        parts.append(frame)
    return pd.concat(parts, ignore_index=True)


def estimator_inputs(frame: pd.DataFrame) -> list[str]:
    """The learned model's input columns: the feature vector, non-constant."""
    cols = feature_columns(frame, (*NON_FEATURES, LABEL))
    return [c for c in cols if c == "stage" or frame[c].nunique(dropna=False) > 1]


def evaluate_clv(tables: Tables, config) -> dict:
    """Fit what the data allows, score both estimators and the past-spend baseline on the
    holdout. Returns ``champion`` (name), ``estimators``, ``metrics`` (name -> value
    metrics), ``curves`` (name -> value gains curve), ``inputs``, ``holdout`` rows, and
    ``skipped`` (estimator -> why)."""
    d = config.dataset
    dates = clv_dates(tables, d)
    if not dates:
        raise CLVSkipped(
            f"the CLV horizon ({d.clv_horizon_days} days) leaves no labelled as-of date in the "
            f"data ({tables.start:%Y-%m-%d} .. {tables.end:%Y-%m-%d}): a shorter "
            f"dataset.clv_horizon_days or more history"
        )
    frame = clv_frame(tables, d, dates)
    holdout = frame[frame["as_of"] == dates[-1]].reset_index(drop=True)
    train = frame[frame["as_of"] < dates[-1]]
    y = holdout[LABEL].to_numpy()
    estimators, skipped = {}, {}
    column = f"btyd_clv_{d.clv_horizon_days}d"
    if column in holdout and holdout[column].notna().any():
        estimators["probabilistic"] = ProbabilisticCLV(column).fit(holdout)
    else:
        skipped["probabilistic"] = "no buy-till-you-die CLV column (btyd_features off or no fit)"
    inputs = estimator_inputs(train) if len(train) else []
    if len(train) and train[LABEL].sum() > 0:
        params = {"random_state": config.seed, **config.clv}
        estimators["learned"] = CLVModel(**params).fit(train[inputs], train[LABEL],
                                                       time=train["as_of"],
                                                       groups=train["customer_id"])  # fmt: skip
    else:
        skipped["learned"] = (
            f"no training snapshot with a realised value: the CLV horizon "
            f"({d.clv_horizon_days} days) leaves {len(dates)} labelled as-of date(s) in the data "
            f"({tables.start:%Y-%m-%d} .. {tables.end:%Y-%m-%d}); it needs 2"
        )
    if not estimators:
        raise CLVSkipped("; ".join(f"{k}: {v}" for k, v in skipped.items()))
    scores = {name: est.predict(holdout[inputs] if name == "learned" else holdout)
              for name, est in estimators.items()}  # fmt: skip
    scores["past_spend"] = _past_spend(train, holdout)
    metrics = {name: value_metrics(y, s) for name, s in scores.items()}
    champion = max(estimators, key=lambda m: np.nan_to_num(metrics[m]["normalized_gini"], nan=-1))
    curves = {name: value_curve(y, s) for name, s in scores.items()}
    return {"champion": champion, "estimators": estimators, "metrics": metrics,
            "curves": curves, "inputs": inputs, "holdout": holdout, "skipped": skipped,
            "dates": dates}  # fmt: skip


def _past_spend(train: pd.DataFrame, holdout: pd.DataFrame) -> np.ndarray:
    """Past year's spend x the constant that matched the training snapshots' totals (the
    textbook baseline; margin share and discounting are inside the constant)."""
    past = holdout[PAST].to_numpy(dtype=np.float64) if PAST in holdout else np.zeros(len(holdout))
    if len(train) and PAST in train and train[PAST].sum() > 0:
        return past * float(train[LABEL].sum() / train[PAST].sum())
    return past


def value_gains_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> Figure:
    """Share of the realised value captured by the top x % of customers per estimate."""
    fig = Figure(figsize=(5, 4))
    ax = fig.subplots()
    for name, (share, captured) in curves.items():
        ax.plot(share, captured, label=name)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="random")
    ax.set_xlabel("share of customers, highest estimate first")
    ax.set_ylabel("share of realised value")
    ax.legend(loc="lower right")
    return fig
