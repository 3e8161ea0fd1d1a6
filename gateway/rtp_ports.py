"""The RTP port range of phone legs: even ports, RTCP on the next one.

A port is drawn at random (``secrets``) from the free ones, so that the port of the next call
cannot be told from the ports of the calls before (spraying a guessed port is how RTP is
injected into a call that has not latched yet). A released port sits in quarantine while
newer ones are released after it, up to ``quarantine`` ports (a quarter of the range by
default), before it can be drawn again: late packets of the old call do not reach a new one.
When no other port is free a quarantined port is handed out (the oldest) rather than
refusing a call.
"""

from __future__ import annotations

import secrets
from collections import deque


class PortsExhausted(RuntimeError):
    """Every RTP port of the configured range is in use."""


class PortAllocator:
    """Even RTP ports in [low, high] (RTCP on port + 1 must be <= high too), drawn at random,
    with recently released ports held back (see the module)."""

    def __init__(self, low: int, high: int, *, quarantine: int | None = None) -> None:
        first = low + (low & 1)
        ports = list(range(first, high, 2))        # p + 1 <= high
        if not ports or first < 1 or high > 65535:
            raise ValueError(f"no even RTP port with its RTCP port in {low}..{high}")
        self.size = len(ports)
        self.quarantine = self.size // 4 if quarantine is None else max(0, quarantine)
        # free ports: a list with a position map, for O(1) random draw and removal
        self._free: list[int] = ports
        self._index: dict[int, int] = {port: i for i, port in enumerate(ports)}
        self._held: deque[int] = deque()           # released, oldest first
        self._used: set[int] = set()

    def take(self) -> int:
        if self._free:
            port = self._remove_free(secrets.randbelow(len(self._free)))
        elif self._held:
            port = self._held.popleft()
        else:
            raise PortsExhausted(f"all {self.size} RTP ports are in use")
        self._used.add(port)
        return port

    def release(self, port: int) -> None:
        """Give a port back (a port not taken is ignored, so a second release is harmless)."""
        if port not in self._used:
            return
        self._used.remove(port)
        self._held.append(port)
        while len(self._held) > self.quarantine:
            self._add_free(self._held.popleft())

    def _remove_free(self, i: int) -> int:
        free = self._free
        port = free[i]
        last = free.pop()
        if last != port:
            free[i] = last
            self._index[last] = i
        del self._index[port]
        return port

    def _add_free(self, port: int) -> None:
        self._index[port] = len(self._free)
        self._free.append(port)

    @property
    def in_use(self) -> int:
        return len(self._used)

    @property
    def available(self) -> int:
        """Ports that can be taken now (free or in quarantine)."""
        return len(self._free) + len(self._held)
