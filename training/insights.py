"""Business summaries of fitted models over current customers: risk bands, top churn reasons,
what the offer policy chooses per stage and why, customer lifetime value and value at risk by
stage and who to save, and model-vs-baseline metric tables.

Pure functions on frames and fitted estimators (no MLflow, no files); the notebooks and
``lifecycle report`` use them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.contracts import STAGES
from features.registry import RETENTION_KINDS
from features.stages import assign_stages
from training.datasets import Tables
from training.metrics import offer_experiment
from training.policy import conversion_worth, eligibility, next_best_offer

NO_OFFER = "no offer"
NO_RETENTION_OFFER = "none"
KEY_METRICS = {  # per model: the headline metrics, in plain words
    "churn": {
        "roc_auc": "ranking quality: chance a churner is scored above a non-churner (0.5 = coin)",
        "pr_auc": "precision-recall area: how clean the top of the list is",
        "brier": "mean squared error of the probabilities (lower is better)",
        "ece": "calibration error: gap between predicted and observed churn (lower is better)",
        "lift_top_decile": "churn rate in the riskiest 10% divided by the overall rate",
    },
    "stage": {
        "macro_f1": "accuracy of the next-stage forecast, averaged over stages",
        "accuracy": "share of customers whose next stage is forecast right",
    },
    "offers": {
        "policy_value_dr": "extra value per contact vs sending nothing (doubly robust estimate)",
        "auuc_mean": "how well customers are ranked by their uplift (area under uplift curve)",
    },
    "clv": {
        "normalized_gini": "how well customers are ranked by value (1 = perfect order, 0 = random)",
        "top_decile_capture": "share of the realised value held by the top 10% by estimate",
        "mae": "mean absolute error of the value per customer, in the data's currency",
    },
}
RISK_EDGES = (0.0, 0.05, 0.1, 0.2, 0.4, 1.0)


def current_vectors(
    tables: Tables, as_of: object | None = None, config: object | None = None
) -> pd.DataFrame:
    """Every customer's features as of ``as_of`` (default: the last event), built with the
    project config a model was trained with (``config``: a ProjectConfig, or the defaults
    resolved on ``tables``), with the rule ``stage`` and ``in_churn_population`` (who the churn
    model scores).

    Output columns: ``customer_id``, the features, ``stage``, ``in_churn_population``.
    """
    from features.project import ProjectConfig
    from training.datasets import current_vectors as build

    config = config or ProjectConfig()
    return build(tables, config.dataset, as_of)


def risk_bands(p, edges: Sequence[float] = RISK_EDGES) -> pd.DataFrame:
    """Customers per churn-probability band ``(lo, hi]`` (the first band includes 0).

    Output index: band label (``"10-20%"``); columns ``customers``, ``share``,
    ``mean_probability`` (NaN for an empty band).
    """
    p = np.asarray(p, dtype=float)
    pairs = zip(edges[:-1], edges[1:], strict=True)
    labels = [f"{lo:.0%}-{hi:.0%}".replace("%-", "-") for lo, hi in pairs]
    band = pd.cut(p, list(edges), labels=labels, include_lowest=True)
    grouped = pd.Series(p).groupby(band, observed=False)
    table = pd.DataFrame({"customers": grouped.size(), "mean_probability": grouped.mean()})
    table.insert(1, "share", table["customers"] / max(len(p), 1))
    table.index.name = "churn_probability"
    return table


def top_reasons(reasons: Sequence[Sequence[tuple[str, float]]], top: int = 10) -> pd.DataFrame:
    """How often each feature is among a customer's churn reasons.

    ``reasons``: per customer, (feature, contribution) pairs (``ChurnModel.reasons``). Output
    index ``feature`` (most frequent first, ties by mean contribution); columns ``customers``
    (customers citing it), ``share`` (of all customers given) and ``mean_contribution``.
    """
    pairs = [(name, value) for row in reasons for name, value in row]
    if not pairs:
        return pd.DataFrame(columns=["customers", "share", "mean_contribution"],
                            index=pd.Index([], name="feature"))  # fmt: skip
    frame = pd.DataFrame(pairs, columns=["feature", "contribution"])
    table = frame.groupby("feature")["contribution"].agg(customers="size", mean_contribution="mean")
    table.insert(1, "share", table["customers"] / max(len(reasons), 1))
    return table.sort_values(["customers", "mean_contribution"], ascending=False).head(top)


def mean_abs_contribution(contributions: pd.DataFrame) -> pd.Series:
    """Mean absolute contribution of each feature (``bias`` left out), largest first."""
    table = contributions.drop(columns="bias", errors="ignore").abs().mean()
    return table.sort_values(ascending=False).rename("mean |contribution|")


def _stage_order(stage: pd.Series) -> list[str]:
    present = set(stage.astype("object"))
    return [s for s in STAGES if s in present] + sorted(present - set(STAGES))


@dataclass
class PolicyChoices:
    """The next-best-offer policy's decision per customer and what it was based on."""

    stage: pd.Series  # rule stage
    best_offer: pd.Series  # offer id, None = no offer
    best_value: np.ndarray  # expected incremental value of the choice (0 = no offer)
    uplift: pd.DataFrame  # predicted uplift per offer
    eligible: pd.DataFrame  # offers the policy could choose (catalog, support, modelled)


