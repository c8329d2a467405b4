"""MLflow registry on a real SQLite backend: log, register as challenger, promote on merit."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from training import registry


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    """One SQLite store for the module (creating its schema takes seconds); tests use their
    own model names."""
    tmp_path = tmp_path_factory.mktemp("mlflow")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
        registry.setup("test-experiment")
        yield tmp_path
    mlflow.set_tracking_uri(None)


def data(seed: int, n: int = 400):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"recency_days": rng.exponential(30, n), "purchases_90d": rng.poisson(2, n)})
    y = (rng.random(n) < 1 / (1 + np.exp(-(X["recency_days"] / 30 - 1.5)))).astype(int)
    return X, y


def fit(C: float, features: list[str]):
    X, y = data(0)
    return LogisticRegression(C=C).fit(X[features], y), features


def test_setup_uses_the_env_uri_and_an_artifact_folder(tracking):
    assert mlflow.get_tracking_uri().startswith("sqlite:///")
    experiment = mlflow.get_experiment_by_name("test-experiment")
    assert experiment.artifact_location.endswith("mlartifacts")


def test_register_promote_and_keep_the_better_champion(tracking):
    X_hold, y_hold = data(1)

    def auc(estimator):
        return roc_auc_score(y_hold, estimator.predict_proba(X_hold[estimator.features_])[:, 1])

    def register(model, features):
        model.features_ = features
        with mlflow.start_run():
            return registry.log_estimator(model, "churn", "churn", X_hold[features], "churn_test")

    good = register(*fit(1.0, ["recency_days", "purchases_90d"]))
    assert good.version == "1"
    first = registry.promote("churn_test", "roc_auc", auc)
    assert first.promoted and first.champion is None and "-> champion" in first.summary()

    register(*fit(1.0, ["purchases_90d"]))  # uninformative feature only: worse
    second = registry.promote("churn_test", "roc_auc", auc)
    assert not second.promoted and second.challenger < second.champion
    champion, version = registry.load_alias("churn_test", "champion")
    assert str(version.version) == "1"
    expected = fit(1.0, ["recency_days", "purchases_90d"])[0].predict_proba(X_hold)[:, 1]
    assert np.allclose(champion.predict_proba(X_hold)[:, 1], expected)


def test_pyfunc_answers_with_named_columns(tracking):
    model, features = fit(1.0, ["recency_days", "purchases_90d"])
    X, _ = data(2, 10)
    with mlflow.start_run():
        registry.log_estimator(model, "churn", "churn", X, "churn_pyfunc")
    loaded = mlflow.pyfunc.load_model("models:/churn_pyfunc@challenger")
    out = loaded.predict(X.astype("float64"))  # the signature says double (features may be NaN)
    assert list(out.columns) == ["churn_probability"] and len(out) == 10


def test_promote_without_a_challenger_says_what_to_run(tracking):
    with pytest.raises(LookupError, match="lifecycle train"):
        registry.promote("nothing_here", "roc_auc", lambda e: 0.5)
