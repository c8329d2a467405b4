"""The models and the store must agree on how vectors are built (issue 12, point 1).

Every trained model records the resolved project config it was trained with
(``lifecycle_config_``) and its fingerprint; ``lifecycle features materialize`` labels each
store version with the fingerprint of the config its vectors were built with. The service
compares the two and refuses (not ready, 503 naming both) instead of scoring vectors built
another way — another role map, feature set or event types silently gave ROC-AUC 0.50.
"""

from __future__ import annotations

from features.online_vectors import label_fingerprint
from features.project import ProjectConfig, recorded_config

MODELS = ("churn", "stage")


class ConfigMismatch(ValueError):
    """The loaded models, or the models and the store, were built with different configs."""


def models_config(bundle: object) -> tuple[ProjectConfig | None, str | None]:
    """The config (and its fingerprint) the churn and stage models recorded; None for models
    trained before models recorded it. Raises :class:`ConfigMismatch` when they differ."""
    found = {n: getattr(getattr(bundle, n), "lifecycle_fingerprint_", None) for n in MODELS}
    if len(set(found.values())) > 1:
        raise ConfigMismatch(
            "the churn and stage models were trained with different project configs "
            f"(fingerprints {found}); train and promote them together with one config"
        )
    fingerprint = found["churn"]
    return recorded_config(bundle.churn), fingerprint  # type: ignore[attr-defined]


def agreeing_clv(bundle, fingerprint: str | None):
    """``bundle`` without its CLV model when that model was trained with another config than
    the churn model (it is optional and promoted on its own: the service then serves the
    vectors' probabilistic CLV and says why in ``GET /models``), else ``bundle`` as it is."""
    from dataclasses import replace

    found = getattr(bundle.clv, "lifecycle_fingerprint_", None)
    if bundle.clv is None or fingerprint is None or found in (None, fingerprint):
        return bundle
    why = (f"the CLV model was trained with config fingerprint {found}, the churn model with "
           f"{fingerprint}: left out; train and promote them together with one config")  # fmt: skip
    info = {name: i for name, i in bundle.info.items() if name != "clv"}
    return replace(bundle, clv=None, info=info, absent={**bundle.absent, "clv": why})


def _version(version: int, address: str) -> str:
    """The store's version for messages, with where the store lives when known."""
    return f"the online store {address} (version {version})" if address else \
        f"the online store's version {version}"  # fmt: skip


def store_problem(
    models_fingerprint: str | None, store_label: str, version: int, address: str = ""
) -> str | None:
    """Why the store version cannot serve these models, or None when it can (``address``:
    where the store lives, named in the message)."""
    if models_fingerprint is None:
        return None  # models from before configs were recorded: nothing to compare
    built = label_fingerprint(store_label)
    if built == models_fingerprint:
        return None
    how = f"config fingerprint {built}" if built else "no recorded config (an older store)"
    return (
        f"{_version(version, address)} was built with {how}, but the models were "
        f"trained with config fingerprint {models_fingerprint}: their vectors would not mean "
        "the same; re-materialise with `lifecycle features materialize DATA` (it builds with "
        "the champions' recorded config)"
    )


def missing_columns(inputs: dict[str, list[str]], version, address: str = "") -> str | None:
    """Which model inputs the store ``version`` lacks (``inputs``: model -> its columns), or
    None when it holds them all: such a store cannot serve those models (``address``: where
    the store lives, named in the message)."""
    held = {c.name for c in version.columns}
    absent = {name: [c for c in columns if c not in held] for name, columns in inputs.items()}
    absent = {name: cols for name, cols in absent.items() if cols}
    if not absent:
        return None
    listed = "; ".join(f"{name} model: {cols[:10]}" for name, cols in absent.items())
    return (
        f"{_version(version.version, address)} lacks column(s) the models read "
        f"({listed}); re-materialise it with the models' feature set (`lifecycle features "
        "materialize DATA`)"
    )
