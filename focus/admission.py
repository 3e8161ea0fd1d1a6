"""Per-source limits on browsers joining (sans-I/O: time comes in as `now`).

A browser's `join` arrives with its client's address (`source`, from the web edge); the
meetings ask this before anything is created or allocated:

1. Joins: `joins_per_minute` per source, in bursts of as many; every attempt counts, refused
   ones too. Over it: `too-many-joins`.
2. Rooms made by opening a URL: `rooms_per_hour` per source, in bursts of as many; only a join
   that would create a room counts. Over it: `too-many-rooms` (nothing is created).
3. Endpoints: `max_endpoints_per_source` browsers from one source in meetings at once (each
   holds bridge ports); taken before the bridge allocates, given back when the browser
   leaves in any way. One more: `too-many-endpoints`.

4. The lobby: `WAITING_PER_SOURCE` browsers from one source waiting in lobbies at once, so
   one address cannot fill a room's lobby (100 places) and lock the others out. One more:
   `too-many-waiting`.

Each refusal is a `JoinRefused` with close code 4029 (docs/signaling.md). Memory is bounded:
the rate limiters keep at most 10,000 sources each, the endpoint counts only sources that
have a browser in a meeting.
"""

from __future__ import annotations

from dialplan.limits import ConcurrencyLimit, RateLimiter
from focus.session import CLOSE_TRY_LATER, JoinRefused

__all__ = ["WAITING_PER_SOURCE", "JoinAdmission"]

WAITING_PER_SOURCE = 5


class JoinAdmission:
    def __init__(self, joins_per_minute: int, rooms_per_hour: int, max_endpoints: int) -> None:
        self.joins_per_minute = joins_per_minute
        self.rooms_per_hour = rooms_per_hour
        self._joins = RateLimiter(joins_per_minute / 60.0, joins_per_minute)
        self._rooms = RateLimiter(rooms_per_hour / 3600.0, rooms_per_hour)
        self._endpoints = ConcurrencyLimit(max_endpoints)
        self._waiting = ConcurrencyLimit(WAITING_PER_SOURCE)

    def check_join(self, source: str, now: float) -> None:
        if not self._joins.allow(source, now):
            raise JoinRefused("too-many-joins", f"more than {self.joins_per_minute} joins a "
                              "minute from your address: try again later",
                              CLOSE_TRY_LATER)  # fmt: skip

    def check_room_creation(self, source: str, now: float) -> None:
        if not self._rooms.allow(source, now):
            raise JoinRefused("too-many-rooms", f"more than {self.rooms_per_hour} new rooms an "
                              "hour from your address: join an existing room",
                              CLOSE_TRY_LATER)  # fmt: skip

    def acquire_endpoint(self, source: str) -> None:
        if not self._endpoints.acquire(source):
            raise JoinRefused("too-many-endpoints", f"{self._endpoints.per_key} participants "
                              "already joined from your address", CLOSE_TRY_LATER)  # fmt: skip

    def release_endpoint(self, source: str) -> None:
        self._endpoints.release(source)

    def endpoints(self, source: str) -> int:
        return self._endpoints.count(source)

    def acquire_waiting(self, source: str) -> None:
        if not self._waiting.acquire(source):
            raise JoinRefused("too-many-waiting", f"{WAITING_PER_SOURCE} participants from "
                              "your address already wait to get in", CLOSE_TRY_LATER)

    def release_waiting(self, source: str) -> None:
        self._waiting.release(source)