def policy_choices(model, X: pd.DataFrame, offers: pd.DataFrame) -> PolicyChoices:
    """Run the learned policy (``training.offers_pipeline.learned_choice``) on ``X``, a
    feature frame such as :func:`current_vectors`, with the offers ``catalog``."""
    from training.offers_pipeline import learned_choice

    uplift = model.predict_uplift(X)[model.offers_]
    _, eligible = learned_choice(model, X, offers, uplift)
    catalog = offers.set_index("offer_id").loc[model.offers_].reset_index()
    chosen = next_best_offer(uplift, catalog, eligible, max_offers=1)
    stage = assign_stages(X).astype("object")
    eligible = pd.DataFrame(eligible, index=uplift.index, columns=model.offers_)
    return PolicyChoices(stage, chosen["best_offer"], chosen["best_value"].to_numpy(), uplift,
                         eligible)  # fmt: skip


def policy_by_stage(stage: pd.Series, best_offer: pd.Series, best_value) -> pd.DataFrame:
    """What the offer policy does per stage, in lifecycle order.

    Inputs aligned by position: ``stage``, ``best_offer`` (None = no offer) and ``best_value``
    (expected incremental value of the choice; 0 for no offer). Output index ``stage``;
    columns ``customers``, ``offered_share``, ``top_offer`` (the most chosen offer, or
    "no offer"), ``expected_value_mean`` (per customer) and ``expected_value_total``.
    """
    frame = pd.DataFrame({"stage": stage.astype("object").to_numpy(),
                          "offer": best_offer.astype("object").fillna(NO_OFFER).to_numpy(),
                          "value": np.asarray(best_value, dtype=float)})  # fmt: skip
    groups = frame.groupby("stage")
    table = pd.DataFrame({
        "customers": groups.size(),
        "offered_share": groups["offer"].agg(lambda s: float((s != NO_OFFER).mean())),
        "top_offer": groups["offer"].agg(_most_common_offer),
        "expected_value_mean": groups["value"].mean(),
        "expected_value_total": groups["value"].sum(),
    })  # fmt: skip
    return table.reindex(_stage_order(frame["stage"]))


def _most_common_offer(offers: pd.Series) -> str:
    sent = offers[offers != NO_OFFER]
    return str(sent.value_counts().index[0]) if len(sent) else NO_OFFER


def offer_mix_by_stage(stage: pd.Series, best_offer: pd.Series) -> pd.DataFrame:
    """Share of each stage's customers given each offer (rows: stages in lifecycle order;
    columns: offers by overall frequency, "no offer" last; rows sum to 1)."""
    offer = best_offer.astype("object").fillna(NO_OFFER).to_numpy()
    table = pd.crosstab(stage.astype("object").to_numpy(), offer, normalize="index")
    offers = [c for c in pd.Series(offer).value_counts().index if c != NO_OFFER]
    columns = offers + ([NO_OFFER] if NO_OFFER in table.columns else [])
    table = table.reindex(index=_stage_order(stage), columns=columns, fill_value=0.0)
    table.index.name, table.columns.name = "stage", "offer"
    return table


