"""A data folder's tables read on the cluster: each task loads only its own customers' rows.

The driver-side path (``training.data.load_tables`` then ``split_tables``) holds every table
in one process before splitting it. Here task ``k`` of ``partitions`` reads each Parquet file
row group by row group and keeps the rows whose ``customer_id`` hashes to ``k`` exactly as
:func:`training.scale.dataset._split` does (the id normalised as the loaders normalise it,
as ``str``, ``pd.util.hash_pandas_object``), then validates them through the same loader
(``training.data.load_table``). So the partitions, and the training set built from them,
are the ones the driver-side path builds. ``offers`` (the catalog) is small and loaded here,
whole, for every task.

Validation runs per partition; a broken rule comes back as one :class:`ContractError` merged
over the partitions, worded as ``load_tables`` words it (counts over the whole file, the first
offenders in file order). Rules that span customers cannot be checked per partition: the
uniqueness of ``exposures.exposure_id`` holds within each partition only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features._columns import coerce_str
from features.contracts import MAX_EXAMPLES, ContractError, Example, Violation
from features.loaders import FORMAT_OF_SUFFIX
from features.project import ProjectConfig
from training.data import TABLES, load_table, table_paths
from training.datasets import Tables
from training.scale.cluster import each

if TYPE_CHECKING:
    import pyarrow as pa
    from distributed import Client, Future

WHOLE = ("offers",)  # tables every partition gets whole (no customer_id)


@dataclass(frozen=True)
class Failure:
    """Why a partition did not load: the first table that broke its contract, the error
    (its examples carry their rows in the file) and, for rule violations, how many of the
    partition's rows broke one."""

    table: str
    error: ContractError
    bad_rows: int | None = None  # None: a structural error (missing column, no rows)


def parquet_paths(folder: str | Path, config: ProjectConfig) -> dict[str, Path] | None:
    """The folder's tables (``training.data.table_paths``) when all of them are Parquet
    files (what the workers can read by row group), else None."""
    paths = {k: p for k, p in table_paths(folder, config).items() if p is not None}
    formats = {k: getattr(config.data, k).format for k in paths}
    parquet = all(formats[k] == "parquet" or (formats[k] == "auto" and
                  FORMAT_OF_SUFFIX.get(p.suffix.lower()) == "parquet")
                  for k, p in paths.items())  # fmt: skip
    return paths if parquet else None


def id_column(name: str, config: ProjectConfig) -> str:
    """The file's column holding ``customer_id`` (the config may map it)."""
    return (getattr(config.data, name).columns or {}).get("customer_id", "customer_id")


def id_buckets(ids: pd.Series, partitions: int) -> np.ndarray:
    """The partition of each id: normalised as the loaders do, then ``_split``'s hash."""
    normal, _ = coerce_str(ids)
    hashed = pd.util.hash_pandas_object(normal.astype("str"), index=False).to_numpy()
    return hashed % np.uint64(partitions)


def column_buckets(column: pa.ChunkedArray, partitions: int, seen: dict) -> np.ndarray:
    """``id_buckets`` of an Arrow column. A dictionary column hashes its dictionary, once
    for as long as the chunks repeat it (``seen`` keeps the last one: pandas writes every
    row group of a categorical column with the whole category list)."""
    import pyarrow.compute as pc

    out = []
    for chunk in column.chunks:
        if not hasattr(chunk, "dictionary"):
            out.append(id_buckets(chunk.to_pandas(), partitions))
            continue
        if "dictionary" not in seen or not seen["dictionary"].equals(chunk.dictionary):
            with_null = pd.concat([chunk.dictionary.to_pandas(), pd.Series([None])],
                                  ignore_index=True)  # fmt: skip
            seen.update(dictionary=chunk.dictionary, values=id_buckets(with_null, partitions))
        values = seen["values"]
        codes = pc.fill_null(chunk.indices, -1).to_numpy(zero_copy_only=False)
        out.append(values[np.where(codes >= 0, codes, len(values) - 1)])
    return np.concatenate(out) if out else np.zeros(0, dtype=np.uint64)


