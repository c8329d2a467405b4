"""Offer decisions valued by CLV against the simulator's truth at the log's end (issue 13).

Usage: python benchmarks/bench_value_policy.py [--customers 20000] [--seed 0] [--reps 8]
           [--bootstrap 1000] [--audience 2000] [--budget 1000] [--campaign-share 0.06]

The default profile (rich events, campaign logs, an offer catalog) is simulated for 730 days
and every model trained on it as ``lifecycle train`` trains them (``fit_and_evaluate``, the
default project config). Every customer's vector at the log's end is scored as the service
scores it (``current_vectors``: BG/NBD with the recorded parameters) and the service's
``DecisionEngine`` decides (exploration 0, no contact history) under each valuation of a
conversion:

- **today's policy** (``retention_value: catalog``): every conversion worth the catalog value;
- **value-aware** (``retention_value: clv``, the default): a conversion that keeps the
  customer also saves their value at risk, ``uplift x (value + c / (1 - c) x CLV) - cost``
  (``training.policy.conversion_worth``), and the policy leaves today's choice only where the
  gain beats the uplift model's noise at one-sided 95 % (``training.policy.cautious_values``,
  with the standard errors the offers model recorded, ``UpliftModel.measure_spread``). Which
  conversions keep (``keeping_offers: auto``, ``training.policy.keeping_offers``): every
  offer's, since the models learnt churn as inactivity (a purchase is activity);
- **value-aware, before** (the same valuation without the caution);
- **value-aware, retention only** (``keeping_offers: retention``, the product of session 10):
  the saving added to retention and win-back conversions only, cautious as the product;
- **uplift x CLV** (the first value-aware formula, kept here for comparison): a retention or
  win-back conversion worth the whole CLV, ``uplift x CLV - cost``.

``--campaign-share`` changes how many customers each weekly campaign reaches (the simulator's
``campaign_share``, default 0.06): a thinner or richer campaign log, the other data shape this
benchmark can vary (the ``purchase_only`` and ``subscription`` profiles have no campaigns).

The truth (``features.simulator.truth.offers_at_end``): each customer's true conversion
probability under every arm at the end of the log, and what a conversion adds to their spend
over the next 365 days beyond the converted purchase (keeping an at-risk customer, winning a
churned one back; ``reps`` paired Monte Carlo futures of the simulator's own dynamics). A send
is truly worth ``(p_offer - p_control) x (value + conversion_gain) - cost``; no offer, 0.

Reported on the same customers for every policy, with 1,000 bootstrap resamples of the
customers (seeded) and paired differences value-aware minus today's:

- *everyone*: every customer at the end gets each policy's decision;
- *retention audience*: the ``audience`` customers with the most value at risk, as ``/batch``
  picks them (``sort_by: value_at_risk``), each policy deciding for the same customers;
- *same number of sends*: each policy sends only its ``budget`` sends of highest expected
  value, over everyone.

Beside them: no offer (0), a random eligible offer, and the oracle (the best truly valued
eligible offer, or none). Writes ``benchmarks/out/value_policy.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd
from _common import OUT, machine, markdown, peak_rss_mb, save

from features.loaders import load_customers, load_events, load_exposures, load_offers
from features.registry import RETENTION_KINDS
from features.simulator import SimConfig
from features.simulator.run import run as simulate_raw
from features.simulator.tables import build_tables
from features.simulator.truth import offers_at_end, values_at_end
from serving.bundle import ModelBundle, ModelInfo
from serving.config import PolicyConfig
from serving.engine import Contacts, DecisionEngine
from serving.inputs import FeatureRows
from training.datasets import Tables, current_vectors
from training.pipeline import TrainConfig, fit_and_evaluate

DAYS = 730
POLICIES = {"today": "today's policy: catalog value", "value": "value-aware: the product",
            "value_plain": "value-aware, before (no caution)",
            "retention_only": "value-aware, only retention / win-back keep (before)",
            "whole_clv": "uplift × CLV (first formula)",
            "today_true": "today's valuation on the TRUE uplift",
            "value_true": "value-aware valuation on the TRUE uplift",
            "retention_only_true": "retention only keeps, on the TRUE uplift"}  # fmt: skip
REFERENCES = {"nothing": "no offer", "random": "random eligible offer",
              "oracle": "oracle: best true value among eligible"}  # fmt: skip


class WholeCLV(DecisionEngine):
    """The first value-aware formula: a retention or win-back conversion worth the CLV."""

    def offer_values(self, scores):
        value = np.broadcast_to(self.catalog.value, scores.uplift.shape)
        clv = scores.clv[:, None]
        retention = np.isin(np.array(self.catalog.kind, dtype=object), RETENTION_KINDS)
        return np.where(retention[None, :] & np.isfinite(clv), clv, value)


def simulated(customers: int, seed: int, campaign_share: float = 0.06
              ) -> tuple[object, Tables, dict]:  # fmt: skip
    """The raw simulation (for the truth) and its tables as loaded; seconds spent."""
    seconds = {}
    t0 = time.perf_counter()
    raw = simulate_raw(SimConfig(customers=customers, days=DAYS, seed=seed,
                                 campaign_share=campaign_share))  # fmt: skip
    sim = build_tables(raw)
    offers = load_offers(sim.offers).data
    tables = Tables(load_events(sim.events).data, load_customers(sim.customers).data, offers,
                    load_exposures(sim.exposures, offers=offers).data)  # fmt: skip
    seconds["simulate"] = time.perf_counter() - t0
    return raw, tables, seconds


def engines(result, offers: pd.DataFrame) -> dict[str, DecisionEngine]:
    """The service's engine on the trained models, under each valuation."""
    r = result.reports
    info = {n: ModelInfo(n, f"lifecycle-{n}", "1", None, None) for n in r}
    bundle = ModelBundle(r["churn"].estimator, r["stage"].estimator, r["offers"].estimator,
                         info, "benchmark", clv=r["clv"].estimator)  # fmt: skip
    return {
        "today": DecisionEngine(bundle, offers, PolicyConfig(exploration=0.0,
                                                             retention_value="catalog")),
        "value": DecisionEngine(bundle, offers, PolicyConfig(exploration=0.0)),
        "whole_clv": WholeCLV(bundle, offers, PolicyConfig(exploration=0.0)),
        "retention_only": DecisionEngine(bundle, offers, PolicyConfig(
            exploration=0.0, keeping_offers="retention")),
    }  # fmt: skip


