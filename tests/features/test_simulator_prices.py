"""A price change in the simulated world shows in what customers pay (World.change_prices),
and the monitor's amounts check sees it within the first week."""

import numpy as np
import pandas as pd
import pytest

from features.simulator import SimConfig
from features.simulator.catalog import PRODUCTS
from features.simulator.events import T, event_attributes
from features.simulator.population import draw_population
from features.simulator.world import World
from training.data import load_tables
from training.monitoring.amounts import amount_shift

CONFIG = SimConfig(customers=4000, seed=3, days=200, campaign_first_day=100, future_days=0)


def test_event_attributes_scale_purchase_and_refund_prices_only():
    pop = draw_population(300, 30, 1.0, np.random.default_rng(1))
    kinds = [T["purchase"], T["refund"], T["nps_response"], T["add_to_cart"], T["page_view"]]
    kind = np.repeat(np.array(kinds, dtype=np.int8), 200)
    who = np.arange(len(kind)) % pop.n
    stage, product = np.zeros(len(kind), np.int8), np.full(len(kind), -1)

    def draw(factor):
        rng = np.random.default_rng(7)
        return event_attributes(pop, who, kind, stage, product, rng, factor)

    plain, default, raised = draw(1.0), draw(np.ones(len(kind))), draw(1.5)
    for name in ("amount", "product", "channel"):  # a factor of 1: the same, bit for bit
        np.testing.assert_array_equal(plain[name], default[name])
    np.testing.assert_array_equal(plain["product"], raised["product"])
    money = np.isin(kind, [T["purchase"], T["refund"]])
    np.testing.assert_allclose(raised["amount"][money], 1.5 * plain["amount"][money], atol=0.011)
    np.testing.assert_array_equal(raised["amount"][~money], plain["amount"][~money])  # scores


def _exported(tmp_path, factor: float | None) -> tuple[pd.DataFrame, pd.Timestamp, World]:
    """A week past the log (its campaigns over), then, from ``change``, a week at prices x
    ``factor`` (None: never changed); the events of both weeks as exported."""
    world = World.start(CONFIG)
    world.advance(7)
    world.export(tmp_path / "before")  # as the closed loop does at a drift week's start
    change = world.now
    if factor is not None:
        world.change_prices(factor)
    world.advance(7)
    world.export(tmp_path / "after")
    return load_tables(tmp_path / "after").events, change, world


def test_purchases_after_a_price_rise_are_priced_higher_and_earlier_ones_unchanged(tmp_path):
    plain, change, _ = _exported(tmp_path / "plain", None)
    same, _, _ = _exported(tmp_path / "same", 1.0)
    pd.testing.assert_frame_equal(plain, same)  # a factor of 1 changes nothing
    raised, _, world = _exported(tmp_path / "raised", 1.5)
    before = plain["timestamp"] < change
    pd.testing.assert_frame_equal(plain[before], raised[raised["timestamp"] < change])
    assert world.prices_on(np.array([world.day - 8, world.day - 7, world.day])).tolist() == [
        1.0, 1.5, 1.5]  # fmt: skip
    # each purchase: catalog price x the customer's spend level x noise (median 1)
    buys = raised[(raised["role"] == "purchase") & raised["product"].notna()]
    price = buys["product"].map(PRODUCTS.set_index("product")["price"]).astype(float)
    spend = world.running.pop.spend[world.positions(buys["customer_id"].astype(str))]
    ratio = (buys["amount"] / (price * spend)).groupby(buys["timestamp"] >= change).median()
    assert ratio[False] == pytest.approx(1.0, abs=0.03)
    assert ratio[True] == pytest.approx(1.5, abs=0.05)


def test_the_monitor_flags_prices_up_by_half_within_the_first_week_and_not_without(tmp_path):
    for factor, flagged in ((None, False), (1.5, True)):
        events, change, world = _exported(tmp_path / str(factor), factor)
        found = amount_shift(events, change, world.now, days=7)
        assert (found.shift > 0.1) is flagged, found.table
        if flagged:
            purchase = found.table.set_index("role").loc["purchase"]
            assert purchase["low"] < 0.5 < purchase["high"] and purchase["shift"] > 0.1
