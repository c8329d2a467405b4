"""Find and load a data folder's tables through the data contracts."""

from __future__ import annotations

from pathlib import Path

from features.loaders import (
    LoadResult,
    load_customers,
    load_events,
    load_exposures,
    load_offers,
)

TABLES = ("events", "customers", "offers", "exposures")
REQUIRED = ("events",)


def find_table(folder: Path, name: str) -> Path | None:
    """``folder/name.parquet`` or ``folder/name.csv``, whichever exists (Parquet first)."""
    for suffix in (".parquet", ".csv"):
        if (path := folder / f"{name}{suffix}").exists():
            return path
    return None


def load_folder(folder: str | Path, mode: str = "strict") -> dict[str, LoadResult]:
    """Load every table found in ``folder``; events are required, the others optional.

    Exposures are checked against the offers catalog when both are present.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"data folder {folder} does not exist")
    paths = {name: find_table(folder, name) for name in TABLES}
    missing = [name for name in REQUIRED if paths[name] is None]
    if missing:
        raise FileNotFoundError(
            f"{folder} has no {', '.join(missing)} table (.parquet or .csv); found: "
            f"{sorted(p.name for p in folder.iterdir()) or 'nothing'}"
        )
    out = {"events": load_events(paths["events"], mode)}
    if paths["customers"]:
        out["customers"] = load_customers(paths["customers"], mode)
    if paths["offers"]:
        out["offers"] = load_offers(paths["offers"], mode)
    if paths["exposures"]:
        offers = out["offers"].data if "offers" in out else None
        out["exposures"] = load_exposures(paths["exposures"], offers=offers, mode=mode)
    return out


def load_tables(folder: str | Path, mode: str = "strict"):
    """The folder's validated tables as a :class:`training.datasets.Tables`."""
    from training.datasets import Tables

    loaded = load_folder(folder, mode)
    return Tables(**{name: result.data for name, result in loaded.items()})
