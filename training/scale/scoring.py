"""Batch scoring of every customer of the online store: ``lifecycle score --all``.

The store's customer ids are cut into chunks; each chunk is looked up in the store
(``lookup_frame``), scored with the champion churn and stage models (their own
``predict_proba`` / ``predict``, so categories are re-applied and the churn calibrator used as
in the service) and returned; this process appends each chunk to one Parquet file as it comes
back, so neither side holds more than a few chunks. With a Dask client the chunks run on the
cluster (every worker must reach the store: a Redis/PostgreSQL URL or a shared SQLite path);
without one, here, one after the other.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from distributed import Client

CHUNK = 50_000  # customers per task: ~20 MB of features (about 0.4 KB a customer)
REQUIRED = ("churn", "stage")


def load_models(source: str) -> dict[str, object]:
    """The churn and stage models: ``registry`` (the champions, tracking URI from the
    environment) or an export folder (``churn.joblib``, ``stage.joblib``). Raises
    ``FileNotFoundError`` naming what is missing."""
    if source == "registry":
        from training.names import REGISTERED_NAMES
        from training.registry import load_alias, setup

        setup()
        found = {name: load_alias(REGISTERED_NAMES[name], "champion")[0] for name in REQUIRED}
        missing = [REGISTERED_NAMES[n] for n, model in found.items() if model is None]
        if missing:
            raise FileNotFoundError(
                f"no champion of {', '.join(missing)} in the registry: train and promote "
                "(`lifecycle train DATA`, `lifecycle promote DATA`) or pass --models FOLDER"
            )
        return found
    import joblib

    folder = Path(source)
    missing = [f"{n}.joblib" for n in REQUIRED if not (folder / f"{n}.joblib").is_file()]
    if missing:
        raise FileNotFoundError(
            f"--models {folder}: no {', '.join(missing)} there (write an export with "
            "`lifecycle export`, or use --models registry)"
        )
    return {name: joblib.load(folder / f"{name}.joblib") for name in REQUIRED}


def score_rows(frame: pd.DataFrame, models: dict[str, object]) -> pd.DataFrame:
    """Scores of looked-up store rows: ``customer_id``, ``stage`` (the rule stage now, when
    stored), ``churn_probability``, ``next_stage`` (the stage model's macro-F1 decision) and
    ``p_<stage>`` (its probabilities)."""
    churn, stage = models["churn"], models["stage"]
    out = pd.DataFrame({"customer_id": frame["customer_id"].astype("str").to_numpy()})
    if "stage" in frame.columns:
        out["stage"] = frame["stage"].astype("str").to_numpy()
    out["churn_probability"] = churn.predict_proba(frame)[:, 1]
    proba = stage.predict_proba(frame)
    out["next_stage"] = stage.predict(frame).astype("str")
    for j, name in enumerate(stage.classes_):
        out[f"p_{name}"] = proba[:, j]
    return out


def score_chunk(ids: list[str], store, models: dict[str, object]) -> pd.DataFrame:
    """Look up ``ids`` in ``store`` and score them (one task; the store's connection is
    closed by the thread that opened it)."""
    try:
        return score_rows(store.lookup_frame(ids), models)
    finally:
        store.close()


def score_all(
    store, models: dict[str, object], out: str | Path, client: Client | None = None,
    chunk: int = CHUNK, progress: Callable[[int, int], None] | None = None,
) -> Path:  # fmt: skip
    """Score every customer of ``store`` into the Parquet file ``out``; returns its path.

    ``client``: run the chunks on its cluster (else here). ``progress(done, total)`` is
    called after each chunk with customers scored so far.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = store.customer_ids()
    chunks = [ids[i : i + chunk] for i in range(0, len(ids), chunk)]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer, done = None, 0
    try:
        for frame in _results(chunks, store, models, client):
            table = pa.Table.from_pandas(frame, preserve_index=False)
            writer = writer or pq.ParquetWriter(out, table.schema)
            writer.write_table(table)
            done += len(frame)
            if progress:
                progress(done, len(ids))
    finally:
        if writer is not None:
            writer.close()
    return out


def _results(chunks, store, models, client):
    """Scored chunks in completion order: on the cluster (models sent once per worker)
    or here."""
    if client is None:
        yield from (score_chunk(ids, store, models) for ids in chunks)
        return
    from distributed import as_completed

    shared = client.scatter(models, broadcast=True)
    futures = [client.submit(score_chunk, ids, store, shared, pure=False) for ids in chunks]
    for future in as_completed(futures):
        yield future.result()
        future.release()


def store_from_tables(tables, model, location: str | Path):
    """A SQLite online store at ``location`` holding every customer's vector as ``model``
    (its recorded config) builds it: what ``lifecycle features materialize`` writes."""
    from features.project import recorded_config
    from features.store import open_store
    from training.resolve import store_vectors

    vectors, label = store_vectors(tables, recorded_config(model))
    store = open_store(location)
    store.materialize(vectors, tables.end, label)
    return store
