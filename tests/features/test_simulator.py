"""The simulator: determinism, contract-valid output, and a ground truth that holds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from features.loaders import load_customers, load_events, load_exposures, load_offers
from features.simulator import SimConfig, dynamics, simulate, write_simulation
from features.simulator.catalog import ARMS, BASE_RATES, STAGES
from features.simulator.truth import arm_uplift, churn_population, churned_within, stage_at
from training.data import load_folder

SMALL = SimConfig(customers=600, days=120, seed=5)


@pytest.fixture(scope="module")
def small():
    return simulate(SMALL)


@pytest.fixture(scope="module")
def medium():
    """Large enough for sampling-error checks (~40k exposures), a few seconds to make."""
    return simulate(SimConfig(customers=20_000, days=365, seed=11))


def test_same_seed_same_data(small):
    again = simulate(SMALL)
    for name in (*small.OBSERVED, *small.TRUTH):
        pd.testing.assert_frame_equal(getattr(small, name), getattr(again, name), obj=name)


def test_other_seed_other_data(small):
    other = simulate(SMALL, seed=6)
    assert not small.events.equals(other.events)


def test_output_passes_the_data_contracts(small):
    events = load_events(small.events)
    assert events.report.rows_quarantined == 0
    assert events.report.unmapped_event_types == {}
    assert len(events.data) == len(small.events)
    offers = load_offers(small.offers)
    exposures = load_exposures(small.exposures, offers=offers.data)
    assert exposures.report.rows_accepted == len(small.exposures) > 0
    assert load_customers(small.customers).report.rows_accepted == SMALL.customers
    assert set(events.data["role"].astype(str)) >= {"visit", "purchase", "engagement", "intent",
                                                    "support", "feedback", "signup"}  # fmt: skip


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_written_folder_loads_strictly(small, tmp_path, fmt):
    paths = write_simulation(small, tmp_path, SMALL, fmt)
    assert paths["events"].suffix == f".{fmt}" and (tmp_path / "truth").is_dir()
    loaded = load_folder(tmp_path)
    assert {k: v.report.rows_accepted for k, v in loaded.items()} == {
        "events": len(small.events), "customers": len(small.customers),
        "offers": len(small.offers), "exposures": len(small.exposures),
    }  # fmt: skip


def test_stage_history_is_contiguous_and_matches_snapshots(small):
    h = small.stage_history.sort_values(["customer_id", "start_at"])
    nxt = h.groupby("customer_id")["start_at"].shift(-1)
    assert ((h["end_at"] == nxt) | (h["end_at"].isna() & nxt.isna())).all()
    assert (h["end_at"].isna() | (h["end_at"] > h["start_at"])).all()
    snap = small.snapshots[small.snapshots["as_of"] == small.snapshots["as_of"].max()]
    truth = stage_at(small.stage_history, snap["as_of"].iloc[0]).reindex(snap["customer_id"])
    assert (truth.to_numpy() == snap["stage"].to_numpy()).all()


def test_prospects_never_buy_before_their_first_purchase_stage(small):
    buys = small.events[small.events["event_type"] == "purchase"]
    first_buy = buys.groupby("customer_id", observed=True)["timestamp"].min()
    became = small.truth_customers.set_index("customer_id")["first_purchase_at"]
    became = became.reindex(first_buy.index)
    # history before day 0 aside, a first purchase never precedes becoming a buyer (same day ok)
    assert became.notna().all()
    assert (first_buy >= became - pd.Timedelta(days=1)).all()


def test_truth_propagation_is_the_law_of_the_simulated_chain():
    rng = np.random.default_rng(0)
    n, reps, horizon = 400, 300, 30
    stage = rng.integers(0, len(STAGES), n)
    mult = rng.uniform(0.5, 3.0, (n, len(STAGES)))
    _, p_stage = dynamics.propagate(stage, dynamics.stage_multipliers(mult, np.zeros(n)),
                                    (horizon,), horizon)  # fmt: skip
    sims = np.repeat(stage, reps)
    big_mult = np.repeat(mult, reps, axis=0)
    for _ in range(horizon):
        sims = dynamics.step(sims, big_mult, np.zeros(len(sims)), rng)
    freq = np.stack([(sims.reshape(n, reps) == s).mean(axis=1) for s in range(len(STAGES))], 1)
    z = np.abs(freq - p_stage) / (np.sqrt(p_stage * (1 - p_stage) / reps) + 1e-3)
    assert z.max() < 8 and np.mean(z <= 4) > 0.995
    assert np.allclose(p_stage.sum(axis=1), 1.0)
    assert BASE_RATES.sum(axis=1).max() < 0.1


def test_observed_uplift_of_each_arm_matches_the_truth(medium):
    table = arm_uplift(medium.exposures, medium.truth_exposures)
    assert set(table.index) == set(ARMS[1:])
    assert (table["sent"] > 300).all()
    assert (table["z"].abs() < 4).all(), table


def test_outcomes_are_drawn_from_the_true_probabilities(medium):
    x = medium.truth_exposures.merge(medium.exposures[["exposure_id", "converted"]])
    for arm, group in x.groupby("arm", observed=True):
        p = group[f"p_{arm}"].to_numpy()
        se = np.sqrt((p * (1 - p)).sum()) / len(p)
        assert abs(group["converted"].mean() - p.mean()) < 4 * se, arm


def test_effects_are_heterogeneous_some_help_some_hurt(medium):
    t = medium.truth_exposures
    for arm in ARMS[1:]:
        eligible = t[t[f"pi_{arm}"] > 0]
        uplift = eligible[f"p_{arm}"] - eligible["p_control"]
        assert (uplift > 0.01).mean() > 0.2, arm  # helps some
    hurt = [(t[f"p_{a}"] - t["p_control"] < -0.01)[t[f"pi_{a}"] > 0].mean() for a in ARMS[1:]]
    assert min(hurt) < 0.05 and max(hurt) > 0.1  # some offers barely hurt, others hurt a few


def test_true_churn_probability_is_calibrated_and_informative(medium):
    end = pd.Timestamp(SimConfig().start, tz="UTC") + pd.Timedelta(days=365)
    rows, aucs = [], []
    for as_of in sorted(medium.snapshots["as_of"].unique()):
        if as_of + pd.Timedelta(days=30) > end:
            continue
        snap = churn_population(medium.snapshots[medium.snapshots["as_of"] == as_of])
        y = snap["customer_id"].isin(churned_within(medium.stage_history, as_of, 30))
        rows.append((snap["p_churn_30d"].sum(), y.sum(), len(y)))
        aucs.append(roc_auc_score(y, snap["p_churn_30d"]))
    expected, observed, n = np.array(rows).sum(axis=0)
    assert abs(observed - expected) < 4 * np.sqrt(expected) + 0.05 * expected
    assert 0.01 < observed / n < 0.2
    # the drivers matter, but the latent noise keeps even the truth from being perfect
    assert 0.8 < np.mean(aucs) < 0.98
