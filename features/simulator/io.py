"""Write a simulated data set to a folder: observable tables at the top, ground truth in truth/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from features.simulator.config import SimConfig
from features.simulator.profiles import ProfileSimulation
from features.simulator.tables import Simulation

Format = Literal["parquet", "csv"]


def write_simulation(
    sim: Simulation | ProfileSimulation, out: str | Path, config: SimConfig, fmt: Format = "parquet"
) -> dict[str, Path]:
    """Write every table of ``sim`` under ``out``; returns table name -> file path.

    Layout: ``out/{events,customers,offers,exposures}.<fmt>``, ``out/truth/<table>.<fmt>`` and
    ``out/simulation.json`` (the config that made it, for lineage). A
    :class:`~features.simulator.profiles.ProfileSimulation` writes its own tables the same way
    (``out/<table>.<fmt>``, ``out/truth/<table>.<fmt>``, names ``<table>`` and
    ``truth_<table>``); in its CSV files datetimes read ``YYYY-MM-DD HH:MM:SS`` (calendar dates
    ``YYYY-MM-DD``), missing values are empty and booleans ``true``/``false``.
    """
    out = Path(out)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    if isinstance(sim, ProfileSimulation):
        paths = _write_profile(sim, out, fmt)
    else:
        paths = {}
        for name in (*Simulation.OBSERVED, *Simulation.TRUTH):
            folder = out if name in Simulation.OBSERVED else out / "truth"
            path = folder / f"{name.removeprefix('truth_')}.{fmt}"
            _write(getattr(sim, name), path, fmt)
            paths[name] = path
    # the default profile's file has no "profile" key (as before profiles existed); the other
    # profiles' files leave out the default profile's future_days (they ignore it)
    exclude = {"profile"} if config.profile == "default" else {"future_days"}
    (out / "simulation.json").write_text(
        json.dumps(config.model_dump(mode="json", exclude=exclude), indent=2)
    )
    return paths


def _write(frame: pd.DataFrame, path: Path, fmt: Format) -> None:
    if fmt == "parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%SZ")


def _write_profile(sim: ProfileSimulation, out: Path, fmt: Format) -> dict[str, Path]:
    paths: dict[str, Path] = {}
    groups = ((sim.tables, out, ""), (sim.truth, out / "truth", "truth_"))
    for frames, folder, prefix in groups:
        for name, frame in frames.items():
            path = folder / f"{name}.{fmt}"
            if fmt == "parquet":
                frame.to_parquet(path, index=False)
            else:
                _write_csv(frame, path, sim.date_columns.get(prefix + name, ()))
            paths[prefix + name] = path
    return paths


def _write_csv(frame: pd.DataFrame, path: Path, dates: tuple[str, ...]) -> None:
    """CSV through pyarrow (fast): datetimes ``YYYY-MM-DD HH:MM:SS``, the ``dates`` columns
    ``YYYY-MM-DD``, missing values empty, values quoted only if they hold a comma, quote or
    line break."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for col in dates:
        as_date = table.column(col).cast(pa.timestamp("s")).cast(pa.date32())
        table = table.set_column(table.schema.get_field_index(col), col, as_date)
    header = (",".join(frame.columns) + "\n").encode()
    for quoting in ("none", "needed"):  # "none" refuses values that need quotes
        try:
            with open(path, "wb") as handle:
                handle.write(header)
                options = pa_csv.WriteOptions(include_header=False, quoting_style=quoting)
                pa_csv.write_csv(table, handle, options)
            return
        except pa.ArrowInvalid:
            continue
