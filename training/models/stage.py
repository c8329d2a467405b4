"""The stage model: multiclass LightGBM over the rule stage at ``as_of + horizon``.

Labels are stage names; ``classes_`` holds the stages present in training, in lifecycle order
(``features.contracts.STAGES``; labels outside it follow, sorted). A stage absent from
training gets no column: it is never predicted.

``predict`` decides for macro-F1, the documented primary metric: the stage maximising
``p / prior**k``, where ``prior`` is each stage's share of the training labels and ``k`` is
chosen on the later (early-stopping) fold. ``k = 0`` is the plain argmax; a larger ``k``
favours the rare stages — the few movers a stage forecast exists for — whose F1 counts as much
as that of the crowd who stay put. ``predict_proba`` is untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import f1_score
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from features.contracts import STAGES
from training.models._lgbm import (
    LGBMInputsMixin,
    booster_params,
    contribution_columns,
    holdout_mask,
    keep_top_columns,
    train_booster,
)

PRIOR_POWERS = (0.0, 0.25, 0.5, 0.75, 1.0)  # candidates for ``prior_power="auto"``


def prior_adjusted_argmax(proba: np.ndarray, prior: np.ndarray, power: float) -> np.ndarray:
    """Column index of ``max(proba / prior**power)`` per row (``power=0``: plain argmax)."""
    return np.argmax(proba / np.maximum(prior, 1e-12) ** power, axis=1)


def best_prior_power(proba: np.ndarray, codes: np.ndarray, prior: np.ndarray) -> float:
    """The power in PRIOR_POWERS whose decision has the highest macro-F1 on ``codes``
    (ties go to the smaller power)."""
    scores = [f1_score(codes, prior_adjusted_argmax(proba, prior, k), average="macro",
                       zero_division=0.0) for k in PRIOR_POWERS]  # fmt: skip
    return PRIOR_POWERS[int(np.argmax(scores))]


def stage_classes(y: np.ndarray) -> np.ndarray:
    """Distinct labels of ``y`` in ``STAGES`` order, then any other labels sorted."""
    present = set(y.tolist())
    known = [s for s in STAGES if s in present]
    others = present - set(known)
    try:
        others = sorted(others)
    except TypeError:  # mixed label types
        others = sorted(others, key=str)
    return np.asarray(known + others, dtype=y.dtype)


def multiclass_target(y) -> tuple[np.ndarray, np.ndarray]:
    """``(classes, y as class positions)``; at least two classes are required."""
    y = column_or_1d(y, warn=True)
    check_classification_targets(y)
    y = np.asarray(y, dtype=object) if not np.issubdtype(y.dtype, np.number) else y
    classes = stage_classes(y)
    if len(classes) < 2:
        raise ValueError(f"y needs at least 2 stages; y has 1 class: {classes.tolist()}")
    codes = pd.Index(classes).get_indexer(y)
    return classes, codes.astype(np.float64)


@dataclass(frozen=True)
class _Fold:
    """The booster fitted before the later fold, and that fold's rows."""

    booster: object
    data: np.ndarray
    target: np.ndarray


