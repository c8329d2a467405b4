"""What ``lifecycle monitor`` compares, gathered from the data, the registry and the store.

- **Reference**: every customer's serving vector as of the champion churn model's training
  snapshot, rebuilt from the data with the config the model recorded: the latest labelled
  snapshot its run was evaluated on (MLflow param ``holdout_as_of``; the snapshots it was
  fitted on end there), or an explicit ``reference_as_of``. Events only accrue, so the data
  today gives the vectors the model saw then.
- **Current**: the online store's current version (what the service reads now); without a
  store, the vectors at the data's last event, built the same way.
- **Calibration cohort**: the churn population at the latest as-of date whose churn horizon
  has passed (the data's end minus ``churn_horizon_days``, at midnight), scored by the
  champion, with the churn labels realised since (``training.datasets.build_snapshot``).
- **Exposures**: campaign-log exposures (and, with a ledger, the service's decisions as
  exposures, ``training.ledger_exposures``) sent in the ``window_days`` before the data's end
  whose response window has closed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.builder import to_utc
from features.online_vectors import label_fingerprint
from training.datasets import Tables, build_snapshot, scoring_population
from training.ledger_exposures import ledger_exposures, window_purchases
from training.names import REGISTERED_NAMES


@dataclass
class Vectors:
    """One sample of serving vectors: the frame, its as-of time and where it came from."""

    frame: pd.DataFrame
    as_of: pd.Timestamp
    source: str


@dataclass
class Champion:
    """The champion churn model, its registry version and the resolved config it recorded."""

    estimator: object
    version: str
    config: object  # ProjectConfig, resolved on the data
    trained_as_of: pd.Timestamp | None
    notes: list[str] = field(default_factory=list)


def champion_churn(alias: str = "champion") -> tuple[object, object]:
    """(estimator, model version) of ``lifecycle-churn@alias``; LookupError when none (a
    missing SQLite registry is not created)."""
    import mlflow

    from training.registry import load_alias, tracking_uri
    from training.report import registry_exists

    missing = (f"the MLflow registry at {tracking_uri()} has no {alias!r} churn model to "
               "monitor; run `lifecycle retrain` (or train and promote)")  # fmt: skip
    if not registry_exists(tracking_uri()):
        raise LookupError(missing)
    mlflow.set_tracking_uri(tracking_uri())  # read only: no experiment is created
    estimator, version = load_alias(REGISTERED_NAMES["churn"], alias)
    if estimator is None:
        raise LookupError(missing)
    return estimator, version


def offers_training_sends(alias: str = "champion") -> dict[str, int] | None:
    """The ``lifecycle-offers@alias`` model's training sends per arm (``arm_counts_``), or
    None when there is no such model (the service then decides by its cold-start policy).
    Call after :func:`champion_churn` (which points MLflow at the registry)."""
    from training.registry import load_alias

    estimator, _ = load_alias(REGISTERED_NAMES["offers"], alias)
    if estimator is None:
        return None
    return {str(k): int(v) for k, v in getattr(estimator, "arm_counts_", {}).items()}


def training_as_of(version) -> pd.Timestamp | None:
    """The ``holdout_as_of`` the version's training run logged (on the run or its parent
    run), or None."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    run = client.get_run(version.run_id)
    for _ in range(2):
        if "holdout_as_of" in run.data.params:
            return to_utc(run.data.params["holdout_as_of"])
        parent = run.data.tags.get("mlflow.parentRunId")
        if not parent:
            return None
        run = client.get_run(parent)
    return None


def model_features(estimator, frame: pd.DataFrame) -> list[str]:
    """The estimator's input columns present in ``frame`` (every column but ``customer_id``
    when the estimator does not name its inputs)."""
    names = getattr(estimator, "feature_names_in_", None)
    if names is None:
        return [c for c in frame.columns if c != "customer_id"]
    return [str(c) for c in names if c in frame.columns]


def vectors_at(tables: Tables, config, as_of: object, source: str) -> Vectors:
    """Every customer's serving vector as of ``as_of`` (``training.resolve.store_vectors``)."""
    from training.resolve import store_vectors

    when = to_utc(as_of)
    frame, _ = store_vectors(tables, config, when)
    return Vectors(frame, when, source)


