"""Shared LightGBM plumbing: model inputs, categorical encoding, booster params and training.

Both LightGBM models turn their input frame into one float array in training column order:
numeric columns as floats, categorical (``category``/``str``/``object``) columns as the codes
of the categories seen in training, unseen or missing values as NaN (DESIGN s. 11,
"Categoricals"). The same array goes to ``lightgbm.train`` and to ``Booster.predict``, so the
serving hot path is one ``encode`` (or a precomputed array) and one native prediction.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array

SMALL = 64  # rows: below this, per-row Python beats pandas' fixed costs
# columns of ``training.datasets.build_training_set`` that are keys, labels or bookkeeping
NON_FEATURES = ("as_of", "customer_id", "in_churn_population", "churned", "stage_next", "snapshot")


def feature_columns(frame: pd.DataFrame, exclude: Sequence[str] = NON_FEATURES) -> list[str]:
    """The model input columns of a training set: registered features, static attributes and
    the current ``stage``; keys (``customer_id``, ``as_of``) and labels are left out."""
    return [c for c in frame.columns if c not in exclude]


def as_frame(X) -> tuple[pd.DataFrame, bool]:
    """``X`` as a frame with str column names, and whether it came with its own names.

    A non-frame input must be numeric (NaN allowed); its columns are named ``x0, x1, ...``.
    """
    if isinstance(X, pd.DataFrame):
        return str_columns(X), True
    array = check_array(X, ensure_all_finite="allow-nan", dtype=np.float64)
    return pd.DataFrame(array, columns=[f"x{i}" for i in range(array.shape[1])]), False


def str_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its column labels as str (unchanged if they already are)."""
    if all(isinstance(c, str) for c in frame.columns):
        return frame
    return frame.rename(columns=str)


def is_categorical(column: pd.Series) -> bool:
    """Whether a column is encoded as categories (pandas ``category``, ``str`` or ``object``)."""
    dtype = column.dtype
    return isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype)


def learn_categories(frame: pd.DataFrame) -> dict[str, list]:
    """Training categories of every categorical column: a ``category`` column's own
    categories, else the sorted distinct non-missing values."""
    out = {}
    for name in frame.columns:
        column = frame[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            out[name] = list(column.cat.categories)
        elif is_categorical(column):
            out[name] = sorted(column.dropna().unique().tolist(), key=str)
    _reject_unsupported(frame, out)
    return out


def _reject_unsupported(frame: pd.DataFrame, categories: dict[str, list]) -> None:
    for name in frame.columns:
        dtype = frame[name].dtype
        numeric = pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)
        if name not in categories and not numeric:
            raise TypeError(
                f"column {name!r} has dtype {dtype}; model inputs must be numeric, bool, "
                f"category or str (drop keys and dates, e.g. with feature_columns)"
            )


def encode(frame: pd.DataFrame, columns: Sequence[str], categories: dict[str, list]) -> np.ndarray:
    """Float64 array of ``frame[columns]``: categoricals as training codes, unseen -> NaN.

    Raises ``ValueError`` naming the columns that are missing from ``frame``; extra columns
    are ignored and column order is free.
    """
    check_columns(frame, columns)
    out = np.empty((len(frame), len(columns)), dtype=np.float64)
    numeric = [i for i, c in enumerate(columns) if c not in categories]
    if numeric:
        out[:, numeric] = _numeric_block(frame, [columns[i] for i in numeric])
    for i, name in enumerate(columns):
        if name in categories:
            out[:, i] = category_codes(frame[name], categories[name])
    return out