def offer_economics(
    stage: pd.Series, uplift: pd.DataFrame, offers: pd.DataFrame, eligible: pd.DataFrame
) -> pd.DataFrame:
    """Why the policy chooses what it does: per stage and offer, over the eligible customers,
    the mean predicted uplift and the expected incremental value ``uplift * value - cost``.

    ``uplift`` and ``eligible`` are ``(n, offers)`` aligned with ``stage`` by position.
    Output columns: ``stage, offer, eligible_share, mean_uplift, value, cost,
    expected_value``; one row per (stage, offer) with at least one eligible customer.
    """
    catalog = offers.set_index(offers["offer_id"].astype("str"))
    rows = []
    stages = stage.astype("object").to_numpy()
    for k in uplift.columns:
        ok = eligible[k].to_numpy(dtype=bool) & uplift[k].notna().to_numpy()
        frame = pd.DataFrame({"stage": stages[ok], "uplift": uplift[k].to_numpy(float)[ok]})
        for s, group in frame.groupby("stage"):
            value, cost = (float(catalog.loc[k, c]) for c in ("value", "cost"))
            mean = float(group["uplift"].mean())
            share = len(group) / max(int((stages == s).sum()), 1)
            rows.append((s, k, share, mean, value, cost, mean * value - cost))
    columns = ["stage", "offer", "eligible_share", "mean_uplift", "value", "cost",
               "expected_value"]  # fmt: skip
    table = pd.DataFrame(rows, columns=columns)
    order = {s: i for i, s in enumerate(_stage_order(stage))}
    table = table.sort_values(["stage", "expected_value"], ascending=[True, False],
                              key=lambda c: c.map(order) if c.name == "stage" else c)  # fmt: skip
    return table.reset_index(drop=True)


# --- customer lifetime value ---------------------------------------------------------------


def clv_by_stage(stage: pd.Series, clv) -> pd.DataFrame:
    """Customer lifetime value per current stage, in lifecycle order.

    Inputs aligned by position: ``stage`` and ``clv`` (NaN = unknown: counted as a customer,
    left out of the sums, means and medians). Output index ``stage``; columns ``customers``,
    ``clv_total``, ``clv_mean``, ``clv_median`` and ``clv_share`` (of the total over stages).
    """
    frame = pd.DataFrame({"stage": stage.astype("object").to_numpy(),
                          "clv": np.asarray(clv, dtype=float)})  # fmt: skip
    groups = frame.groupby("stage")["clv"]
    table = pd.DataFrame({"customers": groups.size(), "clv_total": groups.sum(),
                          "clv_mean": groups.mean(), "clv_median": groups.median()})  # fmt: skip
    total = table["clv_total"].sum()
    table["clv_share"] = table["clv_total"] / total if total > 0 else np.nan
    return _in_stage_order(table, frame["stage"])


def value_at_risk_by_stage(stage: pd.Series, churn, clv) -> pd.DataFrame:
    """What each stage's customers would take with them if they churned: value at risk =
    churn probability x CLV per customer.

    Inputs aligned by position (the customers the churn model scores): ``stage``, ``churn``
    (probability) and ``clv``. Output index ``stage`` (lifecycle order); columns
    ``customers``, ``mean_churn_probability``, ``clv_total``, ``value_at_risk_total``,
    ``value_at_risk_mean`` (per customer) and ``value_at_risk_share`` (of the total).
    """
    churn, clv = np.asarray(churn, dtype=float), np.asarray(clv, dtype=float)
    frame = pd.DataFrame({"stage": stage.astype("object").to_numpy(), "churn": churn,
                          "clv": clv, "at_risk": churn * clv})  # fmt: skip
    groups = frame.groupby("stage")
    table = pd.DataFrame({"customers": groups.size(),
                          "mean_churn_probability": groups["churn"].mean(),
                          "clv_total": groups["clv"].sum(),
                          "value_at_risk_total": groups["at_risk"].sum(),
                          "value_at_risk_mean": groups["at_risk"].mean()})  # fmt: skip
    total = table["value_at_risk_total"].sum()
    table["value_at_risk_share"] = table["value_at_risk_total"] / total if total > 0 else np.nan
    return _in_stage_order(table, frame["stage"])


