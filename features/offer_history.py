"""Offer-history features from the exposures log, point in time.

An exposure counts as a contact once ``sent_at <= as_of``; its outcome (``converted``) counts
only once its response window has closed by ``as_of`` — before that, the outcome is not known
yet at ``as_of`` and using it would leak the future.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.families import DAY_US, EventArrays
from features.registry import OFFER_KINDS


def offer_history(
    ev: EventArrays,
    labels: pd.Index,
    exposures: pd.DataFrame | None,
    offers: pd.DataFrame | None,
    window_days: int,
) -> dict[str, np.ndarray]:
    """Contacts, conversions, days since last contact and response rate per offer kind.

    ``exposures`` as from ``load_exposures``; customers not in ``labels`` are ignored.
    Without exposures every customer gets zero contacts and NaN rates.
    """
    n = ev.n
    if exposures is None or len(exposures) == 0:
        return _empty(n)
    pos = labels.get_indexer(exposures["customer_id"].astype("str"))
    sent = exposures["sent_at"].dt.as_unit("us").array.asi8
    known = (pos >= 0) & (sent <= ev.as_of)
    closed = known & (sent <= ev.as_of - window_days * DAY_US)
    converted = exposures["converted"].fillna(False).to_numpy(dtype=bool) if (
        "converted" in exposures.columns
    ) else np.zeros(len(exposures), bool)  # fmt: skip
    last = np.full(n, np.iinfo(np.int64).min)
    np.maximum.at(last, pos[known], sent[known])
    recent = known & (sent > ev.as_of - 90 * DAY_US)
    out = {
        "contacts_90d": np.bincount(pos[recent], minlength=n).astype(np.float32),
        "contacts_total": np.bincount(pos[known], minlength=n).astype(np.float32),
        "offer_conversions_total": np.bincount(pos[closed & converted], minlength=n).astype(
            np.float32
        ),
        "days_since_last_contact": np.where(
            last == np.iinfo(np.int64).min, np.nan, (ev.as_of - last) / DAY_US
        ).astype(np.float32),
    }
    return out | _rates_by_kind(n, pos, closed, converted, exposures, offers)


def _rates_by_kind(
    n: int,
    pos: np.ndarray,
    closed: np.ndarray,
    converted: np.ndarray,
    exposures: pd.DataFrame,
    offers: pd.DataFrame | None,
) -> dict[str, np.ndarray]:
    if offers is None:
        return {f"response_rate_{k}": np.full(n, np.nan, np.float32) for k in OFFER_KINDS}
    kind_of = offers.set_index(offers["offer_id"].astype("str"))["kind"].astype("str")
    kinds = exposures["offer_id"].astype("str").map(kind_of).to_numpy(dtype=object)
    out = {}
    for k in OFFER_KINDS:
        m = closed & (kinds == k)
        sent = np.bincount(pos[m], minlength=n)
        won = np.bincount(pos[m & converted], minlength=n)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[f"response_rate_{k}"] = np.where(sent > 0, won / sent, np.nan).astype(np.float32)
    return out


def _empty(n: int) -> dict[str, np.ndarray]:
    zeros = {name: np.zeros(n, np.float32)
             for name in ("contacts_90d", "contacts_total", "offer_conversions_total")}  # fmt: skip
    nans = {f"response_rate_{k}": np.full(n, np.nan, np.float32) for k in OFFER_KINDS}
    return zeros | nans | {"days_since_last_contact": np.full(n, np.nan, np.float32)}
