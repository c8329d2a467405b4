"""Suite-wide hygiene: MLflow's ``set_experiment`` exports ``MLFLOW_EXPERIMENT_ID`` into the
environment, which would point later tests (and the processes they start) at an experiment of
another test's store; each test gets the environment back as it found it."""

from __future__ import annotations

import pytest

# tests.services: redis_url, postgres_url, ... (real servers); tests.ledgers: ledger_location
pytest_plugins = ["tests.services", "tests.ledgers"]


@pytest.fixture(autouse=True)
def _no_leaked_mlflow_run_env(monkeypatch):
    for name in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(name, raising=False)


def pytest_collection_modifyitems(config, items):
    """Slow files first (a stable sort: the order within each group stays). ``make test`` runs
    the files on two workers (pytest-xdist, ``--dist loadfile``); a long file handed out last
    would run alone at the end while the other worker idles."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
