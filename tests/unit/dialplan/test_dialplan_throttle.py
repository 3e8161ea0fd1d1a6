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
    with pytest.raises(ValueError):
        PinThrottle(max_concurrent_per_source=0)
    with pytest.raises(ValueError):
        PinThrottle(checks_per_second=0)
    with pytest.raises(ValueError):
        PinThrottle(checks_burst=0)


# --- calls in PIN entry are counted ----------------------------------------------------------


def guess_in_parallel(t: PinThrottle, calls: int, attempts: int, address: str,
                      now: float = 0.0) -> tuple[int, int]:
    """`calls` calls from one address arrive at once, then each keys `attempts` wrong PINs in
    turn (all calls interleaved); returns (calls admitted, PIN lookups made)."""
    admitted = [f"c{i}" for i in range(calls)
                if t.admit(f"c{i}", f"+1555{i:04d}", address, now) == "admitted"]
    checks = 0
    for _ in range(attempts):
        for call_id in admitted:
            now += 0.001
            if t.request_check(call_id, now) == "check":
                checks += 1
                t.call_failed(call_id, now)
    for call_id in admitted:
        t.finish(call_id)
    return len(admitted), checks


def test_parallel_calls_from_one_address_cannot_multiply_the_guesses() -> None:
    """The attack of issue 13: 400 calls at once from one address, 3 wrong PINs each. Without
    counting calls in PIN entry this made 1,200 lookups; now at most `failures`."""
    t = PinThrottle(failures=10, window=600.0, block=900.0, max_concurrent_per_source=5,
                    checks_per_second=1e6, checks_burst=1_000_000)
    admitted, checks = guess_in_parallel(t, 400, 3, "192.0.2.66")
    assert admitted == 5
    assert checks <= 10
    assert t.is_blocked(None, "192.0.2.66", 1.0)
    assert t.admit("late", "+19990000", "192.0.2.66", 1.0) == "blocked"
    assert t.in_entry() == 0  # every admitted call was finished


def test_failures_plus_calls_in_entry_reach_the_limit() -> None:
    t = PinThrottle(failures=4, window=60.0, block=100.0, max_concurrent_per_source=10)
    fail(t, 2, None, "192.0.2.1", 0.0)  # 2 failures in the window
    assert t.admit("a", None, "192.0.2.1", 5.0) == "admitted"
    assert t.admit("b", None, "192.0.2.1", 5.0) == "admitted"
    assert t.admit("c", None, "192.0.2.1", 5.0) == "busy"  # 2 failures + 2 in entry = 4
    assert t.in_entry(address="192.0.2.1") == 2
    t.finish("a")
    assert t.admit("c", None, "192.0.2.1", 6.0) == "admitted"
    assert t.admit("d", None, "192.0.2.2", 6.0) == "admitted"  # another address: its own count
    # the failures age out of the window, and the calls in entry are what is left
    for call_id in ("b", "c", "d"):
        t.finish(call_id)
    assert all(t.admit(f"x{i}", None, "192.0.2.1", 70.0) == "admitted" for i in range(4))
    assert t.admit("x5", None, "192.0.2.1", 70.0) == "busy"


def test_the_caller_number_is_counted_too() -> None:
    t = PinThrottle(failures=3, window=60.0, block=100.0, max_concurrent_per_source=10)
    fail(t, 1, "+4930111", None, 0.0)
    assert t.admit("a", "+4930111", "192.0.2.1", 1.0) == "admitted"
    assert t.admit("b", "+4930111", "192.0.2.2", 1.0) == "admitted"
    assert t.admit("c", "+4930111", "192.0.2.3", 1.0) == "busy"  # 1 + 2 from other addresses
    assert t.admit("c", "+4930222", "192.0.2.3", 1.0) == "admitted"
    assert t.in_entry(caller="+4930111") == 2


def test_concurrency_per_address_is_capped() -> None:
    t = PinThrottle(failures=100, window=60.0, block=100.0, max_concurrent_per_source=3)
    results = [t.admit(f"c{i}", f"+1{i}", "192.0.2.1", 0.0) for i in range(5)]
    assert results == ["admitted"] * 3 + ["busy"] * 2
    assert t.in_entry(address="192.0.2.1") == 3
    # a refused call holds nothing: the caller numbers of the refused calls are not counted
    assert t.in_entry(caller="+13") == 0 and t.in_entry(caller="+14") == 0
    t.finish("c0")
    t.finish("c0")  # twice: nothing more happens
    assert t.in_entry(address="192.0.2.1") == 2
    assert t.admit("c5", "+15", "192.0.2.1", 1.0) == "admitted"
    assert t.admit("c5", "+15", "192.0.2.1", 1.0) == "admitted"  # the same call: once
    assert t.in_entry(address="192.0.2.1") == 3


