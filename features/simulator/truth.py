"""Read answers off the ground truth: true labels, true uplift, and true policy values.

These are what later models are judged against; they use the truth tables of a
:class:`~features.simulator.tables.Simulation` (or the files in ``truth/``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.simulator.campaigns import segments, true_probabilities
from features.simulator.catalog import ARMS, STAGES
from features.simulator.future import conversion_gains
from features.simulator.run import RawSimulation
from features.simulator.tables import customer_ids

PURCHASER_STAGES = ("purchase", "retention", "advocacy", "at_risk", "win_back")


def incremental_values(truth_exposures: pd.DataFrame, offers: pd.DataFrame) -> np.ndarray:
    """True expected incremental value of every arm per exposure, ``(n, len(ARMS))``.

    ``(p_arm - p_control) * value - cost`` (DESIGN section 6); control is 0 and arms the
    logging policy could not choose for that customer (``pi_arm == 0``) are ``-inf``.
    """
    p = truth_exposures[[f"p_{a}" for a in ARMS]].to_numpy()
    pi = truth_exposures[[f"pi_{a}" for a in ARMS]].to_numpy()
    catalog = offers.set_index("offer_id").reindex(list(ARMS[1:]))
    value = np.r_[0.0, catalog["value"].to_numpy(float)]
    cost = np.r_[0.0, catalog["cost"].to_numpy(float)]
    iv = (p - p[:, [0]]) * value - cost
    iv[:, 0] = 0.0
    return np.where(pi > 0, iv, -np.inf)


def policy_values(truth_exposures: pd.DataFrame, offers: pd.DataFrame) -> dict[str, float]:
    """Mean true incremental value per exposure of reference policies (vs sending nothing).

    ``oracle``: the best eligible arm, or nothing when none is positive; ``logging``: the
    randomised campaign policy that produced the data; ``propensity``: the eligible offer with
    the highest conversion probability, ignoring the control's (what a plain propensity model
    would pick); ``random_offer``: a uniformly random eligible offer.
    """
    iv = incremental_values(truth_exposures, offers)
    pi = truth_exposures[[f"pi_{a}" for a in ARMS]].to_numpy()
    p = truth_exposures[[f"p_{a}" for a in ARMS]].to_numpy()
    finite = np.isfinite(iv)
    offers_ok = finite.copy()
    offers_ok[:, 0] = False
    has_offer = offers_ok.any(axis=1)
    best_p = np.where(offers_ok, p, -1.0).argmax(axis=1)
    by_p = np.where(has_offer, iv[np.arange(len(iv)), best_p], 0.0)
    random_offer = np.where(offers_ok, iv, 0.0).sum(axis=1) / np.maximum(offers_ok.sum(axis=1), 1)
    return {
        "oracle": float(np.max(iv, axis=1).mean()),
        "logging": float((np.where(finite, iv, 0.0) * pi).sum(axis=1).mean()),
        "propensity": float(by_p.mean()),
        "random_offer": float(random_offer.mean()),
        "nothing": 0.0,
    }


def offers_at_end(raw: RawSimulation, reps: int = 8) -> pd.DataFrame:
    """The truth of sending each offer on the last day of the log, per customer known then.

    Columns: ``customer_id``, ``stage`` (true, at the end), ``p_<arm>`` (true conversion
    probability within the response window under each arm, ``control`` = no offer; every
    arm, eligible or not: eligibility is the policy's business) and ``conversion_gain`` (what
    a conversion adds to the customer's spend over the ``future_days`` after the log beyond the
    converted purchase, :func:`future.conversion_gains`: keeping an at-risk customer, winning a
    churned one back, a prospect's first purchase). Nobody is contacted after the log, so the
    gain is measured against the same no-contact future as ``spend_next_<d>d``.
    """
    config, pop, state = raw.config, raw.pop, raw.state
    known = np.flatnonzero(pop.arrival_day < config.days)
    since = config.days - np.nan_to_num(state.last_purchase, nan=-1e9)
    seg = segments(state.purchases, since)
    p = true_probabilities(pop, known, state.stage[known], seg[known],
                           state.tenure(config.days)[known])  # fmt: skip
    gain = conversion_gains(config, pop, state.stage, state.first_purchase, reps)[known]
    return pd.DataFrame({
        "customer_id": pd.array(customer_ids(pop.n)[known], dtype="str"),
        "stage": pd.Categorical.from_codes(state.stage[known], STAGES),
        **{f"p_{a}": p[:, j] for j, a in enumerate(ARMS)},
        "conversion_gain": gain,
    })  # fmt: skip


def values_at_end(truth: pd.DataFrame, offers: pd.DataFrame) -> pd.DataFrame:
    """True expected incremental value of sending each offer (columns: offer ids) to each row of
    :func:`offers_at_end` (same index): ``(p_offer - p_control) * (value + conversion_gain) -
    cost``, the catalog's ``value`` standing for the converted purchase's margin, as in
    :func:`incremental_values`, plus what the conversion changes after it."""
    catalog = offers.set_index("offer_id")
    ids = [a for a in ARMS[1:] if a in catalog.index]
    gain = truth["conversion_gain"].to_numpy()[:, None]
    uplift = truth[[f"p_{a}" for a in ids]].to_numpy() - truth[["p_control"]].to_numpy()
    value = catalog.loc[ids, "value"].to_numpy(float)
    iv = uplift * (value[None, :] + gain) - catalog.loc[ids, "cost"].to_numpy(float)
    return pd.DataFrame(iv, columns=ids, index=truth.index)


def arm_uplift(exposures: pd.DataFrame, truth_exposures: pd.DataFrame) -> pd.DataFrame:
    """Observed vs true uplift of each offer arm, over the exposures where it was eligible.

    The observed uplift is the inverse-propensity estimate
    ``mean(1[A=a] Y / pi_a - 1[A=control] Y / pi_control)``, unbiased under the randomised
    logging policy; ``se`` is its standard error, ``z`` the gap to the truth in standard errors.
    """
    x = truth_exposures.merge(exposures[["exposure_id", "converted"]], on="exposure_id")
    y = x["converted"].astype(float).to_numpy()
    arm = x["arm"].astype("object").to_numpy()
    rows = []
    for a in ARMS[1:]:
        el = x[f"pi_{a}"].to_numpy() > 0
        terms = (arm[el] == a) * y[el] / x[f"pi_{a}"].to_numpy()[el] - (arm[el] == "control") * y[
            el
        ] / x["pi_control"].to_numpy()[el]
        true = (x[f"p_{a}"] - x["p_control"]).to_numpy()[el]
        se = terms.std(ddof=1) / np.sqrt(max(el.sum(), 1))
        rows.append((a, int(el.sum()), int((arm == a).sum()), terms.mean(), se, true.mean()))
    out = pd.DataFrame(
        rows, columns=["arm", "eligible", "sent", "observed_uplift", "se", "true_uplift"]
    )
    out["z"] = (out["observed_uplift"] - out["true_uplift"]) / out["se"]
    return out.set_index("arm")


def stage_at(stage_history: pd.DataFrame, when: pd.Timestamp) -> pd.Series:
    """True stage of every customer known at ``when`` (index: customer_id)."""
    h = stage_history
    live = (h["start_at"] <= when) & (h["end_at"].isna() | (h["end_at"] > when))
    return h.loc[live].set_index("customer_id")["stage"]


def churned_within(stage_history: pd.DataFrame, as_of: pd.Timestamp, horizon_days: int) -> pd.Index:
    """Customers who entered ``churned`` in ``(as_of, as_of + horizon]`` (the true churn label)."""
    h = stage_history
    end = as_of + pd.Timedelta(days=horizon_days)
    hit = (
        (h["stage"].astype("object") == "churned")
        & (h["start_at"] > as_of)
        & (h["start_at"] <= end)
    )
    return pd.Index(h.loc[hit, "customer_id"].unique())


def churn_population(snapshot: pd.DataFrame) -> pd.DataFrame:
    """Rows of one as-of snapshot in the churn model's population: bought, not churned."""
    return snapshot[snapshot["stage"].astype("object").isin(PURCHASER_STAGES)]


__all__ = [
    "STAGES",
    "arm_uplift",
    "churn_population",
    "churned_within",
    "incremental_values",
    "offers_at_end",
    "policy_values",
    "stage_at",
    "values_at_end",
]
