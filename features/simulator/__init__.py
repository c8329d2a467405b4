"""A customer-lifecycle simulator with ground truth.

>>> from features.simulator import SimConfig, simulate
>>> sim = simulate(SimConfig(customers=1_000, seed=1))
>>> sim.events.columns.tolist()[:3]
['customer_id', 'timestamp', 'event_type']
"""

from __future__ import annotations

from features.simulator.config import SimConfig
from features.simulator.io import write_simulation
from features.simulator.run import run
from features.simulator.tables import Simulation, build_tables


def simulate(config: SimConfig | None = None, progress: bool = False, **overrides) -> Simulation:
    """Simulate a data set; ``overrides`` replace fields of ``config`` (or of the defaults)."""
    base = config or SimConfig()
    cfg = base.model_copy(update=overrides) if overrides else base
    if overrides:
        cfg = SimConfig(**cfg.model_dump())  # re-validate
    return build_tables(run(cfg, progress=progress))


__all__ = ["SimConfig", "Simulation", "simulate", "write_simulation"]
