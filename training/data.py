"""Find and load a data folder's tables through the data contracts, the way the project config
(``lifecycle.yaml``, section ``data``) says they are laid out."""

from __future__ import annotations

from pathlib import Path

from features.loaders import SUFFIXES, LoadResult, load_mapped
from features.project import ProjectConfig, TableConfig

TABLES = ("events", "customers", "offers", "exposures", "subscriptions", "labels")
REQUIRED = ("events",)


def find_table(folder: Path, name: str, table: TableConfig | None = None) -> Path | None:
    """The table's file: the config's ``path`` (relative to ``folder``; without a suffix,
    any known one), else ``folder/<name>`` with the first known suffix found (.parquet,
    .csv, ...)."""
    if table is not None and table.path is not None:
        path = Path(table.path) if Path(table.path).is_absolute() else folder / table.path
        if path.exists():
            return path
        found = [path.with_name(path.name + s) for s in SUFFIXES if not path.suffix]
        if found := [p for p in found if p.exists()]:
            return found[0]  # a name without suffix: whichever format is there
        raise FileNotFoundError(f"data.{name}.path: {path} does not exist")
    for suffix in (".parquet", *(s for s in SUFFIXES if s != ".parquet")):
        if (path := folder / f"{name}{suffix}").exists():
            return path
    return None


def load_folder(
    folder: str | Path, mode: str = "strict", config: ProjectConfig | None = None
) -> dict[str, LoadResult]:
    """Load every table found in ``folder``; events are required, the others optional.

    Exposures are checked against the offers catalog when both are present.
    """
    config = config or ProjectConfig()
    paths = table_paths(folder, config)
    out: dict[str, LoadResult] = {}
    for name in TABLES:
        if paths[name] is not None:
            offers = out["offers"].data if name == "exposures" and "offers" in out else None
            out[name] = load_table(name, paths[name], mode, config, offers)
    return out


def table_paths(folder: str | Path, config: ProjectConfig) -> dict[str, Path | None]:
    """Each table's file in ``folder`` (None when absent); raises FileNotFoundError when the
    folder or its events table is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"data folder {folder} does not exist")
    paths = {name: find_table(folder, name, getattr(config.data, name)) for name in TABLES}
    missing = [name for name in REQUIRED if paths[name] is None]
    if missing:
        raise FileNotFoundError(
            f"{folder} has no {', '.join(missing)} table ({', '.join(SUFFIXES)}); found: "
            f"{sorted(p.name for p in folder.iterdir()) or 'nothing'}; name the file with "
            f"data.events.path in the project config"
        )
    return paths


def load_table(name: str, path, mode: str, config: ProjectConfig, offers=None) -> LoadResult:
    """One table (``path``: its file, or its rows as a frame) loaded and validated as the
    project config's ``data.<name>`` lays it out."""
    table: TableConfig = getattr(config.data, name)
    return load_mapped(
        name, path, columns=table.columns, constants=table.constants,
        time_format=table.time_format, deduplicate=config.data.deduplicate,
        file_format=table.format, mode=mode, roles=config.role_map(), offers=offers,
    )  # fmt: skip


def load_tables(folder: str | Path, mode: str = "strict", config: ProjectConfig | None = None):
    """The folder's validated tables as a :class:`training.datasets.Tables`."""
    from training.datasets import Tables

    loaded = load_folder(folder, mode, config)
    return Tables(**{name: result.data for name, result in loaded.items()})
