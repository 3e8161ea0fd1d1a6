"""tests/unit/dialplan/test_dialplan_routing.py's store tests, on PostgreSQL."""

from __future__ import annotations

import pytest
from unit_reuse import borrow

globals().update(borrow("test_dialplan_routing.py"))


@pytest.fixture
def store_target(postgres_url: str) -> str:
    return postgres_url