def read_partition(path: Path, column: str, partitions: int, k: int):
    """The rows of a Parquet file whose customer falls in partition ``k``, in file order,
    as ``pandas.read_parquet`` gives them, and their positions in the file. Without the id
    column every row goes to partition 0 (the loader then names the missing column)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    file = pq.ParquetFile(path)
    pieces, rows, offset, seen = [], [], 0, {}
    for group in range(file.num_row_groups):
        table = file.read_row_group(group)
        if column in table.column_names:
            keep = column_buckets(table.column(column), partitions, seen) == k
        else:
            keep = np.full(table.num_rows, k == 0)
        pieces.append(table.filter(pa.array(keep)))
        rows.append(np.flatnonzero(keep) + offset)
        offset += table.num_rows
    table = pa.concat_tables(pieces) if pieces else file.schema_arrow.empty_table()
    return table.to_pandas(), np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)


def load_partition(
    paths: dict[str, Path], config: ProjectConfig, mode: str, offers: pd.DataFrame | None,
    partitions: int, k: int,
) -> Tables | Failure:  # fmt: skip
    """Partition ``k``'s rows of every table, validated (``offers`` whole); a
    :class:`Failure` for the first table that breaks its contract, as ``load_folder``
    stops at the first. ``customer_id`` is ``str``, as ``split_tables`` leaves it."""
    loaded = {"offers": offers}
    for name in TABLES:
        if name in WHOLE or name not in paths:
            continue
        frame, rows = read_partition(paths[name], id_column(name, config), partitions, k)
        catalog = offers if name == "exposures" else None
        try:
            data = _validated(name, frame, paths[name], mode, config, catalog)
        except ContractError as err:
            return _failure(name, err, frame, rows, paths[name], config, catalog)
        loaded[name] = data.assign(customer_id=data["customer_id"].astype("str"))
    return Tables(**loaded)


def _validated(name, frame, path, mode, config, offers) -> pd.DataFrame:
    """``load_table`` on a partition's rows. An empty partition (the file has rows, none of
    this partition's customers) takes its columns and dtypes from the file's first row."""
    if len(frame) or _file_rows(path) == 0:
        return load_table(name, frame, mode, config, offers).data
    import pyarrow.parquet as pq

    first = next(pq.ParquetFile(path).iter_batches(batch_size=1)).to_pandas()
    return load_table(name, first, "lenient", config, offers).data.iloc[:0]


def _file_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def _failure(name, err: ContractError, frame, rows, path, config, offers) -> Failure:
    """The partition's error with its examples' rows made file rows and its source named;
    for rule violations the bad-row count (from a lenient load of the same rows)."""
    message = str(err).replace("<DataFrame>", str(path))
    violations = [replace(v, examples=tuple(_in_file(e, rows) for e in v.examples))
                  for v in err.violations]  # fmt: skip
    error = ContractError(message, violations)
    if not all(v.count for v in err.violations):  # structural: no rows to count
        return Failure(name, error)
    report = load_table(name, frame, "lenient", config, offers).report
    return Failure(name, error, report.rows_quarantined - report.duplicates_removed)


def _in_file(example: Example, rows: np.ndarray) -> Example:
    """An example of a partition with its row (and the ``row N`` of its text) in the file."""
    row = int(rows[example.row])
    where = re.sub(rf"\brow {example.row}\b", f"row {row}", example.where, count=1)
    return replace(example, row=row, where=where)


def merged_error(failures: list[Failure], paths: dict[str, Path]) -> ContractError:
    """One error for the first table (in ``load_folder``'s order) that failed: a structural
    error as it is, else every partition's violations merged as one load would list them."""
    table = next(name for name in TABLES if any(f.table == name for f in failures))
    mine = [f for f in failures if f.table == table]
    if any(f.bad_rows is None for f in mine):
        return next(f.error for f in mine if f.bad_rows is None)
    merged: dict[tuple, Violation] = {}
    for failure in mine:
        _merge_into(merged, failure.error.violations)
    violations = [replace(v, examples=tuple(sorted(v.examples, key=lambda e: e.row)
                                            [:MAX_EXAMPLES])) for v in merged.values()]  # fmt: skip
    bad = sum(f.bad_rows for f in mine)
    return ContractError.from_violations(table, str(paths[table]), violations, bad,
                                         _file_rows(paths[table]))  # fmt: skip


def _merge_into(merged: dict[tuple, Violation], violations: list[Violation]) -> None:
    """Add one partition's violations (counts summed, examples pooled), keeping the rule
    order: a rule new to ``merged`` goes right after the one before it in this list."""
    after = None
    for v in violations:
        key = (v.column, v.rule, v.source_column)
        if key in merged:
            old = merged[key]
            merged[key] = replace(old, count=old.count + v.count,
                                  examples=old.examples + v.examples)  # fmt: skip
        else:
            items = list(merged.items())
            at = 0 if after is None else [k for k, _ in items].index(after) + 1
            items.insert(at, (key, v))
            merged.clear()
            merged.update(items)
        after = key


def load_on_cluster(
    paths: dict[str, Path], config: ProjectConfig, client: Client, partitions: int,
    mode: str = "strict",
) -> list[Future]:  # fmt: skip
    """Every partition's :class:`Tables`, loaded on the workers (futures, one a partition);
    raises the merged :class:`ContractError` when any partition broke a contract."""
    for name, path in paths.items():
        check_readable(name, path)
    offers = None
    if "offers" in paths:
        offers = load_table("offers", paths["offers"], mode, config).data
    parts = [client.submit(load_partition, paths, config, mode, offers, partitions, k,
                           pure=False) for k in range(partitions)]  # fmt: skip
    failures = [f for f in client.gather(each(client, _failed, parts)) if f is not None]
    if failures:
        raise merged_error(failures, paths)
    return parts


def check_readable(table: str, path: Path) -> None:
    """Raise as ``features.loaders.read_table`` does for an empty or unreadable file."""
    import pyarrow.parquet as pq

    if path.stat().st_size == 0:
        raise ContractError.structural(table, "*", "file is empty",
                                       f"{table}: file is empty: {path}")  # fmt: skip
    try:
        pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for truncated or foreign files
        raise ContractError.structural(
            table, "*", "file is empty",
            f"{table}: file is empty or not a readable Parquet table: {path} ({exc})",
        ) from exc  # fmt: skip


def _failed(part: Tables | Failure) -> Failure | None:
    return part if isinstance(part, Failure) else None
