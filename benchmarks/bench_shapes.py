"""Churn quality on three data shapes beside baselines on the same holdout rows (issue 12, pt 9).

Usage: python benchmarks/bench_shapes.py [--customers 20000] [--seed 0]
           [--profiles purchase_only,subscription,default] [--horizons 90 180]
           [--bootstrap 1000] [--workdir /tmp/bench_shapes] [--no-oracle]

For each simulator profile the script writes the data set as a user would have it (the
profile's own files and ``lifecycle.yaml``, reused when already there), loads it through the
project config, runs the real pipeline (``training.pipeline.fit_and_evaluate``) and then scores
every model on the SAME rows: the churn population of the latest snapshot, i.e. the rows the
pipeline's own report scores (checked: our AUC equals the report's to 1e-9). Baselines are
computed in the same run from the same events up to that as-of date and aligned to those rows
by ``(customer_id, as_of)``.

- ``purchase_only`` (730 days): churn = no purchase within H days (``inactivity`` over
  ``[purchase]``, ``population: all``, BG/NBD features on), read as "buys again within H days"
  (score = 1 - P(churn)). Baselines: BG/NBD fitted without labels on the purchase histories up
  to the holdout as-of (ranking by expected purchases in H days, and by P(purchase within H)),
  recency alone (days since the last purchase), and the project's logistic baseline. For
  scale, an informed oracle: the same ChurnModel on the same rows given the simulator's latent
  state at each as-of (truth used for this row only; ``--no-oracle`` skips it).
- ``subscription`` (365 days, ``profile_config("subscription")`` as is: a contract ending
  within 30 days, contract holders). Baseline: standardised logistic regression
  (``class_weight=None``) on per-event-type counts over the last 28 days plus tenure (days since
  the account's first event), computed here at each as-of, fitted on the rows the churn model
  was given (training + validation snapshots' churn population); and the project's logistic.
- ``default`` (365 days, ``ProjectConfig()``): ours vs the project's logistic baseline.

Every model gets ROC-AUC with a bootstrap 95% interval (rows resampled with replacement,
``--bootstrap`` times, seeded), each difference "ours minus baseline" a PAIRED interval (the
same resampled rows for both), and PR-AUC (average precision of the positive class the row
states: "buys again" for purchase_only, "churned" otherwise). Prints a table per profile, writes
``benchmarks/out/shapes.json`` and the markdown section ``benchmarks/out/shapes.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from _common import OUT, markdown, run_summary, save
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from features.builder import epoch_us
from features.project import ProjectConfig
from features.simulator import SimConfig, simulate, write_simulation
from training.data import load_tables
from training.datasets import Tables, time_split
from training.models._lgbm import feature_columns
from training.models.baselines import LogisticChurn
from training.pipeline import TrainResult, churn_population, fit_and_evaluate
from training.profiles import profile_config, write_profile_config

DAYS = {"purchase_only": 730, "subscription": 365, "default": 365}
DAY = pd.Timedelta(days=1)
OURS = "ours: LightGBM churn model"
ORACLE_NAME = "informed oracle: same model + latent truth"
RECENT_DAYS = 28


@dataclass
class Scored:
    """One profile's (and horizon's) holdout: target, oriented scores and what was checked."""

    name: str
    target: str  # what y = 1 means
    y: np.ndarray
    scores: dict[str, np.ndarray]  # model -> score, higher = more likely y = 1
    info: dict = field(default_factory=dict)
    goals: list[tuple[str, str, float]] = field(default_factory=list)  # (baseline, op, margin)


# ---------------------------------------------------------------- data and the pipeline


def purchase_config(horizon: int) -> ProjectConfig:
    """``profile_config("purchase_only")`` with churn = no purchase within ``horizon`` days."""
    base = profile_config("purchase_only")
    dataset = base.dataset.model_copy(update={
        "churn_definition": "inactivity", "qualifying_roles": ("purchase",),
        "population": "all", "churn_horizon_days": horizon, "btyd_features": "on",
    })  # fmt: skip
    return ProjectConfig.model_validate({**base.model_dump(), "dataset": dataset.model_dump()})


def simulated_tables(profile: str, customers: int, seed: int, workdir: Path,
                     config: ProjectConfig) -> tuple[Tables, Path, float]:  # fmt: skip
    """The profile's files under ``workdir`` (simulated unless already there with the same
    settings), loaded through ``config``; their folder; the seconds spent simulating (0 if
    reused)."""
    cfg = SimConfig(profile=profile, customers=customers, days=DAYS[profile], seed=seed)
    folder = workdir / f"{profile}_{customers}_s{seed}"
    marker = folder / "simulation.json"
    seconds = 0.0
    if not (marker.exists() and SimConfig(**json.loads(marker.read_text())) == cfg):
        t0 = time.perf_counter()
        write_simulation(simulate(cfg), folder, cfg, "parquet")
        write_profile_config(folder, profile)
        seconds = time.perf_counter() - t0
    return load_tables(folder, config=config), folder, seconds


def pipeline_rows(result: TrainResult) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """The churn population rows ``fit_and_evaluate`` fitted on and scored, and the columns
    the churn model reads (the same split and dropped columns as the pipeline)."""
    parts = time_split(result.dataset, result.config.dataset)
    fit_part = pd.concat([parts["train"], parts["validation"]], ignore_index=True)
    holdout = parts["test"] if len(parts["test"]) else parts["validation"]
    train = churn_population(fit_part.drop(columns=result.dropped))
    test = churn_population(holdout.drop(columns=result.dropped)).reset_index(drop=True)
    assert (test["as_of"] == result.holdout_as_of).all()
    return train, test, feature_columns(train)


def project_scores(result: TrainResult, train, test, cols) -> dict[str, np.ndarray]:
    """P(churn) of the trained churn model and of the project's logistic baseline (refitted on
    the same rows; deterministic), each checked against the pipeline's own report."""
    report = result.reports["churn"]
    y = test["churned"].to_numpy()
    ours = report.estimator.predict_proba(test[cols])[:, 1]
    logistic = LogisticChurn().fit(train[cols], train["churned"]).predict_proba(test[cols])[:, 1]
    for name, p, reported in (
        ("ours", ours, report.metrics["roc_auc"]),
        ("logistic", logistic, report.baselines["logistic"]["roc_auc"]),
    ):
        mine = roc_auc_score(y, p)
        if abs(mine - reported) > 1e-9:
            raise AssertionError(f"{name}: ROC-AUC {mine} on the rebuilt holdout, "
                                 f"report {reported}: not the same rows")  # fmt: skip
    return {"ours": ours, "logistic": logistic}


