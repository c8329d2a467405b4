"""Oracle figures: how well the simulator's true probabilities do on its own labels.

Models trained on observable data are judged against these (issue 4): they are upper bounds
of a sort, since the truth knows every latent trait.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score, roc_auc_score

from features.simulator.catalog import STAGES
from features.simulator.truth import churn_population, churned_within, stage_at
from training.models.stage import PRIOR_POWERS


def evaluable_snapshots(snapshots: pd.DataFrame, end: pd.Timestamp, horizon_days: int) -> list:
    """As-of dates whose horizon ends inside the simulated period."""
    dates = sorted(snapshots["as_of"].unique())
    return [d for d in dates if d + pd.Timedelta(days=horizon_days) <= end]


def churn_oracle(
    snapshots: pd.DataFrame, stage_history: pd.DataFrame, as_of: pd.Timestamp, horizon_days: int
) -> dict[str, float]:
    """ROC-AUC and base rate of the true churn probability on the true churn label."""
    snap = churn_population(snapshots[snapshots["as_of"] == as_of])
    y = snap["customer_id"].isin(churned_within(stage_history, as_of, horizon_days)).to_numpy()
    p = snap[f"p_churn_{horizon_days}d"].to_numpy()
    return {
        "customers": len(snap),
        "churn_rate": float(y.mean()),
        "mean_p": float(p.mean()),
        "roc_auc": float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan"),
    }


def stage_oracle(
    snapshots: pd.DataFrame, stage_history: pd.DataFrame, as_of: pd.Timestamp, horizon_days: int
) -> dict[str, float]:
    """Macro-F1 of the true next-stage distribution at ``as_of + horizon``.

    Macro-F1 rewards predicting rare stages, so the decision from the true distribution is
    ``argmax(p / prior**k)`` with the best ``k`` in PRIOR_POWERS (k=0 is the plain argmax);
    "stays in its stage" is reported beside it as the baseline.
    """
    snap = snapshots[snapshots["as_of"] == as_of]
    truth = stage_at(stage_history, as_of + pd.Timedelta(days=horizon_days))
    y = truth.reindex(snap["customer_id"]).astype("object").to_numpy()
    known = pd.notna(y)
    p = snap[[f"p_next_{s}" for s in STAGES]].to_numpy()[known]
    y = y[known]
    prior = np.maximum(p.mean(axis=0), 1e-9)
    scores = {
        k: _macro_f1(y, np.array(STAGES)[(p / prior**k).argmax(axis=1)]) for k in PRIOR_POWERS
    }
    best = max(scores, key=scores.get)
    stay = snap["stage"].astype("object").to_numpy()[known]
    return {"customers": int(known.sum()), "macro_f1": scores[best], "prior_power": best,
            "macro_f1_argmax": scores[0.0], "macro_f1_stay": _macro_f1(y, stay)}  # fmt: skip


def _macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    return float(f1_score(y, pred, average="macro", labels=list(STAGES), zero_division=0))


LATENT_TRAITS = ("satisfaction", "problems", "price_sensitivity", "engagement", "interest",
                 "frequency", "activity", "noise", "spend")  # fmt: skip


def with_truth(
    frame: pd.DataFrame, snapshots: pd.DataFrame, truth_customers: pd.DataFrame
) -> pd.DataFrame:
    """A training set (``build_training_set``) with the ground truth of each row added.

    Added columns, all prefixed ``truth_``: the latent stage, the exact churn probabilities
    (``p_churn_<h>d``) and next-stage mix (``p_next_<stage>``) of the simulator's snapshot
    taken on the row's ``as_of``, and the customer's latent traits. Rows whose ``as_of`` is
    not a snapshot date get missing values there. A model fitted on these and the features
    is an *informed oracle* for the observable labels: the best one can do knowing the
    latent state, judged on exactly the rows and labels the real models are judged on.
    """
    truth = snapshots.rename(columns=lambda c: c if c in ("customer_id", "as_of") else f"truth_{c}")
    truth = truth.assign(customer_id=truth["customer_id"].astype("str"))
    traits = truth_customers[["customer_id", *LATENT_TRAITS]].astype({"customer_id": "str"})
    traits = traits.rename(columns={t: f"truth_{t}" for t in LATENT_TRAITS})
    keys = frame[["as_of", "customer_id"]].astype({"customer_id": "str"})
    added = keys.merge(truth, on=["as_of", "customer_id"], how="left")
    added = added.merge(traits, on="customer_id", how="left").drop(columns=keys.columns)
    return pd.concat([frame.reset_index(drop=True), added.set_index(frame.index.rename(None))
                      .reset_index(drop=True)], axis=1)  # fmt: skip


def aligned_snapshot_first_day(days: int, horizon_days: int, every_days: int = 30) -> int:
    """``SimConfig.snapshot_first_day`` that puts the simulator's truth snapshots on the
    as-of dates of ``training.datasets.snapshot_dates`` (the last one ``horizon_days`` before
    the last simulated day, spaced ``every_days``): the smallest such day >= 60."""
    last = days - 1 - horizon_days
    return last - every_days * ((last - 60) // every_days)
