"""Customer lifetime value against the simulator's truth after the log (issue 13).

Usage: python benchmarks/bench_clv.py [--customers 20000] [--seed 0] [--bootstrap 1000]
           [--workdir /tmp/bench_clv] [--profiles default,purchase_only]

For each simulator profile the script writes 730 days of data as a user would have it (the
profile's files and ``lifecycle.yaml``, reused when already there), loads it through the
project config with ``clv_annual_discount_rate: 0`` and ``clv_margin_share: 1`` (so every
estimate is undiscounted spend, the truth's unit) and resolves it as training does. Then:

- the product's own choice: ``training.clv_pipeline.evaluate_clv`` fits the learned model on
  the earlier labelled snapshots and picks the champion (learned or probabilistic) by
  normalised Gini on the latest labelled as-of, inside the log;
- scoring at the log's end: the learned ``CLVModel`` refitted as the pipeline fits it, on ALL
  labelled snapshots (the year after the log is the holdout now); every customer's vector at
  the end from the training builder (``build_snapshot``: BG/NBD and Gamma-Gamma refitted on
  every purchase history up to the end); ``ProbabilisticCLV`` reads its ``btyd_clv_365d``; the
  baseline is the last 365 days' spend x (realised / past spend summed over the same
  snapshots).

Every estimate is compared on the SAME rows (every customer in the end vectors) with the
simulator's ``spend_next_365d`` (0 without a future purchase): Spearman, normalised Gini,
top-decile capture, MAE (``training.metrics.value_metrics``), mean estimate vs mean truth;
bootstrap 95% intervals (customers resampled, seeded) and PAIRED differences champion minus
each other estimate. A last table scores the same end-trained models on the vectors as served
(BG/NBD and Gamma-Gamma with the parameters recorded at training, ``current_vectors``).
Writes ``benchmarks/out/clv.json`` and ``benchmarks/out/clv.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import OUT, markdown, run_summary, save

from features.project import ProjectConfig
from features.simulator import SimConfig, simulate, write_simulation
from training.clv_pipeline import LABEL, PAST, clv_frame, estimator_inputs, evaluate_clv
from training.data import load_tables
from training.datasets import Tables, build_snapshot, current_vectors
from training.metrics import value_metrics
from training.models.clv import CLVModel, ProbabilisticCLV
from training.pipeline import resolved
from training.profiles import profile_config, write_profile_config

DAYS = 730
HORIZON = 365
TRUTH = f"spend_next_{HORIZON}d"
LEARNED = "learned: CLVModel (LightGBM Tweedie)"
PROBABILISTIC = "probabilistic: BG/NBD + Gamma-Gamma"
PAST_SPEND = "past 365 d spend x constant"
NAMES = {"learned": LEARNED, "probabilistic": PROBABILISTIC, "past_spend": PAST_SPEND}
RANKING = ("spearman", "normalized_gini")  # the goal metrics
METRICS = {"spearman": "Spearman", "normalized_gini": "normalised Gini",
           "top_decile_capture": "top-decile capture", "mae": "MAE"}  # fmt: skip


# ---------------------------------------------------------------- data


def project_config(profile: str) -> ProjectConfig:
    """The profile's project config with undiscounted spend as the CLV (the truth's unit)."""
    base = profile_config(profile)
    dataset = base.dataset.model_copy(update={"clv_horizon_days": HORIZON,
                                              "clv_annual_discount_rate": 0.0,
                                              "clv_margin_share": 1.0})  # fmt: skip
    return ProjectConfig.model_validate({**base.model_dump(), "dataset": dataset.model_dump()})


def simulated_tables(profile: str, customers: int, seed: int, workdir: Path,
                     config: ProjectConfig) -> tuple[Tables, pd.DataFrame, float]:  # fmt: skip
    """The profile's files under ``workdir`` (simulated unless there with the same settings),
    loaded through ``config``; the truth table; the seconds spent simulating (0 if reused)."""
    cfg = SimConfig(profile=profile, customers=customers, days=DAYS, seed=seed)
    folder = workdir / f"{profile}_{customers}_{DAYS}d_s{seed}"
    marker = folder / "simulation.json"
    seconds = 0.0
    if not (marker.exists() and SimConfig(**{"profile": profile, **json.loads(
            marker.read_text())}) == cfg):  # fmt: skip
        t0 = time.perf_counter()
        write_simulation(simulate(cfg), folder, cfg, "parquet")
        write_profile_config(folder, profile)
        seconds = time.perf_counter() - t0
    truth = pd.read_parquet(folder / "truth" / "customers.parquet")
    return load_tables(folder, config=config), truth, seconds


def truth_for(truth: pd.DataFrame, ids: pd.Series) -> tuple[np.ndarray, dict]:
    """``spend_next_365d`` per id (every id must be in the truth) and what the rows leave out."""
    spend = truth.set_index(truth["customer_id"].astype("str"))[TRUTH]
    key = ids.astype("str").to_numpy()
    missing = ~pd.Index(key).isin(spend.index)
    if missing.any():
        first = key[missing][0]
        raise AssertionError(f"{missing.sum()} scored ids not in the truth (first: {first})")
    left_out = spend.drop(index=key)
    return spend.reindex(key).to_numpy(dtype=float), {
        "truth customers without a vector": len(left_out),
        "their share of the future spend": round(float(left_out.sum() / spend.sum()), 4),
    }


# ---------------------------------------------------------------- estimators at the end


def scores_at_end(tables: Tables, config: ProjectConfig) -> tuple[pd.DataFrame, dict, dict]:
    """The end vectors, each estimate on them, and what was fitted (dates, rows, champion)."""
    d = config.dataset
    found = evaluate_clv(tables, config)  # the product's own champion, chosen inside the log
    dates = found["dates"]
    earlier = clv_frame(tables, d, dates[:-1]) if len(dates) > 1 else found["holdout"][:0]
    train = pd.concat([earlier, found["holdout"]], ignore_index=True)  # every labelled as-of
    inputs = estimator_inputs(train)
    learned = CLVModel(**{"random_state": config.seed, **config.clv})
    learned.fit(train[inputs], train[LABEL], time=train["as_of"], groups=train["customer_id"])
    constant = float(train[LABEL].sum() / train[PAST].sum())
    probabilistic = ProbabilisticCLV(f"btyd_clv_{HORIZON}d")
    end = build_snapshot(tables, tables.end, d)  # BG/NBD + Gamma-Gamma refitted at the end
    scores = {"learned": learned.predict(end[inputs]),
              "probabilistic": probabilistic.fit(end).predict(end),
              "past_spend": end[PAST].to_numpy(dtype=float) * constant}  # fmt: skip
    served = current_vectors(tables, d)  # as the store serves: recorded BTYD parameters
    served = served.set_index("customer_id").loc[end["customer_id"]].reset_index()
    as_served = {"learned": learned.predict(served[inputs]),
                 "probabilistic": probabilistic.predict(served)}  # fmt: skip
    info = {
        "champion": found["champion"],
        "in-log holdout as-of": f"{dates[-1]:%Y-%m-%d}",
        "in-log normalised Gini": {k: round(v["normalized_gini"], 4)
                                   for k, v in found["metrics"].items()},  # fmt: skip
        "in-log mean estimate / realised": {k: f"{v['mean_pred']:.1f} / {v['mean_true']:.1f}"
                                            for k, v in found["metrics"].items()},
        "training as-of dates": [f"{x:%Y-%m-%d}" for x in dates],
        "learned top columns by gain": top_columns(learned),
        "training rows": len(train), "inputs": len(inputs), "learned rounds": learned.n_iter_,
        "past-spend constant": round(constant, 4), "log end": f"{tables.end:%Y-%m-%d %H:%M}",
        "recorded btyd params": d.btyd_params,
        "buyers with a zero btyd_clv": zero_share(pd.concat([train, end]), probabilistic.column),
    }  # fmt: skip
    return end, {"scores": scores, "as_served": as_served}, info


def top_columns(model: CLVModel, top: int = 8) -> dict[str, float]:
    """The learned booster's top columns by split gain (share of the total)."""
    gain = model.feature_importance()
    return {name: round(float(v / gain.sum()), 3) for name, v in gain.head(top).items()}


