"""The feedback ledger's backends for tests: ``ledger_location`` runs a test once on a SQLite
file and once on a fresh PostgreSQL database (``tests/services.py``), so that the backends'
behaviour cannot drift (DESIGN section 9). Import the fixture into a test module."""

from __future__ import annotations

import pytest

BACKENDS = ("sqlite", "postgres")


@pytest.fixture(params=BACKENDS)
def ledger_location(request, tmp_path) -> str:
    """Where a new, empty ledger lives: a SQLite file path or a ``postgresql://`` URL."""
    if request.param == "sqlite":
        return str(tmp_path / "ledger.sqlite")
    return request.getfixturevalue("postgres_db_url")
