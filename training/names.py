"""Names of the registered models, importable without MLflow or the training pipeline (the
service needs them at start-up)."""

from __future__ import annotations

REGISTERED_NAMES = {"churn": "lifecycle-churn", "stage": "lifecycle-stage",
                    "offers": "lifecycle-offers", "clv": "lifecycle-clv"}  # fmt: skip
