"""Next best offer: expected incremental value per offer, eligibility rules, action probabilities.

The value of sending offer k is ``uplift_k * value_k - cost_k`` (DESIGN section 6); sending
nothing is worth 0, so the best action is the eligible offer of highest positive value, or no
offer. A conversion's worth can include the value of keeping the customer
(:func:`conversion_worth`); :func:`cautious_values` then moves away from the choice by margin
alone only where that gain beats the uplift model's noise. ``policy_probabilities`` turns
chosen actions into (epsilon-greedy) probabilities over the arms, the form off-policy
evaluation and logged serving propensities need.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pandas as pd

from features.registry import RETENTION_KINDS

CONTROL = "control"
CONFIDENCE = 0.95  # of the one-sided bound a value-aware departure from the margin's choice needs


def expected_values(
    uplift: pd.DataFrame, offers: pd.DataFrame, eligible: pd.DataFrame | None = None
) -> pd.DataFrame:
    """``uplift * value - cost`` per row and offer; NaN uplift or ineligible -> -inf.

    Columns are the catalog's offers (an offer without an uplift column is -inf).
    """
    catalog = offers.set_index(offers["offer_id"].astype("str"))
    ids = list(catalog.index)
    u = uplift.reindex(columns=ids).to_numpy(dtype=float)
    ev = u * catalog["value"].to_numpy(float) - catalog["cost"].to_numpy(float)
    if eligible is not None:
        ev = np.where(_eligible_matrix(eligible, ids, uplift.index), ev, np.nan)
    return pd.DataFrame(np.nan_to_num(ev, nan=-np.inf), index=uplift.index, columns=ids)


MAX_CHURN = 0.99  # keeps the value of a kept customer finite: CLV / (1 - churn)


def conversion_worth(value, keeps, churn=None, clv=None) -> np.ndarray:
    """What one conversion of each offer is worth to each customer, ``(n, offers)``.

    Every offer's conversion brings its own margin, the catalog's ``value`` ``(offers,)``. An
    offer that keeps a customer (``keeps`` ``(offers,)`` bool, :func:`keeping_offers`: every
    offer under activity churn, else retention and win-back) also saves what their leaving
    would cost. The CLV already counts the chance ``c`` that they leave:
    ``CLV = (1 - c) x kept``, so a customer kept is worth ``CLV / (1 - c)``, and a
    conversion that keeps one who would otherwise leave with probability ``c`` saves
    ``c x CLV / (1 - c)`` (``c`` capped at :data:`MAX_CHURN`). A loyal customer saves little
    whatever their CLV; a lapsing one of the same CLV, much more. ``churn`` and ``clv``
    ``(n,)``; a customer without both (NaN, or None: no CLV) gets the margin alone. The value
    of sending is then ``uplift x worth - cost``.
    """
    value = np.asarray(value, dtype=float)[None, :]
    if clv is None or churn is None:
        return value
    c = np.minimum(np.asarray(churn, dtype=float), MAX_CHURN)
    saved = c / (1.0 - c) * np.asarray(clv, dtype=float)
    saved = np.where(np.isfinite(saved), saved, 0.0)[:, None]
    return value + np.asarray(keeps, dtype=bool)[None, :] * saved


def keeping_offers(
    kinds, churn_definition: str | None, qualifying_roles=("purchase",), which: str = "auto"
) -> np.ndarray:
    """Which offers' conversions keep a customer, ``(offers,)`` bool (``kinds``: the catalog's
    ``kind`` per offer), for :func:`conversion_worth`.

    A conversion is a purchase. Where the models learnt churn as a lack of activity
    (``inactivity`` with ``purchase`` among its ``qualifying_roles``, or ``rhythm``: overdue
    for a purchase), a customer who buys within the horizon has not churned by that very
    definition, whatever the offer was: every offer's conversion keeps them. Where churn is
    the end of a contract (``contract``, ``cancel``), the user's own ``labels`` or unknown
    (None), a purchase need not keep anyone, and only retention and win-back offers
    (``RETENTION_KINDS``) count as keeping. ``which``: ``auto`` (that rule), ``retention``
    or ``every`` (the policy's ``keeping_offers``, for a business that knows better)."""
    kinds = np.asarray(kinds, dtype=object)
    if which == "auto":
        activity = churn_definition == "rhythm" or (
            churn_definition == "inactivity" and "purchase" in qualifying_roles
        )
        which = "every" if activity else "retention"
    return np.ones(len(kinds), bool) if which == "every" else np.isin(kinds, RETENTION_KINDS)


def greedy_offer(expected: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """The eligible offer of highest positive expected value per row, ``(n,)`` offer positions,
    -1 for no offer (none eligible, or none positive; NaN counts as not known, never chosen;
    ties: the first), the greedy rule of the service's ``model`` policy."""
    value = np.where(eligible & ~np.isnan(expected), expected, -np.inf)
    if not value.shape[1]:
        return np.full(len(value), -1)
    return np.where(value.max(axis=1) > 0, value.argmax(axis=1), -1)


def cautious_values(
    expected: np.ndarray, worth: np.ndarray, uplift_se: np.ndarray, baseline: np.ndarray,
    confidence: float = CONFIDENCE,
) -> np.ndarray:  # fmt: skip
    """Expected values that leave the ``baseline`` choice only where the gain is reliable.

    A larger worth per conversion multiplies the uplift model's noise as well as its signal,
    so the offer whose estimate is luckiest wins (the winner's curse). This keeps the
    baseline's choice (today's policy: conversions worth their margin) unless another action's
    value beats it by more than its noise: offer ``k`` replaces the baseline's ``j`` only
    where ``E_k - E_j - z x sqrt(s_k^2 + s_j^2) > 0``, with ``s = uplift_se x worth`` (the
    standard error of each expected value, the worth taken as known; ``s = 0`` for no offer)
    and ``z`` the one-sided normal quantile of ``confidence`` (the conventional 0.95: 1.645).
    The best such action wins, so the rule is ``argmax`` over the returned values, each
    ``E_k - z x sqrt(s_k^2 + s_j^2)``, the baseline's own ``E_j`` unchanged.

    Parameters
    ----------
    expected : (n, offers) value-aware expected values, ``uplift x worth - cost``.
    worth : (n, offers) or (offers,) what a conversion is worth (:func:`conversion_worth`).
    uplift_se : (offers,) standard error of each offer's uplift estimate (NaN: unknown,
        treated as unbounded: the rule never moves to or from that offer).
    baseline : (n,) the baseline's offer position per row, -1 for no offer.

    Returns
    -------
    (n, offers) values for the greedy choice: ``greedy_offer`` of them is the baseline's
    choice wherever no departure is reliably better (a baseline of no offer stays no offer
    unless some ``E_k - z x s_k > 0``).
    """
    z = NormalDist().inv_cdf(confidence)
    se = np.nan_to_num(np.asarray(uplift_se, dtype=float), nan=np.inf)
    spread = np.abs(np.broadcast_to(worth, expected.shape)) * se[None, :]
    rows, sent = np.arange(len(expected)), baseline >= 0
    own = np.where(sent, spread[rows, np.maximum(baseline, 0)], 0.0)
    with np.errstate(invalid="ignore"):  # inf - inf where both are unbounded: never chosen
        out = expected - z * np.hypot(spread, own[:, None])
    out[rows[sent], baseline[sent]] = expected[rows[sent], baseline[sent]]
    return np.where(np.isnan(out) & ~np.isnan(expected), -np.inf, out)


def next_best_offer(
    uplift: pd.DataFrame,
    offers: pd.DataFrame,
    eligible: pd.DataFrame | None = None,
    max_offers: int = 3,
) -> pd.DataFrame:
    """The best offer per row and the ranked top offers.

    Parameters
    ----------
    uplift : (n, offers) predicted uplift in conversion probability, columns = offer ids.
    offers : catalog with ``offer_id``, ``value``, ``cost``.
    eligible : optional (n, offers) booleans (missing columns = not eligible).
    max_offers : how many ranked offers to return.

    Returns
    -------
    DataFrame indexed like ``uplift``: ``best_offer`` (None when no offer has positive
    value), ``best_value`` (0 then), ``offer_1..offer_m`` / ``value_1..value_m`` (eligible
    offers by expected value, best first, positive or not; None / -inf beyond), and
    ``ev_<offer>`` (expected value of every offer; -inf = ineligible or unknown).
    """
    if max_offers < 1:
        raise ValueError(f"max_offers must be >= 1; got {max_offers}")
    ev = expected_values(uplift, offers, eligible)
    values = ev.to_numpy()
    order = np.argsort(-values, axis=1, kind="stable")[:, :max_offers]
    top_v = np.take_along_axis(values, order, axis=1)
    top_id = np.where(np.isfinite(top_v), np.asarray(ev.columns, dtype=object)[order], None)
    positive = top_v[:, 0] > 0
    out = pd.DataFrame(index=ev.index)
    out["best_offer"] = pd.Series(np.where(positive, top_id[:, 0], None), ev.index, object)
    out["best_value"] = np.where(positive, top_v[:, 0], 0.0)
    for r in range(order.shape[1]):
        out[f"offer_{r + 1}"] = pd.Series(top_id[:, r], index=ev.index, dtype=object)
        out[f"value_{r + 1}"] = top_v[:, r]
    return pd.concat([out, ev.add_prefix("ev_")], axis=1)


def eligibility(
    stage: pd.Series,
    owned_products: pd.Series | None,
    offers: pd.DataFrame,
    channel: str | None = None,
    days_since_offer: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Which offers each customer may receive, ``(n, offers)`` booleans indexed like ``stage``.

    Rules: the customer's stage is in the offer's ``eligible_stages`` ("|"-joined; missing =
    every stage); with ``exclude_if_owned`` the offer's product is not among
    ``owned_products`` (sets per row; None = unknown, no exclusion); with ``channel`` the
    offer's channel is that channel (a missing offer channel fits any); with
    ``days_since_offer`` ((n, offers), NaN = never sent) at least ``cooldown_days`` passed.
    """
    stages = stage.astype("object").to_numpy()
    cols = {}
    for _, offer in offers.iterrows():
        ok = _stage_ok(stages, offer["eligible_stages"])
        ok &= ~_owned(owned_products, offer, len(stages)) & _channel_ok(offer, channel)
        ok &= _cooled(days_since_offer, offer, len(stages))
        cols[str(offer["offer_id"])] = ok
    return pd.DataFrame(cols, index=stage.index, columns=offers["offer_id"].astype("str"))


def _stage_ok(stages: np.ndarray, allowed: object) -> np.ndarray:
    if pd.isna(allowed) or not str(allowed).strip():
        return np.ones(len(stages), bool)
    return np.isin(stages, [s.strip() for s in str(allowed).split("|")])


def _owned(owned_products: pd.Series | None, offer: pd.Series, n: int) -> np.ndarray:
    flag = offer["exclude_if_owned"]
    if owned_products is None or pd.isna(flag) or not flag or pd.isna(offer["product"]):
        return np.zeros(n, bool)
    product = offer["product"]
    return np.array([isinstance(s, set | frozenset) and product in s for s in owned_products])


def _channel_ok(offer: pd.Series, channel: str | None) -> bool:
    return channel is None or pd.isna(offer["channel"]) or offer["channel"] == channel


def _cooled(days: pd.DataFrame | None, offer: pd.Series, n: int) -> np.ndarray:
    if days is None or offer["offer_id"] not in days.columns:
        return np.ones(n, bool)
    d = days[offer["offer_id"]].to_numpy(dtype=float)
    return np.isnan(d) | (d >= float(offer["cooldown_days"]))


def policy_probabilities(
    best: pd.Series | np.ndarray,
    arms: list[str],
    epsilon: float = 0.0,
    eligible: pd.DataFrame | np.ndarray | None = None,
) -> np.ndarray:
    """Epsilon-greedy probabilities over ``arms`` per row, ``(n, len(arms))``.

    ``best`` is the chosen arm per row (an offer id; None/NA = "control"). The chosen arm gets
    ``1 - epsilon``; ``epsilon`` is spread evenly over the row's eligible arms ("control" is
    always eligible; ``eligible`` as booleans over offers or arms, default all).
    """
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1]; got {epsilon}")
    chosen = _arm_index(best, arms)
    return epsilon_greedy(chosen, _arm_eligibility(eligible, arms, len(chosen)), epsilon)


def epsilon_greedy(chosen: np.ndarray, ok: np.ndarray, epsilon: float) -> np.ndarray:
    """The numpy core of :func:`policy_probabilities` (the service's hot path): ``chosen``
    arm index per row, ``ok`` ``(n, arms)`` eligible arms (the chosen one among them)."""
    probs = ok * (epsilon / ok.sum(axis=1, keepdims=True))
    probs[np.arange(len(chosen)), chosen] += 1.0 - epsilon
    return probs


def propensity_policy(
    arm_proba: pd.DataFrame, offers: pd.DataFrame, eligible: pd.DataFrame | None = None
) -> pd.Series:
    """Baseline: the eligible offer with the highest predicted conversion probability.

    Ignores the control's probability, so it always sends something (None only when no
    offer is eligible or predicted).
    """
    ids = list(offers["offer_id"].astype("str"))
    p = arm_proba.reindex(columns=ids).to_numpy(dtype=float)
    if eligible is not None:
        p = np.where(_eligible_matrix(eligible, ids, arm_proba.index), p, np.nan)
    score = np.nan_to_num(p, nan=-np.inf)
    pick = np.where(np.isfinite(score.max(axis=1)), np.array(ids, object)[score.argmax(1)], None)
    return pd.Series(pick, index=arm_proba.index, dtype=object, name="best_offer")


def random_policy(
    eligible: pd.DataFrame, arms: list[str], include_control: bool = False
) -> np.ndarray:
    """Baseline: a uniformly random eligible offer (control too if asked, or if none is
    eligible), as probabilities ``(n, len(arms))``."""
    ok = _arm_eligibility(eligible, arms, len(eligible)).astype(float)
    control = arms.index(CONTROL)
    offers_ok = ok.copy()
    offers_ok[:, control] = 0.0
    use = ok if include_control else offers_ok
    use[use.sum(axis=1) == 0, control] = 1.0
    return use / use.sum(axis=1, keepdims=True)


def _arm_index(best: pd.Series | np.ndarray, arms: list[str]) -> np.ndarray:
    labels = pd.Series(np.asarray(best, dtype=object)).fillna(CONTROL).astype(str)
    idx = pd.Index(arms).get_indexer(labels)
    if (idx < 0).any():
        raise ValueError(f"chosen arms not in arms: {sorted(set(labels[idx < 0]))[:5]}")
    return idx


def _arm_eligibility(eligible, arms: list[str], n: int) -> np.ndarray:
    """(n, arms) booleans; control always True; no ``eligible`` = all True."""
    if CONTROL not in arms:
        raise ValueError(f'arms must include "{CONTROL}"; got {arms}')
    if eligible is None:
        return np.ones((n, len(arms)), bool)
    if isinstance(eligible, pd.DataFrame):
        ok = eligible.reindex(columns=arms, fill_value=False).to_numpy(dtype=bool)
    else:
        ok = np.asarray(eligible, dtype=bool)
    if ok.shape != (n, len(arms)):
        raise ValueError(f"eligible must have shape {(n, len(arms))}; got {ok.shape}")
    ok = ok.copy()
    ok[:, arms.index(CONTROL)] = True
    return ok


def _eligible_matrix(eligible: pd.DataFrame, ids: list[str], index: pd.Index) -> np.ndarray:
    if len(eligible) != len(index):
        raise ValueError(f"eligible has {len(eligible)} rows; expected {len(index)}")
    return eligible.reindex(columns=ids, fill_value=False).to_numpy(dtype=bool)
