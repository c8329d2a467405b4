"""The closed loop end to end, small: a real retrain, three real services on the simulated
world's clock, a week of decisions, sends, conversions and learning from the ledger."""

import json
import sqlite3

import pandas as pd
import pytest

from serving.closed_loop import LoopConfig, Paths, run_loop

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("loop")
    # a small world: its pilot campaigns give each arm a few dozen sends
    config = LoopConfig(customers=1500, weeks=1, seed=3, audience_share=0.3, bound_rows=600,
                        full_retrain_every=2,
                        project={"offers": {"min_arm_size": 30}})  # fmt: skip
    lines = []
    weeks = run_loop(config, workdir, progress=lines.append)
    return {"weeks": weeks, "paths": Paths(workdir), "lines": lines, "config": config}


def test_every_policy_is_valued_on_the_same_audience(loop):
    (week,) = loop["weeks"]
    assert week.audience > 100 and week.offers_sent > 0
    assert week.oracle >= max(week.greedy, week.frozen, week.random, week.bound, week.served)
    assert week.oracle > 0
    assert week.ope_greedy_lo <= week.ope_greedy <= week.ope_greedy_hi
    values = pd.read_parquet(loop["paths"].workdir / "values.parquet")
    assert len(values) == week.audience and values["customer_id"].is_unique
    assert values["served"].mean() == pytest.approx(week.served)
    saved = json.loads((loop["paths"].workdir / "weeks.json").read_text())
    assert saved["weeks"][0]["greedy"] == pytest.approx(week.greedy)
    assert any(line.startswith("week  1") for line in loop["lines"])


def test_the_live_service_decided_on_the_worlds_clock_and_heard_back(loop):
    paths = loop["paths"]
    start = pd.Timestamp("2025-01-01", tz="UTC") + pd.Timedelta(days=365)  # week 1's now
    with sqlite3.connect(paths.ledger("live")) as conn:
        decided = conn.execute("SELECT MIN(decided_at), MAX(decided_at), COUNT(*) "
                               "FROM decisions").fetchone()  # fmt: skip
        sent = conn.execute("SELECT COUNT(*) FROM feedback WHERE event = 'sent'").fetchone()[0]
        converted = conn.execute("SELECT COUNT(*), SUM(revenue > 0) FROM feedback "
                                 "WHERE event = 'converted'").fetchone()  # fmt: skip
        rejected = conn.execute("SELECT COUNT(*) FROM feedback_rejected").fetchone()[0]
    week = loop["weeks"][0]
    assert decided[0] == decided[1] == start.timestamp()  # the clock file, not the system's
    assert decided[2] == week.audience
    assert sent == week.offers_sent and rejected == 0
    assert converted[0] > 0 and converted[1] == converted[0]  # with the purchase's amount


def test_the_weekly_retrain_learned_from_the_ledger(loop):
    (week,) = loop["weeks"]
    assert week.retrain_exit in (0, 3)
    log = (loop["paths"].workdir / "retrain.log").read_text()
    assert "--ledger" in log and "--models offers" in log
    weekly = log.split("--ledger")[-1]
    assert "decisions as exposures" in weekly  # none yet: every response window is open
    assert "lifecycle-offers" in weekly and "lifecycle-churn" not in weekly  # offers only
    first = log.split("--ledger")[0]
    assert "lifecycle-offers: policy_value_dr" in first  # week 0 had an offers model


def test_the_challenger_the_gate_kept_out_is_read_from_the_registry(loop):
    """Week 1's retrain of this world trains an offers challenger the gate keeps out (exit 3):
    ``lifecycle-offers@challenger`` is then a version apart from the champion, valued on the
    audience; the champion's own version is not a challenger."""
    import numpy as np

    from serving.closed_loop import challenger_expected

    (week,) = loop["weeks"]
    paths = loop["paths"]
    offers = pd.read_parquet(paths.data / "offers.parquet")
    offer_ids = list(offers["offer_id"].astype("str"))
    audience = pd.read_parquet(paths.workdir / "values.parquet")["customer_id"].to_numpy()
    now = pd.Timestamp(week.as_of, tz="UTC")
    assert week.retrain_exit == 3  # trained, kept out
    expected, version = challenger_expected(paths, audience, offers, offer_ids, now,
                                            week.offers_version)  # fmt: skip
    assert version and version != week.offers_version
    assert expected.shape == (len(audience), len(offer_ids)) and np.isfinite(expected).any()
    assert challenger_expected(paths, audience, offers, offer_ids, now, version) == (None, "")


def test_the_challenger_is_valued_as_the_services_value_an_offer():
    """``offer_expected`` (the loop's in-process valuation of the offers challenger) gives the
    expected values the service answers with ``retention_value: catalog``; NaN for an offer
    the model does not know or does not support."""
    import numpy as np

    from serving.bundle import ModelBundle, ModelInfo
    from serving.closed_loop import offer_expected
    from serving.config import PolicyConfig
    from serving.engine import DecisionEngine
    from tests.serving.test_engine import OFFERS, Fixed, Stage, draws, no_contacts, rows

    class Partial(Fixed):  # knows up and wb, supports wb only for the second customer
        offers_ = ["up", "wb"]

        def uplift_and_support(self, X):
            return X[:, [2]] * np.array([[1.0, 3.0]]), np.array([[True, False], [True, True]])

    r = rows([[0.1, 0.4, 0.0], [0.2, 0.4, 0.0]], ["retention", "churned"], ["", ""])
    info = {n: ModelInfo(n, f"lifecycle-{n}", "7", None, None) for n in ("churn", "stage")}
    engine = DecisionEngine(ModelBundle(Fixed(), Stage(), Fixed(), info, "test"), OFFERS,
                            PolicyConfig(exploration=0.0, retention_value="catalog"))  # fmt: skip
    out, _ = engine.decide(r, no_contacts(2), draws(2))
    served = np.array([[{o["offer_id"]: o for o in a["offers"]}[k]["expected_value"]
                        for k in ("up", "xs", "wb")] for a in out])  # fmt: skip
    ids = ["up", "xs", "wb"]
    np.testing.assert_allclose(offer_expected(Fixed(), r, OFFERS, ids), served)
    partial = offer_expected(Partial(), r, OFFERS, ids)
    np.testing.assert_allclose(partial, [[0.1 * 50 - 1, np.nan, np.nan],
                                         [0.2 * 50 - 1, np.nan, 0.6 * 20 - 2]])  # fmt: skip
