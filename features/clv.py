"""Customer lifetime value from the buy-till-you-die models, fitted without labels.

CLV here is the expected **margin** over a horizon, discounted: ``margin_share`` x (expected
spend per purchase, Gamma-Gamma) x (expected purchases in each step of the horizon, BG/NBD,
each weighted by the discount factor at the step's middle). Units: days, the data's currency;
``annual_discount_rate`` 0.1 means a margin a year away is worth 1 / 1.1 of one today.
"""

from __future__ import annotations

import numpy as np

STEP_DAYS = 30  # the horizon is cut in steps this long (the last one shorter)


def discount_steps(horizon_days: float, annual_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Step ends (days) covering ``(0, horizon]`` and each step's discount weight
    ``(1 + annual_rate) ** -(mid-step days / 365)``."""
    if not horizon_days > 0:
        raise ValueError(f"horizon_days must be > 0; got {horizon_days!r}")
    if not 0.0 <= annual_rate < 10.0:
        raise ValueError(f"annual_discount_rate must be in [0, 10); got {annual_rate!r}")
    ends = np.unique(np.r_[np.arange(STEP_DAYS, horizon_days, STEP_DAYS), horizon_days])
    mid = (ends + np.r_[0.0, ends[:-1]]) / 2.0
    return ends.astype(np.float64), (1.0 + annual_rate) ** (-mid / 365.0)


def discounted_purchases(bgnbd, horizon_days: float, annual_rate: float, x, tx, T) -> np.ndarray:
    """Sum over the steps of E[purchases in the step | x, tx, T] x the step's discount weight
    (BG/NBD ``expected_purchases`` differences); equals the plain expectation at rate 0."""
    ends, weights = discount_steps(horizon_days, annual_rate)
    cumulative = np.stack([bgnbd.expected_purchases(t, x, tx, T) for t in ends])
    per_step = np.diff(cumulative, axis=0, prepend=0.0)
    return weights @ per_step


def expected_clv(
    bgnbd, spend, x, tx, T, monetary_value, horizon_days: float = 365.0,
    annual_rate: float = 0.1, margin_share: float = 1.0,
) -> np.ndarray:  # fmt: skip
    """Discounted expected margin over ``horizon_days`` per customer: ``margin_share`` x the
    Gamma-Gamma expected spend per purchase (the population's mean for customers without a
    repeat purchase) x the discounted expected purchases. NaN where the summary is NaN (no
    purchase yet)."""
    if not 0.0 < margin_share <= 1.0:
        raise ValueError(f"margin_share must be in (0, 1]; got {margin_share!r}")
    per_purchase = spend.conditional_expected_average_profit(x, monetary_value)
    return margin_share * per_purchase * discounted_purchases(bgnbd, horizon_days, annual_rate,
                                                              x, tx, T)  # fmt: skip
