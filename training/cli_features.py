"""``lifecycle features ...``: build vectors, materialise them to the online store, stages."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from training.cli_common import DataDir, console, fail

app = typer.Typer(help="Point-in-time feature vectors, the online store, lifecycle stages.",
                  no_args_is_help=True)  # fmt: skip

AsOf = Annotated[
    str | None,
    typer.Option("--as-of", help="ISO timestamp (naive = UTC); default: the last event's time."),
]
FeatureSetOpt = Annotated[str, typer.Option("--feature-set", help="name or name@version")]
StorePath = Annotated[Path, typer.Option("--store", help="SQLite file of the online store.")]


def _inputs(data: Path, as_of: str | None):
    from features.builder import to_utc
    from training.data import load_tables

    try:
        tables = load_tables(data)
        when = to_utc(as_of) if as_of else tables.end
    except (ValueError, FileNotFoundError) as err:
        raise fail(str(err)) from None
    return tables, when


def _build(tables, when, feature_set: str):
    from features.builder import build_features

    try:
        return build_features(tables.events, when, feature_set, tables.customers,
                              tables.exposures, tables.offers)  # fmt: skip
    except (KeyError, ValueError) as err:
        raise fail(str(err)) from None


@app.command()
def build(
    data: DataDir,
    out: Annotated[Path, typer.Option("--out", "-o", help="Parquet file to write.")],
    as_of: AsOf = None,
    feature_set: FeatureSetOpt = "default",
) -> None:
    """Build every customer's feature vector as of a date and write it to Parquet."""
    tables, when = _inputs(data, as_of)
    vectors = _build(tables, when, feature_set)
    out.parent.mkdir(parents=True, exist_ok=True)
    vectors.to_parquet(out, index=False)
    console.print(f"{len(vectors):,} customers x {vectors.shape[1] - 1} features as of "
                  f"{when:%Y-%m-%dT%H:%M:%SZ} -> {out}")  # fmt: skip


@app.command()
def materialize(
    data: DataDir,
    store: StorePath = Path("store/online.sqlite"),
    as_of: AsOf = None,
    feature_set: FeatureSetOpt = "default",
    keep_versions: Annotated[int, typer.Option(min=1, help="Versions to keep.")] = 2,
) -> None:
    """Write the latest vectors (with the rule stage and owned products) to the online store
    as a new version; readers (the decision service) switch to it atomically."""
    from features.online_vectors import serving_vectors
    from features.store import OnlineStore

    tables, when = _inputs(data, as_of)
    try:
        vectors = serving_vectors(tables.events, when, feature_set, tables.customers,
                                  tables.exposures, tables.offers)  # fmt: skip
    except (KeyError, ValueError) as err:
        raise fail(str(err)) from None
    store.parent.mkdir(parents=True, exist_ok=True)
    version = OnlineStore(store).materialize(vectors, when, feature_set,
                                             keep_versions=keep_versions)  # fmt: skip
    console.print(
        f"store {store}: version {version.version} is current "
        f"({version.n_customers:,} customers, as of {when:%Y-%m-%dT%H:%M:%SZ})"
    )


@app.command()
def stages(
    data: DataDir,
    as_of: AsOf = None,
    compare_to: Annotated[
        str | None, typer.Option(help="An earlier date: also print the transition matrix.")
    ] = None,
) -> None:
    """Print the stage funnel as of a date (and the moves since --compare-to)."""
    from features.builder import to_utc
    from features.stages import assign_stages, stage_funnel, transition_matrix

    tables, when = _inputs(data, as_of)

    def staged(at):
        vectors = _build(tables, at, "default")
        return vectors.assign(stage=assign_stages(vectors).to_numpy())

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
