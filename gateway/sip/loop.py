"""An in-memory network of sans-I/O SIP nodes for tests (PJSIP's loop transport).

``LoopNetwork`` connects nodes by address, delivers their datagrams after a configurable
delay (plus jitter), and drops or duplicates them with seeded randomness. Time is a
``FakeClock``: ``run_until`` jumps it straight to the next delivery or node timer, so a
64*T1 timeout takes no wall-clock time. Stream transports ("tcp") are never lost,
duplicated or reordered.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from .errors import LocalProtocolError, RemoteProtocolError
from .layer import TransactionEvent, TransactionLayer
from .message import SipRequest
from .parser import best_effort_response, parse_message
from .peer import Peer
from .timers import TimerSettings

__all__ = [
    "FakeClock",
    "LayerNode",
    "LoopNetwork",
    "SansIoNode",
    "Transmission",
    "build_request",
]

log = logging.getLogger(__name__)

E = TypeVar("E")


class SansIoNode(Protocol):
    """Anything that takes bytes and time in and gives datagrams and a deadline out."""

    def receive_data(self, data: bytes, source: Peer, now: float) -> None: ...

    def handle_timer(self, now: float) -> None: ...

    def get_timer(self) -> float | None: ...

    def datagrams_to_send(self) -> list[tuple[bytes, Peer]]: ...


class FakeClock:
    """A monotonic clock the test moves by hand (or ``LoopNetwork.run_until`` moves)."""

    __slots__ = ("now",)

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("time does not go backwards")
        self.now += seconds
        return self.now


@dataclass(frozen=True, slots=True)
class Transmission:
    """One datagram as the network saw it (kept in ``LoopNetwork.log``)."""

    at: float
    source: Peer
    dest: Peer
    data: bytes
    fate: str  # "delivered" | "lost" | "duplicated" | "unreachable"


class LoopNetwork:
    """Nodes wired together in memory.

    A node added at ``Peer("udp", "10.0.0.1", 5060)`` is reachable at that host and port
    over any transport; a datagram it sends to ``Peer(t, h, p)`` arrives at the node
    registered at (h, p) with source ``Peer(t, <sender host>, <sender port>)``.
    """

    def __init__(
        self,
        clock: FakeClock,
        seed: int = 0,
        loss: float = 0.0,
        delay: float = 0.0,
        jitter: float = 0.0,
        duplicate: float = 0.0,
        keep_log: bool = True,
    ) -> None:
        self.clock = clock
        self.loss = loss
        self.delay = delay
        self.jitter = jitter
        self.duplicate = duplicate
        self.keep_log = keep_log
        self.log: list[Transmission] = []
        self.drop_filter: Callable[[bytes, Peer, Peer], bool] | None = None
        self._random = random.Random(seed)
        self._nodes: dict[tuple[str, int], tuple[Peer, SansIoNode]] = {}
        self._pending: list[tuple[float, int, bytes, Peer, Peer]] = []
        self._seq = itertools.count()
        self._stream_last: dict[tuple[Peer, Peer], float] = {}

    def add(self, address: Peer, node: SansIoNode) -> None:
        self._nodes[(address.host, address.port)] = (address, node)

    def send(self, data: bytes, source: Peer, dest: Peer) -> None:
        """Put a datagram on the wire (also how a test injects raw bytes). The receiver sees
        ``source`` with the transport of ``dest``."""
        now = self.clock.now
        if source.transport != dest.transport:
            source = Peer(dest.transport, source.host, source.port)
        fate = "delivered"
        if (dest.host, dest.port) not in self._nodes:
            fate = "unreachable"
        elif self.drop_filter is not None and self.drop_filter(data, source, dest):
            fate = "lost"
        elif dest.reliable:
            key = (source, dest)
            at = max(now + self.delay, self._stream_last.get(key, now))  # keep stream order
            self._stream_last[key] = at
            self._schedule(at, data, source, dest)
        elif self._random.random() < self.loss:
            fate = "lost"
        else:
            self._schedule(self._arrival(now), data, source, dest)
            if self._random.random() < self.duplicate:
                fate = "duplicated"
                self._schedule(self._arrival(now), data, source, dest)
        if self.keep_log:
            self.log.append(Transmission(now, source, dest, data, fate))

    def flush(self) -> None:
        """Drain every node's outgoing datagrams onto the wire."""
        for address, node in list(self._nodes.values()):
            for data, dest in node.datagrams_to_send():
                self.send(data, address, dest)

    def next_time(self) -> float | None:
        """The earliest pending delivery or node timer."""
        times = [t for _, node in self._nodes.values() if (t := node.get_timer()) is not None]
        if self._pending:
            times.append(self._pending[0][0])
        return min(times) if times else None

    def step(self) -> bool:
        """Advance the clock to the next thing that happens and do it. False when idle."""
        self.flush()
        at = self.next_time()
        if at is None:
            return False
        now = self.clock.now = max(self.clock.now, at)
        while self._pending and self._pending[0][0] <= now:
            _, _, data, source, dest = heapq.heappop(self._pending)
            entry = self._nodes.get((dest.host, dest.port))
            if entry is not None:
                entry[1].receive_data(data, source, now)
            self.flush()
        for _, node in list(self._nodes.values()):
            deadline = node.get_timer()
            if deadline is not None and deadline <= now:
                node.handle_timer(now)
        self.flush()
        return True

    def run_until(
        self, predicate: Callable[[], bool], max_time: float, max_steps: int = 100_000
    ) -> bool:
        """Step until ``predicate()`` holds (True) or time would pass ``max_time`` or the
        step budget runs out (False). The clock never moves beyond ``max_time``."""
        self.flush()
        for _ in range(max_steps):
            if predicate():
                return True
            at = self.next_time()
            if at is None or at > max_time:
                self.clock.now = max(self.clock.now, max_time)
                return predicate()
            self.step()
        return predicate()

    def run_for(self, seconds: float, max_steps: int = 100_000) -> None:
        """Let ``seconds`` of fake time pass, doing whatever falls due."""
        end = self.clock.now + seconds
        self.run_until(lambda: False, end, max_steps)

    def sent(self, source: Peer | None = None, startswith: bytes = b"") -> list[Transmission]:
        """Logged transmissions, optionally only from ``source`` and starting with a prefix."""
        return [
            t for t in self.log
            if (source is None or (t.source.host, t.source.port) == (source.host, source.port))
            and t.data.startswith(startswith)
        ]

    def _arrival(self, now: float) -> float:
        return now + self.delay + (self._random.uniform(0, self.jitter) if self.jitter else 0.0)

    def _schedule(self, at: float, data: bytes, source: Peer, dest: Peer) -> None:
        heapq.heappush(self._pending, (at, next(self._seq), data, source, dest))


