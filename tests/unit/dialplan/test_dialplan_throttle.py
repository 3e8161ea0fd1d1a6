"""PinThrottle with fake time: window, block, keys, successes, bounded memory."""

from __future__ import annotations

import logging

import pytest

from dialplan.throttle import PinThrottle


def fail(t: PinThrottle, n: int, caller: str | None, address: str | None, start: float,
         step: float = 1.0) -> float:  # fmt: skip
    now = start
    for _ in range(n):
        t.record_failure(caller, address, now)
        now += step
    return now


def test_blocks_after_n_failures_within_window() -> None:
    t = PinThrottle(failures=3, window=60.0, block=100.0)
    assert not t.record_failure("+4930111", "192.0.2.1", 0.0)
    assert not t.record_failure("+4930111", "192.0.2.1", 10.0)
    assert not t.is_blocked("+4930111", "192.0.2.1", 10.0)
    assert t.record_failure("+4930111", "192.0.2.1", 20.0)
    assert t.is_blocked("+4930111", "192.0.2.1", 20.0)
    assert t.is_blocked("+4930111", "192.0.2.1", 119.9)
    assert not t.is_blocked("+4930111", "192.0.2.1", 120.0)


def test_failures_outside_the_window_do_not_count() -> None:
    t = PinThrottle(failures=3, window=60.0, block=100.0)
    fail(t, 10, "+4930111", "192.0.2.1", 0.0, step=30.0)  # never 3 within 60 s
    assert not t.is_blocked("+4930111", "192.0.2.1", 300.0)


def test_defaults_are_10_in_600s_for_900s() -> None:
    t = PinThrottle()
    now = fail(t, 9, "c", "a", 0.0, step=60.0)  # 9 failures over 480 s
    assert not t.is_blocked("c", "a", now)
    t.record_failure("c", "a", 599.0)  # the tenth, 599 s after the first
    assert t.is_blocked("c", "a", 599.0)
    assert t.is_blocked("c", "a", 599.0 + 899.0)
    assert not t.is_blocked("c", "a", 599.0 + 900.0)


def test_keyed_separately_by_caller_and_by_address() -> None:
    t = PinThrottle(failures=3, window=60.0, block=100.0)
    t.record_failure("+111", "192.0.2.1", 0.0)
    t.record_failure("+222", "192.0.2.1", 1.0)
    t.record_failure("+333", "192.0.2.1", 2.0)  # three numbers, one address
    assert t.is_blocked("+444", "192.0.2.1", 3.0)  # the address is blocked
    assert not t.is_blocked("+111", "198.51.100.7", 3.0)  # the numbers are not

    t2 = PinThrottle(failures=3, window=60.0, block=100.0)
    fail(t2, 3, "+111", None, 0.0)  # one number from changing addresses
    for i in range(3):
        t2.record_failure("+111", f"203.0.113.{i}", 10.0 + i)
    assert t2.is_blocked("+111", "198.51.100.7", 20.0)
    assert not t2.is_blocked("+999", "203.0.113.0", 20.0)


def test_success_does_not_reset_the_count() -> None:
    t = PinThrottle(failures=3, window=60.0, block=100.0)
    fail(t, 2, "c", "a", 0.0)
    t.record_success("c", "a", 5.0)
    t.record_failure("c", "a", 6.0)
    assert t.is_blocked("c", "a", 6.0)


def test_anonymous_callers_are_counted_by_address_only() -> None:
    t = PinThrottle(failures=2, window=60.0, block=100.0)
    fail(t, 2, "anonymous", "192.0.2.1", 0.0)
    assert t.is_blocked("anonymous", "192.0.2.1", 5.0)
    assert not t.is_blocked("anonymous", "192.0.2.2", 5.0)  # other anonymous callers pass
    assert not t.is_blocked("Anonymous", None, 5.0)


def test_exempt_addresses_are_counted_by_caller_only() -> None:
    t = PinThrottle(failures=2, window=60.0, block=100.0, exempt_addresses=["10.0.0.5"])
    t.record_failure("+111", "10.0.0.5", 0.0)
    t.record_failure("+222", "10.0.0.5", 1.0)
    assert not t.is_blocked("+333", "10.0.0.5", 2.0)  # the carrier's trunk stays open
    t.record_failure("+111", "10.0.0.5", 3.0)
    assert t.is_blocked("+111", "10.0.0.5", 4.0)


def test_block_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    t = PinThrottle(failures=2, window=60.0, block=100.0)
    with caplog.at_level(logging.WARNING, logger="dialplan.throttle"):
        fail(t, 2, "+111", "192.0.2.1", 0.0)
    text = caplog.text
    assert "+111" in text and "192.0.2.1" in text and "100 s" in text


def test_failures_while_blocked_do_not_extend_the_block() -> None:
    t = PinThrottle(failures=2, window=60.0, block=100.0)
    fail(t, 2, "c", "a", 0.0)  # blocked at 1.0 until 101.0
    fail(t, 5, "c", "a", 50.0)
    assert not t.is_blocked("c", "a", 101.0)


def test_memory_is_bounded_and_old_entries_are_evicted() -> None:
    t = PinThrottle(failures=5, window=60.0, block=100.0, max_entries=100)
    for i in range(1000):
        t.record_failure(f"+1{i:06d}", f"10.{i // 256}.{i % 256}.1", float(i) * 0.01)
    assert len(t) <= 200  # two tables of at most 100 each
    # entries age out: after the window a new failure prunes the stale ones
    t.record_failure("+19999999", "192.0.2.99", 1000.0)
    assert len(t) == 2


def test_blocked_entries_survive_eviction_by_a_flood() -> None:
    t = PinThrottle(failures=2, window=600.0, block=900.0, max_entries=10)
    fail(t, 2, None, "192.0.2.1", 0.0)  # blocked
    for i in range(100):  # a flood of single failures from other addresses
        t.record_failure(None, f"198.51.100.{i}", 2.0 + i * 0.01)
    assert len(t) <= 10
    assert t.is_blocked(None, "192.0.2.1", 10.0)


def test_bad_settings() -> None:
    with pytest.raises(ValueError):
        PinThrottle(failures=0)
    with pytest.raises(ValueError):
        PinThrottle(window=0)
