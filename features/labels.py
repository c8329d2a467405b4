"""Labels, each looking only at ``(as_of, as_of + horizon]`` (DESIGN section 4).

Churn has two definitions (``inactivity``: no qualifying activity in the horizon; ``cancel``:
a subscription cancel in the horizon); the future stage is the rule stage at ``as_of +
horizon``; an offer response is the exposure's outcome within its response window.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from features.builder import build_features, event_arrays, to_utc
from features.families import DAY_US, R
from features.stages import StageRules, assign_stages

ChurnDefinition = Literal["inactivity", "cancel"]
QUALIFYING_ROLES = ("visit", "engagement", "intent", "purchase", "support")


def _window_counts(
    events: pd.DataFrame, start: pd.Timestamp, days: int, roles: Sequence[str]
) -> tuple[np.ndarray, pd.Index]:
    """Per customer code: events of ``roles`` in ``(start, start + days]``."""
    ev, labels = event_arrays(events, start + pd.Timedelta(days=days))
    begin = ev.as_of - days * DAY_US
    m = (ev.ts > begin) & np.isin(ev.role, [R[r] for r in roles])
    return np.bincount(ev.code[m], minlength=ev.n), labels


def churn_labels(
    events: pd.DataFrame,
    customer_ids: pd.Series | Sequence[str],
    as_of: object,
    horizon_days: int,
    definition: ChurnDefinition = "inactivity",
    qualifying_roles: Sequence[str] = QUALIFYING_ROLES,
) -> np.ndarray:
    """1 where the customer churns within ``horizon_days`` after ``as_of``, else 0.

    ``inactivity``: no event of ``qualifying_roles`` in ``(as_of, as_of + horizon]``;
    ``cancel``: a ``subscription_cancel`` event in that window. Returns int8, aligned with
    ``customer_ids``.
    """
    roles = ("subscription_cancel",) if definition == "cancel" else tuple(qualifying_roles)
    counts, labels = _window_counts(events, to_utc(as_of), horizon_days, roles)
    pos = labels.get_indexer(pd.Index(customer_ids, dtype="str"))
    found = np.where(pos >= 0, counts[np.maximum(pos, 0)], 0)
    hit = found > 0
    return (hit if definition == "cancel" else ~hit).astype(np.int8)


def future_stage(
    events: pd.DataFrame,
    customer_ids: pd.Series | Sequence[str],
    as_of: object,
    horizon_days: int,
    customers: pd.DataFrame | None = None,
    rules: StageRules | None = None,
) -> pd.Series:
    """The rule stage of each customer at ``as_of + horizon`` (from events up to then)."""
    later = to_utc(as_of) + pd.Timedelta(days=horizon_days)
    feats = build_features(events, later, customers=customers)
    stages = assign_stages(feats, rules).set_axis(feats["customer_id"])
    return stages.reindex(pd.Index(customer_ids, dtype="str")).reset_index(drop=True)


def offer_responses(
    exposures: pd.DataFrame,
    events: pd.DataFrame | None = None,
    window_days: int = 14,
) -> pd.DataFrame:
    """One row per exposure: its outcome within ``window_days`` of ``sent_at`` and propensity.

    Uses the explicit ``converted`` / ``revenue`` columns where present; otherwise derives
    them from purchase events in ``(sent_at, sent_at + window]`` (any purchase converts).
    Output columns: exposure_id, customer_id, offer_id, sent_at, propensity, converted,
    revenue.
    """
    cols = ["exposure_id", "customer_id", "offer_id", "sent_at", "propensity"]
    out = exposures[cols].reset_index(drop=True)
    if "converted" in exposures.columns and exposures["converted"].notna().all():
        out["converted"] = exposures["converted"].astype(bool).to_numpy()
        revenue = exposures.get("revenue", pd.Series(0.0, index=exposures.index))
        out["revenue"] = revenue.fillna(0.0).to_numpy(dtype=float)
        return out
    if events is None:
        raise ValueError("exposures have no converted column: pass events to derive outcomes")
    return out.join(_derived_outcomes(out, events, window_days))


def _derived_outcomes(out: pd.DataFrame, events: pd.DataFrame, window_days: int) -> pd.DataFrame:
    buys = events[events["role"] == "purchase"][["customer_id", "timestamp", "amount"]]
    pairs = (
        out[["customer_id", "sent_at"]]
        .reset_index()
        .merge(buys.astype({"customer_id": "str"}), on="customer_id", how="inner")
    )
    inside = (pairs["timestamp"] > pairs["sent_at"]) & (
        pairs["timestamp"] <= pairs["sent_at"] + pd.Timedelta(days=window_days)
    )
    hits = pairs[inside].groupby("index")["amount"].agg(["size", "sum"])
    result = pd.DataFrame(index=out.index)
    result["converted"] = hits["size"].reindex(out.index, fill_value=0).to_numpy() > 0
    result["revenue"] = hits["sum"].reindex(out.index, fill_value=0.0).to_numpy(dtype=float)
    return result
