"""A retailer's plain transaction log (the ``purchase_only`` profile) loaded through its role
map, as a user's own file would be: the data several test modules train and score on."""

from __future__ import annotations

import pandas as pd

from features.loaders import load_mapped
from features.simulator import SimConfig, simulate
from training.profiles import PURCHASE_ONLY


def transaction_log(seed: int, customers: int = 1_500, days: int = 730) -> pd.DataFrame:
    """The events of a simulated ``purchase_only`` log (orders as purchases)."""
    sim = simulate(SimConfig(profile="purchase_only", customers=customers, days=days, seed=seed))
    events = PURCHASE_ONLY["data"]["events"]
    return load_mapped("events", sim.transactions, columns=events["columns"],
                       constants=events["constants"], deduplicate=False).data  # fmt: skip
