"""Resolve a dataset config against the data: every ``auto`` becomes a concrete choice.

The resolved config is what a trained model records (and what serving rebuilds vectors
with), so the same data-dependent choices are made once, at training time:

| setting | auto means |
|---|---|
| ``churn_definition`` | ``labels`` with a labels table, ``contract`` with a subscriptions table, ``rhythm`` when every event is a purchase (or refund), else ``inactivity`` |
| ``population`` | ``labelled`` / ``contract_holders`` / ``buyers`` for those definitions |
| ``event_types`` | the ``event_types_top_n`` most frequent types up to the last as-of date |
| ``btyd_features`` | ``on`` when at least 50 customers bought on two different days (then ``btyd_params``: the BG/NBD fit at the last as-of date) |
| ``feature_set`` | pinned to its version (``default`` -> ``default@3``) |
| ``stages.churn_rule`` | ``rhythm`` for purchase-only logs (unless set), with ``typical_gap_days`` the median of the repeat buyers' mean gaps |
"""  # noqa: E501

from __future__ import annotations

import numpy as np
import pandas as pd

from features.builder import event_arrays, to_utc
from features.event_types import top_event_types
from features.families import R, purchase_intervals
from features.project import DatasetConfig
from features.registry import get_feature_set

MIN_REPEAT_BUYERS = 50


def purchase_only(events: pd.DataFrame) -> bool:
    """Every event is a purchase or a refund: a plain transaction log."""
    present = set(events["role"].unique().astype(str))
    return present <= {"purchase", "refund"}


def last_as_of(config: DatasetConfig, end) -> pd.Timestamp:
    """The last as-of date the data's choices are made at: the config's, or the data's
    ``end`` less the horizon."""
    last = to_utc(config.last_as_of) if config.last_as_of else None
    return last or to_utc(end) - pd.Timedelta(days=config.horizon_days)


def definition_updates(tables, config: DatasetConfig) -> dict:
    """The settings read off which tables the data has (``tables``: the tables, or a stand-in
    with the same attributes): the feature set pinned to its version, the churn definition
    and the population."""
    updates: dict = {}
    if "@" not in config.feature_set:  # pin the version the models are trained on
        updates["feature_set"] = get_feature_set(config.feature_set).key
    definition = config.churn_definition
    if definition == "auto":
        definition = updates["churn_definition"] = _definition(tables)
    if config.population == "auto":
        updates["population"] = _population(definition, tables)
    return updates


def resolve(tables, config: DatasetConfig) -> DatasetConfig:
    """``config`` with its ``auto`` settings replaced by the data's (idempotent: a resolved
    config comes back as it is, at no cost)."""
    if is_resolved(config):
        return config
    last = last_as_of(config, tables.end)
    updates = definition_updates(tables, config)
    if config.event_types is None:
        updates["event_types"] = top_event_types(tables.events, config.event_types_top_n, last)
    gaps = _repeat_gaps(tables.events, last)
    if config.btyd_features == "auto":
        updates["btyd_features"] = "on" if len(gaps) >= MIN_REPEAT_BUYERS else "off"
    if updates.get("btyd_features", config.btyd_features) == "on" and not config.btyd_params:
        updates["btyd_params"] = _btyd_params(tables.events, last, config.churn_horizon_days)
    stages = _stage_rules(tables, config, gaps)
    if stages is not config.stages:
        updates["stages"] = stages
    if not updates:
        return config
    return DatasetConfig.model_validate({**config.model_dump(), **updates})


def _btyd_params(events: pd.DataFrame, last: pd.Timestamp, horizon: int) -> dict | None:
    """The BG/NBD parameters fitted on the purchases up to ``last`` (None if no fit)."""
    from features.btyd_features import BTYDFeatures

    spec = BTYDFeatures(horizon_days=horizon)
    spec.features(event_arrays(events, last)[0])
    return None if spec.fitted is None else {k: round(v, 6) for k, v in spec.fitted.items()}


def is_resolved(config: DatasetConfig) -> bool:
    """No ``auto`` left (what a trained model records)."""
    auto = "auto" in (config.churn_definition, config.population, config.btyd_features)
    auto = auto or "@" not in config.feature_set
    needs_params = config.btyd_features == "on" and not config.btyd_params
    return (
        not auto
        and config.event_types is not None
        and not needs_params
        and ("churn_rule" in config.stages.model_fields_set)
    )


def _definition(tables) -> str:
    if tables.labels is not None:
        return "labels"
    if tables.subscriptions is not None:
        return "contract"
    return "rhythm" if purchase_only(tables.events) else "inactivity"


def _population(definition: str, tables) -> str:
    if definition == "labels":
        return "labelled"
    if definition == "contract" and tables.subscriptions is not None:
        return "contract_holders"
    return "buyers"


def _repeat_gaps(events: pd.DataFrame, last: pd.Timestamp) -> np.ndarray:
    """Mean gap between purchases of every customer with two or more, up to ``last``."""
    ev, _ = event_arrays(events, last)
    if not (ev.role == R["purchase"]).any():
        return np.zeros(0)
    found = purchase_intervals(ev)
    mean = found["purchase_interval_mean_days"].astype(float)
    return mean[(found["purchases_total"] >= 2) & np.isfinite(mean) & (mean > 0)]


def _stage_rules(tables, config: DatasetConfig, gaps: np.ndarray):
    rules = config.stages
    update = {}
    if "churn_rule" not in rules.model_fields_set:  # decided here, recorded explicitly
        update["churn_rule"] = "rhythm" if purchase_only(tables.events) else rules.churn_rule
    rhythm = update.get("churn_rule", rules.churn_rule) == "rhythm"
    if rhythm and rules.typical_gap_days is None and len(gaps):
        update["typical_gap_days"] = round(float(np.median(gaps)), 2)
    if not update:
        return rules
    return type(rules).model_validate({**rules.model_dump(exclude_unset=True), **update})


def vector_options(tables, config: DatasetConfig, serving: bool = False) -> dict:
    """The :func:`features.builder.build_features` keywords a resolved config asks for.

    ``serving``: vectors a trained model scores now (the online store, reports), with the
    BG/NBD parameters it recorded instead of a refit (see ``BTYDFeatures.refit``)."""
    options: dict = {"event_types": tuple(config.event_types or ())}
    if tables.subscriptions is not None:
        options["subscriptions"] = tables.subscriptions
    if config.btyd_features == "on":
        from features.btyd_features import BTYDFeatures

        options["btyd"] = BTYDFeatures.for_config(config, serving)
    return options


def store_vectors(tables, config, as_of: object | None = None) -> tuple[pd.DataFrame, str]:
    """What ``lifecycle features materialize`` writes: every customer's serving vector as
    of ``as_of`` (default: the last event) built the way ``config`` (a ProjectConfig, as a
    model recorded it) says, and the store label carrying its fingerprint."""
    from features.online_vectors import serving_vectors, store_label

    config = config.model_copy(update={"dataset": resolve(tables, config.dataset)})
    d = config.dataset
    vectors = serving_vectors(tables.events, tables.end if as_of is None else as_of,
                              d.feature_set, tables.customers, tables.exposures, tables.offers,
                              d.stages, d.response_window_days,
                              **vector_options(tables, d, serving=True))  # fmt: skip
    return vectors, store_label(d.feature_set, config.fingerprint())
