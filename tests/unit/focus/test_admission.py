"""focus/admission.py without sockets: joins, rooms and endpoints per source, with a fake clock."""

from __future__ import annotations

import pytest

from focus.admission import JoinAdmission
from focus.session import CLOSE_TRY_LATER, JoinRefused


def refused(call: object, *args: object) -> str | None:
    try:
        call(*args)  # type: ignore[operator]
    except JoinRefused as exc:
        assert exc.close_code == CLOSE_TRY_LATER
        return exc.code
    return None


def test_joins_come_in_bursts_then_at_the_rate() -> None:
    admission = JoinAdmission(joins_per_minute=30, rooms_per_hour=20, max_endpoints=20)
    assert [refused(admission.check_join, "192.0.2.1", 0.0) for _ in range(31)] == \
        [None] * 30 + ["too-many-joins"]  # fmt: skip
    assert refused(admission.check_join, "192.0.2.2", 0.0) is None  # per source
    assert refused(admission.check_join, "192.0.2.1", 2.0) is None  # one every two seconds
    assert refused(admission.check_join, "192.0.2.1", 2.5) == "too-many-joins"


def test_rooms_an_hour() -> None:
    admission = JoinAdmission(joins_per_minute=30, rooms_per_hour=20, max_endpoints=20)
    assert [refused(admission.check_room_creation, "192.0.2.1", 0.0) for _ in range(21)] == \
        [None] * 20 + ["too-many-rooms"]  # fmt: skip
    assert refused(admission.check_room_creation, "192.0.2.1", 179.0) == "too-many-rooms"
    assert refused(admission.check_room_creation, "192.0.2.1", 181.0) is None  # 3 min a room


@pytest.mark.parametrize("cap", [1, 3])
def test_endpoints_are_counted_until_released(cap: int) -> None:
    admission = JoinAdmission(joins_per_minute=30, rooms_per_hour=20, max_endpoints=cap)
    for _ in range(cap):
        admission.acquire_endpoint("192.0.2.1")
    assert refused(admission.acquire_endpoint, "192.0.2.1") == "too-many-endpoints"
    assert refused(admission.acquire_endpoint, "192.0.2.2") is None
    admission.release_endpoint("192.0.2.1")
    assert admission.endpoints("192.0.2.1") == cap - 1
    assert refused(admission.acquire_endpoint, "192.0.2.1") is None
