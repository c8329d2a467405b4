"""The project configs that read the simulator's other data shapes, as a user would write them.

``lifecycle demo --profile purchase_only|subscription`` writes one of these as
``DATA/lifecycle.yaml`` beside the data, and every later command on ``DATA`` reads it.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from features.project import ProjectConfig

PURCHASE_ONLY = {
    "data": {
        "events": {
            "path": "transactions",
            "columns": {
                "customer_id": "cust_id",
                "timestamp": "order_date",
                "amount": "order_value",
                "product": "category",
            },
            "constants": {"event_type": "purchase"},
        },  # fmt: skip
        "deduplicate": False,  # two identical orders on one day are two orders
    },
    "dataset": {"churn_horizon_days": 90},
}
SUBSCRIPTION = {
    "data": {
        "events": {
            "columns": {
                "customer_id": "user_id",
                "timestamp": "ts",
                "event_type": "event",
                "amount": "value",
            }
        },
        "customers": {
            "path": "accounts",
            "columns": {"customer_id": "user_id", "signup_at": "created_at"},
        },
        "subscriptions": {
            "columns": {"customer_id": "user_id", "product": "plan", "recurring_value": "price"}
        },
    },  # fmt: skip
    "roles": {
        "mapping": {
            "app_launched": "engagement",
            "post_created": "engagement",
            "photo_liked": "engagement",
            "message_sent": "engagement",
            "friend_added": "referral",
            "premium_started": "subscription_start",
            "premium_renewed": "purchase",
            "premium_cancelled": "subscription_cancel",
            "help_request": "support",
        }
    },  # fmt: skip
    "dataset": {"churn_horizon_days": 30},
}
PROFILE_CONFIGS = {"default": {}, "purchase_only": PURCHASE_ONLY, "subscription": SUBSCRIPTION}


def profile_config(profile: str) -> ProjectConfig:
    """The project config that reads a simulated ``profile``'s files."""
    if profile not in PROFILE_CONFIGS:
        raise ValueError(f"unknown profile {profile!r}; known: {', '.join(PROFILE_CONFIGS)}")
    return ProjectConfig.model_validate(PROFILE_CONFIGS[profile])


def write_profile_config(folder: str | Path, profile: str) -> Path | None:
    """Write ``folder/lifecycle.yaml`` for ``profile`` (nothing for the default shape)."""
    if not PROFILE_CONFIGS.get(profile):
        profile_config(profile)  # an unknown name still fails
        return None
    path = Path(folder) / "lifecycle.yaml"
    path.write_text(
        f"# lifecycle.yaml for the simulator's {profile} profile (see docs/lifecycle.yaml)\n"
        + yaml.safe_dump(PROFILE_CONFIGS[profile], sort_keys=False)
    )
    return path
