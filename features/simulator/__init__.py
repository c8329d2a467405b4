"""A customer-lifecycle simulator with ground truth.

>>> from features.simulator import SimConfig, simulate
>>> sim = simulate(SimConfig(customers=1_000, seed=1))
>>> sim.events.columns.tolist()[:3]
['customer_id', 'timestamp', 'event_type']

Other data shapes (``SimConfig.profile``, :mod:`features.simulator.profiles`) come back as a
:class:`ProfileSimulation`:

>>> shop = simulate(SimConfig(profile="purchase_only", customers=200, days=90, seed=1))
>>> shop.transactions.columns.tolist()
['cust_id', 'order_date', 'order_value', 'category']
"""

from __future__ import annotations

from features.simulator.config import SimConfig
from features.simulator.io import write_simulation
from features.simulator.profiles import ProfileSimulation, simulate_profile
from features.simulator.run import run
from features.simulator.tables import Simulation, build_tables


def simulate(
    config: SimConfig | None = None, progress: bool = False, **overrides
) -> Simulation | ProfileSimulation:
    """Simulate a data set; ``overrides`` replace fields of ``config`` (or of the defaults).

    The default profile gives a :class:`Simulation`; ``purchase_only`` and ``subscription`` a
    :class:`ProfileSimulation` (``progress`` applies to the default profile only).
    """
    base = config or SimConfig()
    cfg = base.model_copy(update=overrides) if overrides else base
    if overrides:
        cfg = SimConfig(**cfg.model_dump())  # re-validate
    if cfg.profile != "default":
        return simulate_profile(cfg)
    return build_tables(run(cfg, progress=progress))


__all__ = ["ProfileSimulation", "SimConfig", "Simulation", "simulate", "write_simulation"]
