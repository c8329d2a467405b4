"""The ``subscription`` profile's fixed tables and its users: who signs up, with which traits.

Every name here is the app's own vocabulary; none of the event types is in
``features/default_roles.yaml`` (the tests check it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.simulator.profiles.common import expit

ENGAGEMENT = (
    "app_launched", "post_created", "photo_liked", "message_sent", "friend_added", "help_request",
)  # fmt: skip
BILLING = ("premium_started", "premium_renewed", "premium_cancelled")
EVENT_TYPES = (*ENGAGEMENT, *BILLING)
EV = {name: i for i, name in enumerate(EVENT_TYPES)}
BASE_RATE = np.array([0.3, 0.04, 0.25, 0.18, 0.03, 0.01])  # per day, a typical user
INTEREST_POWER = np.array([0.25, 0.8, 0.4, 1.0, 0.8, 0.2])  # how much each follows interest
WEEKEND_LIFT = np.array([1.0, 1.0, 1.0, 1.0, 1.05, 1.15, 1.12])  # Monday first

PLANS = ("monthly_basic", "monthly_plus", "annual")
PLAN_MONTHS = np.array([1, 1, 12])
PLAN_SHARE = np.array([0.55, 0.30, 0.15])
PRICE = np.array([[4.99, 9.99, 59.99], [2.99, 5.99, 35.99], [1.99, 3.99, 23.99]])  # tier x plan
PLAN_LOGIT = np.array([-2.4, -2.65, -1.5])  # base log-odds of cancelling at a renewal

COUNTRIES = ("US", "GB", "DE", "FR", "CA", "BR", "MX", "IN")
COUNTRY_SHARE = np.array([0.30, 0.10, 0.09, 0.07, 0.05, 0.14, 0.09, 0.16])
COUNTRY_TIER = np.array([0, 0, 0, 0, 0, 1, 1, 2])  # regional pricing
COUNTRY_RISK = np.array([0.0, -0.1, -0.2, 0.0, -0.05, 0.25, 0.15, 0.35])
DEVICES = ("ios", "android", "web")
DEVICE_SHARE = np.array([0.42, 0.45, 0.13])
DEVICE_RISK = np.array([-0.1, 0.15, 0.25])
REFERRALS = ("organic", "app_store_search", "friend_invite", "paid_social", "influencer")
REFERRAL_SHARE = np.array([0.34, 0.20, 0.20, 0.19, 0.07])
FRIEND_INVITE, PAID_SOCIAL = REFERRALS.index("friend_invite"), REFERRALS.index("paid_social")


@dataclass
class Users:
    """Per-user arrays ordered by sign-up. Attributes are observed (accounts table); the rest
    is latent (truth only): ``general`` engagement, per-type ``traits`` (log rate multipliers:
    activity, content, content, social, social, friction), ``price_sensitivity``, ``frailty``
    (unobserved churn risk), ``interest_mean`` and ``interest_decay`` (novelty wearing off)."""

    created_day: np.ndarray
    created_sec: np.ndarray
    country: np.ndarray
    device: np.ndarray
    referral: np.ndarray
    verify_delay: np.ndarray  # seconds after sign-up; NaN = never verifies
    general: np.ndarray
    activity: np.ndarray
    content: np.ndarray
    social: np.ndarray
    friction: np.ndarray
    price_sensitivity: np.ndarray
    frailty: np.ndarray
    interest_mean: np.ndarray
    interest_decay: np.ndarray

    @property
    def n(self) -> int:
        return len(self.created_day)

    @property
    def traits(self) -> np.ndarray:
        """``(n, len(ENGAGEMENT))`` log multipliers of each engagement type's rate."""
        return np.stack(
            [self.activity, self.content, self.content, self.social, self.social, self.friction],
            axis=1,
        )

    @property
    def tier(self) -> np.ndarray:
        return COUNTRY_TIER[self.country]


def draw_users(n: int, days: int, seconds: np.ndarray, rng: np.random.Generator) -> Users:
    """``n`` users signing up over ``days`` (a growing app), ordered by sign-up.

    ``seconds``: ``n`` sign-up times of day (drawn by the caller from the daily rhythm).
    """
    weight = np.linspace(1.0, 1.6, days)
    created = np.sort(rng.choice(days, n, p=weight / weight.sum()))
    country = rng.choice(len(COUNTRIES), n, p=COUNTRY_SHARE)
    device = rng.choice(len(DEVICES), n, p=DEVICE_SHARE)
    referral = rng.choice(len(REFERRALS), n, p=REFERRAL_SHARE)
    general = rng.normal(size=n)
    z = rng.normal(size=(7, n))
    verifies = rng.random(n) < expit(0.9 + 0.6 * general)
    delay = np.exp(rng.normal(np.log(900), 2.0, n))  # minutes to weeks
    return Users(
        created_day=created.astype(np.int64),
        created_sec=seconds.astype(np.int64),
        country=country,
        device=device,
        referral=referral,
        verify_delay=np.where(verifies, np.minimum(delay, 60 * 86_400), np.nan),
        general=general,
        activity=0.2 * general + 0.8 * z[0],
        content=0.2 * general + 0.7 * z[1],
        social=0.4 * general + 0.7 * z[2] + 0.35 * (referral == FRIEND_INVITE),
        friction=0.7 * z[3] + 0.25 * (device == DEVICES.index("web")),
        price_sensitivity=z[4] + 0.5 * (COUNTRY_TIER[country] > 0),
        frailty=0.6 * z[5],
        interest_mean=0.25 * general + 0.3 * z[6] - 0.25 * (referral == PAID_SOCIAL),
        interest_decay=rng.gamma(2.0, 0.3, n),
    )