def test_trusted_and_exempt_addresses_are_not_limited_by_address() -> None:
    t = PinThrottle(failures=3, window=60.0, block=100.0, max_concurrent_per_source=2,
                    exempt_addresses=["10.0.0.5"])
    assert all(t.admit(f"e{i}", f"+1{i}", "10.0.0.5", 0.0) == "admitted" for i in range(10))
    assert all(t.admit(f"t{i}", f"+2{i}", "10.9.9.9", 0.0, trusted=True) == "admitted"
               for i in range(10))
    t.record_failure("+20", "10.9.9.9", 1.0, trusted=True)
    t.record_failure("+21", "10.9.9.9", 1.0, trusted=True)
    t.record_failure("+22", "10.9.9.9", 1.0, trusted=True)
    assert not t.is_blocked("+23", "10.9.9.9", 2.0, trusted=True)
    assert not t.is_blocked("+23", "10.9.9.9", 2.0)  # nothing was counted by address
    # ... but the caller numbers still are
    t.record_failure("+20", "10.9.9.9", 1.5, trusted=True)
    assert t.admit("t0b", "+20", "10.9.9.9", 2.0, trusted=True) == "busy"  # 2 + 1 in entry


def test_a_block_stops_the_lookups_of_calls_already_in_entry() -> None:
    t = PinThrottle(failures=3, window=60.0, block=100.0, max_concurrent_per_source=5,
                    checks_per_second=1000.0, checks_burst=1000)
    assert t.admit("a", None, "192.0.2.1", 0.0) == "admitted"
    assert t.admit("b", None, "192.0.2.1", 0.0) == "admitted"
    for now in (1.0, 2.0, 3.0):
        assert t.request_check("a", now) == "check"
        t.call_failed("a", now)
    assert t.request_check("b", 4.0) == "blocked"
    assert t.request_check("a", 4.0) == "blocked"


# --- the global limit on PIN lookups ---------------------------------------------------------


def test_global_rate_holds_across_addresses() -> None:
    """Many sources each within their own limits: the lookups of all of them together
    keep to the global rate (burst, then checks_per_second)."""
    t = PinThrottle(failures=1000, window=60.0, block=100.0, max_concurrent_per_source=5,
                    checks_per_second=20.0, checks_burst=40, max_check_wait=1000.0)
    calls = [f"c{a}-{i}" for a in range(50) for i in range(5)]
    for call_id in calls:
        address = f"10.0.{call_id.split('-')[0][1:]}.1"
        assert t.admit(call_id, None, address, 0.0) == "admitted"
    checks = 0
    now = 0.0
    while now < 10.0:  # every call asks every 20 ms for 10 s
        for call_id in calls:
            if t.request_check(call_id, now) == "check":
                checks += 1
        now += 0.02
    assert 40 + 20 * 9.9 - 2 <= checks <= 40 + 20 * 10.0 + 1, checks


def test_waiting_lookups_are_served_first_come_first_served() -> None:
    t = PinThrottle(checks_per_second=10.0, checks_burst=1, max_check_wait=60.0)
    for call_id, address in (("guess1", "192.0.2.1"), ("guess2", "192.0.2.1"),
                             ("genuine", "198.51.100.7")):
        assert t.admit(call_id, None, address, 0.0) == "admitted"
    assert t.request_check("guess1", 0.0) == "check"  # the burst
    assert t.request_check("guess2", 0.0) == "wait"
    assert t.request_check("genuine", 0.01) == "wait"
    assert t.stats()["pin_checks_waiting"] == 2
    # the token comes back after 0.1 s; the genuine caller asks first but guess2 is ahead
    assert t.request_check("genuine", 0.1) == "wait"
    assert t.request_check("guess2", 0.1) == "check"
    assert t.request_check("guess1", 0.1) == "wait"  # a new lookup joins the end of the line
    assert t.request_check("genuine", 0.15) == "wait"  # no token yet
    assert t.request_check("genuine", 0.2) == "check"
    assert t.request_check("guess1", 0.35) == "check"
    assert t.stats()["pin_checks_waiting"] == 0


def test_a_lookup_that_waits_too_long_is_given_up_and_the_line_moves_on() -> None:
    t = PinThrottle(checks_per_second=1.0, checks_burst=1, max_check_wait=5.0)
    for call_id in ("a", "b", "c"):
        t.admit(call_id, None, f"192.0.2.{ord(call_id)}", 0.0)
    assert t.request_check("a", 0.0) == "check"
    assert t.request_check("b", 0.0) == "wait"  # b never asks again (its caller is slow)
    assert t.request_check("c", 0.5) == "wait"
    assert t.request_check("c", 1.5) == "wait"  # b is ahead
    assert t.request_check("c", 5.2) == "check"  # b waited 5 s: it left the line
    assert t.request_check("b", 5.3) == "busy"
    t.finish("b")
    assert t.request_check("a", 6.5) == "check"


def test_finished_calls_leave_the_line() -> None:
    t = PinThrottle(checks_per_second=1.0, checks_burst=1)
    for call_id in ("a", "b", "c"):
        t.admit(call_id, None, f"192.0.2.{ord(call_id)}", 0.0)
    assert t.request_check("a", 0.0) == "check"
    assert t.request_check("b", 0.0) == "wait"
    assert t.request_check("c", 0.0) == "wait"
    t.finish("b")  # hung up while waiting
    assert t.request_check("c", 1.0) == "check"
    assert t.stats() == {"pin_throttle_entries": 0, "pin_entry_calls": 2,
                         "pin_checks_waiting": 0}
