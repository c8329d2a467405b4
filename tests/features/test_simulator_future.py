"""The default profile's truth after the log (issue 13): each customer's realised purchases and
spend over the ``future_days`` after it, simulated without campaigns and leaving the log as it
was."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from features.simulator import SimConfig, simulate, write_simulation
from features.simulator.truth import stage_at
from tests.features.test_simulator_profiles import digest_of

CFG = SimConfig(customers=3_000, days=365, seed=5)
NEW = ["purchases_next_365d", "spend_next_365d"]
# DEFAULT_DIGEST of test_simulator_profiles before issue 13 added the columns above
DIGEST_BEFORE_THE_FUTURE = "5e23c1a12d143974ceef94a314ff31364a8b5ef49d8ca7974eedc477e5b2c636"


@pytest.fixture(scope="module")
def sim():
    return simulate(CFG)


def test_future_columns_are_counts_and_amounts_in_cents(sim):
    truth = sim.truth_customers
    assert truth.columns[-2:].tolist() == NEW
    buys, spend = truth["purchases_next_365d"], truth["spend_next_365d"]
    assert buys.dtype == np.int64 and spend.dtype == np.float64
    assert (buys >= 0).all() and (spend >= 0).all()
    assert np.allclose(spend, spend.round(2))
    assert ((spend > 0) == (buys > 0)).all()  # every purchase has a positive amount
    assert 1 < buys.mean() < 10 and 0.05 < (buys == 0).mean() < 0.6
    per_purchase = spend.sum() / buys.sum()
    past = sim.events.loc[sim.events["event_type"] == "purchase", "amount"].mean()
    assert per_purchase == pytest.approx(past, rel=0.15)  # priced as in the log


def test_customers_churned_at_the_end_buy_less_than_active_ones(sim):
    end = pd.Timestamp(CFG.start, tz="UTC") + pd.Timedelta(days=CFG.days)
    truth = sim.truth_customers.set_index("customer_id")
    stage = stage_at(sim.stage_history, end).astype("object").reindex(truth.index)
    buys = truth["purchases_next_365d"]
    churned = buys[stage == "churned"]
    active = buys[stage.isin(["purchase", "retention", "advocacy", "win_back"])]
    assert len(churned) > 200 and len(active) > 500
    assert churned.mean() < 0.5 * active.mean()
    assert churned.mean() > 0  # ... but some come back on their own


def test_future_spend_follows_past_spend(sim):
    truth = sim.truth_customers.set_index("customer_id")
    buys = sim.events[sim.events["event_type"] == "purchase"]
    past = buys.groupby(buys["customer_id"].astype("str"))["amount"].sum()
    past = past.reindex(truth.index, fill_value=0.0)
    assert spearmanr(past, truth["spend_next_365d"]).statistic > 0.2


def test_the_rest_of_the_default_profile_is_unchanged():
    """The digest of test_simulator_profiles without the new columns is the one from before."""
    sim = simulate(SimConfig(customers=400, days=90, seed=3))
    sim.truth_customers = sim.truth_customers.drop(columns=NEW)
    assert digest_of(sim) == DIGEST_BEFORE_THE_FUTURE


def test_same_seed_same_future_other_seed_other_future(sim):
    again = simulate(CFG)
    pd.testing.assert_frame_equal(sim.truth_customers, again.truth_customers)
    other = simulate(CFG, seed=6)
    assert not np.array_equal(other.truth_customers["spend_next_365d"],
                              sim.truth_customers["spend_next_365d"])  # fmt: skip


def test_future_days_sets_the_horizon_and_leaves_the_log_alone():
    small = SimConfig(customers=800, days=120, seed=4)
    year, month, none = (simulate(small, future_days=d) for d in (365, 30, 0))
    assert (none.truth_customers[["purchases_next_0d", "spend_next_0d"]] == 0).all().all()
    for name in (*year.OBSERVED, *year.TRUTH):
        kept = getattr(year, name).drop(columns=NEW, errors="ignore")
        for short, days in ((month, 30), (none, 0)):
            cols = [f"purchases_next_{days}d", f"spend_next_{days}d"]
            pd.testing.assert_frame_equal(
                getattr(short, name).drop(columns=cols, errors="ignore"), kept, obj=name
            )
    first, whole = month.truth_customers["purchases_next_30d"], year.truth_customers[NEW[0]]
    assert 0.03 * whole.mean() < first.mean() < 0.2 * whole.mean()
    with pytest.raises(ValueError, match="future_days"):
        SimConfig(future_days=-1)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_the_future_is_written_with_the_truth(tmp_path, fmt):
    cfg = SimConfig(customers=300, days=90, seed=2)
    sim = simulate(cfg)
    paths = write_simulation(sim, tmp_path, cfg, fmt)
    assert paths["truth_customers"] == tmp_path / "truth" / f"customers.{fmt}"
    read = pd.read_parquet if fmt == "parquet" else pd.read_csv
    written = read(paths["truth_customers"])
    assert (written[NEW].to_numpy() == sim.truth_customers[NEW].to_numpy()).all()
    assert not set(NEW) & {c for f in ("events", "customers") for c in read(paths[f]).columns}
    assert json.loads((tmp_path / "simulation.json").read_text())["future_days"] == 365


def test_other_profiles_ignore_future_days(tmp_path):
    cfg = SimConfig(profile="purchase_only", customers=200, days=90, seed=1)
    shop = simulate(cfg)
    assert shop.truth_customers.equals(simulate(cfg, future_days=30).truth_customers)
    write_simulation(shop, tmp_path, cfg, "parquet")
    assert "future_days" not in json.loads((tmp_path / "simulation.json").read_text())


# ---- the truth of sending an offer at the end of the log -------------------------------------


@pytest.fixture(scope="module")
def raw():
    from features.simulator.run import run

    return run(SimConfig(customers=3_000, days=365, seed=5))


def test_a_conversion_moves_prospects_at_risk_and_churned_customers_only():
    from features.simulator.campaigns import converted_stages
    from features.simulator.catalog import STAGES

    stage = np.arange(len(STAGES))
    moved = dict(zip(STAGES, np.array(STAGES)[converted_stages(stage)], strict=True))
    assert moved == {"awareness": "purchase", "engagement": "purchase", "evaluation": "purchase",
                     "purchase": "purchase", "retention": "retention", "advocacy": "advocacy",
                     "at_risk": "retention", "churned": "win_back",
                     "win_back": "win_back"}  # fmt: skip


def test_keeping_an_at_risk_customer_or_winning_one_back_raises_their_future_spend(raw):
    from features.simulator.catalog import S
    from features.simulator.future import conversion_gains

    state = raw.state
    gain = conversion_gains(raw.config, raw.pop, state.stage, state.first_purchase, reps=4)
    unmoved = np.isin(state.stage, [S["purchase"], S["retention"], S["advocacy"], S["win_back"]])
    assert (gain[unmoved] == 0).all() and np.isfinite(gain).all()
    for stage in ("at_risk", "churned"):
        who = state.stage == S[stage]
        assert who.sum() > 30 and gain[who].mean() > 10, stage  # a retained buyer buys on
    again = conversion_gains(raw.config, raw.pop, state.stage, state.first_purchase, reps=4)
    np.testing.assert_array_equal(gain, again)  # seeded: the same truth every time
    before = raw.state.stage.copy()
    conversion_gains(raw.config, raw.pop, state.stage, state.first_purchase, reps=1)
    np.testing.assert_array_equal(raw.state.stage, before)  # the end state is left alone


def test_offers_at_end_gives_every_known_customer_every_arm_and_values_by_the_formula(raw):
    from features.simulator.catalog import ARMS, OFFERS
    from features.simulator.truth import offers_at_end, values_at_end

    truth = offers_at_end(raw, reps=2)
    assert len(truth) == (raw.pop.arrival_day < raw.config.days).sum()
    assert truth["customer_id"].is_unique
    p = truth[[f"p_{a}" for a in ARMS]].to_numpy()
    assert ((p > 0) & (p < 1)).all()
    iv = values_at_end(truth, OFFERS)
    assert list(iv.columns) == list(ARMS[1:]) and iv.index.equals(truth.index)
    row = truth.iloc[int(np.argmax(truth["conversion_gain"].to_numpy()))]
    offer = OFFERS.set_index("offer_id").loc["ret_discount20"]
    by_hand = (row["p_ret_discount20"] - row["p_control"]) * (
        offer["value"] + row["conversion_gain"]
    ) - offer["cost"]
    assert iv.loc[row.name, "ret_discount20"] == pytest.approx(by_hand)
    assert values_at_end(truth, OFFERS.iloc[[0, 5]]).columns.tolist() == [
        "upsell_premium",
        "ret_discount20",
    ]  # only the catalog's offers