class StageModel(LGBMInputsMixin, ClassifierMixin, BaseEstimator):
    """Multiclass LightGBM classifier of the future lifecycle stage (``stage_next``).

    Parameters
    ----------
    n_estimators, learning_rate, num_leaves, min_child_samples, subsample, colsample_bytree,
    reg_lambda : LightGBM parameters (sklearn-wrapper names). The defaults favour speed: a
        multiclass booster grows one tree per stage and round, and on simulated data (20k-100k
        customers x 6 snapshots) large steps and small trees with a short early-stopping
        patience cost about a third of the time of lr 0.05 / 31 leaves / patience 50, at the
        same macro-F1 (within 0.005).
    early_stopping_rounds : if set, the number of rounds is chosen on a later fold (about
        ``validation_fraction`` of the rows: the latest whole ``time`` values, or the last
        rows), then the booster is refitted on all rows with that many rounds.
    validation_fraction : share of rows held out for early stopping (and ``prior_power``).
    prior_power : the ``k`` of ``predict``'s decision ``argmax(p / prior**k)``; ``"auto"``
        picks it from PRIOR_POWERS by macro-F1 on the later fold (fitted before the final
        booster, with the early-stopped rounds), a number fixes it, 0 is the plain argmax.
    random_state, n_jobs : LightGBM seed and threads.

    Attributes
    ----------
    classes_ : stages present in training, in lifecycle order.
    class_prior_ : share of each class in the training labels.
    prior_power_ : the ``k`` ``predict`` uses.
    feature_names_in_, n_features_in_, categories_, booster_, n_iter_ : as in ``ChurnModel``.
    """

    def __init__(
        self, n_estimators: int = 400, learning_rate: float = 0.2, num_leaves: int = 15,
        min_child_samples: int = 50, subsample: float = 0.8, colsample_bytree: float = 0.8,
        reg_lambda: float = 1.0, early_stopping_rounds: int | None = 10,
        validation_fraction: float = 0.25, prior_power: float | str = "auto",
        random_state: int | None = 0, n_jobs: int = 1,
    ) -> None:  # fmt: skip
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_fraction = validation_fraction
        self.prior_power = prior_power
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X: pd.DataFrame, y, time=None) -> StageModel:
        """Fit on ``X`` and stage labels ``y``; ``time`` (as-of per row) orders the
        early-stopping fold."""
        self._check_prior_power()
        self.classes_, target = multiclass_target(y)
        data, names, categorical = self._fit_array(X)
        if len(target) != len(data):
            raise ValueError(f"X has {len(data)} rows but y has {len(target)}")
        params = booster_params(self, "multiclass", num_class=len(self.classes_))
        counts = np.bincount(target.astype(np.intp), minlength=len(self.classes_))
        self.class_prior_ = counts / len(target)
        fold = self._fold_fit(params, data, target, names, categorical, time)
        rounds = self.n_estimators
        if self.early_stopping_rounds:
            rounds = fold.booster.num_trees() // len(self.classes_)
        self.prior_power_ = self._prior_power(fold)
        self.booster_ = train_booster(params, data, target, rounds, names=names,
                                      categorical=categorical)  # fmt: skip
        self.n_iter_ = rounds
        return self

    def _fold_fit(self, params, data, target, names, categorical, time) -> _Fold | None:
        """A booster fitted before the later fold (early-stopped on it when asked), or None
        when neither early stopping nor ``prior_power="auto"`` needs one."""
        if not self.early_stopping_rounds and self.prior_power != "auto":
            return None
        hold = holdout_mask(len(data), time, self.validation_fraction)
        booster = train_booster(
            params, data[~hold], target[~hold], self.n_estimators, names=names,
            categorical=categorical, valid=(data[hold], target[hold]),
            early_stopping_rounds=self.early_stopping_rounds,
        )  # fmt: skip
        return _Fold(booster, data[hold], target[hold])

    def _check_prior_power(self) -> None:
        p = self.prior_power
        ok = p == "auto" or (isinstance(p, int | float) and np.isfinite(p) and p >= 0)
        if not ok:
            raise ValueError(f"prior_power must be 'auto' or a number >= 0, got {p!r}")

    def _prior_power(self, fold: _Fold | None) -> float:
        if self.prior_power != "auto":
            return float(self.prior_power)
        proba = fold.booster.predict(fold.data, num_threads=self.n_jobs)
        return best_prior_power(proba, fold.target.astype(np.intp), self.class_prior_)

    def predict_proba(self, X) -> np.ndarray:
        """``(n, len(classes_))`` probabilities; rows sum to 1."""
        check_is_fitted(self)
        return self.booster_.predict(self.encode(X), num_threads=self.n_jobs)

    def raw_score(self, X) -> np.ndarray:
        """``(n, len(classes_))`` raw (softmax input) scores."""
        check_is_fitted(self)
        return self.booster_.predict(self.encode(X), raw_score=True, num_threads=self.n_jobs)

    def predict(self, X) -> np.ndarray:
        """The stage of each row maximising ``p / class_prior_**prior_power_`` (macro-F1's
        decision; the most probable stage when ``prior_power_`` is 0)."""
        proba = self.predict_proba(X)
        # models pickled before the decision rule existed lack these: plain argmax
        power = getattr(self, "prior_power_", 0.0)
        prior = getattr(self, "class_prior_", np.ones(len(self.classes_)))
        return self.classes_[prior_adjusted_argmax(proba, prior, power)]

    def contributions(self, X, top: int | None = None) -> pd.DataFrame:
        """Contributions to each class's raw score: columns ``(class, feature)`` with a
        ``bias`` per class; each class's block sums to its column of :meth:`raw_score`.
        ``top`` keeps the features with the largest mean absolute contribution."""
        check_is_fitted(self)
        array, index = self._contrib_array(X)
        columns = pd.MultiIndex.from_product(
            [self.classes_.tolist(), contribution_columns(self._input_names())],
            names=["class", "feature"],
        )
        return keep_top_columns(pd.DataFrame(array, columns=columns, index=index), top)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.categorical = True
        return tags
