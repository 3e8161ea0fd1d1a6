"""MediaClock: exact behaviour on a fake loop, then a short run on a real asyncio loop."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any, cast

import pytest

from gateway.clock import Continuation, MediaClock


class FakeHandle:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """time() and call_at() only; run_until() fires due handles, waking ``delay`` late."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.handles: list[FakeHandle] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None], *args: Any) -> FakeHandle:
        handle = FakeHandle(when, callback)
        self.handles.append(handle)
        return handle

    def call_soon(self, callback: Callable[[], None], *args: Any) -> FakeHandle:
        return self.call_at(self.now, callback)

    def pending(self) -> list[FakeHandle]:
        return [h for h in self.handles if not h.cancelled]

    def run_until(self, end: float, delay: Callable[[int], float] = lambda k: 0.0) -> None:
        fired = 0
        while True:
            live = self.pending()
            if not live:
                return
            handle = min(live, key=lambda h: h.when)
            wake = handle.when + delay(fired)
            if wake > end:
                self.now = end
                return
            self.now = max(self.now, wake)
            self.handles.remove(handle)
            fired += 1
            handle.callback()


def make(loop: FakeLoop, callback: Callable[[float], Continuation | None],
         **kwargs: Any) -> MediaClock:
    return MediaClock(cast(asyncio.AbstractEventLoop, loop), callback=callback, **kwargs)


def test_ticks_at_absolute_deadlines() -> None:
    loop = FakeLoop()
    seen: list[float] = []
    clock = make(loop, seen.append)
    clock.start()
    loop.run_until(1000.0 + 1.0)
    assert len(seen) == 50
    assert seen[0] == pytest.approx(1000.02)
    assert seen[-1] == pytest.approx(1001.0)
    assert clock.stats().late_ticks == 0
    assert len(loop.pending()) == 1  # one chain, one handle


def test_slow_callbacks_do_not_make_it_drift() -> None:
    loop = FakeLoop()
    seen: list[float] = []
    clock = make(loop, seen.append)
    clock.start()
    # Every wake-up is 4 ms late; the next deadline is still t0 + k * 20 ms.
    loop.run_until(1001.0, delay=lambda k: 0.004)
    assert len(seen) == 49  # the 50th is due at 1001.0 and would run at 1001.004
    assert seen[10] == pytest.approx(1000.0 + 11 * 0.02 + 0.004)
    assert loop.pending()[0].when == pytest.approx(1000.0 + 50 * 0.02)
    stats = clock.stats()
    assert stats.late_ticks == 0  # 4 ms is under the 10 ms threshold
    assert stats.max_lateness == pytest.approx(0.004)


def test_late_wake_is_counted_and_missed_ticks_skipped() -> None:
    loop = FakeLoop()
    seen: list[float] = []
    clock = make(loop, seen.append, late_threshold=0.010)
    clock.start()
    # The 5th wake-up comes 65 ms late: 3 deadlines (at +20, +40, +60 ms after it) are missed.
    loop.run_until(1000.5, delay=lambda k: 0.065 if k == 4 else 0.0)
    stats = clock.stats()
    assert stats.late_ticks == 1
    assert stats.skipped_ticks == 3
    assert stats.max_lateness == pytest.approx(0.065)
    assert stats.ticks + stats.skipped_ticks == 25
    # After the late tick the clock is back on the grid, with no burst of catch-up ticks.
    late_index = 4
    assert seen[late_index] == pytest.approx(1000.0 + 5 * 0.02 + 0.065)
    assert seen[late_index + 1] == pytest.approx(1000.0 + 9 * 0.02)


def test_late_but_under_one_interval_runs_every_tick() -> None:
    loop = FakeLoop()
    clock = make(loop, lambda now: None, late_threshold=0.005)
    clock.start()
    loop.run_until(1000.2, delay=lambda k: 0.015 if k == 2 else 0.0)
    stats = clock.stats()
    assert (stats.late_ticks, stats.skipped_ticks, stats.ticks) == (1, 0, 10)


def test_callback_exception_is_logged_and_clock_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="gateway.clock")
    loop = FakeLoop()
    calls: list[float] = []

    def callback(now: float) -> None:
        calls.append(now)
        if len(calls) == 2:
            raise RuntimeError("mixer bug")

    clock = make(loop, callback)
    clock.start()
    loop.run_until(1000.1)
    assert len(calls) == 5
    assert clock.stats().errors == 1
    assert any("tick callback failed" in r.getMessage() for r in caplog.records)


def test_stop_and_restart() -> None:
    loop = FakeLoop()
    calls: list[float] = []
    clock = make(loop, calls.append)
    clock.start()
    with pytest.raises(RuntimeError):
        clock.start()
    loop.run_until(1000.05)
    clock.stop()
    assert not clock.running
    assert loop.pending() == []
    loop.run_until(1001.0)
    assert len(calls) == 2
    clock.stop()  # twice is harmless


