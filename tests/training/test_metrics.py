"""Evaluation metrics: hand-computed answers on tiny arrays, edge cases, sklearn agreement."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    f1_score,
    log_loss,
    roc_auc_score,
)

from training.metrics import (
    auuc,
    churn_metrics,
    confusion,
    expected_calibration_error,
    gains_table,
    lift_at,
    offer_experiment,
    qini_coefficient,
    qini_curve,
    reliability_table,
    stage_metrics,
)

# --- churn ----------------------------------------------------------------------------------


def test_reliability_table_and_ece_on_four_points():
    y, p = [0, 1, 0, 1], [0.1, 0.3, 0.6, 0.8]
    table = reliability_table(y, p, bins=2)
    assert table.to_dict("list") == {
        "bin": [0, 1],
        "mean_p": pytest.approx([0.2, 0.7]),
        "observed_rate": [0.5, 0.5],
        "count": [2, 2],
    }
    # (2 * |0.2 - 0.5| + 2 * |0.7 - 0.5|) / 4
    assert expected_calibration_error(y, p, bins=2) == pytest.approx(0.25)


def test_uniform_bins_drop_empty_ones():
    table = reliability_table([0, 1, 1], [0.05, 0.92, 0.97], bins=10, strategy="uniform")
    assert table["bin"].tolist() == [0, 9]
    assert table["count"].tolist() == [1, 2]
    assert table["observed_rate"].tolist() == [0.0, 1.0]


def test_tied_scores_share_one_quantile_bin():
    table = reliability_table([0, 1, 1, 0], [0.5, 0.5, 0.5, 0.5])
    assert len(table) == 1 and table["count"].iloc[0] == 4
    assert expected_calibration_error([0, 1, 1, 0], [0.5] * 4) == 0.0


def test_unknown_strategy_is_rejected():
    with pytest.raises(ValueError, match="strategy"):
        reliability_table([0, 1], [0.2, 0.4], strategy="kmeans")


def test_lift_top_decile_by_hand():
    y = [1, 0, 0, 0, 1, 0, 0, 0, 0, 1]  # base rate 0.3; the top-scored row is positive
    p = np.linspace(0.9, 0.0, 10)
    assert lift_at(y, p, 0.1) == pytest.approx(1 / 0.3)
    assert churn_metrics(y, p)["lift_top_decile"] == pytest.approx(1 / 0.3)


def test_lift_counts_ties_pro_rata():
    # top 10% of 10 rows = 1 row, inside a tie of 2 rows with 1 positive: expected 0.5
    y, p = [1, 0, 1, 0, 0, 0, 0, 0, 0, 0], [0.9, 0.9] + [0.1] * 8
    assert lift_at(y, p, 0.1) == pytest.approx(0.5 / 0.2)
    assert lift_at(y, [0.3] * 10, 0.1) == pytest.approx(1.0)


def test_gains_table_by_hand():
    y = [1, 0, 0, 0, 1, 0, 0, 0, 0, 1]
    table = gains_table(y, np.arange(10)[::-1], steps=10)
    captured = [0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3]
    assert table["share_targeted"].tolist() == pytest.approx(np.linspace(0, 1, 11))
    assert table["share_of_positives_captured"].tolist() == pytest.approx(np.divide(captured, 3))
    assert math.isnan(table["lift"].iloc[0])
    assert table["lift"].iloc[1] == pytest.approx(10 / 3) and table["lift"].iloc[-1] == 1.0


def test_gains_of_a_constant_score_is_the_diagonal():
    table = gains_table([1, 0, 0, 1, 0], [0.2] * 5, steps=5)
    assert table["share_of_positives_captured"].tolist() == pytest.approx(np.linspace(0, 1, 6))


def test_churn_metrics_agree_with_sklearn():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=300)
    y = (rng.uniform(size=300) < p).astype(int)
    got = churn_metrics(y, p)
    assert got["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert got["pr_auc"] == pytest.approx(average_precision_score(y, p))
    assert got["brier"] == pytest.approx(brier_score_loss(y, p))
    assert got["base_rate"] == pytest.approx(y.mean()) and got["n"] == 300
    assert 0 <= got["ece"] < 0.15


def test_churn_metrics_with_one_class_give_nan_aucs():
    got = churn_metrics([0, 0, 0], [0.1, 0.3, 0.6])
    assert math.isnan(got["roc_auc"]) and math.isnan(got["pr_auc"])
    assert math.isnan(got["lift_top_decile"])
    assert got["brier"] == pytest.approx((0.01 + 0.09 + 0.36) / 3)
    assert got["base_rate"] == 0.0
    assert math.isnan(churn_metrics([1, 1], [0.2, 0.9])["roc_auc"])


def test_churn_metrics_on_empty_input_are_nan():
    got = churn_metrics([], [])
    assert got["n"] == 0
    assert all(math.isnan(v) for k, v in got.items() if k != "n")
    assert reliability_table([], []).empty
    assert gains_table([], [], steps=4)["share_of_positives_captured"].isna().all()


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        ([0, 2], [0.1, 0.2], "y_true must hold 0/1 or booleans; got 2 in 1 rows"),
        ([0, 1], [0.1, float("nan")], "p must be finite"),
        ([0, 1], [0.1, 1.5], r"within \[0.0, 1.0\]; got 1.5"),
        ([0, 1], [0.1], "p must have 2 values"),
    ],
)
def test_bad_inputs_are_named(y, p, message):
    with pytest.raises(ValueError, match=message):
        churn_metrics(y, p)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.floats(0, 1)), min_size=1, max_size=40), st.data())
def test_churn_metrics_do_not_depend_on_row_order(rows, data):
    y, p = np.array(rows, dtype=float).T
    perm = data.draw(st.permutations(range(len(rows))))
    a, b = churn_metrics(y, p), churn_metrics(y[perm], p[perm])
    assert a == pytest.approx(b, nan_ok=True)


# --- stage ----------------------------------------------------------------------------------

PROBA = pd.DataFrame({"a": [0.7, 0.2, 0.1], "b": [0.2, 0.5, 0.1], "c": [0.1, 0.3, 0.8]})


def test_stage_metrics_by_hand():
    got = stage_metrics(pd.Series(["a", "c", "c"], dtype="str"), PROBA)
    # decisions a, b, c: F1 a = 1, b = 0, c = 2/3 (precision 1, recall 1/2)
    assert got["macro_f1"] == pytest.approx((1 + 0 + 2 / 3) / 3)
    assert got["accuracy"] == pytest.approx(2 / 3)
    assert got["log_loss"] == pytest.approx(-(np.log(0.7) + np.log(0.3) + np.log(0.8)) / 3)
    assert got["n"] == 3


def test_stage_metrics_agree_with_sklearn():
    rng = np.random.default_rng(1)
    classes = ["awareness", "engagement", "purchase", "churned"]
    proba = pd.DataFrame(rng.dirichlet(np.ones(4), size=200), columns=classes)
    y = rng.choice(classes, size=200)
    pred = np.array(classes)[proba.to_numpy().argmax(axis=1)]
    got = stage_metrics(y, proba)
    assert got["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert got["accuracy"] == pytest.approx(accuracy_score(y, pred))
    # sklearn reads probability columns in sorted label order, whatever ``labels`` says
    ordered = sorted(classes)
    assert got["log_loss"] == pytest.approx(log_loss(y, proba[ordered].to_numpy(), labels=ordered))


def test_stage_metrics_score_the_given_decision():
    # deciding c, b, c instead of the argmax a, b, c: F1 a = 0, b = 0, c = 1/2
    got = stage_metrics(["a", "c", "c"], PROBA, y_pred=["c", "b", "c"])
    assert got["macro_f1"] == pytest.approx((0 + 0 + 0.5) / 3)
    assert got["accuracy"] == pytest.approx(1 / 3)
    assert got["log_loss"] == stage_metrics(["a", "c", "c"], PROBA)["log_loss"]
    with pytest.raises(ValueError, match="y_pred must be one of"):
        stage_metrics(["a", "c", "c"], PROBA, y_pred=["a", "b", "z"])


def test_stage_log_loss_clips_zero_probabilities():
    proba = pd.DataFrame({"a": [1.0, 0.0], "b": [0.0, 1.0]})
    got = stage_metrics(["a", "a"], proba)
    assert got["log_loss"] == pytest.approx(-np.log(1e-15) / 2, rel=1e-6)
    assert math.isfinite(got["log_loss"])


def test_stage_metrics_reject_unknown_labels_and_handle_empty():
    with pytest.raises(ValueError, match="y_true must be one of \\['a', 'b', 'c'\\]; got 'z'"):
        stage_metrics(["a", "z", "c"], PROBA)
    empty = stage_metrics([], PROBA.iloc[:0])
    assert empty["n"] == 0 and math.isnan(empty["macro_f1"])


def test_confusion_counts_rows_true_columns_predicted():
    table = confusion(["a", "c", "c", "c"], ["a", "b", "c", "c"], ["a", "b", "c"])
    assert table.index.name == "true" and table.columns.name == "predicted"
    assert table.to_numpy().tolist() == [[1, 0, 0], [0, 0, 0], [0, 1, 2]]
    with pytest.raises(ValueError, match="y_pred must be one of"):
        confusion(["a"], ["x"], ["a", "b"])


# --- uplift ---------------------------------------------------------------------------------

# a hand-made experiment, already in descending score order
SCORE = [8, 7, 6, 5, 4, 3, 2, 1]
TREATED = [1, 0, 1, 0, 1, 0, 1, 0]
Y = [1, 0, 1, 0, 0, 1, 0, 1]
# Y_t - Y_c * N_t / N_c at k = 0..8 (second term 0 while N_c = 0)
QINI = [0, 1, 1, 2, 2, 2, 2 - 1 * 3 / 3, 2 - 1 * 4 / 3, 2 - 2 * 4 / 4]


def test_qini_curve_by_hand():
    curve = qini_curve(Y, TREATED, SCORE)
    assert curve["share_targeted"].tolist() == pytest.approx(np.arange(9) / 8)
    assert curve["incremental_conversions"].tolist() == pytest.approx(QINI)


def test_auuc_and_qini_coefficient_by_hand():
    area = sum(QINI[1:-1]) / 8  # trapezoids of width 1/8; the random line is 0 (Q(1) = 0)
    assert auuc(Y, TREATED, SCORE, normalize=False) == pytest.approx(area)
    assert auuc(Y, TREATED, SCORE) == pytest.approx(area / 8)
    # best ordering: 2 treated converters, 4 non-converters, 2 control converters
    best = 0.25 * 2 / 2 + 0.5 * 2 + 0.25 * 2 / 2
    assert qini_coefficient(Y, TREATED, SCORE) == pytest.approx(area / best)
    assert qini_coefficient(Y, TREATED, np.multiply(Y, 2 * np.array(TREATED) - 1)) == 1.0


def test_constant_weights_per_arm_give_the_unweighted_curve():
    weights = np.where(np.array(TREATED) == 1, 2.0, 5.0)
    curve = qini_curve(Y, TREATED, SCORE, weights=weights)
    assert curve["incremental_conversions"].tolist() == pytest.approx(QINI)
    assert weights.tolist() == [2.0, 5.0] * 4  # the caller's array is left alone


def test_weighted_qini_by_hand():
    # treated weights [1, 3] rescale to [0.5, 1.5] (sum = 2 treated rows); control [1, 1]
    curve = qini_curve([1, 0, 0, 1], [1, 0, 1, 0], [4, 3, 2, 1], weights=[1, 1, 3, 1])
    assert curve["incremental_conversions"].tolist() == pytest.approx([0, 0.5, 0.5, 0.5, -0.5])


def test_constant_score_gives_the_random_line_and_zero_auuc():
    curve = qini_curve(Y, TREATED, [0.3] * 8)
    assert curve["share_targeted"].tolist() == [0.0, 1.0]
    assert auuc(Y, TREATED, [0.3] * 8) == 0.0


def test_uplift_edge_cases_give_nan():
    assert math.isnan(auuc([], [], []))
    assert math.isnan(auuc([1, 0], [1, 1], [0.2, 0.1]))  # no control
    assert qini_curve([1, 0], [0, 0], [0.2, 0.1])["incremental_conversions"].isna().all()
    with pytest.raises(ValueError, match="treated must have 2 values"):
        qini_curve([1, 0], [1], [0.2, 0.1])


def _loop_qini(y, t, s) -> list[float]:
    """The Qini definition spelled out, one cut at a time (scores without ties)."""
    order = np.argsort(-s)
    out = [0.0]
    for k in range(1, len(y) + 1):
        top = order[:k]
        yt, nt = y[top][t[top] == 1].sum(), (t[top] == 1).sum()
        yc, nc = y[top][t[top] == 0].sum(), (t[top] == 0).sum()
        out.append(yt - (yc * nt / nc if nc else 0.0))
    return out


def test_qini_curve_matches_the_definition_on_random_data():
    rng = np.random.default_rng(3)
    y, t, s = rng.integers(0, 2, 60), rng.integers(0, 2, 60), rng.permutation(60) / 60
    got = qini_curve(y, t, s)["incremental_conversions"].tolist()
    assert got == pytest.approx(_loop_qini(y, t, s))


@pytest.fixture(scope="module")
def synthetic_uplift():
    """A randomised experiment with a known uplift tau(x) = 0.3 * (x - 0.25)."""
    rng = np.random.default_rng(7)
    x = rng.uniform(size=20_000)
    t = rng.integers(0, 2, x.size)
    tau = 0.3 * (x - 0.25)
    y = (rng.uniform(size=x.size) < 0.3 + t * tau).astype(int)
    return y, t, tau, rng.uniform(size=x.size)


def test_auuc_ranks_perfect_random_and_reversed_orderings(synthetic_uplift):
    y, t, tau, noise = synthetic_uplift
    perfect, random, reversed_ = auuc(y, t, tau), auuc(y, t, noise), auuc(y, t, -tau)
    assert perfect > 0.01 and reversed_ < -0.01
    assert abs(random) < 0.3 * perfect
    assert 0 < qini_coefficient(y, t, tau) <= 1


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.booleans(), st.integers(0, 5)), min_size=2, max_size=30),
    st.data(),
)
def test_qini_does_not_depend_on_row_order(rows, data):
    y, t, s = np.array(rows, dtype=float).T
    perm = data.draw(st.permutations(range(len(rows))))
    a, b = qini_curve(y, t, s), qini_curve(y[perm], t[perm], s[perm])
    pd.testing.assert_frame_equal(a, b)


def test_offer_experiment_selects_offer_and_control_rows():
    arm = pd.Series(["control", "discount", "bundle", "discount", "control"], dtype="str")
    rows, treated = offer_experiment(arm, "discount")
    assert rows.tolist() == [True, True, False, True, True]
    assert treated.tolist() == [False, True, True, False]
