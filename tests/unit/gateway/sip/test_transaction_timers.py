"""Timer values (RFC 3261 Table 4, RFC 6026), the timer heap and the 2xx retransmit schedule."""

from __future__ import annotations

import pytest

from gateway.sip.timers import RetransmitSchedule, TimerHeap, TimerSettings


def test_table_4_values() -> None:
    t = TimerSettings()
    assert (t.t1, t.t2, t.t4) == (0.5, 4.0, 5.0)
    assert (t.timer_a, t.timer_b, t.timer_d) == (0.5, 32.0, 32.0)
    assert (t.timer_e, t.timer_f, t.timer_g, t.timer_h) == (0.5, 32.0, 0.5, 32.0)
    assert (t.timer_i, t.timer_j, t.timer_k) == (5.0, 32.0, 5.0)
    assert (t.timer_l, t.timer_m) == (32.0, 32.0)
    fast = TimerSettings(t1=0.1)
    assert (fast.timer_b, fast.timer_f, fast.timer_d) == (pytest.approx(6.4),) * 2 + (32.0,)


def test_heap_orders_rearms_and_cancels() -> None:
    heap: TimerHeap[str] = TimerHeap()
    heap.schedule("b", 2.0)
    heap.schedule("a", 1.0)
    heap.schedule("c", 3.0)
    heap.schedule("a", 2.5)  # re-armed later: the 1.0 entry is stale
    heap.cancel("c")
    assert heap.next_deadline() == 2.0
    assert heap.pop_due(1.5) is None
    assert [heap.pop_due(10.0), heap.pop_due(10.0), heap.pop_due(10.0)] == ["b", "a", None]
    assert len(heap) == 0 and heap.next_deadline() is None


def test_heap_compacts_stale_entries() -> None:
    heap: TimerHeap[int] = TimerHeap()
    for i in range(100_000):
        heap.schedule(i % 10, 1000.0 + i)  # ten keys, re-armed over and over
    assert len(heap) == 10
    assert heap.entries <= 3 * 10 + 64
    for i in range(50_000):
        heap.schedule(-1, float(i))
        heap.cancel(-1)
    assert heap.entries <= 3 * 10 + 64


def test_2xx_retransmit_schedule() -> None:
    schedule = RetransmitSchedule(TimerSettings(), now=10.0)
    times = []
    while schedule.fired(schedule.next_at) and len(times) < 100:
        times.append(schedule.next_at)
    assert times[:6] == [11.5, 13.5, 17.5, 21.5, 25.5, 29.5]  # T1 doubling, capped at T2
    assert times[-1] == 42.0 and schedule.deadline == 42.0
