"""The media clock: one ``loop.call_at`` chain for the whole process that drives the mixer.

Ticks are due at absolute deadlines ``t0 + k * interval`` (t0 = the loop time at start()), so
the clock does not drift however long each callback takes. The callback gets the loop time at
which the tick actually ran.

A tick may be done in slices, so that mixing and encoding never hold the event loop (and the
bridge's packet forwarding on it) for long: the callback returns a continuation, a function
that does one more slice and returns True while work is left, or None when the tick is done.
The clock runs the continuation with ``loop.call_soon`` (the loop polls its sockets between
slices) until it returns False. When the next deadline comes with a tick still unfinished,
the rest of it is done at once, before the new tick.

Bookkeeping (read ``stats()``):

- ``ticks``: ticks begun;
- ``late_ticks``: ticks that began more than ``late_threshold`` (default 10 ms, half a 20 ms
  frame: later than that a phone's jitter buffer starts to notice) after their deadline
  (after an overrun, the time spent finishing the tick before counts);
- ``overruns``: ticks still unfinished when the next one was due;
- ``skipped_ticks``: deadlines dropped because the loop woke more than one ``interval`` late
  (the clock does not run a burst of catch-up ticks; it resumes on the next future deadline,
  and the skipped ticks are counted, not run);
- ``max_lateness``: the worst lateness of a tick's start, in seconds;
- ``max_callback_seconds``: the longest the loop was held at once (a slice, or the rest of an
  overrunning tick); ``callback_seconds``: the total; ``max_span_seconds``: the longest from
  a deadline to the end of its tick;
- ``errors``: callbacks that raised (logged; the clock keeps going).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ClockStats:
    ticks: int
    late_ticks: int
    skipped_ticks: int
    max_lateness: float
    max_callback_seconds: float
    errors: int
    callback_seconds: float = 0.0  # total time the callbacks held the loop
    max_span_seconds: float = 0.0  # the longest from a deadline to the end of its tick
    slices: int = 0                # continuation slices run
    overruns: int = 0              # ticks unfinished at the next deadline (finished then)


Continuation = Callable[[], bool]
MAX_SLICES = 10_000  # an overrunning tick is finished in at most this many slices
TickCallback = Callable[[float], "Continuation | None"]


class MediaClock:
    """``MediaClock(loop, interval=0.020, callback=mixer.tick)``; start() / stop()."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float = 0.020, *,
                 callback: TickCallback, late_threshold: float = 0.010) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self._loop = loop
        self.interval = interval
        self.late_threshold = late_threshold
        self._callback = callback
        self._handle: asyncio.TimerHandle | None = None
        self._t0 = 0.0
        self._k = 0
        self.ticks = 0
        self.late_ticks = 0
        self.skipped_ticks = 0
        self.max_lateness = 0.0
        self.max_callback_seconds = 0.0
        self.callback_seconds = 0.0
        self.max_span_seconds = 0.0
        self.slices = 0
        self.overruns = 0
        self.errors = 0
        self._rest: Continuation | None = None  # the current tick's remaining work
        self._deadline = 0.0                    # the current tick's deadline
        self._slice_scheduled = False

    @property
    def running(self) -> bool:
        return self._handle is not None

    def start(self) -> None:
        if self._handle is not None:
            raise RuntimeError("media clock already running")
        self._t0 = self._loop.time()
        self._k = 1
        self._handle = self._loop.call_at(self._t0 + self.interval, self._on_tick)
        log.info("media clock started: %.1f ms ticks", self.interval * 1000)

    def stop(self) -> None:
        if self._handle is None:
            return
        self._handle.cancel()
        self._handle = None
        self._rest = None
        log.info("media clock stopped: %s", self.stats())

    def stats(self) -> ClockStats:
        return ClockStats(self.ticks, self.late_ticks, self.skipped_ticks, self.max_lateness,
                          self.max_callback_seconds, self.errors, self.callback_seconds,
                          self.max_span_seconds, self.slices, self.overruns)

    def _on_tick(self) -> None:
        fired = self._handle
        if self._rest is not None:  # the last tick overran into this deadline: finish it
            self.overruns += 1
            for _ in range(MAX_SLICES):
                if self._rest is None or self._handle is not fired:
                    break
                self._run_slice()
            else:
                log.error("media clock: a tick still unfinished after %d slices: dropped",
                          MAX_SLICES)
                self._rest = None
            if self._handle is not fired:  # stopped (or restarted) meanwhile
                return
        now = self._loop.time()
        deadline = self._t0 + self._k * self.interval
        lateness = now - deadline
        if lateness > self.max_lateness:
            self.max_lateness = lateness
        if lateness > self.late_threshold:
            self.late_ticks += 1
        if lateness >= self.interval:
            missed = math.floor(lateness / self.interval)
            self.skipped_ticks += missed
            self._k += missed
            log.debug("media clock: woke %.1f ms late, skipping %d ticks",
                      lateness * 1000, missed)
        self.ticks += 1
        self._deadline = deadline
        started = time.perf_counter()
        rest: Continuation | None = None
        try:
            rest = self._callback(now)
        except Exception:
            self.errors += 1
            log.exception("media clock: tick callback failed")
        self._held(time.perf_counter() - started)
        if self._handle is not fired:  # the callback stopped (or restarted) the clock
            return
        self._rest = rest
        if rest is None:
            self._ended()
        else:
            self._schedule_slice()
        self._k += 1
        self._handle = self._loop.call_at(self._t0 + self._k * self.interval, self._on_tick)

    def _schedule_slice(self) -> None:
        if not self._slice_scheduled:
            self._slice_scheduled = True
            self._loop.call_soon(self._on_slice)

    def _on_slice(self) -> None:
        self._slice_scheduled = False
        if self._rest is None or self._handle is None:
            return
        self._run_slice()
        if self._rest is not None:
            self._schedule_slice()

    def _run_slice(self) -> None:
        rest = self._rest
        assert rest is not None
        self.slices += 1
        started = time.perf_counter()
        more = False
        try:
            more = rest()
        except Exception:
            self.errors += 1
            log.exception("media clock: tick slice failed")
        self._held(time.perf_counter() - started)
        if not more and self._rest is rest:
            self._rest = None
            self._ended()

    def _held(self, spent: float) -> None:
        self.callback_seconds += spent
        if spent > self.max_callback_seconds:
            self.max_callback_seconds = spent

    def _ended(self) -> None:
        span = self._loop.time() - self._deadline
        if span > self.max_span_seconds:
            self.max_span_seconds = span
