"""Labels, each looking only at ``(as_of, as_of + horizon]`` (DESIGN section 4).

Churn has several definitions (:func:`churn_outcome`: inactivity, rhythm, contract, cancel,
the user's own labels); the future stage is the rule stage at ``as_of +
horizon``; an offer response is the exposure's outcome within its response window.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from features.builder import build_features, epoch_us, event_arrays, to_utc
from features.families import DAY_US, R, purchase_intervals, recency_and_tenure
from features.stages import StageRules, assign_stages

ChurnDefinition = Literal["inactivity", "rhythm", "contract", "cancel", "labels"]
QUALIFYING_ROLES = ("visit", "engagement", "intent", "purchase", "support")


def _window_counts(
    events: pd.DataFrame, start: pd.Timestamp, days: int, roles: Sequence[str]
) -> tuple[np.ndarray, pd.Index]:
    """Per customer code: events of ``roles`` in ``(start, start + days]``."""
    ev, labels = event_arrays(events, start + pd.Timedelta(days=days))
    begin = ev.as_of - days * DAY_US
    m = (ev.ts > begin) & np.isin(ev.role, [R[r] for r in roles])
    return np.bincount(ev.code[m], minlength=ev.n), labels


def _aligned(values: np.ndarray, labels: pd.Index, ids: pd.Index, fill: object) -> np.ndarray:
    pos = labels.get_indexer(ids)
    return np.where(pos >= 0, values[np.maximum(pos, 0)] if len(values) else fill, fill)


def future_margin(
    events: pd.DataFrame, customer_ids: pd.Series | Sequence[str], as_of: object,
    horizon_days: int, annual_rate: float = 0.1, margin_share: float = 1.0,
) -> np.ndarray:  # fmt: skip
    """The realised customer lifetime value of each customer: ``margin_share`` x the purchase
    amounts in ``(as_of, as_of + horizon]``, each discounted by ``(1 + annual_rate) **
    -(days after as_of / 365)``; 0 without a purchase there (the label of ``CLVModel``)."""
    when = to_utc(as_of)
    ev, labels = event_arrays(events, when + pd.Timedelta(days=horizon_days))
    m = (ev.ts > epoch_us(when)) & (ev.role == R["purchase"])
    days = (ev.ts[m] - epoch_us(when)) / DAY_US
    value = np.nan_to_num(ev.amount[m]) * (1.0 + annual_rate) ** (-days / 365.0)
    total = np.bincount(ev.code[m], weights=value, minlength=ev.n) * margin_share
    return _aligned(total, labels, pd.Index(customer_ids, dtype="str"), 0.0).astype(np.float64)


def churn_labels(
    events: pd.DataFrame,
    customer_ids: pd.Series | Sequence[str],
    as_of: object,
    horizon_days: int,
    definition: ChurnDefinition = "inactivity",
    qualifying_roles: Sequence[str] = QUALIFYING_ROLES,
    **options: object,
) -> np.ndarray:
    """1 where the customer churns within ``horizon_days`` after ``as_of``, else 0 (int8,
    aligned with ``customer_ids``); see :func:`churn_outcome` for the definitions."""
    label, _ = churn_outcome(events, customer_ids, as_of, horizon_days, definition,
                             qualifying_roles, **options)  # fmt: skip
    return np.nan_to_num(label).astype(np.int8)


def churn_outcome(
    events: pd.DataFrame,
    customer_ids: pd.Series | Sequence[str],
    as_of: object,
    horizon_days: int,
    definition: ChurnDefinition = "inactivity",
    qualifying_roles: Sequence[str] = QUALIFYING_ROLES,
    *,
    rhythm_multiple: float = 3.0,
    min_gap_days: float = 7.0,
    typical_gap_days: float | None = None,
    subscriptions: pd.DataFrame | None = None,
    grace_days: int = 7,
    label_table: pd.DataFrame | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Churn labels within ``(as_of, as_of + horizon]`` and where the definition applies.

    - ``inactivity``: no event of ``qualifying_roles`` in the window (applies to everyone);
    - ``rhythm``: no purchase in the window, and at its end the days since the last purchase
      exceed ``rhythm_multiple`` times the customer's usual gap (own mean gap between
      purchases up to ``as_of``, else ``typical_gap_days`` or the median of the others'; at
      least ``min_gap_days``); applies to buyers;
    - ``contract``: with ``subscriptions``, a contract active at ``as_of`` whose coverage
      ends in the window (not renewed within ``grace_days``); applies to contract holders.
      Without it, the same as ``cancel``;
    - ``cancel``: a subscription cancel event in the window (applies to everyone);
    - ``labels``: ``label_table`` (``customer_id, as_of, label``) rows at this ``as_of``;
      applies to the labelled customers.

    Returns (label float64: 0/1, NaN where it does not apply; applies bool).
    """
    ids = pd.Index(customer_ids, dtype="str")
    when = to_utc(as_of)
    if definition == "labels":
        return _user_labels(label_table, ids, when)
    if definition == "contract" and subscriptions is not None:
        from features.subscription_features import contract_ends

        labels = pd.Index(ids)
        holder, ends = contract_ends(subscriptions, labels, epoch_us(when), horizon_days,
                                     grace_days)  # fmt: skip
        return np.where(holder, ends.astype(float), np.nan), holder
    if definition == "rhythm":
        return _rhythm(events, ids, when, horizon_days, rhythm_multiple, min_gap_days,
                       typical_gap_days)  # fmt: skip
    cancel = definition in ("cancel", "contract")
    roles = ("subscription_cancel",) if cancel else tuple(qualifying_roles)
    counts, labels = _window_counts(events, when, horizon_days, roles)
    hit = _aligned(counts, labels, ids, 0) > 0
    return (hit if cancel else ~hit).astype(float), np.ones(len(ids), bool)