def importance(result: TrainResult, top: int = 10) -> list[dict]:
    """The churn booster's top columns by split gain (share of the total)."""
    gain = result.reports["churn"].estimator.feature_importance()
    share = gain / gain.sum()
    return [{"rank": i + 1, "feature": name, "gain share": round(float(share[name]), 4)}
            for i, name in enumerate(gain.index[:top])]  # fmt: skip


def btyd_usage(result: TrainResult) -> dict:
    """Whether the BG/NBD columns reached the churn model and how much its trees use them."""
    gain = result.reports["churn"].estimator.feature_importance()
    rank = {name: i + 1 for i, name in enumerate(gain.index)}
    cols = [c for c in result.dataset.columns if c.startswith("btyd_")]
    filled = result.dataset.groupby("as_of")[cols].agg(lambda v: v.notna().mean())
    return {c: {"dropped": c in result.dropped, "rank": rank.get(c),
                "gain share": round(float(gain.get(c, 0.0) / gain.sum()), 4),
                "filled share per snapshot": [round(float(v), 3) for v in filled[c]]}
            for c in cols}  # fmt: skip


def informed_oracle(result: TrainResult, train, test, cols, folder: Path) -> np.ndarray:
    """P(churn) of the same ChurnModel and rows given the purchase_only simulator's latent
    state at each row's as-of (purchase rate, dropout probability, one-and-done, fade days,
    whether and since when the customer is leaving or gone; nothing after the as-of): an
    estimate of what the events could reveal at best. Truth is used here only."""
    from training.models.churn import ChurnModel

    truth = pd.read_parquet(folder / "truth" / "customers.parquet")
    truth = truth.set_index(truth["customer_id"].astype("str"))
    start = pd.Timestamp(json.loads((folder / "simulation.json").read_text())["start"], tz="UTC")

    def informed(rows: pd.DataFrame) -> pd.DataFrame:
        t = truth.reindex(rows["customer_id"].astype("str").to_numpy())
        day = ((rows["as_of"] - start) / DAY).to_numpy(dtype=float)
        leaving = t["leaving_since_day"].to_numpy(dtype=float)
        gone = t["dropout_day"].to_numpy(dtype=float)
        extra = pd.DataFrame({
            "truth_rate": t["purchase_rate_per_year"].to_numpy(dtype=float),
            "truth_dropout_p": t["dropout_probability"].to_numpy(dtype=float),
            "truth_one_and_done": t["one_and_done"].to_numpy(dtype=float),
            "truth_fade_days": t["fade_days"].to_numpy(dtype=float),
            "truth_leaving_days": np.where(leaving <= day, day - leaving, np.nan),
            "truth_gone": (gone <= day).astype(float),
        }, index=rows.index)  # fmt: skip
        return pd.concat([rows[cols], extra], axis=1)

    model = ChurnModel(**result.reports["churn"].params)
    model.fit(informed(train), train["churned"], time=train["as_of"])
    return model.predict_proba(informed(test))[:, 1]


