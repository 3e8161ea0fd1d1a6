"""The sockets' side of a phone leg's RTP session: its counters and its datagram protocol.

``RtpEndpoint`` hands each datagram to one handler and never lets an exception out of
``datagram_received`` (a malformed packet is the sender's fault, not a reason to lose the
socket): a handler that raises is reported to ``on_error``; ICMP errors (port unreachable:
the remote is not there yet) count as send errors.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Addr", "RtpEndpoint", "SessionCounters"]

Addr = tuple[Any, ...]          # what asyncio gives: (host, port) or (host, port, flow, scope)


@dataclass(slots=True)
class SessionCounters:
    rx_packets: int = 0          # accepted RTP packets (audio and DTMF)
    rx_garbage: int = 0          # not RTP / malformed
    rx_unexpected_pt: int = 0    # valid RTP with a payload type we did not negotiate
    rx_foreign: int = 0          # valid RTP from a source not allowed or not latched to
    rx_dtmf: int = 0
    rtcp_rx: int = 0
    rtcp_garbage: int = 0
    rtcp_foreign: int = 0        # RTCP from a source not allowed or not latched to
    tx_packets: int = 0
    tx_dtmf: int = 0
    rtcp_tx: int = 0
    relatches: int = 0
    send_errors: int = 0
    internal_errors: int = 0


class RtpEndpoint(asyncio.DatagramProtocol):
    __slots__ = ("_counters", "_handler", "_on_error")

    def __init__(self, handler: Callable[[bytes, Addr], None], on_error: Callable[[], None],
                 counters: SessionCounters) -> None:
        self._handler = handler
        self._on_error = on_error
        self._counters = counters

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        try:
            self._handler(data, addr)
        except Exception:
            self._on_error()

    def error_received(self, exc: Exception) -> None:
        self._counters.send_errors += 1
