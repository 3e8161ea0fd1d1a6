"""The RTP port range of phone legs: even ports, RTCP on the next, handed out round-robin."""

from __future__ import annotations

from collections import deque


class PortsExhausted(RuntimeError):
    """Every RTP port of the configured range is in use."""


class PortAllocator:
    """Even RTP ports in [low, high] (RTCP on port + 1 must be <= high too), round-robin so
    that a released port is not handed out again at once (late packets of the old call)."""

    def __init__(self, low: int, high: int) -> None:
        first = low + (low & 1)
        ports = list(range(first, high, 2))        # p + 1 <= high
        if not ports or first < 1 or high > 65535:
            raise ValueError(f"no even RTP port with its RTCP port in {low}..{high}")
        self._free: deque[int] = deque(ports)
        self._used: set[int] = set()
        self.size = len(ports)

    def take(self) -> int:
        if not self._free:
            raise PortsExhausted(f"all {self.size} RTP ports are in use")
        port = self._free.popleft()
        self._used.add(port)
        return port

    def release(self, port: int) -> None:
        if port in self._used:
            self._used.remove(port)
            self._free.append(port)

    @property
    def in_use(self) -> int:
        return len(self._used)

    @property
    def available(self) -> int:
        return len(self._free)
