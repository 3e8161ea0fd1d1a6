"""`store_target`: where the tests' `store` fixtures open their Store. Here a SQLite file;
tests/integration/cluster/test_store_postgres_*.py run the same tests with a PostgreSQL URL."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def store_target(tmp_path: Path) -> str:
    return str(tmp_path / "data" / "switchboard.db")
