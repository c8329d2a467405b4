"""Write a simulated data set to a folder: observable tables at the top, ground truth in truth/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pandas as pd

from features.simulator.config import SimConfig
from features.simulator.tables import Simulation

Format = Literal["parquet", "csv"]


def write_simulation(
    sim: Simulation, out: str | Path, config: SimConfig, fmt: Format = "parquet"
) -> dict[str, Path]:
    """Write every table of ``sim`` under ``out``; returns table name -> file path.

    Layout: ``out/{events,customers,offers,exposures}.<fmt>``, ``out/truth/<table>.<fmt>`` and
    ``out/simulation.json`` (the config that made it, for lineage).
    """
    out = Path(out)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name in (*Simulation.OBSERVED, *Simulation.TRUTH):
        folder = out if name in Simulation.OBSERVED else out / "truth"
        path = folder / f"{name.removeprefix('truth_')}.{fmt}"
        _write(getattr(sim, name), path, fmt)
        paths[name] = path
    (out / "simulation.json").write_text(json.dumps(config.model_dump(mode="json"), indent=2))
    return paths


def _write(frame: pd.DataFrame, path: Path, fmt: Format) -> None:
    if fmt == "parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
