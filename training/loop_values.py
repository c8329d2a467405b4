"""What each policy is truly worth on one week's audience of the closed loop, from the simulator's
ground truth (pure functions; :mod:`serving.closed_loop` runs the loop).

Every policy is judged on the SAME audience, with the SAME eligibility (the live service's:
its caps, cooldowns and stage rules), by the true expected incremental value of what it
chooses, per audience member: ``IV_a = (p_a - p_control) x value_a - cost_a`` (DESIGN section
6; the catalog's value, as in :func:`features.simulator.truth.incremental_values`), 0 for no
offer. The policies:

- ``served``: what the live service chose, exploration included;
- ``greedy``: the live service's greedy rule (the best eligible offer by its expected value,
  if positive), what it would send without exploring; ``exploration_cost`` = greedy - served;
- ``frozen``: the week-0 champions' greedy rule (a service pinned to them);
- ``random``: a uniformly random eligible offer;
- ``oracle``: the truly best eligible action (no offer when none is worth anything);
- ``bound`` (observable bound): per offer, a regression of the TRUE value on the observable
  features (noise-free supervision no real model has), its best predicted eligible action.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import lightgbm as lgb
import numpy as np
import pandas as pd

from training.ope import incremental_policy_value


def true_increments(truth: pd.DataFrame, offers: pd.DataFrame, offer_ids: list[str]) -> np.ndarray:
    """``(n, len(offer_ids))`` true incremental value of sending each offer to each truth row
    (``p_<offer>`` and ``p_control`` columns, :meth:`World.offer_truth`)."""
    catalog = offers.set_index(offers["offer_id"].astype("str")).loc[offer_ids]
    uplift = truth[[f"p_{o}" for o in offer_ids]].to_numpy() - truth[["p_control"]].to_numpy()
    return uplift * catalog["value"].to_numpy(float) - catalog["cost"].to_numpy(float)


def greedy_arms(expected: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """Per row, 0 for no offer or ``j + 1`` for offer ``j``: the eligible offer of highest
    ``expected`` value when it is positive (the service's greedy rule; NaN never wins)."""
    value = np.where(eligible & np.isfinite(expected), expected, -np.inf)
    if value.shape[1] == 0:
        return np.zeros(len(value), np.intp)
    return np.where(value.max(axis=1) > 0, value.argmax(axis=1) + 1, 0)


def value_of(arms: np.ndarray, iv: np.ndarray) -> np.ndarray:
    """Per row, the true value of the chosen arm (0 = no offer: 0)."""
    padded = np.column_stack([np.zeros(len(iv)), iv])
    return padded[np.arange(len(iv)), arms]


def week_values(
    iv: np.ndarray,
    eligible: np.ndarray,
    served: np.ndarray,
    expected: Mapping[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """Per audience row, each policy's true value (module docstring): ``served`` the live
    service's arms; ``expected`` each other model policy's expected values ``(n, offers)``
    (``greedy``: the live service's; ``frozen``, ``previous``, ``bound``...)."""
    out = {"served": value_of(served, iv)}
    out |= {name: value_of(greedy_arms(e, eligible), iv) for name, e in expected.items()}
    offers = eligible.sum(axis=1)
    out["random"] = np.where(eligible, iv, 0.0).sum(axis=1) / np.maximum(offers, 1)
    out["oracle"] = np.maximum(np.where(eligible, iv, -np.inf).max(axis=1, initial=-np.inf), 0.0)
    return out


def ope_estimate(
    converted: np.ndarray,
    served: np.ndarray,
    propensity: np.ndarray,
    target: np.ndarray,
    offers: pd.DataFrame,
    offer_ids: list[str],
    seed: int = 0,
) -> dict[str, float]:
    """The inverse-propensity estimate of a target policy's incremental value per audience
    member (``target``: ``(n, 1 + offers)`` probabilities) from the week's logged decisions
    (``served`` arms, their ``propensity``) and realised conversions, with its 95% bootstrap
    interval (:func:`training.ope.incremental_policy_value`)."""
    catalog = offers.set_index(offers["offer_id"].astype("str")).loc[offer_ids]
    values = np.r_[0.0, catalog["value"].to_numpy(float)]
    costs = np.r_[0.0, catalog["cost"].to_numpy(float)]
    table = incremental_policy_value(converted.astype(float), served, propensity, target, values,
                                     costs, n_bootstrap=200, random_state=seed,
                                     min_ess_share=0.0)  # fmt: skip
    row = table.loc["ips"]
    return {"estimate": float(row["estimate"]), "lo": float(row["lo"]), "hi": float(row["hi"])}


def bound_predictions(
    train_x: pd.DataFrame, train_iv: np.ndarray, test_x: pd.DataFrame, seed: int = 0
) -> np.ndarray:
    """The observable bound's predicted value of each offer for ``test_x``: one LightGBM
    regression per offer of its true value on the features of other customers."""
    params = {"n_estimators": 200, "learning_rate": 0.05, "num_leaves": 31, "min_child_samples": 50,
              "subsample": 0.8, "subsample_freq": 1, "random_state": seed, "verbose": -1,
              "n_jobs": 1}  # fmt: skip

    def predicted(j: int) -> np.ndarray:
        return lgb.LGBMRegressor(**params).fit(train_x, train_iv[:, j]).predict(test_x)

    # one single-threaded model per offer, fitted side by side (LightGBM releases the GIL):
    # the same models as one after the other, on every core
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        columns = list(pool.map(predicted, range(train_iv.shape[1])))
    return np.column_stack(columns) if columns else np.empty((len(test_x), 0))


def values_not_in(values: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    """The sorted unique ``values`` not in ``excluded``: ``np.setdiff1d``, by hashing (numpy
    compares object arrays, e.g. customer ids, with each excluded value in turn)."""
    unique = np.unique(values)
    return unique[~pd.Index(unique).isin(excluded)]


def gap_closed(weeks: pd.DataFrame, last: int = 1) -> float:
    """Share of the gap between the week-0 policy and the observable bound that the live
    greedy policy closed over the ``last`` weeks (same audiences for all three); ``weeks``:
    one row per week with ``greedy``, ``frozen`` and ``bound``. NaN when there is no gap."""
    tail = weeks.tail(last)
    gap = float((tail["bound"] - tail["frozen"]).sum())
    return float((tail["greedy"] - tail["frozen"]).sum()) / gap if gap > 0 else float("nan")


def loop_summary(weeks: pd.DataFrame) -> pd.DataFrame:
    """The weekly table the report shows: each policy's true value per audience member, the
    OPE estimate of the greedy policy with its interval, and what the week's retrain did."""
    out = pd.DataFrame({
        "week": weeks["week"], "as of": weeks["as_of"], "audience": weeks["audience"],
        "live (served)": weeks["served"], "live (greedy)": weeks["greedy"],
        "frozen at week 0": weeks["frozen"], "random": weeks["random"],
        "observable bound": weeks["bound"], "oracle": weeks["oracle"],
        "OPE of greedy": [f"{e:.3f} [{lo:.3f}, {hi:.3f}]" for e, lo, hi in
                          zip(weeks["ope_greedy"], weeks["ope_greedy_lo"],
                              weeks["ope_greedy_hi"], strict=True)],
        "offers model": weeks["offers_version"],
        "promoted": weeks["promoted"].map({True: "yes", False: "no"}).fillna(""),
    })  # fmt: skip
    if "drift" in weeks:
        out["world changed"] = weeks["drift"].fillna("")
    if "monitor_exit" in weeks:
        crossed = weeks.get("monitor_crossed", pd.Series("", index=weeks.index)).fillna("")
        ran = weeks["monitor_exit"].notna()
        out["monitor"] = np.where(~ran, "", np.where(crossed != "", "flagged: " + crossed, "ok"))
    return out.round(3)