# ---------------------------------------------------------------- baselines


def last_purchase_days(events: pd.DataFrame, ids: pd.Series, as_of: pd.Timestamp) -> np.ndarray:
    """Days from each customer's last purchase up to ``as_of`` to ``as_of`` (NaN: none)."""
    buys = events[(events["role"] == "purchase") & (events["timestamp"] <= as_of)]
    last = buys.groupby(buys["customer_id"].astype("str"))["timestamp"].max()
    return ((as_of - last.reindex(ids.astype("str").to_numpy())) / DAY).to_numpy(dtype=float)


def bgnbd_scores(events: pd.DataFrame, ids: pd.Series, as_of: pd.Timestamp,
                 horizon: int) -> tuple[dict[str, np.ndarray], dict]:  # fmt: skip
    """BG/NBD fitted (no labels) on every purchase history up to ``as_of``; per id the
    expected purchases and P(at least one purchase) in the next ``horizon`` days."""
    from features.btyd import BGNBD, purchase_summary

    buys = events[(events["role"] == "purchase") & (events["timestamp"] <= as_of)]
    labels, code = np.unique(buys["customer_id"].astype("str").to_numpy(), return_inverse=True)
    ts = buys["timestamp"].dt.as_unit("us").array.asi8
    x, t_x, age = purchase_summary(code, ts, epoch_us(as_of), len(labels))
    model = BGNBD().fit(x, t_x, age)
    pos = pd.Index(labels).get_indexer(ids.astype("str").to_numpy())
    found = pos >= 0
    out = {}
    for name, fn in (("expected", model.expected_purchases),
                     ("p_purchase", model.prob_purchase_within)):  # fmt: skip
        score = np.zeros(len(ids))  # no purchase yet: nothing expected
        score[found] = fn(horizon, x[pos[found]], t_x[pos[found]], age[pos[found]])
        out[name] = score
    info = {"fitted on customers": len(labels), "params": dict(model.params_),
            "holdout ids without a purchase": int((~found).sum())}  # fmt: skip
    return out, info


