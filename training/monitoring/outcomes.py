"""Do the predictions come true? Realised calibration of a churn cohort whose horizon has
passed, and realised offer performance against the held-out control arm.

**Calibration by decile**: the cohort's customers are cut into ``bins`` equal-frequency bins
of predicted probability (``training.metrics.reliability_table``: tied scores stay together);
per bin the mean predicted probability, the observed churn rate and the count. ECE (expected
calibration error) is the count-weighted mean of ``|mean predicted - observed rate|``.

**Offer performance**: per offer, the conversion rate ``p1`` of its ``n1`` exposures against
the control arm's ``p0`` of ``n0`` (exposures with no offer) in the same window; the lift
``p1 - p0`` with the normal (Wald) interval ``lift +- z * sqrt(p1 (1 - p1) / n1 + p0 (1 - p0)
/ n0)``. The rates are plain shares: with a targeting policy (offers sent to whom the model
picked) they compare different customers, so read them as a health signal beside the
off-policy estimates of ``training.ope``, not as the offers' causal effect.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from training.metrics import reliability_table

CONTROL = "control"


def realised_calibration(predicted, observed, bins: int = 10) -> tuple[pd.DataFrame, float]:
    """Calibration of ``predicted`` probabilities against ``observed`` 0/1 outcomes.

    Returns
    -------
    (table, ece): one row per non-empty bin, lowest predictions first: ``decile`` (1-based),
    ``mean_predicted``, ``observed_rate``, ``count``, ``gap`` (observed - predicted); and the
    ECE (NaN without rows).
    """
    p = np.asarray(predicted, dtype=float)
    y = np.asarray(observed, dtype=float)
    table = reliability_table(y, p, bins=bins, strategy="quantile")
    table = pd.DataFrame({
        "decile": np.arange(1, len(table) + 1),
        "mean_predicted": table["mean_p"].to_numpy(dtype=float),
        "observed_rate": table["observed_rate"].to_numpy(dtype=float),
        "count": table["count"].to_numpy(dtype=int),
    })  # fmt: skip
    table["gap"] = table["observed_rate"] - table["mean_predicted"]
    if table.empty:
        return table, float("nan")
    ece = float(np.average(table["gap"].abs(), weights=table["count"]))
    return table, ece


def offer_performance(exposures: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Realised conversion of every offer against the control arm (module docstring).

    Parameters
    ----------
    exposures : ``offer_id`` (missing = the control arm), ``converted`` (bool or 0/1) and,
        optionally, ``revenue``; one row per exposure whose response window has closed.
    alpha : the interval is ``1 - alpha``.

    Returns
    -------
    DataFrame, the control arm first then offers by id: ``arm``, ``sends``, ``conversions``,
    ``conversion_rate``, ``revenue_per_send`` (NaN without revenue), ``lift`` (vs control;
    NaN for the control row or without a control arm), ``lift_lo``, ``lift_hi``.
    """
    arm = exposures["offer_id"].astype("object").where(exposures["offer_id"].notna(), CONTROL)
    converted = exposures["converted"].astype(float).fillna(0.0)
    revenue = exposures["revenue"] if "revenue" in exposures else pd.Series(np.nan, arm.index)
    frame = pd.DataFrame({"arm": arm.astype(str).to_numpy(), "y": converted.to_numpy(),
                          "revenue": pd.to_numeric(revenue).astype(float).to_numpy()})  # fmt: skip
    grouped = frame.groupby("arm", sort=True)
    table = grouped.agg(
        sends=("y", "size"),
        conversions=("y", "sum"),
        conversion_rate=("y", "mean"),
        revenue_per_send=("revenue", "mean"),
    )
    order = [CONTROL] * (CONTROL in table.index) + [a for a in table.index if a != CONTROL]
    table = table.reindex(order).reset_index()
    table["conversions"] = table["conversions"].astype(int)
    lift, lo, hi = _lifts(table, alpha)
    return table.assign(lift=lift, lift_lo=lo, lift_hi=hi)


def _lifts(table: pd.DataFrame, alpha: float) -> tuple[np.ndarray, ...]:
    """Each arm's rate minus the control's, with the normal interval (NaN for control)."""
    n = len(table)
    if CONTROL not in set(table["arm"]):
        return (np.full(n, np.nan),) * 3
    control = table[table["arm"] == CONTROL].iloc[0]
    p0, n0 = float(control["conversion_rate"]), float(control["sends"])
    p1, n1 = table["conversion_rate"].to_numpy(float), table["sends"].to_numpy(float)
    lift = p1 - p0
    se = np.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
    z = stats.norm.ppf(1 - alpha / 2)
    is_control = (table["arm"] == CONTROL).to_numpy()
    lift, se = np.where(is_control, np.nan, lift), np.where(is_control, np.nan, se)
    return lift, lift - z * se, lift + z * se