def decisions(engine: DecisionEngine, rows: FeatureRows, scores,
              uplift: np.ndarray | None = None, cautious: bool = True
              ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Per row: the chosen arm (0 = no offer, k = the catalog's k-th scored offer) and its
    expected value by the engine's own valuation (0 for no offer); ``uplift``: in place of
    the offers model's (the truth's, to tell the valuation from the uplift estimates; known
    exactly, so without ``cautious``, the engine's caution about the model's noise)."""
    n = len(rows.customer_ids)
    contacts = Contacts(np.zeros(n), np.full((n, len(engine.catalog.ids)), np.nan))
    eligible, _ = engine.eligibility(rows, scores, None, contacts)
    if cautious:
        expected = engine.expected_values(scores, eligible, uplift)
    else:
        uplift = scores.uplift if uplift is None else uplift
        expected = uplift * engine.offer_values(scores) - engine.catalog.cost
    chosen, _, _ = engine.choose(expected, eligible, np.zeros(n))
    value = np.where(chosen > 0, expected[np.arange(n), np.maximum(chosen - 1, 0)], 0.0)
    return chosen, value


def true_values(truth_iv: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """The true incremental value of each row's chosen arm (0 for no offer)."""
    rows = np.arange(len(chosen))
    return np.where(chosen > 0, truth_iv[rows, np.maximum(chosen - 1, 0)], 0.0)


def references(truth_iv: np.ndarray, eligible: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """True value per row of no offer, a random eligible offer (or none), the oracle."""
    rng = np.random.default_rng(seed)
    masked = np.where(eligible, truth_iv, -np.inf)
    oracle = np.maximum(masked.max(axis=1, initial=-np.inf), 0.0)
    m = eligible.sum(axis=1)
    pick = np.floor(rng.random(len(m)) * (m + 1)).astype(int)  # m + 1 actions: none too
    order = np.argsort(~eligible, axis=1, kind="stable")  # eligible offers first
    rows = np.arange(len(m))
    offer = order[rows, np.minimum(pick, eligible.shape[1] - 1)]
    random = np.where(pick < m, truth_iv[rows, offer], 0.0)
    return {"nothing": np.zeros(len(m)), "random": random, "oracle": oracle}


def summarise(values: dict[str, np.ndarray], sends: dict[str, int], draws: int,
              seed: int) -> tuple[list[dict], dict]:  # fmt: skip
    """Mean true value per customer and in total with bootstrap intervals; paired
    differences value-aware minus each other policy (on the true uplift: its counterpart)."""
    n = len(next(iter(values.values())))
    rng = np.random.default_rng(seed)
    boot = {k: np.empty(draws) for k in values}
    for b in range(draws):
        idx = rng.integers(0, n, n)
        for k, v in values.items():
            boot[k][b] = v[idx].mean()

    def paired(a: str, b: str) -> tuple[float, float, float]:
        lo, hi = np.percentile(boot[a] - boot[b], [2.5, 97.5])
        return float(values[a].mean() - values[b].mean()), float(lo), float(hi)

    rows = []
    for k, v in values.items():
        lo, hi = np.percentile(boot[k], [2.5, 97.5])
        ref = "value_true" if k.endswith("_true") else "value"
        diff = "" if k == ref else "{:+.3f} [{:+.3f}, {:+.3f}]".format(*paired(ref, k))
        rows.append({"policy": {**POLICIES, **REFERENCES}[k], "sends": sends.get(k, ""),
                     "true value per customer [95% CI]": f"{v.mean():.3f} [{lo:.3f}, {hi:.3f}]",
                     "true value in total": f"{v.sum():,.0f}",
                     "value-aware − this, per customer [paired CI]": diff})  # fmt: skip
    goal = {
        "value-aware − today's": paired("value", "today"),
        "value-aware before − today's": paired("value_plain", "today"),
        "retention only keeps − today's": paired("retention_only", "today"),
        "value-aware − retention only keeps": paired("value", "retention_only"),
        "on the true uplift": paired("value_true", "today_true"),
        "retention only keeps − today's, on the true uplift": paired(
            "retention_only_true", "today_true"
        ),
    }
    return rows, goal


def within_budget(chosen: np.ndarray, expected: np.ndarray, budget: int) -> np.ndarray:
    """``chosen`` with only the ``budget`` sends of highest expected value kept."""
    sends = np.flatnonzero(chosen > 0)
    keep = sends[np.argsort(-expected[sends], kind="stable")[:budget]]
    out = np.zeros_like(chosen)
    out[keep] = chosen[keep]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reps", type=int, default=8)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--audience", type=int, default=2000)
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument(
        "--campaign-share",
        type=float,
        default=0.06,
        help="share of contactable customers in each weekly campaign",
    )
    args = parser.parse_args()
    start, load0 = time.perf_counter(), os.getloadavg()
    raw, tables, seconds = simulated(args.customers, args.seed, args.campaign_share)
    t0 = time.perf_counter()
    config = TrainConfig(seed=args.seed)
    result = fit_and_evaluate(tables, config)
    seconds["train"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    truth = offers_at_end(raw, args.reps).set_index("customer_id")
    seconds["truth"] = time.perf_counter() - t0
    vectors = current_vectors(tables, result.config.dataset)
    rows = FeatureRows.from_frame(vectors.drop(columns=["in_churn_population"]), tables.end)
    found = engines(result, tables.offers)
    scores = found["value"].score(rows)  # the same models: the same scores for every policy
    offer_ids = found["value"].catalog.ids
    ids = pd.Index(rows.customer_ids)
    truth_iv = values_at_end(truth.loc[ids], tables.offers)[offer_ids].to_numpy()
    n = len(ids)
    contacts = Contacts(np.zeros(n), np.full((n, len(offer_ids)), np.nan))
    eligible, _ = found["value"].eligibility(rows, scores, None, contacts)
    picked = {k: decisions(e, rows, scores, cautious=k != "whole_clv") for k, e in found.items()}
    picked["value_plain"] = decisions(found["value"], rows, scores, cautious=False)
    picked = {k: picked[k] for k in POLICIES if k in picked}  # the tables' order
    true_uplift = np.column_stack([truth.loc[ids, f"p_{o}"] - truth.loc[ids, "p_control"]
                                   for o in offer_ids])  # fmt: skip
    for k in ("today", "value", "retention_only"):  # the valuations alone: the uplift known
        picked[f"{k}_true"] = decisions(found[k], rows, scores, true_uplift, cautious=False)
    at_risk = np.nan_to_num(scores.churn * scores.clv, nan=-np.inf)
    audience = np.argsort(-at_risk, kind="stable")[: args.audience]
    blocks, payload = [], {}
    for name, where, budget in (("everyone", np.arange(n), None),
                                ("retention audience", audience, None),
                                ("same number of sends", np.arange(n), args.budget)):  # fmt: skip
        chosen = {k: c[where] if budget is None else within_budget(c, v, budget)[where]
                  for k, (c, v) in picked.items()}  # fmt: skip
        values = {k: true_values(truth_iv[where], c) for k, c in chosen.items()}
        values |= references(truth_iv[where], eligible[where], args.seed)
        if budget is not None:  # the references need a budget too: none for them
            values = {k: v for k, v in values.items() if k in POLICIES or k == "oracle"}
            values["oracle"] = np.where(
                np.isin(
                    np.arange(len(where)), np.argsort(-values["oracle"], kind="stable")[:budget]
                ),
                values["oracle"],
                0.0,
            )
        sends = {k: int((c > 0).sum()) for k, c in chosen.items()}
        table, goal = summarise(values, sends, args.bootstrap, args.seed)
        mix = {POLICIES[k]: offer_mix(c, offer_ids, truth["stage"].loc[ids[where]].to_numpy())
               for k, c in chosen.items()}  # fmt: skip
        head = (
            f"**{name}** ({len(where):,} customers"
            + (f", at most {budget:,} sends" if budget else "")
            + ")"
        )
        blocks.append(f"{head}\n\n{markdown(table)}")
        payload[name] = {"table": table, "goal": goal, "offer_mix": mix}
        print(f"\n{head}\n\n{markdown(table)}\n\noffers sent by true stage: {mix}")
    gains = truth["conversion_gain"].groupby(truth["stage"], observed=True).mean().round(1)
    total = time.perf_counter() - start
    se = getattr(result.reports["offers"].estimator, "uplift_se_", {})
    tail = (f"{args.customers:,} customers (default profile, {DAYS} days, seed {args.seed}, "
            f"campaign share {args.campaign_share}); uplift standard errors "
            f"{ {k: round(v, 4) for k, v in se.items()} }; offers whose conversion keeps "
            f"(value-aware): {found['value'].clv_status['offers_that_keep']}; "
            f"truth: {args.reps} paired futures; mean conversion gain by true stage at the end "
            f"{gains.to_dict()}; CLV estimator {found['value'].clv_status['estimator']}; "
            f"{args.bootstrap} bootstrap resamples; {machine()}; total {total:.0f} s "
            f"({ {k: round(v) for k, v in seconds.items()} }), peak RSS "
            f"{peak_rss_mb():,.0f} MB; load average {load0[0]:.1f} at the start, "
            f"{os.getloadavg()[0]:.1f} at the end")  # fmt: skip
    print("\n" + tail)
    save("value_policy", {"args": vars(args), "results": payload, "summary": tail,
                          "conversion_gain_by_stage": gains.to_dict()})  # fmt: skip
    OUT.mkdir(exist_ok=True)
    (OUT / "value_policy.md").write_text("\n\n".join(blocks) + "\n\n" + tail + "\n")


def offer_mix(chosen: np.ndarray, offer_ids: list[str], stage: np.ndarray) -> dict:
    """How many of each offer a policy sends, per true stage (sends only)."""
    sent = chosen > 0
    names = np.array(offer_ids, object)[np.maximum(chosen - 1, 0)]
    frame = pd.DataFrame({"stage": stage[sent].astype(str), "offer": names[sent]})
    return {s: g["offer"].value_counts().to_dict() for s, g in frame.groupby("stage")}


if __name__ == "__main__":
    main()