def recent_count_frame(events: pd.DataFrame, rows: pd.DataFrame, types: list[str]) -> pd.DataFrame:
    """Per row (``customer_id``, ``as_of``): events of each type in ``(as_of - 28 d, as_of]``
    and ``tenure_days`` since the customer's first event up to ``as_of`` (0 without one)."""
    ids = events["customer_id"].astype("str")
    parts = []
    for as_of, part in rows.groupby("as_of", sort=False):
        seen = events["timestamp"] <= as_of
        recent = seen & (events["timestamp"] > as_of - RECENT_DAYS * DAY)
        counts = pd.crosstab(ids[recent], events.loc[recent, "event_type"])
        first = events.loc[seen, "timestamp"].groupby(ids[seen]).min()
        key = part["customer_id"].astype("str").to_numpy()
        frame = counts.reindex(index=key, columns=types, fill_value=0).astype(float)
        tenure = ((as_of - first.reindex(key)) / DAY).to_numpy(dtype=float)
        frame = frame.assign(tenure_days=np.nan_to_num(tenure, nan=0.0)).set_axis(part.index)
        parts.append(frame)
    return pd.concat(parts).loc[rows.index]


def counts_logistic(events: pd.DataFrame, train: pd.DataFrame, test: pd.DataFrame):
    """The subscription baseline: standardised logistic regression (no class weights) on the
    28-day per-event-type counts plus tenure, fitted on ``train``, P(churn) on ``test``."""
    types = sorted(events["event_type"].astype("str").unique())
    x_train = recent_count_frame(events, train, types)
    x_test = recent_count_frame(events, test, types)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight=None))
    model.fit(x_train.to_numpy(), train["churned"].to_numpy(dtype=int))
    return model.predict_proba(x_test.to_numpy())[:, 1], {
        "columns": [*types, "tenure_days"],
        "training rows": len(x_train),
    }


# ---------------------------------------------------------------- bootstrap


def auc_groups(score: np.ndarray) -> tuple[np.ndarray, int]:
    """Tie groups of ``score`` in ascending order (for the weighted Mann-Whitney AUC)."""
    uniq, inverse = np.unique(score, return_inverse=True)
    return inverse, len(uniq)


def weighted_auc(groups: np.ndarray, n_groups: int, pos: np.ndarray, neg: np.ndarray) -> float:
    """ROC-AUC with per-row positive/negative weights (ties count a half)."""
    p = np.bincount(groups, pos, n_groups)
    n = np.bincount(groups, neg, n_groups)
    below = np.cumsum(n) - n
    return float(p @ (below + 0.5 * n) / (p.sum() * n.sum()))


def bootstrap_aucs(y: np.ndarray, scores: dict[str, np.ndarray], draws: int,
                   seed: int) -> dict[str, np.ndarray]:  # fmt: skip
    """ROC-AUC of every model on the same ``draws`` row resamples (with replacement)."""
    rng = np.random.default_rng(seed)
    groups = {name: auc_groups(s) for name, s in scores.items()}
    out = {name: np.empty(draws) for name in scores}
    n = len(y)
    for b in range(draws):
        w = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)
        pos, neg = w * y, w * (1 - y)
        for name, (g, k) in groups.items():
            out[name][b] = weighted_auc(g, k, pos, neg)
    return out