def test_callback_may_stop_the_clock() -> None:
    loop = FakeLoop()
    clock: MediaClock
    calls: list[float] = []

    def callback(now: float) -> None:
        calls.append(now)
        if len(calls) == 3:
            clock.stop()

    clock = make(loop, callback)
    clock.start()
    loop.run_until(1001.0)
    assert len(calls) == 3
    assert loop.pending() == []


class SlicedTick:
    """A tick done in ``slices`` slices of ``cost`` seconds each (the fake loop's time moves
    on by ``cost`` per slice, as if the slice held the loop that long)."""

    def __init__(self, loop: FakeLoop, slices: int, cost: float) -> None:
        self.loop, self.slices, self.cost = loop, slices, cost
        self.log: list[tuple[int, int, float]] = []  # (tick, slice, loop time)
        self.tick = 0
        self.left = 0

    def begin(self, now: float) -> Continuation | None:
        self.tick += 1
        self.left = self.slices
        return self.step if self.step() else None

    def step(self) -> bool:
        self.log.append((self.tick, self.slices - self.left, self.loop.now))
        self.loop.now += self.cost
        self.left -= 1
        return self.left > 0


def test_a_tick_in_slices_gives_the_loop_its_turn_between_them() -> None:
    loop = FakeLoop()
    work = SlicedTick(loop, slices=4, cost=0.002)
    clock = make(loop, work.begin)
    clock.start()
    loop.run_until(1000.11)
    # every slice of a tick ran (each as its own loop callback), in order, before the next
    assert [s for t, s, _ in work.log if t == 1] == [0, 1, 2, 3]
    assert [t for t, _, _ in work.log] == sorted(t for t, _, _ in work.log)
    stats = clock.stats()
    assert stats.slices == 3 * stats.ticks  # the first slice runs in the tick's callback
    assert (stats.late_ticks, stats.overruns) == (0, 0)
    assert stats.max_callback_seconds < 0.0025  # no slice held the loop longer than one
    assert stats.max_span_seconds == pytest.approx(0.008)


def test_an_overrunning_tick_is_finished_before_the_next_and_counted() -> None:
    loop = FakeLoop()
    # 4 slices of 8 ms: the tick is due to end 32 ms after its deadline
    work = SlicedTick(loop, slices=4, cost=0.008)
    clock = make(loop, work.begin)
    clock.start()
    loop.run_until(1000.045)  # the first tick and its overrun into the second deadline
    stats = clock.stats()
    assert stats.overruns == 1
    # tick 1 finished first, then tick 2 (its second slice on the loop's next turn)
    assert [t for t, _, _ in work.log] == [1, 1, 1, 1, 2, 2]
    assert stats.ticks == 2
    assert stats.late_ticks == 1  # tick 2 began 12 ms late (tick 1's rest took the loop)
    assert stats.max_span_seconds == pytest.approx(0.032)


def test_a_failing_slice_ends_the_tick(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="gateway.clock")
    loop = FakeLoop()
    slices: list[float] = []

    def boom() -> bool:
        slices.append(loop.now)
        raise RuntimeError("mixer bug")

    clock = make(loop, lambda now: boom)
    clock.start()
    loop.run_until(1000.1)
    assert len(slices) == 5  # one slice a tick: the failure ends the tick, not the clock
    assert clock.stats().errors == 5
    assert any("tick slice failed" in r.getMessage() for r in caplog.records)


def test_bad_interval() -> None:
    with pytest.raises(ValueError):
        make(FakeLoop(), lambda now: None, interval=0.0)


async def test_real_loop_short_run() -> None:
    loop = asyncio.get_running_loop()
    seen: list[float] = []
    clock = MediaClock(loop, 0.020, callback=seen.append)
    started = loop.time()
    clock.start()
    try:
        await asyncio.sleep(0.41)
        # Block the loop for 70 ms: at least two ticks are skipped, one is late.
        time.sleep(0.07)
        await asyncio.sleep(0.1)
    finally:
        clock.stop()
    elapsed = loop.time() - started
    stats = clock.stats()
    assert stats.ticks >= 15
    # Every deadline that passed was either run or skipped, never both, never run twice.
    assert stats.ticks + stats.skipped_ticks <= elapsed / 0.020 + 1e-6
    assert stats.skipped_ticks >= 2
    assert stats.late_ticks >= 1
    assert stats.max_lateness >= 0.05
    assert all(b > a for a, b in itertools.pairwise(seen))
    count = len(seen)
    await asyncio.sleep(0.05)
    assert len(seen) == count  # stopped means stopped