def _user_labels(
    table: pd.DataFrame | None, ids: pd.Index, when: pd.Timestamp
) -> tuple[np.ndarray, np.ndarray]:
    if table is None:
        raise ValueError("churn definition 'labels' needs a labels table (data.labels)")
    rows = table[table["as_of"] == when]
    found = rows.set_index(rows["customer_id"].astype("str"))["label"].reindex(ids)
    label = found.to_numpy(dtype="float64", na_value=np.nan)
    return label, ~np.isnan(label)


def _rhythm(
    events: pd.DataFrame, ids: pd.Index, when: pd.Timestamp, horizon_days: int,
    multiple: float, min_gap: float, typical: float | None,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    ev, labels = event_arrays(events, when)
    gaps = purchase_intervals(ev)
    total, mean = gaps["purchases_total"], gaps["purchase_interval_mean_days"].astype(float)
    last = recency_and_tenure(ev)["purchase_recency_days"].astype(float)
    if typical is None:
        repeat = mean[(total >= 2) & np.isfinite(mean)]
        typical = float(np.median(repeat)) if len(repeat) else 90.0
    gap = np.maximum(np.where(total >= 2, mean, typical), min_gap)
    overdue = (last + horizon_days) > multiple * gap
    buys, later = _window_counts(events, when, horizon_days, ("purchase",))
    bought_again = _aligned(buys, later, ids, 0) > 0
    buyer = _aligned(total, labels, ids, 0) > 0
    churned = ~bought_again & _aligned(overdue, labels, ids, False).astype(bool)
    return np.where(buyer, churned.astype(float), np.nan), buyer


def future_stage(
    events: pd.DataFrame,
    customer_ids: pd.Series | Sequence[str],
    as_of: object,
    horizon_days: int,
    customers: pd.DataFrame | None = None,
    rules: StageRules | None = None,
    **vector_options: object,
) -> pd.Series:
    """The rule stage of each customer at ``as_of + horizon`` (from events up to then);
    ``vector_options`` are :func:`build_features` keywords; those the rules read are used
    (subscriptions; buy-till-you-die when a P(alive) threshold is set)."""
    later = to_utc(as_of) + pd.Timedelta(days=horizon_days)
    needs = {"subscriptions"} | ({"btyd"} if rules and rules.p_alive_churned_below else set())
    options = {k: v for k, v in vector_options.items() if k in needs}
    feats = build_features(events, later, customers=customers, **options)
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