def interval(values: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def evaluate(scored: Scored, draws: int, seed: int) -> dict:
    """Point ROC-AUC / PR-AUC, bootstrap intervals, paired differences and the goals."""
    y = scored.y.astype(float)
    for name, s in scored.scores.items():
        if not np.isfinite(s).all():
            raise ValueError(f"{scored.name}: {name} has {int((~np.isfinite(s)).sum())} "
                             "non-finite scores")  # fmt: skip
    point = {name: roc_auc_score(y, s) for name, s in scored.scores.items()}
    pr = {name: average_precision_score(y, s) for name, s in scored.scores.items()}
    boot = bootstrap_aucs(y, scored.scores, draws, seed)
    rows = []
    for name in scored.scores:
        lo, hi = interval(boot[name])
        row = {"model": name, "ROC-AUC [95% CI]": f"{point[name]:.4f} [{lo:.4f}, {hi:.4f}]",
               f"PR-AUC ({scored.target})": round(pr[name], 4)}  # fmt: skip
        if name != OURS:
            diff = point[OURS] - point[name]
            dlo, dhi = interval(boot[OURS] - boot[name])
            row["ours − model [paired 95% CI]"] = f"{diff:+.4f} [{dlo:+.4f}, {dhi:+.4f}]"
        else:
            row["ours − model [paired 95% CI]"] = ""
        rows.append(row)
    goals = []
    for base, op, margin in scored.goals:
        diff = point[OURS] - point[base]
        dlo, dhi = interval(boot[OURS] - boot[base])
        met = diff >= margin if op == ">=" else diff > margin
        clear = dlo > margin if op == ">" else dlo >= margin
        goals.append({"goal": f"ours {op} {base} + {margin:g}", "difference": f"{diff:+.4f}",
                      "paired 95% CI": f"[{dlo:+.4f}, {dhi:+.4f}]",
                      "met (point estimate)": "met" if met else "NOT met",
                      "CI lower bound past the margin": "yes" if clear else "no"})  # fmt: skip
    return {
        "rows": rows,
        "goals": goals,
        "point": point,
        "pr_auc": pr,
        "n": len(y),
        "positives": int(y.sum()),
        "rate": float(y.mean()),
    }


# ---------------------------------------------------------------- profiles


def run_purchase_only(args, horizon: int) -> tuple[Scored, TrainResult, dict]:
    config = purchase_config(horizon)
    tables, folder, sim_s = simulated_tables("purchase_only", args.customers, args.seed,
                                             args.workdir, config)  # fmt: skip
    t0 = time.perf_counter()
    result = fit_and_evaluate(tables, config)
    fit_s = time.perf_counter() - t0
    train, test, cols = pipeline_rows(result)
    p = project_scores(result, train, test, cols)
    as_of = result.holdout_as_of
    bg, bg_info = bgnbd_scores(tables.events, test["customer_id"], as_of, horizon)
    recency = last_purchase_days(tables.events, test["customer_id"], as_of)
    feature = f"btyd_expected_purchases_{horizon}d"
    same = (np.nanmax(abs(test[feature].to_numpy(dtype=float) - bg["expected"]))
            if feature in test else None)  # fmt: skip
    scores = {OURS: 1.0 - p["ours"],
              f"BG/NBD expected purchases in {horizon} d": bg["expected"],
              f"BG/NBD P(purchase within {horizon} d)": bg["p_purchase"],
              "recency alone (days since the last purchase)": -np.nan_to_num(recency, nan=1e9),
              "project logistic baseline (LogisticChurn)": 1.0 - p["logistic"]}  # fmt: skip
    names = list(scores)
    if args.oracle:
        oracle = informed_oracle(result, train, test, cols, folder)
        scores[ORACLE_NAME] = 1.0 - oracle
    scored = Scored(f"purchase_only, H = {horizon} d", "buys again", 1 - test["churned"].to_numpy(),
                    scores, goals=[(names[1], ">=", 0.01), (names[2], ">=", 0.01),
                                   (names[3], ">", 0.0)])  # fmt: skip
    info = {"bgnbd": bg_info, f"max |{feature} feature - BG/NBD baseline|": same,
            "recency missing": int(np.isnan(recency).sum())}  # fmt: skip
    return scored, result, {"simulate_s": sim_s, "fit_and_evaluate_s": fit_s, **info}


def run_subscription(args) -> tuple[Scored, TrainResult, dict]:
    config = profile_config("subscription")
    tables, _, sim_s = simulated_tables("subscription", args.customers, args.seed,
                                        args.workdir, config)  # fmt: skip
    t0 = time.perf_counter()
    result = fit_and_evaluate(tables, config)
    fit_s = time.perf_counter() - t0
    train, test, cols = pipeline_rows(result)
    p = project_scores(result, train, test, cols)
    counts, counts_info = counts_logistic(tables.events, train, test)
    base = "logistic on 28-day per-event-type counts + tenure"
    scores = {OURS: p["ours"], base: counts,
              "project logistic baseline (LogisticChurn)": p["logistic"]}  # fmt: skip
    scored = Scored("subscription", "churned", test["churned"].to_numpy(), scores,
                    goals=[(base, ">=", 0.02)])  # fmt: skip
    return scored, result, {"simulate_s": sim_s, "fit_and_evaluate_s": fit_s,
                            "counts baseline": counts_info}  # fmt: skip


def run_default(args) -> tuple[Scored, TrainResult, dict]:
    config = ProjectConfig()
    tables, _, sim_s = simulated_tables("default", args.customers, args.seed, args.workdir, config)
    t0 = time.perf_counter()
    result = fit_and_evaluate(tables, config)
    fit_s = time.perf_counter() - t0
    train, test, cols = pipeline_rows(result)
    p = project_scores(result, train, test, cols)
    base = "project logistic baseline (LogisticChurn)"
    scored = Scored(
        "default",
        "churned",
        test["churned"].to_numpy(),
        {OURS: p["ours"], base: p["logistic"]},
        goals=[(base, ">", 0.0)],
    )
    return scored, result, {"simulate_s": sim_s, "fit_and_evaluate_s": fit_s}


# ---------------------------------------------------------------- report


def describe(scored: Scored, result: TrainResult, info: dict, ev: dict) -> str:
    """The profile's markdown block: what was scored, the table, the goals, top features."""
    d = result.config.dataset
    train, _, cols = pipeline_rows(result)
    head = (f"**{scored.name}** — churn `{d.churn_definition}` over {d.churn_horizon_days} "
            f"days, population `{d.population}`, BG/NBD features `{d.btyd_features}`; holdout "
            f"as-of {result.holdout_as_of:%Y-%m-%d}: {ev['n']:,} rows, {ev['positives']:,} "
            f"'{scored.target}' ({ev['rate']:.1%}); trained on {len(train):,} rows of "
            f"{train['as_of'].nunique()} snapshots, {len(cols)} columns; fit_and_evaluate "
            f"{info['fit_and_evaluate_s']:.0f} s.")  # fmt: skip
    return "\n\n".join([head, markdown(ev["rows"]), markdown(ev["goals"])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profiles", default="purchase_only,subscription,default")
    parser.add_argument(
        "--horizons",
        type=int,
        nargs="+",
        default=[90, 180],
        help="purchase_only churn horizons in days",
    )
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench_shapes"))
    parser.add_argument(
        "--no-oracle",
        dest="oracle",
        action="store_false",
        help="skip the purchase_only informed oracle (latent truth)",
    )
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    start, load0 = time.perf_counter(), os.getloadavg()
    runs = []
    for profile in args.profiles.split(","):
        if profile == "purchase_only":
            runs += [run_purchase_only(args, h) for h in args.horizons]
        elif profile == "subscription":
            runs.append(run_subscription(args))
        elif profile == "default":
            runs.append(run_default(args))
        else:
            raise SystemExit(f"unknown profile {profile!r}")
    blocks, payload = [], {"args": {**vars(args), "workdir": str(args.workdir)}, "runs": []}
    for k, (scored, result, info) in enumerate(runs):
        ev = evaluate(scored, args.bootstrap, seed=args.seed * 1000 + k)
        top = importance(result)
        usage = btyd_usage(result)
        blocks.append(describe(scored, result, info, ev))
        print("\n" + blocks[-1])
        print("\nchurn model, top 10 columns by gain:\n\n" + markdown(top))
        print(f"\nBG/NBD columns in the churn model: {json.dumps(usage)}")
        print(f"details: {json.dumps(info, default=str)}")
        payload["runs"].append({"name": scored.name, "info": info, "importance": top,
                                "btyd_usage": usage, **ev})  # fmt: skip
    tail, total = run_summary(f"{args.customers:,} customers per profile, seed {args.seed}, "
                              f"{args.bootstrap} bootstrap resamples", start, load0)  # fmt: skip
    print("\n" + tail)
    payload |= {"total_s": total, "summary": tail}
    save("shapes", payload)
    OUT.mkdir(exist_ok=True)
    (OUT / "shapes.md").write_text("\n\n".join(blocks) + "\n\n" + tail + "\n")


if __name__ == "__main__":
    main()