def check_columns(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    """Raise ``ValueError`` naming the ``columns`` that ``frame`` lacks."""
    present = set(frame.columns)
    missing = [c for c in columns if c not in present]
    if missing:
        raise ValueError(
            f"X is missing {len(missing)} model input column(s): {missing[:10]}; "
            f"the model was trained on {len(columns)} columns"
        )


def select_columns(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``frame[columns]``; ``ValueError`` naming the missing columns if any are absent."""
    check_columns(frame, columns)
    return frame[list(columns)]


def _numeric_block(frame: pd.DataFrame, names: list[str]) -> np.ndarray:
    try:
        return frame[names].to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        bad = [c for c in names if not pd.api.types.is_numeric_dtype(frame[c].dtype)]
        raise ValueError(
            f"numeric model input column(s) {bad[:10]} hold non-numeric values"
        ) from None


def category_codes(column: pd.Series, categories: list) -> np.ndarray:
    """Positions of ``column``'s values in ``categories`` as floats; unseen/missing -> NaN.

    A dict lookup for a few rows (serving), pandas' hash join for many.
    """
    values = column.to_numpy(dtype=object)
    if len(values) <= SMALL:
        lookup = {value: float(i) for i, value in enumerate(categories)}
        return np.array([lookup.get(v, np.nan) for v in values], dtype=np.float64)
    codes = pd.Index(categories).get_indexer(values).astype(np.float64)
    codes[codes < 0] = np.nan
    return codes


def holdout_mask(n: int, time, fraction: float) -> np.ndarray:
    """Boolean mask of the later fold: the latest whole ``time`` values holding about
    ``fraction`` of the rows (at least one value, leaving at least one to train on), or,
    without ``time``, the last ``fraction`` of the rows in order."""
    if time is None:
        n_hold = min(max(int(round(n * fraction)), 1), n - 1)
        if n_hold < 1:
            raise ValueError(f"cannot hold out a later fold from {n} row(s)")
        return np.arange(n) >= n - n_hold
    codes, values = pd.Index(time).factorize(sort=True)
    if len(codes) != n:
        raise ValueError(f"time has {len(codes)} values but X has {n} rows")
    if (codes < 0).any() or len(values) < 2:
        raise ValueError("time must be set on every row and hold at least two distinct values")
    tail = np.cumsum(np.bincount(codes)[::-1])[:-1] / n  # held out with the latest 1, 2, ...
    k = int(np.argmin(np.abs(tail - fraction))) + 1
    return codes >= len(values) - k


def booster_params(est, objective: str, **extra) -> dict:
    """Native LightGBM params from an estimator's sklearn-style params (deterministic)."""
    seed = est.random_state
    if not isinstance(seed, int | np.integer):
        seed = int(check_random_state(seed).randint(np.iinfo(np.int32).max))
    return {
        "objective": objective, "learning_rate": est.learning_rate,
        "num_leaves": est.num_leaves, "min_data_in_leaf": est.min_child_samples,
        "bagging_fraction": est.subsample, "bagging_freq": int(est.subsample < 1.0),
        "feature_fraction": est.colsample_bytree, "lambda_l2": est.reg_lambda,
        "seed": int(seed), "deterministic": True, "force_col_wise": True,
        "num_threads": est.n_jobs, "verbosity": -1, **extra,
    }  # fmt: skip


def train_booster(
    params: dict, data: np.ndarray, label: np.ndarray, rounds: int, *, names: list[str],
    categorical: list[int], valid: tuple[np.ndarray, np.ndarray] | None = None,
    early_stopping_rounds: int | None = None,
    init_score: tuple[np.ndarray, np.ndarray | None] | None = None,
) -> lgb.Booster:  # fmt: skip
    """``lightgbm.train`` on arrays; with ``valid`` and ``early_stopping_rounds``, stops on
    the valid fold; ``init_score``: the raw scores the trees start from (train, valid).
    Returns a standalone booster holding only the trees it uses."""
    start, valid_start = init_score if init_score is not None else (None, None)
    train = lgb.Dataset(data, label, feature_name=names, categorical_feature=categorical,
                        init_score=start, params={"verbosity": -1})  # fmt: skip
    valid_sets, callbacks = [], []
    if valid is not None and early_stopping_rounds:
        valid_sets = [lgb.Dataset(*valid, reference=train, init_score=valid_start)]
        callbacks = [lgb.early_stopping(early_stopping_rounds, verbose=False)]
    booster = lgb.train(params, train, rounds, valid_sets=valid_sets, callbacks=callbacks)
    return lgb.Booster(model_str=booster.model_to_string())


def contribution_columns(names: Sequence[str]) -> list[str]:
    """Column names of ``pred_contrib`` output for one class: the features, then ``bias``."""
    return [*names, "bias"]


def keep_top_columns(contrib: pd.DataFrame, top: int | None) -> pd.DataFrame:
    """The ``top`` feature columns by mean absolute contribution (plus ``bias``), or all.

    Feature names are the last level of the columns (a class level may precede them).
    """
    if top is None:
        return contrib
    features = contrib.columns.get_level_values(-1)
    strength = contrib.abs().mean().groupby(features.to_numpy()).mean().drop("bias")
    keep = [*strength.nlargest(top).index, "bias"]
    return contrib.loc[:, features.isin(keep)]


class LGBMInputsMixin:
    """Input handling shared by the LightGBM estimators.

    Sets ``n_features_in_``, ``feature_names_in_`` (frames only) and ``categories_`` in fit;
    ``encode`` gives the float array the booster sees. Expects ``booster_`` after fit.
    """

    def _fit_array(self, X) -> tuple[np.ndarray, list[str], list[int]]:
        frame, named = as_frame(X)
        if frame.shape[1] == 0:
            raise ValueError("X has 0 feature(s); at least one is required")
        self.n_features_in_ = frame.shape[1]
        if named:
            self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self.categories_ = learn_categories(frame)
        names = list(frame.columns)
        categorical = [i for i, c in enumerate(names) if c in self.categories_]
        return encode(frame, names, self.categories_), names, categorical

    def _input_names(self) -> list[str]:
        if hasattr(self, "feature_names_in_"):
            return list(self.feature_names_in_)
        return [f"x{i}" for i in range(self.n_features_in_)]

    def encode(self, X) -> np.ndarray:
        """The float array the booster sees, from a frame (columns by name, extra columns
        ignored, categories re-applied) or an array already in that form (the hot path)."""
        if isinstance(X, pd.DataFrame) and hasattr(self, "feature_names_in_"):
            return encode(str_columns(X), self._input_names(), self.categories_)
        if isinstance(X, pd.DataFrame):
            X = X.to_numpy()
        if not (isinstance(X, np.ndarray) and X.dtype == np.float64 and X.ndim == 2):
            X = check_array(X, ensure_all_finite="allow-nan", dtype=np.float64)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input"
            )
        return X

    def feature_importance(self) -> pd.Series:
        """Total gain of each input column's splits, largest first."""
        gain = self.booster_.feature_importance(importance_type="gain")
        series = pd.Series(gain, index=self._input_names(), name="gain")
        return series.sort_values(ascending=False)

    def _contrib_array(self, X) -> tuple[np.ndarray, pd.Index | None]:
        index = X.index if isinstance(X, pd.DataFrame) else None
        array = self.booster_.predict(self.encode(X), pred_contrib=True, num_threads=self.n_jobs)
        return array, index
