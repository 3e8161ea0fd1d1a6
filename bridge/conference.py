"""One conference at the in-process bridge: its sans-I/O Forwarder, the packet sinks of its
endpoints, and one asyncio timer handle.

`Conference` is created and owned by `bridge.service.Bridge`, which re-exports it. Packets go
straight from the socket callback (or a plain endpoint's local link) into the forwarder; after
every input the forwarder's events go to the bridge's listeners and the timer is re-armed to
the forwarder's `get_timer()`. The same timer checks the browser endpoints' liveness every
LIVENESS_INTERVAL.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from bridge.endpoint import Endpoint
from bridge.plain import PlainEndpoint

if TYPE_CHECKING:
    from bridge.service import Bridge

__all__ = ["LIVENESS_INTERVAL", "Conference", "PacketSink"]

log = logging.getLogger(__name__)

LIVENESS_INTERVAL = 1.0  # at most this late in noticing an endpoint's timeout


class PacketSink(Protocol):
    """Where the forwarder's packets for one endpoint go: a browser's transport (protects
    and sends) or a plain endpoint (hands them to its link)."""

    def send(self, data: bytes) -> bool: ...


class Conference:
    """One forwarder, its endpoints' transports, and one timer handle."""

    def __init__(self, conference_id: str, bridge: Bridge) -> None:
        self.conference_id = conference_id
        self.endpoints: dict[str, Endpoint] = {}  # browsers'
        self.plain: dict[str, PlainEndpoint] = {}
        self._bridge = bridge
        self._loop = asyncio.get_running_loop()
        self._transports: dict[str, PacketSink] = {}
        self.forwarder = bridge.forwarder_factory(conference_id, bridge.settings, self._send)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._next_liveness = self._loop.time() + LIVENESS_INTERVAL
        self._closed = False
        self.send_errors = 0

    # --- packets in and out ------------------------------------------------------------

    def on_rtp(self, endpoint_id: str, data: bytes, now: float) -> None:
        self.forwarder.on_rtp(endpoint_id, data, now)
        if self._timer is None:  # RTP makes no event and moves no deadline (ForwarderLike)
            self._after_input()

    def on_rtcp(self, endpoint_id: str, data: bytes, now: float) -> None:
        self.forwarder.on_rtcp(endpoint_id, data, now)
        self._after_input()

    def _send(self, endpoint_id: str, data: bytes) -> None:
        transport = self._transports.get(endpoint_id)
        if transport is None:
            return
        try:
            transport.send(data)
        except Exception:  # one receiver's failure must not stop the fan-out to the others
            self.send_errors += 1
            if self.send_errors % 1000 == 1:
                log.exception("conference %s: send to %s failed (%d so far)",
                              self.conference_id, endpoint_id, self.send_errors)

    def _after_input(self) -> None:
        forwarder = self.forwarder
        event = forwarder.next_event()
        while event is not None:
            self._bridge.emit(event)
            event = forwarder.next_event()
        when = forwarder.get_timer()
        if when is not None and when < self._timer_at:
            self._arm(when)

    # --- endpoints ---------------------------------------------------------------------

    def add(self, endpoint: Endpoint) -> None:
        self.endpoints[endpoint.endpoint_id] = endpoint
        self._transports[endpoint.endpoint_id] = endpoint.transport
        self.forwarder.add_endpoint(endpoint.endpoint_id)
        # forwarded RTP straight into the transport's C sink: rewrite, protect, queue
        self.forwarder.set_output(endpoint.endpoint_id, endpoint.transport.sink.forward)
        self._after_input()

    def add_plain(self, endpoint: PlainEndpoint) -> None:
        """A plain endpoint starts receiving audio only: it has no use for video, and so
        no key frame is asked for on its behalf before the focus sets its policy."""
        self.plain[endpoint.endpoint_id] = endpoint
        self._transports[endpoint.endpoint_id] = endpoint
        self.forwarder.add_endpoint(endpoint.endpoint_id, "audio")
        self._after_input()

    def remove(self, endpoint_id: str) -> Endpoint | PlainEndpoint | None:
        endpoint: Endpoint | PlainEndpoint | None = self.endpoints.pop(endpoint_id, None)
        if endpoint is None:
            endpoint = self.plain.pop(endpoint_id, None)
        if endpoint is not None:
            self._transports.pop(endpoint_id, None)
            self.forwarder.remove_endpoint(endpoint_id)
            self._after_input()
        return endpoint

    @property
    def empty(self) -> bool:
        return not self.endpoints and not self.plain

    def time(self) -> float:
        return self._loop.time()

    def rtp_handler(self, endpoint_id: str) -> Callable[[bytes, float], None]:
        """Straight into the forwarder: RTP makes no event and moves no deadline
        (ForwarderLike), and the timer is armed from the first endpoint on."""
        return functools.partial(self.forwarder.on_rtp, endpoint_id)

    def rtcp_handler(self, endpoint_id: str) -> Callable[[bytes, float], None]:
        return functools.partial(self.on_rtcp, endpoint_id)

    # --- the timer ---------------------------------------------------------------------

    def _arm(self, when: float) -> None:
        if self._closed:
            return
        when = max(when, self._loop.time() + 0.001)  # never a busy loop on a stale deadline
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        now = self._loop.time()
        when = self.forwarder.get_timer()
        if when is not None and when <= now:
            self.forwarder.handle_timer(now)
        if now >= self._next_liveness:
            self._next_liveness = now + LIVENESS_INTERVAL
            for endpoint in list(self.endpoints.values()):
                endpoint.check_timeout(now)
        if self._closed:
            return
        self._after_input()
        if self._next_liveness < self._timer_at:
            self._arm(self._next_liveness)

    def start_timer(self) -> None:
        self._arm(self._next_liveness)

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = math.inf

    @property
    def timer_armed(self) -> bool:
        return self._timer is not None
