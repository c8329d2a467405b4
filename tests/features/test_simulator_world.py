"""The simulator as an environment: the log as `simulate` makes it, then sends, time and exports."""

import numpy as np
import pandas as pd
import pytest

from features.simulator import SimConfig, simulate
from features.simulator.catalog import STAGES
from features.simulator.world import World

CONFIG = SimConfig(customers=1500, seed=5, days=150, campaign_first_day=60, future_days=0)


@pytest.fixture(scope="module")
def world():
    return World.start(CONFIG)


def test_the_log_is_the_one_simulate_makes(world):
    plain = simulate(CONFIG)
    pd.testing.assert_frame_equal(world.history.events, plain.events)
    pd.testing.assert_frame_equal(world.history.exposures, plain.exposures)
    assert world.day == CONFIG.days
    assert world.now == pd.Timestamp(CONFIG.start, tz="UTC") + pd.Timedelta(days=CONFIG.days)


def _fresh():
    return World.start(CONFIG)


def test_sends_convert_at_the_true_rates_and_show_up_as_purchases_of_the_offer(tmp_path):
    w = _fresh()
    ids = w.contactable()
    offer = "xsell_accessories"
    truth = w.offer_truth(ids)
    sends = w.send(ids, [offer] * len(ids))
    assert len(sends.customer_id) == len(ids)
    np.testing.assert_allclose(sends.p_convert, truth[f"p_{offer}"].to_numpy())
    # the realised rate matches the truth's mean within 4 standard errors
    p = sends.p_convert
    assert abs(sends.converted.mean() - p.mean()) < 4 * np.sqrt((p * (1 - p)).sum()) / len(p)
    window = pd.Timedelta(days=CONFIG.response_window_days)
    assert (sends.converted_at[sends.converted] >= sends.sent_at).all()
    assert (sends.converted_at[sends.converted] < sends.sent_at + window).all()
    assert sends.converted_at[~sends.converted].isna().all()
    w.advance(CONFIG.response_window_days)
    events = pd.read_parquet(w.export(tmp_path)["events"])
    after = events[(events["timestamp"] >= sends.sent_at) & (events["offer_id"] == offer)]
    bought = set(after.loc[after["event_type"] == "purchase", "customer_id"].astype(str))
    assert bought == set(sends.customer_id[sends.converted])


def test_no_offer_sends_nothing_and_an_unknown_offer_is_refused():
    w = _fresh()
    ids = w.contactable()[:50]
    before = len(w.running.events.columns()["who"])
    sends = w.send(ids, [None] * len(ids))
    assert len(sends.customer_id) == 0
    assert len(w.running.events.columns()["who"]) == before
    with pytest.raises(KeyError, match="outside the simulated catalog: \\['half_price'\\]"):
        w.send(ids[:1], ["half_price"])
    with pytest.raises(KeyError, match="unknown customer ids"):
        w.offer_truth(["nobody"])


def test_exports_hold_only_the_past_and_never_rewrite_it(tmp_path):
    w = _fresh()
    ids = w.contactable()
    w.send(ids, ["ret_loyalty"] * len(ids))  # conversions dated up to 13 days ahead
    w.advance(3)
    first = pd.read_parquet(w.export(tmp_path / "a")["events"])
    assert first["timestamp"].max() < w.now
    w.advance(7)
    second = pd.read_parquet(w.export(tmp_path / "b")["events"])
    assert second["timestamp"].max() < w.now and len(second) > len(first)
    pd.testing.assert_frame_equal(second.iloc[: len(first)], first)  # amounts kept
    customers = pd.read_parquet(tmp_path / "b" / "customers.parquet")
    assert customers["signup_at"].notna().sum() >= pd.read_parquet(
        tmp_path / "a" / "customers.parquet")["signup_at"].notna().sum()  # fmt: skip


def test_the_same_seed_and_sends_give_the_same_world(tmp_path):
    outs = []
    for k in range(2):
        w = _fresh()
        ids = w.contactable()[::3]
        w.send(ids, ["wb_comeback30"] * len(ids))
        w.advance(10)
        outs.append(pd.read_parquet(w.export(tmp_path / str(k))["events"]))
    pd.testing.assert_frame_equal(*outs)


def test_the_loop_needs_the_default_profile():
    with pytest.raises(ValueError, match="needs the default profile"):
        World.start(SimConfig(profile="purchase_only", customers=100, days=60))


def test_a_held_back_offer_is_absent_from_the_log_until_added(tmp_path):
    config = CONFIG.model_copy(update={"held_back_offers": ("xsell_services",)})
    w = World.start(config)
    assert "xsell_services" not in set(w.history.exposures["offer_id"].dropna().astype(str))
    assert "xsell_services" not in set(w.history.offers["offer_id"])
    assert len(w.history.exposures) > 500  # the other offers were still sent
    ids = w.contactable()[:200]
    with pytest.raises(ValueError, match="held back: not in the catalog yet"):
        w.send(ids, ["xsell_services"] * len(ids))
    offers = pd.read_parquet(w.export(tmp_path / "before")["offers"])
    assert "xsell_services" not in set(offers["offer_id"])
    w.add_offer("xsell_services")
    sends = w.send(ids, ["xsell_services"] * len(ids))
    assert len(sends.customer_id) == len(ids) and sends.converted.any()
    offers = pd.read_parquet(w.export(tmp_path / "after")["offers"])
    assert "xsell_services" in set(offers["offer_id"])
    with pytest.raises(ValueError, match="not held back"):
        w.add_offer("xsell_starter")
    with pytest.raises(ValueError, match="held_back_offers: \\['nope'\\] are not offers"):
        SimConfig(**{**CONFIG.model_dump(), "held_back_offers": ("nope",)})


def test_a_price_rise_sends_more_paying_customers_at_risk_than_the_same_world_without_it():
    active = [STAGES.index(s) for s in ("purchase", "retention", "advocacy")]
    lost = [STAGES.index("at_risk"), STAGES.index("churned")]

    def lost_after(factor: float) -> int:
        w = World.start(CONFIG)
        if factor != 1.0:
            w.change_prices(factor)
        before = w.running.state.stage.copy()
        w.advance(42)
        return int((np.isin(before, active) & np.isin(w.running.state.stage, lost)).sum())

    base, raised = lost_after(1.0), lost_after(2.0)  # the same draws: only the prices differ
    assert raised > 1.3 * base, (base, raised)
    with pytest.raises(ValueError, match="factor must be > 0"):
        World.start(CONFIG).change_prices(0.0)
