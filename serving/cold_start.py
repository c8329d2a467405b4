"""``POST /score``: features for customers the store does not know, from the events in the
request, through the same contracts and feature code as training (no second implementation).
"""

from __future__ import annotations

import pandas as pd

from features.builder import to_utc
from features.contracts import ContractError
from features.loaders import load_events, load_mapped
from features.online_vectors import serving_vectors
from features.project import ProjectConfig
from serving.inputs import FeatureRows
from serving.schemas import ColdCustomer


def feature_rows(
    customers: list[ColdCustomer], as_of: str | None, project: ProjectConfig | None,
    contracts: bool = False,
) -> FeatureRows:  # fmt: skip
    """Validated events -> ``serving_vectors`` -> :class:`FeatureRows` in request order, built
    exactly as the models' recorded ``project`` config says (its role map, feature set, event
    types, stage rules; buy-till-you-die features with the parameters fitted at training when
    the request holds too few buyers to fit them). With ``contracts`` (the models read the
    contract features, ``DecisionEngine.reads_contracts``) or periods in the request, the contract
    features come from each customer's ``subscriptions`` (none = no contract).

    Raises ``ValueError`` with the contract's message (field, rule, bad value) on bad events
    or periods; customers whose events all fall after ``as_of`` get all-missing features.
    """
    when = to_utc(as_of) if as_of else pd.Timestamp.now(tz="UTC")
    project = project or ProjectConfig()
    events = _events_frame(customers)
    try:
        validated = load_events(events, mode="strict", roles=project.role_map()).data
    except ContractError as err:
        raise ValueError(f"customers[].events: {err}") from None
    d = project.dataset
    options = cold_options(d)
    if contracts or any(c.subscriptions for c in customers):
        options["subscriptions"] = _periods(customers)
    frame = serving_vectors(validated, when, d.feature_set, _attributes(customers),
                            rules=d.stages, response_window_days=d.response_window_days,
                            **options)  # fmt: skip
    ids = [c.customer_id for c in customers]
    frame = frame.set_index(frame["customer_id"].astype("str")).reindex(ids)
    frame["customer_id"] = ids
    return FeatureRows.from_frame(frame.reset_index(drop=True), when)


def cold_options(dataset) -> dict:
    """The data-dependent families of a recorded dataset config, for events sent in a
    request (the billing periods come with the request: :func:`feature_rows`)."""
    options: dict = {"event_types": tuple(dataset.event_types or ())}
    if dataset.btyd_features == "on":
        from features.btyd_features import BTYDFeatures

        options["btyd"] = BTYDFeatures.for_config(dataset, serving=True)
    return options


def _periods(customers: list[ColdCustomer]) -> pd.DataFrame:
    """The request's billing periods through the subscriptions contract (may be no rows)."""
    rows = [{"customer_id": c.customer_id, **p.model_dump()}
            for c in customers for p in c.subscriptions]  # fmt: skip
    columns = ["customer_id", "period_start", "period_end", "product", "recurring_value",
               "discount"]  # fmt: skip
    frame = pd.DataFrame(rows, columns=columns)
    if not rows:  # none held (the contract wants rows): an empty table of the right shape
        return frame.astype({"period_start": "datetime64[us, UTC]",
                             "period_end": "datetime64[us, UTC]", "customer_id": "str",
                             "product": "str", "recurring_value": "float64",
                             "discount": "float64"})  # fmt: skip
    for name in ("period_start", "period_end"):
        frame[name] = pd.to_datetime(frame[name], utc=True, errors="coerce", format="ISO8601")
        bad = frame[name].isna().to_numpy()
        if bad.any():
            raise ValueError(
                f"customers[].subscriptions[].{name} must be an ISO-8601 time; got "
                f"{rows[int(bad.argmax())][name]!r} (customer "
                f"{rows[int(bad.argmax())]['customer_id']})"
            )
    try:
        return load_mapped("subscriptions", frame, mode="strict").data
    except ContractError as err:
        raise ValueError(f"customers[].subscriptions: {err}") from None


def _events_frame(customers: list[ColdCustomer]) -> pd.DataFrame:
    rows = [{"customer_id": c.customer_id, **e.model_dump()} for c in customers for e in c.events]
    frame = pd.DataFrame(rows)
    stamps = pd.to_datetime(frame["timestamp"], utc=True, errors="coerce", format="ISO8601")
    if stamps.isna().any():
        bad = frame.loc[stamps.isna(), ["customer_id", "timestamp"]].iloc[0]
        raise ValueError(
            f"customers[].events[].timestamp must be an ISO-8601 time; got "
            f"{bad['timestamp']!r} in {int(stamps.isna().sum())} event(s) (first: customer "
            f"{bad['customer_id']})"
        )
    frame["timestamp"] = stamps
    return frame


def _attributes(customers: list[ColdCustomer]) -> pd.DataFrame | None:
    rows = [{"customer_id": c.customer_id, **c.attributes} for c in customers if c.attributes]
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    for col in frame.columns.drop("customer_id"):
        frame[col] = frame[col].astype("category")
    return frame
