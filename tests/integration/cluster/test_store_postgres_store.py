"""tests/unit/dialplan/test_dialplan_store.py's store tests, on PostgreSQL."""

from __future__ import annotations

import pytest
from unit_reuse import borrow

globals().update(borrow("test_dialplan_store.py"))


@pytest.fixture
def store_target(postgres_url: str) -> str:
    return postgres_url


def test_the_borrowed_tests_run_on_postgresql(store: object) -> None:
    assert getattr(store, "backend", None) == "postgresql"
