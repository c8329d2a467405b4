"""Fixed tables of the simulated business: stages, transition rates, event rates, products, offers.

Every table is indexed by position in ``STAGES`` (and ``EVENT_TYPES``); the simulator only
reads these, so the whole world can be read off this one file.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.contracts import STAGES  # the one list of lifecycle stages

S = {name: i for i, name in enumerate(STAGES)}
PURCHASER_STAGES = np.array(
    [S[s] for s in ("purchase", "retention", "advocacy", "at_risk", "win_back")]
)

# Daily base hazards from a stage (row) to another (column). A customer's hazard is this rate
# times their multiplier for the *target* column (see dynamics.stage_multipliers).
BASE_RATES = np.zeros((len(STAGES), len(STAGES)))
for _src, _dst, _rate in [
    ("awareness", "engagement", 0.020),
    ("awareness", "churned", 0.004),
    ("engagement", "evaluation", 0.020),
    ("engagement", "churned", 0.004),
    ("evaluation", "purchase", 0.040),
    ("evaluation", "churned", 0.006),
    ("purchase", "retention", 0.020),
    ("purchase", "at_risk", 0.004),
    ("retention", "advocacy", 0.003),
    ("retention", "at_risk", 0.003),
    ("advocacy", "retention", 0.010),
    ("advocacy", "at_risk", 0.0015),
    ("at_risk", "retention", 0.015),
    ("at_risk", "churned", 0.030),
    ("churned", "win_back", 0.0015),
    ("win_back", "retention", 0.030),
    ("win_back", "at_risk", 0.005),
]:
    BASE_RATES[S[_src], S[_dst]] = _rate

# Stage mix of the customers already known on day 0.
INITIAL_STAGE_MIX = np.array([0.10, 0.08, 0.05, 0.07, 0.40, 0.10, 0.08, 0.10, 0.02])

# Event types the simulator emits, each with the group of customer traits that scales it and
# its expected count per day in each stage (columns in STAGES order).
EVENT_TYPES = (
    "page_view",
    "email_click",
    "app_open",
    "login",
    "pricing_view",
    "add_to_cart",
    "trial_start",
    "purchase",
    "refund",
    "support_ticket",
    "nps_response",
    "referral",
    "review",
)
E = {name: i for i, name in enumerate(EVENT_TYPES)}
TRAIT_GROUPS = ("visit", "engagement", "intent", "purchase", "support", "plain")
EVENT_GROUP = np.array([0, 1, 1, 1, 2, 2, 2, 3, 3, 4, 5, 5, 5])
#                          aw     en     ev     pu     re     ad     ar     ch      wb
EVENT_RATES = np.array(
    [
        [0.080, 0.060, 0.100, 0.050, 0.040, 0.050, 0.015, 0.0020, 0.050],  # page_view
        [0.000, 0.030, 0.030, 0.030, 0.025, 0.030, 0.008, 0.0010, 0.020],  # email_click
        [0.000, 0.020, 0.020, 0.040, 0.035, 0.045, 0.008, 0.0005, 0.030],  # app_open
        [0.000, 0.020, 0.020, 0.030, 0.030, 0.040, 0.008, 0.0005, 0.020],  # login
        [0.005, 0.010, 0.060, 0.005, 0.004, 0.004, 0.006, 0.0010, 0.005],  # pricing_view
        [0.000, 0.003, 0.040, 0.010, 0.012, 0.014, 0.004, 0.0005, 0.010],  # add_to_cart
        [0.000, 0.001, 0.010, 0.000, 0.000, 0.000, 0.000, 0.0000, 0.000],  # trial_start
        [0.000, 0.000, 0.000, 0.012, 0.020, 0.024, 0.004, 0.0002, 0.015],  # purchase
        [0.000, 0.000, 0.000, 0.0006, 0.0008, 0.0006, 0.0006, 0.0, 0.0005],  # refund
        [0.000, 0.000, 0.001, 0.003, 0.002, 0.0015, 0.006, 0.0000, 0.003],  # support_ticket
        [0.000, 0.000, 0.000, 0.004, 0.004, 0.006, 0.004, 0.0000, 0.004],  # nps_response
        [0.000, 0.000, 0.000, 0.000, 0.0005, 0.006, 0.000, 0.0000, 0.000],  # referral
        [0.000, 0.000, 0.000, 0.001, 0.001, 0.005, 0.001, 0.0000, 0.001],  # review
    ]
).T  # -> (stage, event type)

CHANNELS = ("web", "app", "store", "email")
EVENT_FIXED_CHANNEL = {E["email_click"]: "email", E["app_open"]: "app", E["login"]: "app"}
PRODUCT_EVENTS = np.array([E["purchase"], E["refund"], E["add_to_cart"]])

PLANS = ("none", "basic", "standard", "premium")
PLAN_SHARE = np.array([0.30, 0.30, 0.25, 0.15])
PLAN_PRICE_INDEX = np.array([0.0, 0.3, 0.6, 1.0])
REGIONS = ("north", "south", "east", "west")
ACQUISITION = ("organic", "paid_search", "social", "referral", "partner")

PRODUCTS = pd.DataFrame(
    [
        ("starter_kit", "core", 40.0),
        ("pro_kit", "core", 90.0),
        ("premium_plan", "core", 150.0),
        ("annual_plan", "core", 200.0),
        ("cable", "accessories", 15.0),
        ("case", "accessories", 25.0),
        ("charger", "accessories", 35.0),
        ("setup_service", "services", 60.0),
        ("extended_warranty", "services", 45.0),
        ("ebook", "content", 10.0),
        ("course", "content", 80.0),
        ("templates", "content", 20.0),
    ],
    columns=["product", "category", "price"],
)
CATEGORIES = ("core", "accessories", "services", "content")

# Customer segments the logging (campaign) policy sees: observable from purchase history.
SEGMENTS = ("prospect", "active", "lapsing", "lapsed")
ACTIVE_DAYS, LAPSING_DAYS = 60, 180

OFFERS = pd.DataFrame(
    [
        # offer_id, kind, product, value, cost, eligible_stages, exclude_if_owned, cooldown, channel
        ("upsell_premium", "upsell", "premium_plan", 60.0, 1.0, "purchase|retention|advocacy", True, 30, "email"),
        ("upsell_annual", "upsell", "annual_plan", 45.0, 1.0, "retention|advocacy", True, 30, "email"),
        ("xsell_accessories", "cross_sell", "case", 8.0, 0.5, "purchase|retention|advocacy|at_risk", False, 14, "app"),
        ("xsell_services", "cross_sell", "setup_service", 22.0, 0.6, "purchase|retention|advocacy", True, 21, "email"),
        ("xsell_starter", "cross_sell", "starter_kit", 18.0, 0.5, "engagement|evaluation", False, 14, "email"),
        ("ret_discount20", "retention", "pro_kit", 20.0, 2.0, "at_risk|retention", False, 30, "email"),
        ("ret_loyalty", "retention", None, 8.0, 1.0, "at_risk|retention|advocacy", False, 30, "app"),
        ("wb_comeback30", "winback", "pro_kit", 25.0, 1.5, "churned", False, 45, "email"),
        ("wb_freemonth", "winback", "premium_plan", 22.0, 3.0, "churned", False, 60, "email"),
    ],
    columns=[
        "offer_id", "kind", "product", "value", "cost", "eligible_stages",
        "exclude_if_owned", "cooldown_days", "channel",
    ],
)  # fmt: skip

# Logging policy: relative weights of each arm ("control" = held-out, no offer) per segment.
# An arm missing from a segment is not eligible there (propensity 0).
ARM_WEIGHTS = {
    "prospect": {"control": 1.0, "xsell_starter": 2.0},
    "active": {
        "control": 1.0, "upsell_premium": 1.5, "upsell_annual": 1.0,
        "xsell_accessories": 2.0, "xsell_services": 1.0, "ret_loyalty": 0.5,
    },
    "lapsing": {"control": 1.0, "ret_discount20": 2.0, "ret_loyalty": 1.5, "xsell_accessories": 0.5},
    "lapsed": {"control": 1.0, "wb_comeback30": 2.0, "wb_freemonth": 1.0, "ret_discount20": 0.5},
}  # fmt: skip
ARMS = ("control", *OFFERS["offer_id"])
