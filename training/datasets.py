"""Training sets stacked over as-of snapshots, with time-ordered splits.

Each snapshot holds the features as of that date (the same builder as serving), the current
rule stage, and the labels looking forward from it. Later snapshots validate earlier ones;
nothing is shuffled across time. ``resolve`` first replaces every ``auto`` of the dataset
config by what the data holds (churn definition, population, event types, stage rule), so a
trained model records exactly how its vectors were made.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from features.builder import build_features, to_utc
from features.labels import churn_outcome, future_stage
from features.project import DatasetConfig
from features.stages import assign_stages
from training.calendar import plan_snapshots, snapshot_dates
from training.resolve import resolve, vector_options

__all__ = [
    "DatasetConfig", "Tables", "build_snapshot", "build_training_set", "resolve",
    "snapshot_dates", "time_split", "in_population", "snapshot_labels", "scoring_population",
    "current_vectors",
]  # fmt: skip


@dataclass(frozen=True)
class Tables:
    """Validated input tables (``.data`` of the loaders); only ``events`` is required."""

    events: pd.DataFrame
    customers: pd.DataFrame | None = None
    offers: pd.DataFrame | None = None
    exposures: pd.DataFrame | None = None
    subscriptions: pd.DataFrame | None = None
    labels: pd.DataFrame | None = None

    @property
    def end(self) -> pd.Timestamp:
        return self.events["timestamp"].max()

    @property
    def start(self) -> pd.Timestamp:
        return self.events["timestamp"].min()


def build_snapshot(tables: Tables, as_of: pd.Timestamp, config: DatasetConfig) -> pd.DataFrame:
    """Features, current stage and labels of every customer known at ``as_of``.

    ``config`` is resolved first when it is not yet (:func:`resolve`). Added columns:
    ``as_of``, ``stage`` (rule stage now), ``in_churn_population`` (who the churn model is
    trained on and scores), ``churned`` (0/1 label; NaN where the definition does not apply),
    ``stage_next`` (rule stage after the stage horizon).
    """
    return _snapshot(tables, to_utc(as_of), resolve(tables, config))


def _snapshot(
    tables: Tables, as_of: pd.Timestamp, config: DatasetConfig, options: dict | None = None,
    later: dict | None = None,
) -> pd.DataFrame:  # fmt: skip
    """``options`` / ``later``: the ``build_features`` keywords at ``as_of`` / for the stage
    after the horizon (default: ``vector_options``; the cluster path passes BG/NBD parameters
    fitted on every customer, not on one partition's)."""
    options = vector_options(tables, config) if options is None else options
    later = options if later is None else later
    frame = build_features(tables.events, as_of, config.feature_set, tables.customers,
                           tables.exposures, tables.offers, config.response_window_days,
                           **options)  # fmt: skip
    ids = frame["customer_id"]
    frame.insert(0, "as_of", as_of)
    frame["stage"] = assign_stages(frame, config.stages).to_numpy()
    label, applies = churn_outcome(tables.events, ids, as_of, config.churn_horizon_days,
                                  config.churn_definition, config.qualifying_roles,
                                  **_label_options(tables, config))  # fmt: skip
    frame["churned"] = label
    frame["in_churn_population"] = in_population(frame, config.population, applies)
    frame["stage_next"] = future_stage(
        tables.events, ids, as_of, config.stage_horizon_days, tables.customers,
        config.stages, **later,
    ).to_numpy()  # fmt: skip
    return frame


def _label_options(tables: Tables, config: DatasetConfig) -> dict:
    return {"rhythm_multiple": config.rhythm_multiple, "subscriptions": tables.subscriptions,
            "grace_days": config.grace_days, "label_table": tables.labels,
            "min_gap_days": config.stages.min_gap_days,
            "typical_gap_days": config.stages.typical_gap_days}  # fmt: skip


def snapshot_labels(tables: Tables, as_of: object, config: DatasetConfig) -> np.ndarray:
    """The churn labels at ``as_of`` of every customer with an event by then, where the
    definition applies; no features are built, so checks can run before the real work."""
    config = resolve(tables, config)
    when = to_utc(as_of)
    events = tables.events
    seen = pd.Series(events.loc[events["timestamp"] <= when, "customer_id"].unique())
    label, applies = churn_outcome(events, seen.astype("str"), when, config.churn_horizon_days,
                                   config.churn_definition, config.qualifying_roles,
                                   **_label_options(tables, config))  # fmt: skip
    return label[applies]


def in_population(frame: pd.DataFrame, population: str, applies: np.ndarray) -> np.ndarray:
    """Who the churn model is trained on and scores (see ``DatasetConfig.population``).

    ``applies``: where the churn definition can apply (contract holders, labelled rows).
    """
    buyers = frame["purchases_total"].to_numpy() > 0
    rules = {
        "all": np.ones(len(frame), bool),
        "buyers": buyers,
        "active_buyers": buyers & (frame["stage"] != "churned").to_numpy(),
        "contract_holders": applies,
        "labelled": applies,
    }
    if population not in rules:
        raise ValueError(f"population {population!r} must be resolved first (resolve())")
    return rules[population] & applies


def scoring_population(frame: pd.DataFrame, population: str) -> np.ndarray:
    """Who gets a churn score now (no labels yet): the population's rule without the label
    part (contract holders: an active contract when the contract features are there)."""
    if population in ("all", "labelled"):
        return np.ones(len(frame), bool)
    if population == "contract_holders" and "contract_active" in frame.columns:
        return frame["contract_active"].to_numpy() > 0
    rule = "buyers" if population == "contract_holders" else population
    return in_population(frame, rule, np.ones(len(frame), bool))


def current_vectors(tables: Tables, config: DatasetConfig, as_of: object | None = None):
    """Every customer's vector as of ``as_of`` (default: the last event) built the way
    ``config`` says (as the service would: BG/NBD with the recorded parameters), with the
    rule ``stage`` and ``in_churn_population`` (who is scored)."""
    config = resolve(tables, config)
    when = tables.end if as_of is None else as_of
    frame = build_features(tables.events, when, config.feature_set, tables.customers,
                           tables.exposures, tables.offers, config.response_window_days,
                           **vector_options(tables, config, serving=True))  # fmt: skip
    frame["stage"] = assign_stages(frame, config.stages).to_numpy()
    frame["in_churn_population"] = scoring_population(frame, config.population)
    return frame


def build_training_set(
    tables: Tables, config: DatasetConfig | None = None, progress: bool = False
) -> pd.DataFrame:
    """All snapshots stacked, oldest first, with a ``snapshot`` index column (0 = oldest).

    ``config`` is resolved here when it still has ``auto`` settings; the resolved config is
    in ``frame.attrs["dataset"]`` (JSON). Dates outside the data fail here; whether they
    leave training snapshots is checked by the training pipeline (``plan_snapshots``).
    """
    config = resolve(tables, config or DatasetConfig())
    dates = plan_snapshots(tables.start, tables.end, config, tables.labels, for_training=False)
    parts = []
    for k, as_of in enumerate(tqdm(dates, desc="snapshots", disable=not progress)):
        parts.append(_snapshot(tables, as_of, config).assign(snapshot=k))
    frame = pd.concat(parts, ignore_index=True)
    frame.attrs["dataset"] = config.model_dump_json()
    return frame


def time_split(frame: pd.DataFrame, config: DatasetConfig) -> dict[str, pd.DataFrame]:
    """Split by snapshot: the last ``test_snapshots`` test, the ``validation_snapshots``
    before them validate, the rest train. Training snapshots whose label window reaches past
    the first later snapshot are dropped (no overlap of label windows and evaluation dates).
    """
    dates = np.sort(frame["as_of"].unique())
    n_eval = config.validation_snapshots + config.test_snapshots
    if n_eval >= len(dates):
        raise ValueError(
            f"{len(dates)} snapshots cannot give {config.validation_snapshots} validation and "
            f"{config.test_snapshots} test snapshots and leave any to train on"
        )
    test_from = dates[len(dates) - config.test_snapshots] if config.test_snapshots else None
    valid_from = dates[len(dates) - n_eval]
    horizon = pd.Timedelta(days=config.horizon_days)
    train = frame[frame["as_of"] + horizon <= valid_from]
    rest = frame[frame["as_of"] >= valid_from]
    if test_from is None:
        return {"train": train, "validation": rest, "test": rest.iloc[:0]}
    return {
        "train": train,
        "validation": rest[rest["as_of"] < test_from],
        "test": rest[rest["as_of"] >= test_from],
    }
