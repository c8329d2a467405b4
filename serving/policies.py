"""The offer policies: which action a decision takes (no offer, or one of the eligible offers)
and the probability the policy had of taking it (its *propensity*, logged with every decision
so that the ledger can be evaluated off-policy and learnt from like a campaign log).

- ``model`` (an offers model and a catalog): epsilon-greedy on the model's expected incremental
  value ``uplift x value - cost``: the best eligible offer with a positive value, else no offer,
  with probability ``1 - e + e/m``; any other of the ``m`` actions (the eligible offers and no
  offer) with ``e/m`` each. An eligible offer without an expected value (new to the catalog,
  or an arm the model had too few sends of) is among the ``m`` but never the greedy choice:
  exploration alone sends it, and the ledger's sends of it teach the next retrain.
- ``cold_start`` (a catalog but no offers model: no campaign logs to learn from yet): no offer
  (the control arm) with probability ``c`` (``policy.cold_start_control_share``), else one of
  the ``m`` eligible offers uniformly at random, ``(1 - c) / m`` each; no offer with
  probability 1 when none is eligible. Every choice is random, so the decisions and the
  outcomes reported for them are the randomised campaign log the first offers model is
  trained on.
- no policy (no catalog): no offers and no decision; nothing is logged.

Both policies take one uniform ``[0, 1)`` draw per customer (:func:`draw`), from the service's
RNG (seeded by the config's ``seed``).
"""

from __future__ import annotations

import numpy as np

from training.policy import epsilon_greedy

MODEL, COLD_START = "model", "cold_start"


def offers_status(
    model_missing: str | None, catalog_missing: str | None, control_share: float
) -> dict:
    """``{"available", "policy", "reason"}``: the policy that decides offers (``"model"``,
    ``"cold_start"`` or None: no offers) and why there is no model or no offers (None with the
    model). ``model_missing``: why there is no offers model (None: there is one);
    ``catalog_missing``: why there is no offer catalog (None: there is one)."""
    if catalog_missing is not None:
        unused = "" if model_missing else " (the offers model cannot decide without it)"
        return {"available": False, "policy": None, "reason": f"{catalog_missing}{unused}"}
    if model_missing is not None:
        reason = (
            f"{model_missing}; the cold-start policy chooses among the eligible offers at "
            f"random, holding out {control_share:g} of the decisions as control (no offer), "
            "so the ledger collects the campaign log an offers model learns from"
        )
        return {"available": True, "policy": COLD_START, "reason": reason}
    return {"available": True, "policy": MODEL, "reason": None}


def draw(proba: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """The arm of each row whose slice ``[cum[a-1], cum[a])`` of ``[0, 1)`` (``cum``: the row's
    cumulative ``proba``) holds the row's uniform draw: arm ``a`` with probability
    ``proba[a]``, never an arm without a chance (its slice is empty). A draw at or past the
    row's total (below 1 by rounding) takes its last arm with a chance."""
    chosen = (draws[:, None] >= np.cumsum(proba, axis=1)).sum(axis=1)
    past = chosen == proba.shape[1]  # else proba[chosen] > 0: cum[chosen - 1] <= u < cum[chosen]
    if past.any():
        chosen[past] = proba.shape[1] - 1 - (proba[past, ::-1] > 0).argmax(axis=1)
    return chosen


def greedy_choice(
    expected: np.ndarray, eligible: np.ndarray, draws: np.ndarray, exploration: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``model`` policy: arm per row (0 = no offer, ``j + 1`` = offer ``j``), its
    propensity and whether exploration chose it (not the greedy rule); ``expected`` and
    ``eligible``: ``(n, offers)``."""
    value = np.where(eligible & ~np.isnan(expected), expected, -np.inf)  # NaN: explore only
    best = value.argmax(axis=1) if value.shape[1] else np.zeros(len(value), np.intp)
    greedy = np.where(value.max(axis=1, initial=-np.inf) > 0, best + 1, 0)
    ok = np.ones((len(value), value.shape[1] + 1), bool)  # no offer (column 0): always
    ok[:, 1:] = eligible
    proba = epsilon_greedy(greedy, ok, exploration)
    chosen = draw(proba, draws)
    return chosen, proba[np.arange(len(chosen)), chosen], chosen != greedy


def cold_start_proba(eligible: np.ndarray, control_share: float) -> np.ndarray:
    """``(n, 1 + offers)``: the ``cold_start`` policy's probability of each arm (column 0: no
    offer): ``c`` and ``(1 - c) / m`` for the ``m`` eligible offers, or 1 for no offer when
    none is eligible; each row sums to 1."""
    m = eligible.sum(axis=1)
    some = m > 0
    proba = np.empty((len(eligible), eligible.shape[1] + 1))
    proba[:, 0] = np.where(some, control_share, 1.0)
    proba[:, 1:] = eligible * np.where(some, (1.0 - control_share) / np.maximum(m, 1), 0.0)[:, None]
    return proba


def cold_start_choice(
    eligible: np.ndarray, draws: np.ndarray, control_share: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``cold_start`` policy: arm per row, its propensity (:func:`cold_start_proba`) and
    whether it was a random choice (some offer was eligible)."""
    proba = cold_start_proba(eligible, control_share)
    chosen = draw(proba, draws)
    return chosen, proba[np.arange(len(chosen)), chosen], eligible.any(axis=1)