def _in_stage_order(table: pd.DataFrame, stage: pd.Series) -> pd.DataFrame:
    table = table.reindex(_stage_order(stage))
    table.index.name = "stage"
    return table


def who_to_save(
    vectors: pd.DataFrame, churn, clv, uplift_model=None, offers: pd.DataFrame | None = None,
    top: int = 20,
) -> pd.DataFrame:  # fmt: skip
    """The ``top`` customers by value at risk (churn probability x CLV), highest first, each
    with the retention offer the service would value highest (:func:`best_retention_offer`;
    "none" without an uplift model or an offer catalog).

    ``vectors``: the scored customers (``customer_id``, ``stage`` and the uplift model's
    inputs); ``churn`` and ``clv`` aligned with it by position (NaN value at risk last).
    Output columns ``customer_id, stage, churn_probability, clv, value_at_risk,
    retention_offer, offer_uplift, offer_value``.
    """
    churn, clv = np.asarray(churn, dtype=float), np.asarray(clv, dtype=float)
    at_risk = churn * clv
    order = np.argsort(-np.nan_to_num(at_risk, nan=-np.inf), kind="stable")[:top]
    rows = vectors.iloc[order]
    table = pd.DataFrame({"customer_id": rows["customer_id"].to_numpy(),
                          "stage": rows["stage"].astype("object").to_numpy(),
                          "churn_probability": churn[order], "clv": clv[order],
                          "value_at_risk": at_risk[order]})  # fmt: skip
    if uplift_model is None or offers is None:
        choice = best_retention_offer(pd.DataFrame(index=table.index), None, offers,
                                      churn[order], clv[order])  # fmt: skip
    else:
        uplift, eligible = retention_uplift(uplift_model, rows, offers)
        choice = best_retention_offer(uplift, eligible, offers, churn[order], clv[order])
    return pd.concat([table, choice.reset_index(drop=True)], axis=1)