def zero_share(frame: pd.DataFrame, column: str) -> dict[str, float]:
    """Per as-of, the share of customers with a purchase whose BG/NBD x Gamma-Gamma CLV is 0
    (a diagnostic: a buyer's expected spend is never exactly 0 in the model)."""
    buyers = frame[frame["purchases_total"] > 0]
    zero = buyers[column].fillna(0).eq(0).groupby(buyers["as_of"]).mean()
    return {f"{k:%Y-%m-%d}": round(float(v), 4) for k, v in zero.items()}


# ---------------------------------------------------------------- metrics and bootstrap


def interval(values: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def bootstrap(y: np.ndarray, scores: dict[str, np.ndarray], draws: int, seed: int) -> dict:
    """``value_metrics`` of every estimate on the same ``draws`` customer resamples:
    name -> metric -> array of ``draws`` values."""
    rng = np.random.default_rng(seed)
    out = {name: {m: np.empty(draws) for m in METRICS} for name in scores}
    for b in range(draws):
        rows = rng.integers(0, len(y), len(y))
        for name, s in scores.items():
            found = value_metrics(y[rows], s[rows])
            for m in METRICS:
                out[name][m][b] = found[m]
    return out


def evaluate(y: np.ndarray, scores: dict[str, np.ndarray], champion: str, draws: int,
             seed: int) -> dict:  # fmt: skip
    """Point metrics, intervals, paired differences champion minus each other, the goals."""
    point = {name: value_metrics(y, s) for name, s in scores.items()}
    boot = bootstrap(y, scores, draws, seed)
    rows = []
    for name in scores:
        row = {"estimate": NAMES[name] + (" (**champion**)" if name == champion else "")}
        for m, label in METRICS.items():
            lo, hi = interval(boot[name][m])
            f = ".1f" if m == "mae" else ".3f"
            row[f"{label} [95% CI]"] = f"{point[name][m]:{f}} [{lo:{f}}, {hi:{f}}]"
        row["mean estimate / mean truth"] = f"{point[name]['mean_pred']:.1f} / " \
                                            f"{point[name]['mean_true']:.1f}"  # fmt: skip
        for m in RANKING:
            paired = "" if name == champion else difference(point, boot, champion, name, m)
            row[f"champion − this: {METRICS[m]} [paired CI]"] = paired
        rows.append(row)
    goals = [goal(point, boot, champion, base, m)
             for base in ("past_spend", "probabilistic") for m in RANKING]  # fmt: skip
    return {"rows": rows, "goals": goals, "point": point}


def difference(point: dict, boot: dict, a: str, b: str, metric: str) -> str:
    lo, hi = interval(boot[a][metric] - boot[b][metric])
    return f"{point[a][metric] - point[b][metric]:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def goal(point: dict, boot: dict, champion: str, base: str, metric: str) -> dict:
    """'champion beats ``base``' on ``metric``: met on the point estimate, and whether the
    paired interval clears 0."""
    text = f"champion beats {NAMES[base]} on {METRICS[metric]}"
    if champion == base:
        return {"goal": text, "champion − baseline [paired CI]": "0 (it is the champion)",
                "status": "NOT met (the champion is this estimator)"}  # fmt: skip
    diff = point[champion][metric] - point[base][metric]
    lo, _ = interval(boot[champion][metric] - boot[base][metric])
    status = ("met" if diff > 0 else "NOT met") + (", interval above 0" if lo > 0 else
                                                   ", interval includes 0 or below")  # fmt: skip
    return {"goal": text,
            "champion − baseline [paired CI]": difference(point, boot, champion, base, metric),
            "status": status}  # fmt: skip


def served_rows(y: np.ndarray, as_served: dict[str, np.ndarray]) -> list[dict]:
    """Point metrics of the end-trained estimators on the vectors as served."""
    rows = []
    for name, s in as_served.items():
        m = value_metrics(y, s)
        means = f"{m['mean_pred']:.1f} / {m['mean_true']:.1f}"
        rows.append({"estimate (as served)": NAMES[name],
                     **{METRICS[k]: round(m[k], 3) for k in METRICS},
                     "mean estimate / mean truth": means})  # fmt: skip
    return rows


# ---------------------------------------------------------------- report


def run(profile: str, args, k: int) -> tuple[str, dict]:
    config = project_config(profile)
    tables, truth, sim_s = simulated_tables(profile, args.customers, args.seed, args.workdir,
                                            config)  # fmt: skip
    t0 = time.perf_counter()
    config = resolved(tables, config)
    end, found, info = scores_at_end(tables, config)
    fit_s = time.perf_counter() - t0
    y, left = truth_for(truth, end["customer_id"])
    ev = evaluate(y, found["scores"], info["champion"], args.bootstrap, args.seed * 1000 + k)
    served = served_rows(y, found["as_served"])
    buyers = int((y > 0).sum())
    head = (f"**{profile}** ({args.customers:,} customers simulated, {DAYS} days, log end "
            f"{info['log end']}): {len(y):,} customers scored at the end, {buyers:,} "
            f"({buyers / len(y):.1%}) buy in the next {HORIZON} days, mean truth "
            f"{y.mean():.1f}; learned model on {info['training rows']:,} rows of "
            f"{len(info['training as-of dates'])} as-of dates ({info['training as-of dates'][0]}"
            f" .. {info['training as-of dates'][-1]}), {info['inputs']} columns, "
            f"{info['learned rounds']} trees; past-spend constant {info['past-spend constant']}"
            f". Champion chosen inside the log (holdout {info['in-log holdout as-of']}, "
            f"normalised Gini {info['in-log normalised Gini']}): **{info['champion']}**. "
            f"Simulate {sim_s:.0f} s, fit and score {fit_s:.0f} s.")  # fmt: skip
    block = "\n\n".join([head, markdown(ev["rows"]), markdown(ev["goals"]), markdown(served)])
    payload = {"profile": profile, "info": {**info, **left, "simulate_s": sim_s,
               "fit_s": fit_s}, "rows": ev["rows"], "goals": ev["goals"],
               "point": ev["point"], "as_served": served}  # fmt: skip
    return block, payload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench_clv"))
    parser.add_argument("--profiles", default="default,purchase_only")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    start, load0 = time.perf_counter(), os.getloadavg()
    blocks, runs = [], []
    for k, profile in enumerate(args.profiles.split(",")):
        block, payload = run(profile, args, k)
        print("\n" + block + f"\n\ndetails: {json.dumps(payload['info'], default=str)}")
        blocks.append(block)
        runs.append(payload)
    tail, total = run_summary(f"{args.customers:,} customers per profile, seed {args.seed}, "
                              f"{args.bootstrap} bootstrap resamples", start, load0)  # fmt: skip
    print("\n" + tail)
    save("clv", {"args": {**vars(args), "workdir": str(args.workdir)}, "runs": runs,
                 "total_s": total, "summary": tail})  # fmt: skip
    OUT.mkdir(exist_ok=True)
    (OUT / "clv.md").write_text("\n\n".join(blocks) + "\n\n" + tail + "\n")


if __name__ == "__main__":
    main()
