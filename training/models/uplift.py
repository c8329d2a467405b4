"""Per-offer uplift from the campaign log: a T-learner or a doubly robust learner on LightGBM.

``t``: one conversion model per arm (control included) on that arm's exposures; the uplift of
offer k is ``p_k(x) - p_control(x)``. ``dr``: the same outcome models, cross-fitted, give per
exposure the doubly robust pseudo-outcome of each offer's effect, using the *logged*
propensity of the arm actually sent,

    phi_k = m_k(x) - m_0(x) + 1[A=k] (Y - m_k(x)) / p - 1[A=control] (Y - m_0(x)) / p,

which is regressed on ``x`` per offer (a DR-learner). Categorical columns keep their training
categories (DESIGN section 11); values unseen in training become missing.
"""

from __future__ import annotations

import warnings

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import KFold
from sklearn.utils.validation import check_is_fitted

from training.models._lgbm import category_codes, learn_categories

CONTROL = "control"
LEARNERS = ("t", "dr")
LOGGING_ROUNDS = 40  # of the logging-policy model (support)


class UpliftModel(BaseEstimator):
    """Conversion probability under each arm and the uplift of each offer over control.

    Parameters
    ----------
    learner : "t" (separate outcome models per arm) or "dr" (doubly robust pseudo-outcomes
        from the logged propensities, regressed on X per offer).
    n_estimators, learning_rate, num_leaves, min_child_samples : LightGBM settings; the
        defaults are strongly regularised (arms of ~1k exposures overfit larger trees).
    min_arm_size : arms with fewer exposures get no model (uplift NaN, with a warning).
    min_support : an offer counts as supported for a customer when the logging policy's
        estimated probability of sending it (``logging_model_``) is at least this.
    n_folds : cross-fitting folds of the outcome models behind the DR pseudo-outcomes.
    random_state, n_jobs : LightGBM ``seed`` and ``num_threads`` (training is deterministic).

    Attributes
    ----------
    arms_ : list, "control" then the offers seen in training (sorted).
    offers_ : list, the offers (``arms_`` without control).
    arm_counts_ : dict, exposures per arm.
    outcome_models_ : dict arm -> Booster or None (too few exposures).
    effect_models_ : dict offer -> Booster or None (``dr`` only).
    categories_ : dict column -> training categories of each categorical column.
    feature_names_in_, n_features_in_ : training columns.
    uplift_se_ : dict offer -> standard error of its uplift estimate, set by
        :meth:`measure_spread` (absent until then).
    """

    def __init__(
        self,
        learner: str = "t",
        n_estimators: int = 100,
        learning_rate: float = 0.03,
        num_leaves: int = 4,
        min_child_samples: int = 100,
        min_arm_size: int = 200,
        min_support: float = 0.05,
        n_folds: int = 2,
        random_state: int = 0,
        n_jobs: int = 1,
    ) -> None:
        self.learner = learner
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.min_arm_size = min_arm_size
        self.n_folds = n_folds
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.min_support = min_support

    def fit(
        self,
        X: pd.DataFrame,
        arm: object,
        y: object,
        propensity: object | None = None,
    ) -> UpliftModel:
        """Learn from exposures.

        Parameters
        ----------
        X : (n, features) DataFrame; category, str and object columns are categorical.
        arm : (n,) the arm sent: an offer id, or "control" / NA for the held-out control.
        y : (n,) 0/1 conversion.
        propensity : (n,) logging probability of the arm sent, in (0, 1]; required for "dr".

        Returns
        -------
        self
        """
        arm, y, p = self._check_fit(X, arm, y, propensity)
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = X.shape[1]
        self.categories_ = learn_categories(X)
        data = self._matrix(X)
        counts = pd.Series(arm).value_counts()
        self.arm_counts_ = {a: int(counts.get(a, 0)) for a in arm_order(arm)}
        self.arms_ = list(self.arm_counts_)
        self.offers_ = self.arms_[1:]
        self._warn_small()
        self.outcome_models_ = self._fit_outcomes(data, arm, y)
        self.logging_model_ = self._fit_logging(data, arm)
        if self.learner == "dr":
            m = self._cross_fitted(data, arm, y)
            self.effect_models_ = self._fit_effects(data, arm, y, p, m)
        return self

    def predict_arm_proba(self, X: pd.DataFrame) -> pd.DataFrame:
        """Predicted conversion probability under each arm, ``(n, arms_)``; NaN for arms
        without a model."""
        data = self.encode(X)
        return pd.DataFrame(
            {a: _predict(self.outcome_models_[a], data) for a in self.arms_}, index=_index(X)
        )

    def logging_proba(self, X: pd.DataFrame) -> pd.DataFrame:
        """Estimated probability that the logging policy sent each arm, ``(n, arms_)``."""
        data = self.encode(X)
        proba = self.logging_model_.predict(data, num_threads=self.n_jobs)
        return pd.DataFrame(proba.reshape(len(data), -1), columns=self.arms_, index=_index(X))

    def supported(self, X: pd.DataFrame) -> pd.DataFrame:
        """Offers the logging policy plausibly sent to customers like these (estimated
        probability >= ``min_support``): the only arms whose value the logs can vouch for, so
        a policy choosing elsewhere is extrapolating (and off-policy estimates are biased)."""
        return self.logging_proba(X)[self.offers_] >= self.min_support

    def predict_uplift(self, X: pd.DataFrame) -> pd.DataFrame:
        """Predicted uplift ``p_offer - p_control`` of each offer, ``(n, offers_)``."""
        if self.learner == "t":
            proba = self.predict_arm_proba(X)
            return proba[self.offers_].sub(proba[CONTROL], axis=0)
        data = self.encode(X)
        return pd.DataFrame(
            {k: _predict(self.effect_models_[k], data) for k in self.offers_}, index=_index(X)
        )

    def uplift_and_support(self, X: pd.DataFrame | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`predict_uplift` and :meth:`supported` in one go, as numpy arrays.

        Parameters
        ----------
        X : (n, features) frame, or float64 array already in :meth:`encode` form (the
            service's hot path: no pandas per call).

        Returns
        -------
        uplift : (n, offers_) float, NaN for offers without a model.
        supported : (n, offers_) bool.
        """
        data = self.encode(X)
        if self.learner == "t":
            proba = _columns([self.outcome_models_[a] for a in self.arms_], data)
            uplift = proba[:, 1:] - proba[:, :1]  # arms_ = control, then offers_
        else:
            uplift = _columns([self.effect_models_[k] for k in self.offers_], data)
        logged = self.logging_model_.predict(data, num_threads=self.n_jobs)
        return uplift, logged.reshape(len(data), -1)[:, 1:] >= self.min_support

    def measure_spread(
        self, X: pd.DataFrame, arm: object, y: object, propensity: object | None = None,
        groups: object | None = None,
    ) -> UpliftModel:  # fmt: skip
        """How far the uplift estimates move with the sends they learn from: ``uplift_se_``.

        The model is refitted on two disjoint halves of its training sends (split by
        ``groups``, e.g. the customer, so that one customer's sends stay together; default:
        by row). Each half's estimate has about twice the full model's variance, so the two
        differ by ``4 x se^2`` in mean square: per offer, ``se = sqrt(mean((u1 - u2)^2) / 4)``
        over the sends where the offer is supported (:meth:`supported`) and both halves
        estimate it; NaN when none does (an arm too small in a half; every offer when a half
        cannot be fitted at all). Same ``X``, ``arm``, ``y``, ``propensity`` as :meth:`fit`;
        returns self.
        """
        check_is_fitted(self, "outcome_models_")
        keys = pd.Series(np.arange(len(X)) if groups is None else np.asarray(groups, dtype=object))
        codes, uniques = pd.factorize(keys)
        half = np.random.default_rng(self.random_state).permutation(len(uniques))[codes] % 2 == 0
        p = None if propensity is None else np.asarray(propensity, dtype=float)
        arms, ys = arm_labels(arm), np.asarray(y)
        try:
            with warnings.catch_warnings():  # a small arm in a half: NaN uplift, so NaN se
                warnings.simplefilter("ignore", UserWarning)
                halves = [
                    clone(self).fit(X[m].reset_index(drop=True), arms[m], ys[m],
                                    None if p is None else p[m]).predict_uplift(X)
                    .reindex(columns=self.offers_)
                    for m in (half, ~half)
                ]  # fmt: skip
        except (ValueError, lgb.basic.LightGBMError):  # a half too small to fit at all
            self.uplift_se_ = dict.fromkeys(self.offers_, float("nan"))
            return self
        gap = (halves[0] - halves[1]).to_numpy() ** 2 / 4.0
        gap[~self.supported(X)[self.offers_].to_numpy()] = np.nan
        with warnings.catch_warnings():  # an offer no half estimates: NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            self.uplift_se_ = dict(zip(self.offers_, np.sqrt(np.nanmean(gap, axis=0)).tolist(),
                                       strict=True))  # fmt: skip
        return self

    # ---- fitting --------------------------------------------------------------------

    def _fit_logging(self, data: np.ndarray, arm: np.ndarray) -> lgb.Booster:
        """A multiclass LightGBM of the arm sent given the features (classes in ``arms_``
        order): the logging policy's support. Small and fast: it only has to tell which arms
        customers like this one could get, not rank them finely."""
        target = pd.Index(self.arms_).get_indexer(arm).astype(np.float64)
        params = {**self._params("multiclass"), "num_class": len(self.arms_),
                  "learning_rate": 0.2, "num_leaves": 15, "max_bin": 63}  # fmt: skip
        cats = [i for i, c in enumerate(self.feature_names_in_) if c in self.categories_]
        dataset = lgb.Dataset(data, target, categorical_feature=cats, params={"max_bin": 63})
        return lgb.train(params, dataset, num_boost_round=LOGGING_ROUNDS)

    def _check_fit(self, X, arm, y, propensity) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.learner not in LEARNERS:
            raise ValueError(f"learner must be one of {LEARNERS}; got {self.learner!r}")
        if not isinstance(X, pd.DataFrame):
            raise TypeError(f"X must be a pandas DataFrame; got {type(X).__name__}")
        arm, y = arm_labels(arm), _floats(pd.Series(y, dtype="Float64"))
        if propensity is None and self.learner == "dr":
            raise ValueError("learner='dr' needs the logged propensity of each exposure")
        p = np.ones(len(y)) if propensity is None else np.asarray(propensity, dtype=float)
        if not len(X) == len(arm) == len(y) == len(p):
            raise ValueError(f"X, arm, y, propensity lengths differ: "
                             f"{len(X)}, {len(arm)}, {len(y)}, {len(p)}")  # fmt: skip
        if not np.isin(y, (0.0, 1.0)).all():
            bad = pd.unique(y[~np.isin(y, (0.0, 1.0))])[:5].tolist()
            raise ValueError(f"y must be 0/1 (no missing outcomes); got {bad}")
        if not ((p > 0) & (p <= 1)).all():
            raise ValueError("propensity must be in (0, 1] for every exposure")
        return arm, y, p

    def _warn_small(self) -> None:
        small = {a: n for a, n in self.arm_counts_.items() if n < self.min_arm_size}
        if small:
            warnings.warn(
                f"arms with fewer than min_arm_size={self.min_arm_size} exposures get no "
                f"model (uplift NaN): {small}",
                UserWarning,
                stacklevel=3,
            )

    def _params(self, objective: str) -> dict:
        return {
            "objective": objective,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_child_samples,
            "seed": self.random_state,
            "deterministic": True,
            "force_col_wise": True,
            "num_threads": self.n_jobs,
            "verbosity": -1,
        }

    def _train(self, data: np.ndarray, target: np.ndarray, objective: str) -> lgb.Booster:
        cats = [i for i, c in enumerate(self.feature_names_in_) if c in self.categories_]
        dataset = lgb.Dataset(data, target, categorical_feature=cats, free_raw_data=True)
        return lgb.train(self._params(objective), dataset, num_boost_round=self.n_estimators)

    def _fit_outcomes(self, data: np.ndarray, arm: np.ndarray, y: np.ndarray) -> dict:
        """One binary model per arm with enough exposures (else None)."""
        return {
            a: self._train(data[arm == a], y[arm == a], "binary")
            if self.arm_counts_[a] >= self.min_arm_size
            else None
            for a in self.arms_
        }

    def _cross_fitted(self, data: np.ndarray, arm: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Out-of-fold outcome predictions ``(n, arms_)`` (NaN where an arm has no model)."""
        m = np.full((len(y), len(self.arms_)), np.nan)
        folds = KFold(self.n_folds, shuffle=True, random_state=self.random_state)
        for train, test in folds.split(data):
            models = {a: self._fold_model(data[train], arm[train], y[train], a) for a in self.arms_}
            m[test] = np.column_stack([_predict(models[a], data[test]) for a in self.arms_])
        return m

    def _fold_model(self, data, arm, y, a) -> lgb.Booster | None:
        enough = self.arm_counts_[a] >= self.min_arm_size and (arm == a).sum() > 0
        return self._train(data[arm == a], y[arm == a], "binary") if enough else None

    def _fit_effects(self, data, arm, y, p, m) -> dict:
        """Regress each offer's DR pseudo-outcome on X (None when it cannot be formed)."""
        out = {}
        for j, k in enumerate(self.offers_, start=1):
            phi = dr_pseudo_outcome(y, arm == k, arm == CONTROL, p, m[:, j], m[:, 0])
            out[k] = None if np.isnan(phi).all() else self._train(data, phi, "regression")
        return out

    # ---- features -------------------------------------------------------------------

    def encode(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """The float matrix the boosters see: from a frame (training columns by name,
        categoricals as training codes) or a float64 array already in that form (the
        service's hot path, one column per ``feature_names_in_``)."""
        if isinstance(X, pd.DataFrame):
            return self._matrix(self._aligned(X))
        check_is_fitted(self, "outcome_models_")
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X must have shape (n, {self.n_features_in_}); got {X.shape}")
        return X

    def _aligned(self, X: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self, "outcome_models_")
        missing = [c for c in self.feature_names_in_ if c not in X.columns]
        if missing:
            raise ValueError(f"X lacks the training column(s) {missing[:5]}")
        return X[list(self.feature_names_in_)]

    def _matrix(self, X: pd.DataFrame) -> np.ndarray:
        """float64 matrix; categoricals as codes of the training categories (unseen -> NaN)."""
        cols = [
            category_codes(X[c], self.categories_[c]) if c in self.categories_ else _floats(X[c])
            for c in X.columns
        ]
        return np.column_stack(cols) if cols else np.empty((len(X), 0))


def arm_order(arm: np.ndarray) -> list[str]:
    """ "control" first, then the offers in sorted order."""
    return [CONTROL, *sorted(set(arm.tolist()) - {CONTROL})]


def arm_labels(arm: object) -> np.ndarray:
    """Arm per exposure as an object array of str; missing (NA offer_id) -> "control"."""
    s = pd.Series(arm, dtype="object")
    return s.where(s.notna(), CONTROL).astype(str).to_numpy(dtype=object)


def dr_pseudo_outcome(y, sent_k, sent_control, p, m_k, m_0) -> np.ndarray:
    """Doubly robust pseudo-outcome of offer k's effect per exposure (see module docstring)."""
    return m_k - m_0 + sent_k * (y - m_k) / p - sent_control * (y - m_0) / p  # NaN m -> NaN


def _index(X: pd.DataFrame | np.ndarray) -> pd.Index:
    return X.index if isinstance(X, pd.DataFrame) else pd.RangeIndex(len(X))


def _floats(s: pd.Series) -> np.ndarray:
    if not pd.api.types.is_numeric_dtype(s.dtype):
        raise TypeError(f"column {s.name!r} has dtype {s.dtype}; uplift model inputs must be "
                        "numeric, bool, category or str (drop ids and dates)")  # fmt: skip
    return s.to_numpy(dtype="float64", na_value=np.nan)


def _columns(models: list, data: np.ndarray) -> np.ndarray:
    """``(n, models)``: each model's predictions (NaN for None) as a column."""
    return (
        np.column_stack([_predict(m, data) for m in models]) if models else np.empty((len(data), 0))
    )


def _predict(model: lgb.Booster | None, data: np.ndarray) -> np.ndarray:
    return np.full(len(data), np.nan) if model is None else model.predict(data)