def store_current(store: str | Path, config, notes: list[str]) -> Vectors | None:
    """The online store's current version (None when the file or a version is missing);
    a note when it was built with another config than ``config``."""
    from features.store import open_store
    from features.store.factory import sqlite_path

    path = sqlite_path(store)
    if path is not None and not path.is_file():
        return None
    online = open_store(store)
    version = online.current()
    if version is None:
        return None
    frame = online.lookup_frame(online.customer_ids())
    online.close()
    found = label_fingerprint(version.feature_set)
    if found is not None and found != config.fingerprint():
        notes.append(f"the store's version {version.version} was built with config "
                     f"{found}, the champion records {config.fingerprint()}: run "
                     "`lifecycle features materialize` (or retrain) to align them")  # fmt: skip
    where = f"online store {store}, version {version.version}"
    return Vectors(frame, to_utc(version.as_of), where)


def churn_scores(estimator, vectors: pd.DataFrame, population: str) -> np.ndarray:
    """The churn probabilities of the rows of ``vectors`` the model scores (its population)."""
    scored = vectors[scoring_population(vectors, population)]
    if scored.empty:
        return np.zeros(0)
    return estimator.predict_proba(scored)[:, 1]


def calibration_cohort(tables: Tables, champion: Champion) -> tuple[pd.DataFrame, pd.Timestamp]:
    """The churn population at the latest as-of whose horizon has passed: ``customer_id``,
    ``predicted`` (the champion's churn probability then) and ``churned`` (0/1, realised).
    Raises ValueError when the data does not reach back that far."""
    d = champion.config.dataset
    as_of = (to_utc(tables.end) - pd.Timedelta(days=d.churn_horizon_days)).floor("D")
    if as_of <= to_utc(tables.start):
        raise ValueError(
            f"no cohort's churn horizon ({d.churn_horizon_days} days) has passed: "
            f"the data spans {tables.start:%Y-%m-%d} .. {tables.end:%Y-%m-%d}"
        )
    snapshot = build_snapshot(tables, as_of, d)
    rows = snapshot[snapshot["in_churn_population"].to_numpy(bool)
                    & snapshot["churned"].notna().to_numpy()]  # fmt: skip
    predicted = champion.estimator.predict_proba(rows)[:, 1] if len(rows) else np.zeros(0)
    cohort = pd.DataFrame({"customer_id": rows["customer_id"].astype(str).to_numpy(),
                           "predicted": predicted,
                           "churned": rows["churned"].to_numpy(dtype=float)})  # fmt: skip
    return cohort, as_of


def window_exposures(
    tables: Tables, window_days: int, response_window_days: int, ledger: Path | None = None
) -> pd.DataFrame:
    """Exposures sent in the ``window_days`` before the data's end whose response window has
    closed: ``offer_id`` (missing = control), ``converted``, ``revenue``, ``source``
    (``campaigns`` or ``ledger``). Logs without outcomes get them from the events (a
    purchase within the response window)."""
    end = to_utc(tables.end)
    window = pd.Timedelta(days=response_window_days)
    parts = []
    if tables.exposures is not None and len(tables.exposures):
        logs = tables.exposures
        logs = logs[(logs["sent_at"] > end - pd.Timedelta(days=window_days))
                    & (logs["sent_at"] + window <= end)]  # fmt: skip
        if "converted" not in logs or logs["converted"].isna().all():
            converted, revenue = window_purchases(tables.events, logs["customer_id"].astype(str),
                                                  logs["sent_at"], window)  # fmt: skip
            logs = logs.assign(converted=converted, revenue=revenue)
        parts.append(_outcomes(logs, "campaigns"))
    if ledger is not None:
        found = ledger_exposures(ledger, tables.events, response_window_days)
        found = found[found["sent_at"] > end - pd.Timedelta(days=window_days)]
        parts.append(_outcomes(found, "ledger"))
    if not parts:
        return pd.DataFrame(columns=["offer_id", "converted", "revenue", "source"])
    return pd.concat(parts, ignore_index=True)


def _outcomes(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    revenue = frame["revenue"] if "revenue" in frame else pd.Series(np.nan, index=frame.index)
    return pd.DataFrame({"offer_id": frame["offer_id"].astype("object").to_numpy(),
                         "converted": frame["converted"].astype(float).to_numpy(),
                         "revenue": pd.to_numeric(revenue).astype(float).to_numpy(),
                         "source": source})  # fmt: skip