class LayerNode:
    """A ``SansIoNode`` around a bare ``TransactionLayer`` (tests of the transaction layer).

    It parses bytes (answering what does not parse with 400 when it can), collects the
    layer's events in ``events`` and, when ``on_event`` is set, lets it react (for example
    answer requests) as soon as each event arrives.
    """

    def __init__(
        self,
        timers: TimerSettings | None = None,
        on_event: Callable[[LayerNode, TransactionEvent, float], None] | None = None,
        trying_delay: float = 0.2,
    ) -> None:
        self.layer = TransactionLayer(timers or TimerSettings(), trying_delay=trying_delay)
        self.events: list[tuple[float, TransactionEvent]] = []
        self.on_event = on_event
        self.garbage = 0

    def receive_data(self, data: bytes, source: Peer, now: float) -> None:
        try:
            message = parse_message(data)
        except RemoteProtocolError as exc:
            self.garbage += 1
            log.info("unparseable message from %s: %s", source, exc)
            reply = best_effort_response(data, exc.status, exc.reason)
            if reply is not None:
                self.layer.send_raw(reply, source)
            return
        self.layer.receive(message, source, now)
        self._drain(now)

    def handle_timer(self, now: float) -> None:
        self.layer.handle_timer(now)
        self._drain(now)

    def get_timer(self) -> float | None:
        return self.layer.get_timer()

    def datagrams_to_send(self) -> list[tuple[bytes, Peer]]:
        return self.layer.datagrams_to_send()

    def of_type(self, kind: type[E]) -> list[E]:
        """Collected events of one class, in order."""
        return [event for _, event in self.events if isinstance(event, kind)]

    def _drain(self, now: float) -> None:
        while (event := self.layer.next_event()) is not None:
            self.events.append((now, event))
            if self.on_event is not None:
                self.on_event(self, event, now)


def build_request(
    method: str,
    sent_by: Peer,
    uri: str = "sip:service@192.0.2.1",
    *,
    branch: str | None = "z9hG4bK-test-1",
    call_id: str = "call-1@test",
    cseq: int = 1,
    from_tag: str | None = "from-1",
    to_tag: str | None = None,
    rport: bool = False,
    extra: dict[str, str] | None = None,
    body: bytes = b"",
) -> SipRequest:
    """A minimal, parseable request as a test peer would send it from ``sent_by``."""
    via = f"SIP/2.0/{sent_by.transport.upper()} {sent_by.host}:{sent_by.port}"
    if branch is not None:
        via += f";branch={branch}"
    if rport:
        via += ";rport"
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: {via}",
        "Max-Forwards: 70",
        f"From: <sip:caller@{sent_by.host}>" + (f";tag={from_tag}" if from_tag else ""),
        f"To: <{uri}>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
    ]
    lines += [f"{name}: {value}" for name, value in (extra or {}).items()]
    lines += [f"Content-Length: {len(body)}", "", ""]
    message = parse_message("\r\n".join(lines).encode() + body)
    if not isinstance(message, SipRequest):
        raise LocalProtocolError(f"not a request: {method!r}")
    return message
