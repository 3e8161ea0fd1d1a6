"""The media clock: one ``loop.call_at`` chain for the whole process that drives the mixer.

Ticks are due at absolute deadlines ``t0 + k * interval`` (t0 = the loop time at start()), so
the clock does not drift however long each callback takes. The callback gets the loop time at
which the tick actually ran.

Bookkeeping (read ``stats()``):

- ``ticks``: callbacks run;
- ``late_ticks``: ticks that ran more than ``late_threshold`` (default 10 ms, half a 20 ms
  frame: later than that a phone's jitter buffer starts to notice) after their deadline;
- ``skipped_ticks``: deadlines dropped because the loop woke more than one ``interval`` late
  (the clock does not run a burst of catch-up ticks; it resumes on the next future deadline,
  and the skipped ticks are counted, not run);
- ``max_lateness``: the worst lateness seen, in seconds;
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


class MediaClock:
    """``MediaClock(loop, interval=0.020, callback=mixer.tick)``; start() / stop()."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float = 0.020, *,
                 callback: Callable[[float], None], late_threshold: float = 0.010) -> None:
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
        self.errors = 0

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
        log.info("media clock stopped: %s", self.stats())

    def stats(self) -> ClockStats:
        return ClockStats(self.ticks, self.late_ticks, self.skipped_ticks, self.max_lateness,
                          self.max_callback_seconds, self.errors, self.callback_seconds)

    def _on_tick(self) -> None:
        fired = self._handle
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
        started = time.perf_counter()
        try:
            self._callback(now)
        except Exception:
            self.errors += 1
            log.exception("media clock: tick callback failed")
        spent = time.perf_counter() - started
        self.callback_seconds += spent
        if spent > self.max_callback_seconds:
            self.max_callback_seconds = spent
        if self._handle is not fired:  # the callback stopped (or restarted) the clock
            return
        self._k += 1
        self._handle = self._loop.call_at(self._t0 + self._k * self.interval, self._on_tick)
