"""The churn model: LightGBM on raw scores, calibrated on a later time fold (DESIGN s. 6).

Fit holds out the latest snapshots (about ``calibration_fraction`` of the rows, whole as-of
dates), trains the booster on the earlier ones with early stopping on the held-out fold, and
fits the calibrator (isotonic or Platt) on the held-out fold's raw scores. Prediction is
``encode`` -> ``Booster.predict(raw_score=True)`` -> the calibrator's numpy mapping.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from training.models._lgbm import (
    LGBMInputsMixin,
    booster_params,
    contribution_columns,
    holdout_mask,
    keep_top_columns,
    train_booster,
)

CALIBRATIONS = ("isotonic", "sigmoid", None)


@dataclass(frozen=True)
class IsotonicCalibrator:
    """Centred isotonic map: linear between the score centres of the isotonic blocks.

    Plain isotonic regression is a step function that ties every score inside a block,
    which loses ranking (ROC-AUC); joining the blocks' (mean score, rate) points keeps the
    map strictly increasing between the first and last centre, so the ranking is the
    booster's own and the calibration that of the isotonic fit (Oron & Flournoy, 2017).
    """

    x: np.ndarray
    y: np.ndarray

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        return np.interp(scores, self.x, self.y)


def centred_isotonic(scores: np.ndarray, y: np.ndarray) -> IsotonicCalibrator:
    """Fit isotonic regression of ``y`` on ``scores`` and centre its blocks."""
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(scores, y)
    values, block = np.unique(iso.predict(scores), return_inverse=True)
    centres = np.bincount(block, weights=scores) / np.bincount(block)
    return IsotonicCalibrator(centres, values)


@dataclass(frozen=True)
class PlattCalibrator:
    """Platt scaling: ``p = expit(a * score + b)``."""

    a: float
    b: float

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        return expit(self.a * scores + self.b)


def fit_calibrator(
    scores: np.ndarray, y: np.ndarray, method: str
) -> IsotonicCalibrator | PlattCalibrator:
    """A calibrator of ``scores`` to P(y = 1), fitted on a fold the scorer was not trained on.

    Raises ``ValueError`` when the fold holds a single class (nothing to calibrate against).
    """
    if len(np.unique(y)) < 2:
        raise ValueError(
            f"the calibration fold ({len(y)} rows) holds a single class; give more (or "
            f"later) data, a larger calibration_fraction, or calibration=None"
        )
    if method == "isotonic":
        return centred_isotonic(scores, y)
    platt = LogisticRegression(C=np.inf).fit(scores.reshape(-1, 1), y)
    return PlattCalibrator(float(platt.coef_[0, 0]), float(platt.intercept_[0]))


def binary_target(y) -> tuple[np.ndarray, np.ndarray]:
    """``(classes, y as 0/1)``: the sorted labels; the second one is the positive class."""
    y = column_or_1d(y, warn=True)
    check_classification_targets(y)
    classes, codes = np.unique(y, return_inverse=True)
    if len(classes) != 2:
        kind = "Only binary classification is supported" if len(classes) > 2 else "y needs 2"
        raise ValueError(f"{kind}; y has {len(classes)} class(es): {classes[:5].tolist()}")
    return classes, codes.astype(np.float64)


class ChurnModel(LGBMInputsMixin, ClassifierMixin, BaseEstimator):
    """Binary LightGBM churn classifier, calibrated on a later time fold.

    Parameters
    ----------
    n_estimators, learning_rate, num_leaves, min_child_samples, subsample, colsample_bytree,
    reg_lambda : LightGBM parameters (sklearn-wrapper names).
    calibration : ``"isotonic"`` (centred, see :class:`IsotonicCalibrator`), ``"sigmoid"``
        (Platt) or ``None`` (the booster's own sigmoid).
    calibration_fraction : share of rows (latest whole as-of dates) held out to calibrate.
    early_stopping_rounds : rounds without improvement on the held-out fold; ``None`` = off.
        With neither calibration nor early stopping, the booster trains on every row.
    refit : after the held-out fold has chosen the rounds and fitted the calibrator, train the
        final booster on every row (the latest snapshots too) with the rounds scaled to the
        larger training set, ``rounds / (1 - held-out share)`` (``n_estimators`` without
        early stopping). The calibrator, fitted on
        scores the fold booster had not seen, maps the final booster's raw scores. ``False``
        keeps the fold booster (trained without the latest snapshots).
    random_state : seed of LightGBM (bagging, feature fraction).
    n_jobs : LightGBM threads in fit and predict (1 in serving workers).

    Attributes
    ----------
    classes_ : the two labels; ``classes_[1]`` is churn.
    feature_names_in_, n_features_in_, categories_ : the input columns and the training
        categories of each categorical column (re-applied in predict; unseen -> missing).
    booster_ : ``lightgbm.Booster`` (only the trees it uses).
    calibrator_ : a numpy map of raw scores to probabilities, or ``None``.
    n_iter_ : boosting rounds kept.
    """

    def __init__(
        self, n_estimators: int = 400, learning_rate: float = 0.05, num_leaves: int = 31,
        min_child_samples: int = 50, subsample: float = 0.8, colsample_bytree: float = 0.8,
        reg_lambda: float = 1.0, calibration: str | None = "isotonic",
        calibration_fraction: float = 0.25, early_stopping_rounds: int | None = 50,
        refit: bool = True, random_state: int | None = 0, n_jobs: int = 1,
    ) -> None:  # fmt: skip
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.calibration = calibration
        self.calibration_fraction = calibration_fraction
        self.early_stopping_rounds = early_stopping_rounds
        self.refit = refit
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X: pd.DataFrame, y, time=None) -> ChurnModel:
        """Fit on ``X`` (one row per customer snapshot) and 0/1-like labels ``y``.

        ``time`` (the as-of date of each row) makes the held-out fold the latest whole
        snapshots; without it the fold is the last ``calibration_fraction`` of the rows.
        """
        self._check_params()
        self.classes_, target = binary_target(y)
        data, names, categorical = self._fit_array(X)
        if len(target) != len(data):
            raise ValueError(f"X has {len(data)} rows but y has {len(target)}")
        hold = self._holdout(len(data), time)
        train = ~hold
        params = booster_params(self, "binary")
        booster = train_booster(
            params, data[train], target[train], self.n_estimators, names=names,
            categorical=categorical, valid=(data[hold], target[hold]),
            early_stopping_rounds=self.early_stopping_rounds,
        )  # fmt: skip
        self.calibrator_ = None
        if self.calibration is not None:
            scores = booster.predict(data[hold], raw_score=True, num_threads=self.n_jobs)
            self.calibrator_ = fit_calibrator(scores, target[hold], self.calibration)
        if self.refit and hold.any():
            rounds = self.n_estimators
            if self.early_stopping_rounds:
                rounds = max(1, int(round(booster.num_trees() / train.mean())))
            booster = train_booster(params, data, target, rounds, names=names,
                                    categorical=categorical)  # fmt: skip
        self.booster_ = booster
        self.n_iter_ = booster.num_trees()
        return self

    def _check_params(self) -> None:
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"calibration must be one of {CALIBRATIONS}; got {self.calibration!r}")
        if not 0.0 < self.calibration_fraction < 1.0:
            raise ValueError(
                f"calibration_fraction must be in (0, 1); got {self.calibration_fraction!r}"
            )

    def _holdout(self, n: int, time) -> np.ndarray:
        if self.calibration is None and not self.early_stopping_rounds:
            return np.zeros(n, dtype=bool)
        return holdout_mask(n, time, self.calibration_fraction)

    def raw_score(self, X) -> np.ndarray:
        """The booster's raw (log-odds) scores, before calibration."""
        check_is_fitted(self)
        return self.booster_.predict(self.encode(X), raw_score=True, num_threads=self.n_jobs)

    def predict_proba(self, X) -> np.ndarray:
        """``(n, 2)`` probabilities of ``classes_``; column 1 is the churn probability."""
        raw = self.raw_score(X)
        churn = self.calibrator_(raw) if self.calibrator_ is not None else expit(raw)
        return np.column_stack([1.0 - churn, churn])

    def predict(self, X) -> np.ndarray:
        """The more probable label of each row."""
        churn = self.predict_proba(X)[:, 1]
        return self.classes_[(churn > 0.5).astype(int)]

    def contributions(self, X, top: int | None = None) -> pd.DataFrame:
        """Per-feature contributions to the raw score (plus ``bias``), one row per row of X.

        Rows sum to :meth:`raw_score`. ``top`` keeps only the ``top`` features with the
        largest mean absolute contribution over these rows (then rows no longer sum).
        """
        check_is_fitted(self)
        array, index = self._contrib_array(X)
        frame = pd.DataFrame(array, columns=contribution_columns(self._input_names()), index=index)
        return keep_top_columns(frame, top)

    def reasons(self, X, top: int = 3) -> list[list[tuple[str, float]]]:
        """Per row, up to ``top`` (feature, contribution) pairs pushing hardest toward churn
        (largest positive contributions, largest first)."""
        contrib = self.contributions(X).drop(columns="bias")
        names, values = np.asarray(contrib.columns), contrib.to_numpy()
        order = np.argsort(-values, axis=1, kind="stable")[:, :top]
        return [
            [(str(names[j]), float(row[j])) for j in idx if row[j] > 0]
            for row, idx in zip(values, order, strict=True)
        ]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.categorical = True
        tags.classifier_tags.multi_class = False
        return tags
