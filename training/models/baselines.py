"""Baselines the LightGBM models must beat: logistic churn, an RFM heuristic, stay-in-stage.

All follow the scikit-learn contract. ``RFMChurnHeuristic`` and ``StayInStage`` read named
columns, so they take frames only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils.validation import check_is_fitted

from features.contracts import STAGES
from training.models._lgbm import (
    as_frame,
    category_codes,
    is_categorical,
    select_columns,
    str_columns,
)
from training.models.churn import binary_target, centred_isotonic

RFM_RISK = {  # column -> whether a HIGH value is risky
    "purchase_recency_days": True,
    "purchases_90d": False,
    "spend_90d_amount": False,
}
QUANTILES = np.linspace(0.0, 1.0, 101)


def logistic_pipeline(frame: pd.DataFrame) -> Pipeline:
    """Median-impute + standardise numeric columns, one-hot categoricals, then logistic."""
    categorical = [c for c in frame.columns if is_categorical(frame[c])]
    numeric = [c for c in frame.columns if c not in categorical]
    prepare = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True),
                              StandardScaler()), numeric),
        ("cat", OneHotEncoder(handle_unknown="ignore"), categorical),
    ])  # fmt: skip
    return make_pipeline(prepare, LogisticRegression(max_iter=1000))


def as_object_categoricals(frame: pd.DataFrame) -> pd.DataFrame:
    """Categorical columns as object arrays with ``None`` for missing (one-hot friendly)."""
    columns = {
        c: frame[c].astype(object).where(frame[c].notna(), None)
        for c in frame.columns
        if is_categorical(frame[c])
    }
    return frame.assign(**columns) if columns else frame


class LogisticChurn(ClassifierMixin, BaseEstimator):
    """Logistic regression on standardised numeric features and one-hot categoricals.

    Attributes
    ----------
    classes_, n_features_in_, feature_names_in_ (frames only), pipeline_ (the fitted
    ``Pipeline``).
    """

    def fit(self, X, y) -> LogisticChurn:
        frame, named = as_frame(X)
        self.classes_, target = binary_target(y)
        self.n_features_in_ = frame.shape[1]
        if named:
            self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self.pipeline_ = logistic_pipeline(frame).fit(as_object_categoricals(frame), target)
        return self

    def _frame(self, X) -> pd.DataFrame:
        check_is_fitted(self)
        names = getattr(self, "feature_names_in_", None)
        if isinstance(X, pd.DataFrame) and names is not None:
            return as_object_categoricals(select_columns(str_columns(X), list(names)))
        names = [f"x{i}" for i in range(self.n_features_in_)] if names is None else names
        frame, _ = as_frame(X.to_numpy() if isinstance(X, pd.DataFrame) else X)
        if frame.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {frame.shape[1]} features, but LogisticChurn is expecting "
                f"{self.n_features_in_} features as input"
            )
        return frame.set_axis(list(names), axis=1)

    def predict_proba(self, X) -> np.ndarray:
        """``(n, 2)`` probabilities of ``classes_``."""
        frame = self._frame(X)
        return self.pipeline_.predict_proba(frame)

    def predict(self, X) -> np.ndarray:
        frame = self._frame(X)
        labels = self.pipeline_.predict(frame).astype(int)
        return self.classes_[labels]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.classifier_tags.multi_class = False
        return tags


def mid_rank(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Percentile rank (0..1) of ``values`` among quantile ``edges``; ties get the mid rank."""
    left = np.searchsorted(edges, values, side="left")
    right = np.searchsorted(edges, values, side="right")
    return (left + right) / (2.0 * len(edges))


def rfm_score(frame: pd.DataFrame, edges: dict[str, np.ndarray]) -> np.ndarray:
    """Mean risk rank over the RFM columns: high recency, few purchases and low spend are
    risky. Missing recency (never bought) counts as the riskiest; missing counts as 0."""
    ranks = []
    for column, high_is_risky in RFM_RISK.items():
        values = frame[column].to_numpy(dtype=np.float64, na_value=np.nan)
        fill = np.inf if high_is_risky else 0.0  # the only high-is-risky column is recency
        rank = mid_rank(np.where(np.isnan(values), fill, values), edges[column])
        ranks.append(rank if high_is_risky else 1.0 - rank)
    return np.mean(ranks, axis=0)


class RFMChurnHeuristic(ClassifierMixin, BaseEstimator):
    """Recency-frequency-monetary heuristic: no learning beyond quantile edges and a
    monotone map of the score to a probability.

    The score is the mean of three percentile ranks against the training distribution
    (``purchase_recency_days`` high = risky, ``purchases_90d`` and ``spend_90d_amount`` low =
    risky), so it lies in [0, 1]. A centred isotonic regression of the training labels on
    the score (as in ``ChurnModel``) turns it into a probability; it is strictly increasing
    between its end blocks, so the ranking stays the heuristic's own.

    Attributes
    ----------
    classes_, edges_ (column -> 101 training quantiles), calibrator_ (score -> probability).
    """

    def fit(self, X: pd.DataFrame, y) -> RFMChurnHeuristic:
        frame = self._check(X)
        self.classes_, target = binary_target(y)
        self.edges_ = {c: self._edges(frame[c]) for c in RFM_RISK}
        self.calibrator_ = centred_isotonic(rfm_score(frame, self.edges_), target)
        return self

    @staticmethod
    def _edges(column: pd.Series) -> np.ndarray:
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        values = values[~np.isnan(values)]
        return np.quantile(values, QUANTILES) if len(values) else np.zeros(len(QUANTILES))

    @staticmethod
    def _check(X) -> pd.DataFrame:
        missing = [c for c in RFM_RISK if not isinstance(X, pd.DataFrame) or c not in X]
        if missing:
            raise ValueError(f"RFMChurnHeuristic needs a frame with columns {missing}")
        return X

    def risk_score(self, X: pd.DataFrame) -> np.ndarray:
        """The heuristic's raw score in [0, 1] (before the isotonic map)."""
        check_is_fitted(self)
        return rfm_score(self._check(X), self.edges_)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        churn = self.calibrator_(self.risk_score(X))
        return np.column_stack([1.0 - churn, churn])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        churn = self.predict_proba(X)[:, 1]
        return self.classes_[(churn > 0.5).astype(int)]


class StayInStage(ClassifierMixin, BaseEstimator):
    """Predicts that every customer stays in their current ``stage`` (probability 1).

    Attributes
    ----------
    classes_ : ``features.contracts.STAGES``.
    """

    def fit(self, X: pd.DataFrame, y=None) -> StayInStage:
        self.classes_ = np.asarray(STAGES, dtype=object)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self)
        if not isinstance(X, pd.DataFrame) or "stage" not in X:
            raise ValueError("StayInStage needs a frame with the current 'stage' column")
        codes = category_codes(X["stage"], list(self.classes_))
        if np.isnan(codes).any():
            bad = X["stage"][np.isnan(codes)].unique()[:5].tolist()
            raise ValueError(f"stage must be one of {list(STAGES)}; got {bad}")
        return np.eye(len(self.classes_))[codes.astype(int)]

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        best = np.argmax(self.predict_proba(X), axis=1)
        return self.classes_[best]
