"""Other data shapes than the default simulator's: ``SimConfig(profile=...)``.

- ``purchase_only`` (:mod:`.purchase_only`): a retailer's plain transaction log.
- ``subscription`` (:mod:`.subscription`): a social app's event log, accounts and billing
  periods.

Each returns a :class:`ProfileSimulation`: observed tables under their own names, in the
business's own vocabulary (not the contract's), and the ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from features.simulator.config import SimConfig


@dataclass
class ProfileSimulation:
    """A simulated data set of a non-default profile.

    ``tables``: observed tables by name (written at the top of the output folder); ``truth``:
    ground-truth tables by name (written under ``truth/``). Tables are also attributes:
    ``sim.transactions``, and ``sim.truth_customers`` for ``truth["customers"]``.
    ``date_columns``: per table (``<table>`` or ``truth_<table>``), the datetime columns that
    are calendar dates (written as ``YYYY-MM-DD`` in CSV; other datetime columns as
    ``YYYY-MM-DD HH:MM:SS``).
    """

    tables: dict[str, pd.DataFrame]
    truth: dict[str, pd.DataFrame]
    config: SimConfig
    date_columns: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def OBSERVED(self) -> tuple[str, ...]:  # noqa: N802 - mirrors Simulation.OBSERVED
        return tuple(self.tables)

    @property
    def TRUTH(self) -> tuple[str, ...]:  # noqa: N802 - mirrors Simulation.TRUTH
        return tuple(f"truth_{name}" for name in self.truth)

    def __getattr__(self, name: str) -> pd.DataFrame:
        if name.startswith("__") or name in ("tables", "truth", "config", "date_columns"):
            raise AttributeError(name)
        if name in self.tables:
            return self.tables[name]
        if name.startswith("truth_") and name.removeprefix("truth_") in self.truth:
            return self.truth[name.removeprefix("truth_")]
        raise AttributeError(
            f"{type(self).__name__} of profile {self.config.profile!r} has no "
            f"table {name!r}; tables: {[*self.OBSERVED, *self.TRUTH]}"
        )


def simulate_profile(config: SimConfig) -> ProfileSimulation:
    """Simulate the data set of ``config.profile`` (not ``"default"``)."""
    if config.profile == "purchase_only":
        from features.simulator.profiles import purchase_only as module
    elif config.profile == "subscription":
        from features.simulator.profiles import subscription as module
    else:
        raise ValueError(
            f"simulate_profile: profile must be purchase_only or subscription; "
            f"got {config.profile!r} (the default profile is simulate())"
        )
    tables, truth = module.simulate(config)
    return ProfileSimulation(tables, truth, config, dict(getattr(module, "DATE_COLUMNS", {})))


__all__ = ["ProfileSimulation", "simulate_profile"]
