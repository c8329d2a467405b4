"""Cross-fitted reward models for doubly robust off-policy estimates.

A DR estimate's reward model ``q(x, a)`` must not have seen the row it corrects, or its
residuals ``r - q`` shrink towards 0 and the interval with them. Cross-fitting splits the rows
into folds and predicts each fold with a model fitted on the others, so every row gets an
out-of-fold ``q(x, a)`` for every action, and every row is still used.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.model_selection import KFold
from sklearn.utils.validation import check_array

ModelFactory = Callable[[], object]


def default_reward_model(binary: bool) -> object:
    """A small LightGBM model (classifier for 0/1 rewards, else regressor), one thread."""
    import lightgbm as lgb

    params = {"n_estimators": 100, "learning_rate": 0.05, "num_leaves": 7,
              "min_child_samples": 50, "n_jobs": 1, "verbose": -1, "random_state": 0}  # fmt: skip
    return lgb.LGBMClassifier(**params) if binary else lgb.LGBMRegressor(**params)


def cross_fitted_rewards(
    X: object,
    actions: np.ndarray,
    rewards: np.ndarray,
    n_actions: int,
    folds: int = 2,
    make_model: ModelFactory | None = None,
    random_state: int = 0,
    extra: tuple[object, np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Out-of-fold predicted reward ``q(x_i, a)`` of every row and every action.

    The model sees the context columns and a one-hot of the action, and is fitted on the
    logged ``(x_i, a_i) -> r_i`` of the other folds (shuffled ``KFold``) and on the ``extra``
    rows ``(X, actions, rewards)``, which every fold learns from and none is predicted for:
    other logged rows (e.g. older, randomised sends) that teach the model the actions the
    evaluated rows rarely took.

    Parameters
    ----------
    X : (n, d) numeric contexts (NaN allowed if the model takes it).
    actions : (n,) int index of the logged action, in ``0..n_actions-1``.
    rewards : (n,) rewards; 0/1 rewards are modelled as probabilities.
    n_actions : number of action columns of the output.
    folds : number of folds (>= 2).
    make_model : zero-argument factory of an unfitted sklearn-style estimator; default
        :func:`default_reward_model`. With 0/1 rewards and ``predict_proba``, ``q`` is the
        probability of 1, else ``predict``.
    random_state : seed of the fold split.

    Returns
    -------
    (n, n_actions) array ``q``, to pass as ``reward_model`` to
    :func:`training.ope.off_policy_value`.
    """
    x = check_array(X, ensure_all_finite="allow-nan", dtype=np.float64)
    r = np.asarray(rewards, dtype=float)
    a = np.asarray(actions)
    n = len(x)
    _check(a, r, n, n_actions, folds)
    binary = bool(np.isin(r, (0.0, 1.0)).all())
    factory = make_model or (lambda: default_reward_model(binary))
    q = np.empty((n, n_actions))
    more_x, more_a, more_r = _extra(extra, x.shape[1], n_actions)
    split = KFold(folds, shuffle=True, random_state=random_state).split(x)
    for train, test in split:
        model = factory()
        model.fit(np.vstack([_design(x[train], a[train], n_actions), more_x]),
                  np.concatenate([r[train], more_r]))  # fmt: skip
        for action in range(n_actions):
            chosen = np.full(len(test), action)
            q[test, action] = _predict(model, _design(x[test], chosen, n_actions), binary)
    return q


def _extra(extra, width: int, n_actions: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``extra`` training rows as (design, actions, rewards); empty without them."""
    if extra is None:
        return np.empty((0, width + n_actions)), np.empty(0, np.intp), np.empty(0)
    x = check_array(extra[0], ensure_all_finite="allow-nan", dtype=np.float64)
    a, r = np.asarray(extra[1]), np.asarray(extra[2], dtype=float)
    _check(a, r, len(x), n_actions, 2)
    if x.shape[1] != width:
        raise ValueError(f"extra rows must have the {width} columns of X; got {x.shape[1]}")
    return _design(x, a, n_actions), a, r


def _design(x: np.ndarray, actions: np.ndarray, n_actions: int) -> np.ndarray:
    """Contexts beside a one-hot of the action."""
    return np.hstack([x, np.eye(n_actions)[actions]])


def _predict(model, design: np.ndarray, binary: bool) -> np.ndarray:
    if not (binary and hasattr(model, "predict_proba")):
        return np.asarray(model.predict(design), dtype=float)
    classes = list(model.classes_)
    if 1.0 not in classes:  # a training fold with only 0s
        return np.zeros(len(design))
    return model.predict_proba(design)[:, classes.index(1.0)]


def _check(a: np.ndarray, r: np.ndarray, n: int, n_actions: int, folds: int) -> None:
    if r.shape != (n,) or not np.isfinite(r).all():
        raise ValueError(f"rewards must be {n} finite numbers (one per row of X); got {r.shape}")
    if a.shape != (n,) or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"actions must be {n} integer indices; got {a.dtype} {a.shape}")
    if ((a < 0) | (a >= n_actions)).any():
        raise ValueError(
            f"actions must index the {n_actions} action columns; "
            f"got {sorted(set(a[(a < 0) | (a >= n_actions)].tolist()))[:5]}"
        )
    if not 2 <= folds <= n:
        raise ValueError(f"folds must be between 2 and the {n} rows; got {folds}")
