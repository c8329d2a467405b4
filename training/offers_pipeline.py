"""Train and evaluate the offer (uplift) model from the campaign log — pure, no MLflow.

Exposures are featurised as of the day before each send, split in time (earlier sends fit,
later sends evaluate), an uplift model per offer is fitted with the logged propensities, and
on the later sends we report Qini/AUUC per offer and the off-policy value (IPS, SNIPS, DR with
bootstrap intervals) of the next-best-offer policy beside a propensity policy and random
offers. Primary metric: ``policy_value_dr`` (incremental value per exposure vs sending nothing).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.stages import assign_stages
from training import plots
from training.datasets import Tables
from training.exposure_features import exposure_features
from training.insights import uplift_by_offer
from training.metrics import auuc, offer_experiment, qini_curve
from training.models.uplift import CONTROL, UpliftModel
from training.ope import incremental_policy_value, policy_value_table
from training.policy import (
    eligibility,
    next_best_offer,
    policy_probabilities,
    propensity_policy,
    random_policy,
)

TRAIN_SHARE = 0.6  # of campaign days


@dataclass
class OfferData:
    X: pd.DataFrame
    exposures: pd.DataFrame
    y: np.ndarray
    arm: pd.Series  # offer id or "control"


def offer_data(tables: Tables, feature_set: str = "default") -> OfferData:
    """Exposures with their as-of features, outcomes and arms."""
    ex = tables.exposures.reset_index(drop=True)
    X = exposure_features(tables.events, ex, tables.customers, feature_set, tables.offers)
    y = ex["converted"].astype("boolean").fillna(False).to_numpy(dtype=int)
    arm = ex["offer_id"].astype("object").where(ex["offer_id"].notna(), "control")
    return OfferData(X, ex, y, arm)


def split_by_send_day(data: OfferData, share: float = TRAIN_SHARE) -> tuple[OfferData, OfferData]:
    days = data.exposures["sent_at"].dt.floor("D")
    cut = np.sort(days.unique())[int(share * days.nunique())]
    early = (days < cut).to_numpy()
    return _rows(data, early), _rows(data, ~early)


def _rows(data: OfferData, mask: np.ndarray) -> OfferData:
    return OfferData(data.X[mask].reset_index(drop=True),
                     data.exposures[mask].reset_index(drop=True), data.y[mask],
                     data.arm[mask].reset_index(drop=True))  # fmt: skip


def fit_uplift(train: OfferData, params: dict) -> UpliftModel:
    """The uplift model on ``train`` sends, with the standard error of each offer's uplift
    (``uplift_se_``: :meth:`UpliftModel.measure_spread`, halves by customer), which the
    value-aware policy needs (:func:`training.policy.cautious_values`); a ValueError (the
    offers model is skipped with it) when the held-out control arm is too small to model:
    every uplift is relative to it."""
    args = (train.X, train.arm, train.y, train.exposures["propensity"])
    model = UpliftModel(**params).fit(*args)
    if model.outcome_models_.get(CONTROL) is None:
        raise ValueError(
            f"the held-out control arm has {model.arm_counts_.get(CONTROL, 0)} training sends, "
            f"fewer than offers.min_arm_size={model.min_arm_size}: no offer's uplift can be "
            "estimated (more campaign logs with a control arm, or a smaller min_arm_size)"
        )
    return model.measure_spread(*args, groups=train.exposures["customer_id"])


def refit_on_every_send(evaluated: UpliftModel, data: OfferData, params: dict) -> UpliftModel:
    """The model to serve: the same learner refitted on every send (``data``), the later ones
    too, which the evaluation held out; with the evaluated model, fitted on the earlier sends
    only, as ``gate_model_``. The most recent sends are the ones most like the customers it
    will decide for (after a price change, a new offer), and until now they reached a served
    model only a retrain later. The promotion gate values each side by its ``gate_model_``
    (:func:`gate_model`): on the most recent sends that model has not seen, so neither side
    is judged on its own training rows."""
    served = fit_uplift(data, params)
    served.gate_model_ = evaluated
    return served


def gate_model(model: UpliftModel) -> UpliftModel:
    """What the promotion gate values for ``model``: its ``gate_model_`` (fitted on the sends
    before its evaluation's cut), or the model itself (trained before refits existed)."""
    return getattr(model, "gate_model_", None) or model


def evaluate_offers(model: UpliftModel, test: OfferData, offers: pd.DataFrame) -> dict:
    """Qini/AUUC per offer and the off-policy value of each policy on ``test`` sends (and
    each offer's recorded uplift standard error, ``uplift_se.<offer>``)."""
    uplift = model.predict_uplift(test.X)
    weights = 1.0 / test.exposures["propensity"].to_numpy()
    qini, metrics = {}, {}
    for k in model.offers_:
        if uplift[k].isna().all():
            continue
        rows, treated = offer_experiment(test.arm.to_numpy(), k)
        args = (test.y[rows], treated, uplift[k].to_numpy()[rows], weights[rows])
        qini[k], metrics[f"auuc.{k}"] = qini_curve(*args), auuc(*args)
    metrics["auuc_mean"] = float(np.nanmean([v for k, v in metrics.items()]))
    for k, se in getattr(model, "uplift_se_", {}).items():  # what the value-aware policy reads
        metrics[f"uplift_se.{k}"] = float(se)
    table = policy_table(model, test, offers, *evaluated_policies(model, test, offers, uplift))
    for policy in ("learned", "propensity", "random"):
        for est in ("dr", "ips", "snips"):
            metrics[f"policy_value_{est}.{policy}"] = float(table.loc[(policy, est), "estimate"])
    metrics["policy_value_dr"] = metrics["policy_value_dr.learned"]
    by_offer = uplift_by_offer(uplift, test.arm, test.y, test.exposures["propensity"],
                               eligible=model.supported(test.X))  # fmt: skip
    return {"metrics": metrics, "qini": qini, "policy_table": table, "uplift_by_offer": by_offer}


def learned_choice(
    model: UpliftModel, X: pd.DataFrame, offers: pd.DataFrame, uplift: pd.DataFrame | None = None
) -> tuple[pd.Series, pd.DataFrame]:
    """The next-best offer per row (None = no offer) and the eligibility it chose within:
    the catalog's rules for the customer's stage, offers the model could learn, and offers
    the logging policy sent to customers like this one."""
    uplift = model.predict_uplift(X) if uplift is None else uplift
    catalog = offers.set_index("offer_id").loc[model.offers_].reset_index()
    eligible = eligibility(assign_stages(X).astype("str"), None, catalog)
    eligible &= model.supported(X)[model.offers_].to_numpy()
    eligible &= uplift[model.offers_].notna().to_numpy()
    best = next_best_offer(uplift[model.offers_], catalog, eligible)["best_offer"]
    return best, eligible


def evaluated_policies(
    model: UpliftModel, test: OfferData, offers: pd.DataFrame, uplift: pd.DataFrame
) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """The policies compared off-policy, as ``(n, arms)`` action probabilities over
    ``["control", *model.offers_]`` (learned next-best offer, propensity ranking, random
    eligible offer), and the predicted conversion probability of every arm (the outcome model
    of the doubly robust estimates)."""
    catalog = offers.set_index("offer_id").loc[model.offers_].reset_index()
    arms = ["control", *model.offers_]
    best, eligible = learned_choice(model, test.X, offers, uplift)
    proba = model.predict_arm_proba(test.X)[arms]
    unfitted = [k for k in model.offers_ if proba[k].isna().all()]  # too few sends to model
    proba[unfitted] = np.repeat(proba[["control"]].to_numpy(), len(unfitted), axis=1)
    policies = {
        "learned": policy_probabilities(best, arms, 0.0, eligible),
        "propensity": policy_probabilities(propensity_policy(proba, catalog, eligible), arms),
        "random": random_policy(eligible, arms),
    }
    return policies, proba


def policy_table(
    model: UpliftModel, test: OfferData, offers: pd.DataFrame,
    policies: dict[str, np.ndarray], proba: pd.DataFrame,
) -> pd.DataFrame:  # fmt: skip
    """IPS / SNIPS / DR values of ``policies`` (as :func:`evaluated_policies` gives them,
    with its predicted arm probabilities ``proba`` as the DR outcome model).

    A logged arm the model never saw (an offer first sent in the test period, e.g. one added
    to the catalog and explored by the service) is an action the evaluated policies take with
    probability 0: its sends count (their weight is 0) with the control's prediction as their
    outcome model, rather than failing the run."""
    arms = ["control", *model.offers_]
    extra = sorted(set(test.arm.astype(str)) - set(arms))
    if extra:
        policies = {k: np.c_[v, np.zeros((len(v), len(extra)))] for k, v in policies.items()}
        proba = proba.assign(**{a: proba["control"] for a in extra})
    catalog = offers.set_index(offers["offer_id"].astype(str))
    catalog = catalog.reindex([*model.offers_, *extra])[["value", "cost"]].fillna(0.0)
    return policy_value_table(
        policies, estimator=incremental_policy_value, y=test.y,
        logged_arm=pd.Index([*arms, *extra]).get_indexer(test.arm.astype(str)),
        outcome_model=proba[[*arms, *extra]].to_numpy(),
        logged_propensity=test.exposures["propensity"].to_numpy(),
        values=np.r_[0.0, catalog["value"]], costs=np.r_[0.0, catalog["cost"]],
    )  # fmt: skip


def offer_figures(result: dict) -> dict:
    table = result["policy_table"].xs("dr", level=1).reset_index(names="policy")
    return {
        "qini.png": plots.qini_plot(result["qini"]),
        "policy_values.png": plots.policy_value_plot(table),
        "uplift_by_offer.png": plots.uplift_by_offer_plot(result["uplift_by_offer"]),
    }
