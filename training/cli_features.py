"""``lifecycle features ...``: build vectors, materialise them to the online store, stages."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from training.cli_common import (
    DataDir,
    ProjectConfigFile,
    console,
    fail,
    load_data,
    project_config,
)

app = typer.Typer(help="Point-in-time feature vectors, the online store, lifecycle stages.",
                  no_args_is_help=True)  # fmt: skip

AsOf = Annotated[
    str | None,
    typer.Option("--as-of", help="ISO timestamp (naive = UTC); default: the last event's time."),
]
FeatureSetOpt = Annotated[str, typer.Option("--feature-set", help="name or name@version")]
StorePath = Annotated[
    str,
    typer.Option(
        "--store",
        help="The online store: a SQLite file, or a redis://HOST:PORT/DB[?prefix=NAME] or "
        "postgresql://USER@HOST:PORT/DB[?prefix=SCHEMA] URL.",
    ),
]


def _inputs(data: Path, as_of: str | None, config_path: Path | None = None, config=None):
    """(tables, as-of time, project config resolved on the tables)."""
    from features.builder import to_utc
    from training.pipeline import resolved

    config = config or project_config(config_path, data)
    tables = load_data(data, config)
    try:
        when = to_utc(as_of) if as_of else tables.end
        return tables, when, resolved(tables, config)
    except ValueError as err:
        raise fail(str(err)) from None


def _build(tables, when, config, feature_set: str | None = None):
    from features.builder import build_features
    from training.resolve import vector_options

    d = config.dataset
    options = {} if feature_set else vector_options(tables, d)  # a named set: just that set
    try:
        return build_features(tables.events, when, feature_set or d.feature_set,
                              tables.customers, tables.exposures, tables.offers,
                              d.response_window_days, **options)  # fmt: skip
    except (KeyError, ValueError) as err:
        raise fail(str(err)) from None


ModelsOpt = Annotated[
    str,
    typer.Option(
        "--models",
        help="Build vectors the way these models were trained (their recorded config): "
        "registry (the champions, when there are any), an export folder, or config (the "
        "project config only).",
    ),
]


def _models_config(models: str, alias: str = "champion"):
    """The project config the champions (or an export folder's models) were trained with;
    None when there are none to follow."""
    from features.project import recorded_config

    if models == "config":
        return None
    if models == "registry":
        from training.registry import load_alias, setup

        setup()
        estimator, _ = load_alias("lifecycle-churn", alias)
        return recorded_config(estimator) if estimator is not None else None
    import joblib

    path = Path(models) / "churn.joblib"
    if not path.is_file():
        raise fail(f"--models {models}: no churn.joblib there (an export folder, registry or "
                   "config)")  # fmt: skip
    return recorded_config(joblib.load(path))


@app.command()
def build(
    data: DataDir,
    out: Annotated[Path, typer.Option("--out", "-o", help="Parquet file to write.")],
    as_of: AsOf = None,
    feature_set: Annotated[
        str | None, typer.Option("--feature-set", help="name or name@version (default: config)")
    ] = None,
    config: ProjectConfigFile = None,
) -> None:
    """Build every customer's feature vector as of a date and write it to Parquet."""
    tables, when, cfg = _inputs(data, as_of, config)
    vectors = _build(tables, when, cfg, feature_set)
    out.parent.mkdir(parents=True, exist_ok=True)
    vectors.to_parquet(out, index=False)
    console.print(f"{len(vectors):,} customers x {vectors.shape[1] - 1} features as of "
                  f"{when:%Y-%m-%dT%H:%M:%SZ} -> {out}")  # fmt: skip


@app.command()
def materialize(
    data: DataDir,
    store: StorePath = "store/online.sqlite",
    as_of: AsOf = None,
    keep_versions: Annotated[int, typer.Option(min=1, help="Versions to keep.")] = 2,
    config: ProjectConfigFile = None,
    models: ModelsOpt = "registry",
) -> None:
    """Write the latest vectors (with the rule stage and owned products) to the online store
    as a new version; readers (the decision service) switch to it atomically.

    The vectors are built with the config the champion models recorded at training (so the
    service reads exactly what they were trained on); without champions, with the project
    config. The version is labelled with the config's fingerprint, which the service checks.
    """
    from features.store import StoreUnavailableError, open_store
    from training.resolve import store_vectors

    followed = _models_config(models)
    tables, when, cfg = _inputs(data, as_of, config, followed)
    try:
        vectors, label = store_vectors(tables, cfg, when)
    except (KeyError, ValueError) as err:
        raise fail(str(err)) from None
    try:  # a SQLite store creates its folder; a server must be reachable
        version = open_store(store).materialize(vectors, when, label, keep_versions=keep_versions)
    except StoreUnavailableError as err:
        raise fail(str(err)) from None
    source = "the champion models' recorded config" if followed else "the project config"
    console.print(
        f"store {store}: version {version.version} is current "
        f"({version.n_customers:,} customers, as of {when:%Y-%m-%dT%H:%M:%SZ}; built with "
        f"{source}, fingerprint {cfg.fingerprint()})"
    )


@app.command()
def stages(
    data: DataDir,
    as_of: AsOf = None,
    compare_to: Annotated[
        str | None, typer.Option(help="An earlier date: also print the transition matrix.")
    ] = None,
    config: ProjectConfigFile = None,
) -> None:
    """Print the stage funnel as of a date (and the moves since --compare-to)."""
    from features.builder import to_utc
    from features.stages import assign_stages, stage_funnel, transition_matrix

    tables, when, cfg = _inputs(data, as_of, config)

    def staged(at):
        vectors = _build(tables, at, cfg)
        return vectors.assign(stage=assign_stages(vectors, cfg.dataset.stages).to_numpy())

    now = staged(when)
    console.print(f"Stage funnel as of {when:%Y-%m-%d}:")
    console.print(stage_funnel(now["stage"]).to_string(float_format="{:.3f}".format))
    if compare_to:
        then = staged(to_utc(compare_to))
        console.print(f"\nMoves from {compare_to} to {when:%Y-%m-%d} (row shares):")
        console.print(transition_matrix(then, now).to_string(float_format="{:.2f}".format))


@app.command("list")
def list_features(feature_set: FeatureSetOpt = "default") -> None:
    """List a feature set's features: name, family, fill value and definition."""
    from features.registry import REGISTRY, get_feature_set

    try:
        fs = get_feature_set(feature_set)
    except KeyError as err:
        raise fail(str(err.args[0])) from None
    console.print(f"feature set {fs.key}: {len(fs.features)} features")
    for name in fs.features:
        f = REGISTRY[name]
        console.print(f"  {name:34s} {f.family:12s} fill={f.fill!s:5s} {f.definition}")
