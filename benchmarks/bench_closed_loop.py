"""The closed loop (issue 14, point 5): 12 weeks of the simulator as the world, the running
service deciding through /batch, `lifecycle retrain` learning from its ledger; every policy
valued from the ground truth on the same audiences.

Goals: by the last week the live service closes >= 50% of the gap between its week-0 policy and
the observable bound; no promoted offers policy is worse than the champion it replaced beyond
its confidence interval; the whole loop on 50,000 customers in <= 30 minutes.

Usage: python benchmarks/bench_closed_loop.py [--customers 50000] [--weeks 12] [--seed 0]
       [--workdir /tmp/bench_loop]
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
from _common import markdown, run_summary, save

from serving.closed_loop import LoopConfig, run_loop
from training.plots import loop_figure, save_figure

GOAL_GAP, GOAL_MINUTES = 0.5, 30.0
DOCS_PLOT = Path(__file__).resolve().parents[1] / "docs" / "closed_loop.png"


def gap_interval(values: pd.DataFrame, weeks: list[int], reps: int = 1000, seed: int = 0):
    """Share of the gap (bound - frozen) the live greedy policy closed over ``weeks``, with a
    95% percentile bootstrap interval over audience members (the same rows for all three)."""
    rows = values[values["week"].isin(weeks)]
    gain = (rows["greedy"] - rows["frozen"]).to_numpy()
    gap = (rows["bound"] - rows["frozen"]).to_numpy()
    idx = np.random.default_rng(seed).integers(0, len(rows), size=(reps, len(rows)))
    shares = gain[idx].mean(axis=1) / gap[idx].mean(axis=1)
    return float(gain.mean() / gap.mean()), *np.quantile(shares, [0.025, 0.975]).tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--weeks", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench_loop"))
    parser.add_argument("--price-change", metavar="WEEK:FACTOR", default=None,
                        help="drift: prices x FACTOR from WEEK on, e.g. 5:1.5")  # fmt: skip
    parser.add_argument("--new-offer", metavar="WEEK:OFFER", default=None,
                        help="drift: OFFER held back from the log, added at WEEK")  # fmt: skip
    args = parser.parse_args()
    drift = {}
    if args.price_change:
        week, factor = args.price_change.split(":")
        drift["price_change"] = (int(week), float(factor))
    if args.new_offer:
        week, offer = args.new_offer.split(":")
        drift["new_offer"] = (int(week), offer)
    config = LoopConfig(customers=args.customers, weeks=args.weeks, seed=args.seed, **drift)
    start, load0 = time.perf_counter(), os.getloadavg()
    weeks = run_loop(config, args.workdir)
    minutes = (time.perf_counter() - start) / 60
    frame = pd.DataFrame([asdict(w) for w in weeks])
    values = pd.read_parquet(args.workdir / "values.parquet")
    last = weeks[-1].week
    share, lo, hi = gap_interval(values, [last], seed=args.seed)
    share2, lo2, hi2 = gap_interval(values, [last - 1, last], seed=args.seed)
    swaps = frame[frame["vs_previous"].notna()]
    worse = swaps[swaps["vs_previous_hi"] < 0]
    save_figure(loop_figure(frame), args.workdir / "weeks.png")
    if not drift:
        save_figure(loop_figure(frame), DOCS_PLOT)
    cols = ["week", "as_of", "audience", "offers_sent", "served", "greedy", "frozen", "random",
            "bound", "oracle", "exploration_cost", "ope_greedy", "ope_greedy_lo",
            "ope_greedy_hi", "offers_version", "promoted", "retrain_seconds", "drift",
            "monitor_exit", "monitor_crossed", "feature_psi", "score_psi", "activity_shift",
            "amount_shift", "amount_detail"]  # fmt: skip
    print(f"\nClosed loop, {args.customers:,} customers, {args.weeks} weeks, seed {args.seed}\n")
    print(markdown(frame[cols].to_dict("records")))
    kept = frame[frame["challenger"].notna()]
    if len(kept):
        print(
            "\nThe offers challengers the gate kept out, valued greedy on the same audience "
            "(the truth), minus the live greedy champion:\n"
        )
        print(markdown(kept[["week", "offers_version", "challenger_version", "greedy",
                             "challenger", "vs_challenger", "vs_challenger_lo",
                             "vs_challenger_hi"]].to_dict("records")))  # fmt: skip
    if len(swaps):
        print("\nLive greedy minus the champion it replaced, the week after each promotion:\n")
        print(markdown(swaps[["week", "offers_version", "vs_previous", "vs_previous_lo",
                              "vs_previous_hi"]].to_dict("records")))  # fmt: skip
    print(f"\ngap closed, week {last}: {share:.0%} [{lo:.0%}, {hi:.0%}]; weeks {last - 1}-{last}: "
          f"{share2:.0%} [{lo2:.0%}, {hi2:.0%}] (goal >= {GOAL_GAP:.0%}): "
          f"{'met' if share >= GOAL_GAP else 'NOT met'}")  # fmt: skip
    print(f"promotions worse than the champion they replaced beyond the interval: {len(worse)} of "
          f"{len(swaps)}: {'met' if worse.empty else 'NOT met'}")  # fmt: skip
    print(f"wall time {minutes:.1f} min (goal <= {GOAL_MINUTES:.0f}): "
          f"{'met' if minutes <= GOAL_MINUTES else 'NOT met'}")  # fmt: skip
    line, _ = run_summary("closed loop", start, load0)
    print(line)
    save("closed_loop_drift" if drift else "closed_loop", {"config": config.model_dump(mode="json"),
                         "weeks": frame.to_dict("records"), "gap_closed": [share, lo, hi],
                         "gap_closed_last2": [share2, lo2, hi2], "worse_promotions": len(worse),
                         "minutes": minutes})  # fmt: skip


if __name__ == "__main__":
    main()