def retention_uplift(
    model, X: pd.DataFrame, offers: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The uplift model's predicted uplift of the catalog's retention and win-back offers for
    the rows of ``X``, and which of them each row may get: the offer allows the row's
    ``stage``, the campaign logs cover customers like it (``model.supported``) and the uplift
    is known. Returns two ``(n, offers)`` frames indexed like ``X``: uplift, eligible."""
    kinds = offers.set_index(offers["offer_id"].astype("str"))["kind"].astype("str")
    ids = [k for k in model.offers_ if kinds.get(str(k)) in RETENTION_KINDS]
    uplift = model.predict_uplift(X)[ids].set_axis(X.index)
    catalog = offers.set_index("offer_id").loc[ids].reset_index()
    allowed = (eligibility(X["stage"].astype("object"), None, catalog).to_numpy(bool)
               & model.supported(X)[ids].to_numpy(bool) & uplift.notna().to_numpy())  # fmt: skip
    return uplift, pd.DataFrame(allowed, index=X.index, columns=ids)


def best_retention_offer(
    uplift: pd.DataFrame, eligible: pd.DataFrame | None, offers: pd.DataFrame | None, churn,
    clv,
) -> pd.DataFrame:  # fmt: skip
    """Each row's retention or win-back offer of highest positive value, valued as the service
    values it: ``uplift x (value + churn / (1 - churn) x CLV) - cost`` (:func:`training.
    policy.conversion_worth`; the catalog's ``value`` alone where the CLV is unknown); offers of
    other kinds are left out.

    ``uplift`` and ``eligible`` (None: all) are ``(n, offers)``, aligned by position with
    ``churn`` and ``clv``. Output indexed like ``uplift``: ``retention_offer`` (offer id, or
    "none" when no eligible one has a positive value), ``offer_uplift`` and ``offer_value``
    (NaN for "none").
    """
    n, names = len(uplift), [str(k) for k in uplift.columns]
    catalog = None if offers is None else offers.set_index(offers["offer_id"].astype("str"))
    keep = [k for k in names if catalog is not None and k in catalog.index
            and str(catalog.loc[k, "kind"]) in RETENTION_KINDS]  # fmt: skip
    out = pd.DataFrame({"retention_offer": NO_RETENTION_OFFER, "offer_uplift": np.nan,
                        "offer_value": np.nan}, index=uplift.index)  # fmt: skip
    if not keep or not n:
        return out
    cols = [names.index(k) for k in keep]
    u = uplift.to_numpy(dtype=float)[:, cols]
    ok = np.isfinite(u) & (True if eligible is None else eligible.to_numpy(bool)[:, cols])
    worth = conversion_worth(catalog.loc[keep, "value"], np.ones(len(keep), bool), churn, clv)
    value = np.where(ok, u * worth - catalog.loc[keep, "cost"].to_numpy(float), -np.inf)
    rows, best = np.arange(n), np.argmax(value, axis=1)  # ties: the catalog's first
    chosen = value[rows, best] > 0
    out["retention_offer"] = np.where(chosen, np.asarray(keep, dtype=object)[best],
                                      NO_RETENTION_OFFER)  # fmt: skip
    out["offer_uplift"] = np.where(chosen, u[rows, best], np.nan)
    out["offer_value"] = np.where(chosen, value[rows, best], np.nan)
    return out


def _weighted_rate(y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Weighted mean of 0/1 ``y`` and its standard error (Kish effective sample size)."""
    if w.sum() <= 0:
        return np.nan, np.nan
    rate = float(np.average(y, weights=w))
    n_eff = w.sum() ** 2 / (w**2).sum()
    return rate, float(np.sqrt(rate * (1 - rate) / n_eff))


def uplift_by_offer(
    uplift: pd.DataFrame, arm, y, propensity, eligible: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Predicted vs observed uplift per offer on logged sends.

    Parameters
    ----------
    uplift : (n, offers) predicted uplift of each offer for each send.
    arm : the arm sent (offer id or ``"control"``); y : 0/1 conversion; propensity : the
        logged probability of the arm sent. All aligned by position.
    eligible : optional (n, offers) booleans: control sends count for offer k only where k
        could have been sent (e.g. ``UpliftModel.supported``), so both sides of the
        comparison cover the same customers.

    Returns
    -------
    DataFrame indexed by offer: ``sent`` (sends of the offer), ``predicted`` (mean predicted
    uplift over the compared sends), ``observed`` (inverse-propensity weighted conversion
    rate of the offer's sends minus the control's) and ``se``.
    """
    arm = np.asarray(arm, dtype=object)
    y, w = np.asarray(y, dtype=float), 1.0 / np.asarray(propensity, dtype=float)
    rows = []
    for k in uplift.columns:
        mask, _ = offer_experiment(arm, k)
        if eligible is not None:
            mask &= (arm == k) | eligible[k].to_numpy(dtype=bool)
        treated = arm[mask] == k
        yk, wk = y[mask], w[mask]
        (rt, st), (rc, sc) = (
            _weighted_rate(yk[treated], wk[treated]),
            _weighted_rate(yk[~treated], wk[~treated]),
        )
        scores = uplift[k].to_numpy(float)[mask]
        predicted = float(np.nanmean(scores)) if np.isfinite(scores).any() else np.nan
        rows.append((k, int(treated.sum()), predicted, rt - rc, float(np.hypot(st, sc))))
    table = pd.DataFrame(rows, columns=["offer", "sent", "predicted", "observed", "se"])
    return table.set_index("offer")


def metrics_table(
    metrics: Mapping[str, float],
    baselines: Mapping[str, Mapping[str, float]],
    model: str,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The model's metrics beside its baselines', one row per candidate (the model first),
    one column per metric the model reports (a baseline's missing metrics are NaN), or only
    those of ``columns`` that it reports (e.g. ``KEY_METRICS[model]``)."""
    rows = {model: dict(metrics), **{f"baseline: {b}": dict(m) for b, m in baselines.items()}}
    table = pd.DataFrame.from_dict(rows, orient="index")
    keep = list(metrics) if columns is None else [c for c in columns if c in metrics]
    return table.reindex(columns=keep)
