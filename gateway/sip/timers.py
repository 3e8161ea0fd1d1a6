"""SIP transaction timers (RFC 3261 section 17, Table 4; RFC 6026 timers L and M).

Timers are values, not sleeping tasks: a transaction arms a deadline in a
:class:`TimerHeap` and the transaction layer fires whatever is due when the
caller passes the time in (``handle_timer(now)``).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["RetransmitSchedule", "TimerHeap", "TimerSettings"]


@dataclass(frozen=True, slots=True)
class TimerSettings:
    """T1, T2, T4 and the timers RFC 3261 Table 4 derives from them (seconds).

    Over reliable transports the transactions use 0 for D, I, J and K and never
    retransmit (timers A, E and G are not armed).
    """

    t1: float = 0.5  # RTT estimate
    t2: float = 4.0  # maximum retransmit interval for non-INVITE requests and INVITE responses
    t4: float = 5.0  # maximum duration a message will remain in the network

    @property
    def timer_a(self) -> float:
        """INVITE request retransmit interval (UDP only), doubled each time."""
        return self.t1

    @property
    def timer_b(self) -> float:
        """INVITE client transaction timeout."""
        return 64 * self.t1

    @property
    def timer_c(self) -> float:
        """Proxy INVITE transaction timeout (> 3 min); unused by a user agent."""
        return 180.0

    @property
    def timer_d(self) -> float:
        """Wait time for response retransmits (UDP): at least 32 s."""
        return max(32.0, 64 * self.t1)

    @property
    def timer_e(self) -> float:
        """Non-INVITE request retransmit interval (UDP only), doubled up to T2."""
        return self.t1

    @property
    def timer_f(self) -> float:
        """Non-INVITE client transaction timeout."""
        return 64 * self.t1

    @property
    def timer_g(self) -> float:
        """INVITE final response retransmit interval (UDP only), doubled up to T2."""
        return self.t1

    @property
    def timer_h(self) -> float:
        """Wait time for ACK receipt."""
        return 64 * self.t1

    @property
    def timer_i(self) -> float:
        """Wait time for ACK retransmits (UDP)."""
        return self.t4

    @property
    def timer_j(self) -> float:
        """Wait time for non-INVITE request retransmits (UDP)."""
        return 64 * self.t1

    @property
    def timer_k(self) -> float:
        """Wait time for non-INVITE response retransmits (UDP)."""
        return self.t4

    @property
    def timer_l(self) -> float:
        """RFC 6026: INVITE server transaction lingers in Accepted (absorbing retransmissions)."""
        return 64 * self.t1

    @property
    def timer_m(self) -> float:
        """RFC 6026: INVITE client transaction lingers in Accepted (2xx retransmissions)."""
        return 64 * self.t1


class RetransmitSchedule:
    """T1-doubling retransmission schedule capped at T2, giving up after 64*T1.

    This is the schedule of RFC 3261 13.3.1.4 for a UAS retransmitting its 2xx to an
    INVITE until the ACK arrives (the transaction layer does not do that: it is the
    TU's job). ``next_at`` is the next retransmission time; when it is due call
    :meth:`fired`: True means retransmit now (``next_at`` moved on), False that the
    64*T1 window is over (the TU gives up, e.g. ends the call with BYE).
    """

    __slots__ = ("_interval", "deadline", "next_at", "settings")

    def __init__(self, settings: TimerSettings, now: float) -> None:
        self.settings = settings
        self._interval = settings.t1
        self.next_at = now + self._interval
        self.deadline = now + 64 * settings.t1

    def fired(self, now: float) -> bool:
        """Advance past a retransmission; False when the schedule has expired."""
        if now >= self.deadline:
            return False
        self._interval = min(2 * self._interval, self.settings.t2)
        self.next_at = min(now + self._interval, self.deadline)
        return True


K = TypeVar("K", bound=Hashable)


class TimerHeap(Generic[K]):
    """Deadlines for many keys in one binary heap, with lazy deletion.

    Each key has at most one live deadline. Re-arming or cancelling a key leaves its
    old heap entry behind; such stale entries are skipped when they reach the top and
    the heap is compacted when they outnumber the live ones, so memory stays bounded
    with thousands of transactions.
    """

    __slots__ = ("_counter", "_heap", "_live")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, K]] = []
        self._live: dict[K, int] = {}
        self._counter = itertools.count()

    def schedule(self, key: K, at: float) -> None:
        """Arm (or re-arm) ``key`` to fire at ``at``."""
        token = next(self._counter)
        self._live[key] = token
        heapq.heappush(self._heap, (at, token, key))
        if len(self._heap) > 64 and len(self._heap) > 3 * len(self._live):
            self._compact()

    def cancel(self, key: K) -> None:
        """Disarm ``key``; a no-op when it is not armed."""
        self._live.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._live

    def __len__(self) -> int:
        """Armed keys."""
        return len(self._live)

    @property
    def entries(self) -> int:
        """Heap entries, stale ones included (memory use; for stats)."""
        return len(self._heap)

    def next_deadline(self) -> float | None:
        """The earliest live deadline, or None."""
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> K | None:
        """Remove and return one key whose deadline is <= now (earliest first), or None."""
        self._drop_stale()
        if not self._heap or self._heap[0][0] > now:
            return None
        _, _, key = heapq.heappop(self._heap)
        del self._live[key]
        return key

    def _drop_stale(self) -> None:
        heap, live = self._heap, self._live
        while heap and live.get(heap[0][2]) != heap[0][1]:
            heapq.heappop(heap)

    def _compact(self) -> None:
        live = self._live
        self._heap = [entry for entry in self._heap if live.get(entry[2]) == entry[1]]
        heapq.heapify(self._heap)
