"""The feature registry: every feature's name, dtype, fill value and one-line definition.

Features are computed family by family (one grouped pass each, see ``features.families``);
this module only *declares* them, so a reader can see every feature in one place. A model's
feature set is a named, versioned tuple of registered names (:class:`FeatureSet`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from features.roles import ROLES

WINDOWS = (7, 30, 90, 365)
TREND_RECENT, TREND_BEFORE = 30, 90  # last 30 days vs the 90 before them
LIFETIME_RATE_WINDOWS = (90, 365)  # recent purchase rate vs the customer's own lifetime rate
CHANNELS = ("web", "app", "store", "email")
OFFER_KINDS = ("upsell", "cross_sell", "retention", "winback")
RETENTION_KINDS = ("retention", "winback")  # offers whose conversion keeps a customer (CLV)
# plural nouns for count features: purchases_90d, support_tickets_30d, ...
ROLE_NOUN = {
    "visit": "visits", "signup": "signups", "engagement": "engagements", "intent": "intents",
    "purchase": "purchases", "refund": "refunds", "subscription_start": "subscription_starts",
    "subscription_cancel": "subscription_cancels", "support": "support_tickets",
    "feedback": "feedback_responses", "referral": "referrals", "review": "reviews",
}  # fmt: skip
NAN = float("nan")


@dataclass(frozen=True)
class Feature:
    """One registered feature.

    ``fill`` is the value for a customer with no data for it (e.g. 0 purchases; NaN where
    "no data" is not zero, like the mean interval of a one-time buyer).
    """

    name: str
    family: str
    definition: str
    dtype: str = "float32"
    fill: float = 0.0


def _role_window_features() -> list[Feature]:
    out = [
        Feature(f"events_{w}d", "role_windows", f"events of any role in the last {w} days")
        for w in WINDOWS
    ]
    for role in ROLES:
        for w in WINDOWS:
            noun = ROLE_NOUN[role]
            out.append(
                Feature(f"{noun}_{w}d", "role_windows", f"{role}-role events, last {w} days")
            )
    return out


def _rfm_features() -> list[Feature]:
    out = [
        Feature(f"spend_{w}d_amount", "rfm", f"sum of purchase amounts, last {w} days")
        for w in WINDOWS
    ]
    out += [
        Feature("avg_order_365d_amount", "rfm", "mean purchase amount, last 365 days", fill=NAN),
        Feature("recency_days", "rfm", "days since the last event of any role", fill=NAN),
        Feature("purchase_recency_days", "rfm", "days since the last purchase", fill=NAN),
        Feature("engagement_recency_days", "rfm", "days since the last engagement", fill=NAN),
        Feature("cancel_recency_days", "rfm", "days since the last subscription cancel", fill=NAN),
        Feature(
            "subscription_start_recency_days",
            "rfm",
            "days since the last subscription start",
            fill=NAN,
        ),
    ]
    return out


def _trend_features() -> list[Feature]:
    text = "({noun} in the last 30 days + 1) / ({noun} in the 90 days before / 3 + 1)"
    return [
        Feature(f"{noun}_trend_30d_vs_90d", "trends", text.format(noun=noun), fill=1.0)
        for noun in ("events", "purchases", "engagements", "visits")
    ] + [
        Feature(
            "spend_trend_30d_vs_90d", "trends",
            "(spend in the last 30 days + 1) / (spend in the 90 days before / 3 + 1)", fill=1.0,
        )
    ]  # fmt: skip


def _interval_features() -> list[Feature]:
    return [
        Feature("purchases_total", "intervals", "purchases ever, up to as_of"),
        Feature("purchase_interval_mean_days", "intervals",
                "mean days between consecutive purchases", fill=NAN),
        Feature("purchase_interval_std_days", "intervals",
                "standard deviation of days between purchases", fill=NAN),
        Feature("purchase_recency_vs_interval", "intervals",
                "days since last purchase / the customer's mean interval", fill=NAN),
        Feature("spend_total_amount", "intervals", "sum of purchase amounts ever, up to as_of"),
        Feature("avg_order_amount", "intervals", "mean purchase amount ever", fill=NAN),
        Feature("first_order_amount", "intervals",
                "amount of the first purchase (the mean of those at the first moment)", fill=NAN),
    ] + [
        Feature(f"purchase_rate_{w}d_vs_lifetime", "intervals",
                f"purchases in the last {w} days / the customer's lifetime rate over {w} days "
                f"(purchases ever x {w} / max(days since the first purchase, {w}))", fill=NAN)
        for w in LIFETIME_RATE_WINDOWS
    ]  # fmt: skip


def _tenure_features() -> list[Feature]:
    return [
        Feature("tenure_days", "tenure", "days since the customer's first event"),
        Feature("days_since_first_purchase", "tenure", "days since the first purchase", fill=NAN),
        Feature("days_since_signup", "tenure",
                "days since signup_at (customers table) or the first signup event", fill=NAN),
    ]  # fmt: skip


def _product_channel_features() -> list[Feature]:
    out = [
        Feature("distinct_products_365d", "products", "distinct products bought, last 365 days"),
        Feature("top_product_share_365d", "products",
                "share of purchases on the most bought product, last 365 days", fill=NAN),
    ]  # fmt: skip
    out += [
        Feature(f"channel_{c}_share_90d", "channels", f"share of events on {c}, last 90 days")
        for c in (*CHANNELS, "other")
    ]
    return out


def _feedback_features() -> list[Feature]:
    return [
        Feature("feedback_last_score", "feedback", "the latest feedback score", fill=NAN),
        Feature("feedback_mean_score_365d", "feedback", "mean feedback score, last 365 days",
                fill=NAN),
    ]  # fmt: skip


def _offer_features() -> list[Feature]:
    out = [
        Feature("contacts_90d", "offers", "campaign contacts (exposures), last 90 days"),
        Feature("contacts_total", "offers", "campaign contacts ever, up to as_of"),
        Feature("offer_conversions_total", "offers",
                "converted exposures whose response window closed by as_of"),
        Feature("days_since_last_contact", "offers", "days since the last exposure", fill=NAN),
    ]  # fmt: skip
    out += [
        Feature(f"response_rate_{k}", "offers",
                f"conversion rate of closed {k} exposures (needs the offers catalog)", fill=NAN)
        for k in OFFER_KINDS
    ]  # fmt: skip
    return out


REGISTRY: dict[str, Feature] = {
    f.name: f
    for f in (
        *_role_window_features(), *_rfm_features(), *_trend_features(), *_interval_features(),
        *_tenure_features(), *_product_channel_features(), *_feedback_features(),
        *_offer_features(),
    )
}  # fmt: skip
FAMILIES = tuple(dict.fromkeys(f.family for f in REGISTRY.values()))


@dataclass(frozen=True)
class FeatureSet:
    """A model's inputs: a named, versioned tuple of registered features plus static attributes.

    ``static`` names columns of the customers table passed through as they are (categoricals
    stay categorical); ``None`` means every attribute column the customers table has.
    """

    name: str
    version: int
    features: tuple[str, ...]
    static: tuple[str, ...] | None = None
    families: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        unknown = [f for f in self.features if f not in REGISTRY]
        if unknown:
            raise ValueError(
                f"feature set {self.name}@{self.version}: unknown features {unknown[:5]}; "
                f"registered names are listed in features.registry.REGISTRY"
            )
        families = tuple(dict.fromkeys(REGISTRY[f].family for f in self.features))
        object.__setattr__(self, "families", families)

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"


ADDED_IN_2 = ("cancel_recency_days", "subscription_start_recency_days")
ADDED_IN_3 = (  # lifetime monetary value and recent-vs-lifetime purchase rates
    "spend_total_amount", "avg_order_amount", "first_order_amount",
    *(f"purchase_rate_{w}d_vs_lifetime" for w in LIFETIME_RATE_WINDOWS),
)  # fmt: skip
DEFAULT_1 = FeatureSet("default", 1, tuple(f for f in REGISTRY if f not in ADDED_IN_2 + ADDED_IN_3))
DEFAULT_2 = FeatureSet("default", 2, tuple(f for f in REGISTRY if f not in ADDED_IN_3))
DEFAULT = FeatureSet("default", 3, tuple(REGISTRY))
RFM_CORE = FeatureSet(
    "rfm_core", 1,
    tuple(f"purchases_{w}d" for w in WINDOWS) + tuple(f"spend_{w}d_amount" for w in WINDOWS)
    + ("purchase_recency_days",),
    static=(),
)  # fmt: skip
FEATURE_SETS = {fs.key: fs for fs in (DEFAULT_1, DEFAULT_2, DEFAULT, RFM_CORE)}


def get_feature_set(key: str | FeatureSet) -> FeatureSet:
    """A feature set by ``name@version`` (or ``name`` for its latest version)."""
    if isinstance(key, FeatureSet):
        return key
    if "@" not in key:
        versions = [fs for fs in FEATURE_SETS.values() if fs.name == key]
        if versions:
            return max(versions, key=lambda fs: fs.version)
    if key not in FEATURE_SETS:
        raise KeyError(f"unknown feature set {key!r}; known: {sorted(FEATURE_SETS)}")
    return FEATURE_SETS[key]
