"""Data contracts, roles, loaders and (elsewhere in this package) features and the simulator."""

from features.contracts import OFFER_KINDS, STAGES, ContractError, LoadReport
from features.loaders import (
    LoadResult,
    load_customers,
    load_events,
    load_exposures,
    load_offers,
    load_transactions,
)
from features.roles import ROLES, RoleMap, default_role_map

__all__ = [
    "OFFER_KINDS",
    "ROLES",
    "STAGES",
    "ContractError",
    "LoadReport",
    "LoadResult",
    "RoleMap",
    "default_role_map",
    "load_customers",
    "load_events",
    "load_exposures",
    "load_offers",
    "load_transactions",
]
