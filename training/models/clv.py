"""Customer lifetime value estimators: one interface (``fit(X, y, time)``, ``predict(X)``).

- :class:`ProbabilisticCLV`: BG/NBD purchases x Gamma-Gamma spend, fitted **without labels**
  by the feature builder at every as-of (``btyd_clv_<H>d``; parameters recorded with the
  project config). It needs no history of outcomes, so it works on short histories.
- :class:`CLVModel`: LightGBM on the realised discounted margin of earlier snapshots
  (``features.labels.future_margin``), with the probabilistic outputs among its inputs.

Both predict the discounted expected margin over the CLV horizon in the data's currency.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, column_or_1d

from training.models._lgbm import LGBMInputsMixin, booster_params, holdout_mask, train_booster


class ProbabilisticCLV(RegressorMixin, BaseEstimator):
    """The buy-till-you-die CLV column of the feature vectors as an estimator.

    ``column``: ``btyd_clv_<H>d``. ``fit`` only checks the column is there (the models behind
    it are fitted without labels when the features are built); ``predict`` returns it, 0 for
    customers who never bought (NaN in the column: the models describe buyers).
    """

    def __init__(self, column: str = "btyd_clv_365d") -> None:
        self.column = column

    def fit(self, X: pd.DataFrame, y=None, time=None) -> ProbabilisticCLV:
        self._values(X)
        self.n_features_in_ = 1
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "n_features_in_")
        return self._values(X)

    def _values(self, X: pd.DataFrame) -> np.ndarray:
        if not isinstance(X, pd.DataFrame) or self.column not in X.columns:
            raise ValueError(
                f"ProbabilisticCLV reads the feature column {self.column!r}, which X lacks: "
                "turn on the buy-till-you-die features (dataset.btyd_features: on)"
            )
        return np.nan_to_num(X[self.column].to_numpy(dtype=np.float64), nan=0.0)


class CLVModel(LGBMInputsMixin, RegressorMixin, BaseEstimator):
    """LightGBM regression of the realised discounted margin over the CLV horizon.

    The default Tweedie objective (``tweedie_variance_power`` 1.5) suits value labels: many
    exact zeros (no purchase) and a long right tail. The rounds are chosen by early stopping
    on the latest snapshots (about ``validation_fraction`` of the rows), then the booster is
    refitted on every row with the rounds scaled to it (as ``ChurnModel(refit=True)``).
    With ``groups`` (the customer of each row), the early-stopping fold is the latest
    snapshots' rows of a random ``validation_fraction`` of the customers and the fold is
    fitted on the other customers' earlier rows only: a customer's snapshots 30 days apart
    share most of their label window, so a fold holding the same customers rewards
    memorising each one's realised future and never stops; the rounds are then scaled to
    the share of customers fitted on. Predictions are >= 0.

    ``base="auto"``: when the inputs hold the probabilistic CLV (``btyd_clv_<H>d``), the trees
    start from it (LightGBM ``init_score`` = its log, the Tweedie link) and learn corrections
    to the textbook model; customers without it (never bought) start from the training
    labels' mean. ``base=None``: the trees start from a constant, as usual.
    """

    def __init__(
        self, n_estimators: int = 600, learning_rate: float = 0.05, num_leaves: int = 31,
        min_child_samples: int = 50, subsample: float = 0.8, colsample_bytree: float = 0.8,
        reg_lambda: float = 1.0, objective: str = "tweedie", tweedie_variance_power: float = 1.5,
        validation_fraction: float = 0.25, early_stopping_rounds: int | None = 50,
        base: str | None = "auto", random_state: int | None = 0, n_jobs: int = 1,
    ) -> None:  # fmt: skip
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.objective = objective
        self.tweedie_variance_power = tweedie_variance_power
        self.validation_fraction = validation_fraction
        self.early_stopping_rounds = early_stopping_rounds
        self.base = base
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X: pd.DataFrame, y, time=None, groups=None) -> CLVModel:
        """Fit on ``X`` (one row per customer snapshot) and realised values ``y`` (>= 0);
        ``time`` (as-of per row) makes the early-stopping fold the latest snapshots;
        ``groups`` (customer per row) keeps that fold's customers out of the rows fitted."""
        target = column_or_1d(y, warn=True).astype(np.float64)
        bad = ~np.isfinite(target) | (target < 0)
        if bad.any():
            raise ValueError(f"y must be finite and >= 0 (realised value); got "
                             f"{target[bad][0]!r} in {int(bad.sum())} row(s)")  # fmt: skip
        data, names, categorical = self._fit_array(X)
        if len(target) != len(data):
            raise ValueError(f"X has {len(data)} rows but y has {len(target)}")
        extra = {"tweedie_variance_power": self.tweedie_variance_power}
        params = booster_params(self, self.objective, **extra)
        self.base_column_ = next((c for c in names if c.startswith("btyd_clv_")), None)
        if self.base not in ("auto", None):
            raise ValueError(f"base must be 'auto' or None; got {self.base!r}")
        if self.base is None:
            self.base_column_ = None
        self.base_fill_ = float(np.log(max(target.mean(), 1e-9)))
        start = self._start(data)
        rounds = self.n_estimators
        if self.early_stopping_rounds:
            fit, hold, share = self._folds(len(data), time, groups, params["seed"])
            fold = train_booster(
                params, data[fit], target[fit], self.n_estimators, names=names,
                categorical=categorical, valid=(data[hold], target[hold]),
                early_stopping_rounds=self.early_stopping_rounds,
                init_score=None if start is None else (start[fit], start[hold]),
            )  # fmt: skip
            rounds = max(1, int(round(fold.num_trees() / share)))
        whole = None if start is None else (start, None)
        self.booster_ = train_booster(params, data, target, rounds, names=names,
                                      categorical=categorical, init_score=whole)  # fmt: skip
        self.n_iter_ = self.booster_.num_trees()
        return self

    def _folds(self, n: int, time, groups, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
        """(fit, valid) row masks of the early-stopping fold and the share of the data it is
        fitted on (rows; customers with ``groups``)."""
        hold = holdout_mask(n, time, self.validation_fraction)
        if groups is None:
            return ~hold, hold, float((~hold).mean())
        codes, uniques = pd.factorize(pd.Series(np.asarray(groups)).astype("str"))
        if len(codes) != n:
            raise ValueError(f"groups has {len(codes)} values but X has {n} rows")
        chosen = np.random.default_rng(seed).random(len(uniques))
        held = (chosen < self.validation_fraction)[codes]
        fit, valid = ~hold & ~held, hold & held
        if not fit.any() or not valid.any():  # too few customers: the time split alone
            return ~hold, hold, float((~hold).mean())
        return fit, valid, 1.0 - float(np.mean(chosen < self.validation_fraction))

    def _start(self, data: np.ndarray) -> np.ndarray | None:
        """The raw (log) scores the trees start from: log of the probabilistic CLV, the
        labels' mean where it is missing or not positive; None without a base column."""
        if self.base_column_ is None:
            return None
        base = data[:, self._input_names().index(self.base_column_)]
        with np.errstate(divide="ignore", invalid="ignore"):
            start = np.log(base)
        return np.where(np.isfinite(start), start, self.base_fill_)

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "booster_")
        data = self.encode(X)
        raw = self.booster_.predict(data, raw_score=True, num_threads=self.n_jobs)
        start = self._start(data)
        return np.exp(raw if start is None else raw + start)
