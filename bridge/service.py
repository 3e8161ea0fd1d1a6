"""The bridge in-process: `Bridge` implements bridge.api.BridgeSession over asyncio.

Media of every browser endpoint arrives on the bridge's one UDP port (and its ICE-TCP port),
opened by `start()` and demultiplexed by bridge/mediaport.py. Per conference one sans-I/O
Forwarder (bridge/forwarder.py) and one timer handle, re-armed
to the forwarder's `get_timer()` and to the next liveness check of the endpoints (both held
by `Conference`, in bridge/conference.py). Per browser endpoint one transport
(bridge/aiortc_adapter.py): decrypted packets go straight from the socket callback into the
forwarder, and what the forwarder sends is protected at once and sent, with everything else
sent in the same event-loop turn, in one call (the bridge's Egress, native/_egress.c). Plain
endpoints (bridge/plain.py, the gateway's) have no transport: their local link calls the
forwarder directly. No task or timer exists per packet.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Protocol

from bridge.aiortc_adapter import (
    EndpointTransport,
    TransportCounters,
    TransportFailed,
    new_certificate,
)
from bridge.api import (
    BridgeEvent,
    BridgeListener,
    EndpointAllocation,
    EndpointConnected,
    EndpointFailed,
    EndpointUpdate,
    HeaderExtension,
    MediaSource,
    PayloadType,
    PlainEndpointAllocation,
    ReceivePolicy,
    ReceiveSource,
)
from bridge.conference import LIVENESS_INTERVAL, Conference, PacketSink
from bridge.endpoint import Endpoint
from bridge.forwarder import Forwarder, ForwarderSettings, OutputFn
from bridge.mediaport import TcpMediaPort, UdpMediaPort, port_stats
from bridge.plain import LocalLink, PacketOut, PlainEndpoint, PlainEndpoints
from native._egress import Egress

__all__ = [
    "COUNTER_NAMES",
    "FORWARDER_GAUGES",
    "HEADER_EXTENSIONS",
    "LIVENESS_INTERVAL",
    "PAYLOAD_TYPES",
    "VIDEO_FEEDBACK",
    "Bridge",
    "BridgeConfigLike",
    "BridgeSettings",
    "Conference",
    "ForwarderFactory",
    "ForwarderLike",
    "PacketSink",
    "SendFn",
    "UnknownEndpoint",
    "default_forwarder",
]


log = logging.getLogger(__name__)

# The conference's fixed codecs and header extensions (docs/signaling.md, "The offer's shape").
VIDEO_FEEDBACK = ("nack", "nack pli", "ccm fir", "goog-remb", "transport-cc")
PAYLOAD_TYPES: tuple[PayloadType, ...] = (
    PayloadType(111, "opus", 48000, 2, "minptime=10;useinbandfec=1"),
    PayloadType(96, "VP8", 90000, 1, "", VIDEO_FEEDBACK),
    PayloadType(97, "rtx", 90000, 1, "apt=96"),
    PayloadType(102, "H264", 90000, 1,
                "profile-level-id=42e01f;packetization-mode=1;level-asymmetry-allowed=1",
                VIDEO_FEEDBACK),
    PayloadType(103, "rtx", 90000, 1, "apt=102"),
)
HEADER_EXTENSIONS: tuple[HeaderExtension, ...] = (
    HeaderExtension(1, "urn:ietf:params:rtp-hdrext:ssrc-audio-level"),
    HeaderExtension(3, "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"),
    HeaderExtension(4, "urn:ietf:params:rtp-hdrext:sdes:mid"),
)
COUNTER_NAMES = tuple(f.name for f in fields(TransportCounters))


def _drop(data: bytes, now: float) -> None:
    """Media handler of a transport that is not in a conference yet."""


class UnknownEndpoint(LookupError):
    """The focus named an endpoint the bridge does not have (never allocated, expired, or
    expired by the bridge after it failed)."""


@dataclass(frozen=True, slots=True)
class BridgeSettings:
    """Built by the composition root from the [bridge] configuration section."""

    address: str = "127.0.0.1"
    announce: str = ""
    udp_port: int = 10000  # every browser's media; 0: any free port (tests)
    tcp_port: int | None = 4443  # ICE-TCP (passive candidates); None: off; 0: any free port
    last_n: int = 20
    endpoint_timeout: float = 15.0

    @classmethod
    def from_config(cls, config: BridgeConfigLike) -> BridgeSettings:
        """From switchboard.config.BridgeConfig (taken structurally: bridge imports no
        other package)."""
        return cls(
            address=config.address, announce=config.announce, udp_port=config.udp_port,
            tcp_port=config.tcp_port or None, last_n=config.last_n,
            endpoint_timeout=config.endpoint_timeout,
        )


class BridgeConfigLike(Protocol):
    @property
    def address(self) -> str: ...
    @property
    def announce(self) -> str: ...
    @property
    def udp_port(self) -> int: ...
    @property
    def tcp_port(self) -> int: ...
    @property
    def last_n(self) -> int: ...
    @property
    def endpoint_timeout(self) -> float: ...


class ForwarderLike(Protocol):
    """What the service needs of bridge.forwarder.Forwarder."""

    def add_endpoint(self, endpoint_id: str, receive: ReceivePolicy = "all") -> None: ...
    def remove_endpoint(self, endpoint_id: str) -> None: ...
    def set_sources(self, endpoint_id: str, sources: tuple[MediaSource, ...]) -> None: ...
    def set_audio_forced_off(self, endpoint_id: str, off: bool) -> None: ...
    def set_output(self, endpoint_id: str, output: OutputFn | None) -> None: ...
    def set_last_n(self, endpoint_id: str, n: int) -> None: ...
    def set_receive(self, endpoint_id: str, receive: ReceivePolicy | None,
                    group: str | None) -> None: ...
    def receive_sources(self, endpoint_id: str) -> tuple[ReceiveSource, ...]: ...
    # RTP (the per-packet path) makes no event and never moves the timer's deadline earlier:
    # the conference does not ask for them after each RTP packet, only after other input
    def on_rtp(self, endpoint_id: str, data: bytes, now: float) -> None: ...
    def on_rtcp(self, endpoint_id: str, data: bytes, now: float) -> None: ...
    def handle_timer(self, now: float) -> None: ...
    def get_timer(self) -> float | None: ...
    def next_event(self) -> BridgeEvent | None: ...
    def stats(self) -> dict[str, int]: ...


# Forwarder figures that describe the present (they go back to 0); the rest are running counts.
FORWARDER_GAUGES = frozenset({
    "endpoints", "sources", "rtx_sources", "projections", "history_packets", "twcc_pending",
    "speakers",
})

SendFn = Callable[[str, bytes], None]
ForwarderFactory = Callable[[str, BridgeSettings, SendFn], ForwarderLike]


def default_forwarder(conference_id: str, settings: BridgeSettings, send: SendFn) -> ForwarderLike:
    return Forwarder(conference_id, ForwarderSettings(last_n=settings.last_n), send)


class Bridge:
    """The SFU service: allocate / update / expire endpoints of conferences (BridgeSession)."""

    def __init__(self, settings: BridgeSettings,
                 forwarder_factory: ForwarderFactory | None = None) -> None:
        self.settings = settings
        self.forwarder_factory = forwarder_factory or default_forwarder
        self.udp: UdpMediaPort | None = None  # open between start() and stop()
        self.tcp: TcpMediaPort | None = None
        self._certificate = new_certificate()
        self._conferences: dict[str, Conference] = {}
        self._listeners: list[BridgeListener] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._expiring: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._running = False
        self.endpoints_failed = 0
        # Counters of expired endpoints' transports, so the totals in stats() only grow.
        self._retired = TransportCounters()
        self._retired_forwarder: dict[str, int] = {}  # counters of removed conferences
        self._plain = PlainEndpoints()
        # The endpoints' sends of one event-loop turn go out together, in one call into C.
        #: what the browser endpoints send in one event-loop turn, sent in one call
        self.egress = Egress(_call_soon)

    async def start(self) -> None:
        """Open the shared media ports (an OSError names the one that could not be bound)."""
        s = self.settings
        try:
            self.udp = await UdpMediaPort.open(s.address, s.udp_port)
        except OSError as exc:
            raise OSError(exc.errno, f"bridge: UDP {s.address}:{s.udp_port}: "
                                     f"{exc.strerror}") from exc
        if s.tcp_port is not None:
            try:
                self.tcp = await TcpMediaPort.open(s.address, s.tcp_port)
            except OSError as exc:
                self.udp.close()
                self.udp = None
                raise OSError(exc.errno, f"bridge: TCP {s.address}:{s.tcp_port}: "
                                         f"{exc.strerror}") from exc
        self._running = True
        announced = s.announce or s.address
        log.info("bridge: media binds UDP %s:%d%s; candidates announce %s",
                 s.address, self.udp.local_addr[1],
                 f" and ICE-TCP {s.address}:{self.tcp.local_addr[1]}" if self.tcp else "",
                 announced)  # fmt: skip

    @property
    def udp_port(self) -> int:
        """The shared UDP port (its number once bound; udp_port 0 picks a free one)."""
        return self.udp.local_addr[1] if self.udp is not None else 0

    @property
    def tcp_port(self) -> int:
        return self.tcp.local_addr[1] if self.tcp is not None else 0

    async def stop(self) -> None:
        """Expire every endpoint and wait for every task the bridge started."""
        self._running = False
        for conference in list(self._conferences.values()):
            for endpoint_id in [*conference.endpoints, *conference.plain]:
                await self.expire(conference.conference_id, endpoint_id)
        while self._tasks:
            await asyncio.wait(list(self._tasks))
        if self.udp is not None:
            self.udp.close()
            self.udp = None
        if self.tcp is not None:
            await self.tcp.close()
            self.tcp = None

    # --- BridgeSession -----------------------------------------------------------------

    async def allocate(self, conference_id: str, endpoint_id: str) -> EndpointAllocation:
        """A new endpoint (an existing one of that id is expired first) on the shared
        ports; returns what goes into the browser's offer."""
        if self._find(conference_id, endpoint_id) is not None:
            log.info("endpoint %s/%s: allocated again; the old one is expired",
                     conference_id, endpoint_id)
            await self.expire(conference_id, endpoint_id)
        transport = EndpointTransport(
            self._certificate, _drop, _drop, label=f"{conference_id}/{endpoint_id}",
            egress=self.egress,
        )
        if self.udp is None:
            await transport.close()
            raise TransportFailed("the bridge is not started")
        transport.attach(self.udp, self.tcp, announce=self.settings.announce)
        # From here to conference.add() nothing awaits: the conference cannot go away.
        conference = self._conference(conference_id)
        transport.on_rtp = conference.rtp_handler(endpoint_id)
        transport.on_rtcp = conference.rtcp_handler(endpoint_id)
        allocation = EndpointAllocation(
            conference_id=conference_id,
            endpoint_id=endpoint_id,
            transport=transport.local_description(),
            payload_types=PAYLOAD_TYPES,
            header_extensions=HEADER_EXTENSIONS,
        )
        endpoint = Endpoint(
            allocation, transport, timeout=self.settings.endpoint_timeout,
            now=asyncio.get_running_loop().time(),
            on_connected=self._endpoint_connected, on_failed=self._endpoint_failed,
        )
        conference.add(endpoint)
        log.info("endpoint %s/%s: allocated on the shared media port", conference_id,
                 endpoint_id)
        return allocation

    async def allocate_plain(
        self, conference_id: str, endpoint_id: str
    ) -> PlainEndpointAllocation:
        """A plain endpoint (an existing one of that id is expired first): connected at once
        (EndpointConnected follows as soon as the caller yields), no socket, no timeout.
        Its packets go through `connect_local(allocation.media, ...)`."""
        if self._find(conference_id, endpoint_id) is not None:
            log.info("endpoint %s/%s: allocated again; the old one is expired",
                     conference_id, endpoint_id)
            await self.expire(conference_id, endpoint_id)
        conference = self._conference(conference_id)
        endpoint = self._plain.create(
            conference_id, endpoint_id, PAYLOAD_TYPES, HEADER_EXTENSIONS,
            rtp_in=conference.rtp_handler(endpoint_id),
            rtcp_in=conference.rtcp_handler(endpoint_id), clock=conference.time)
        conference.add_plain(endpoint)
        log.info("endpoint %s/%s: plain endpoint allocated (%s)", conference_id, endpoint_id,
                 endpoint.media)
        # After the allocation reaches the caller: the focus knows the endpoint by then.
        asyncio.get_running_loop().call_soon(self._plain_connected, endpoint)
        return endpoint.allocation

    def connect_local(self, media: str, on_rtp: PacketOut, on_rtcp: PacketOut) -> LocalLink:
        """The in-process packet link of a plain endpoint (its allocation's `media`).
        `on_rtp` / `on_rtcp` get what the bridge sends the endpoint, synchronously, from
        inside the forwarder. Raises UnknownMedia (a LookupError) for media the bridge has no
        endpoint for; after the endpoint is expired the link drops what it is given."""
        return self._plain.connect(media, on_rtp, on_rtcp)

    async def update(self, conference_id: str, endpoint_id: str, update: EndpointUpdate) -> None:
        endpoint = self._get(conference_id, endpoint_id)
        forwarder = self._conferences[conference_id].forwarder
        if update.receive is not None or update.group is not None:
            forwarder.set_receive(endpoint_id, update.receive, update.group)
        if update.sources is not None:
            forwarder.set_sources(endpoint_id, update.sources)
        if update.last_n is not None:
            forwarder.set_last_n(endpoint_id, update.last_n)
        if update.audio_forced_off is not None:
            forwarder.set_audio_forced_off(endpoint_id, update.audio_forced_off)
        if update.transport is not None:
            if isinstance(endpoint, Endpoint):
                endpoint.start(update.transport)
            else:
                log.warning("endpoint %s/%s: a plain endpoint has no ICE/DTLS transport; "
                            "ignored", conference_id, endpoint_id)
        self._conferences[conference_id]._after_input()

    async def expire(self, conference_id: str, endpoint_id: str) -> None:
        """Close everything of the endpoint; a conference without endpoints goes away.
        Returns once its attachments and tasks are gone (also when the bridge is already
        expiring it after a failure). Expiring an unknown endpoint does nothing."""
        task = self._expiry(conference_id, endpoint_id)
        if task is not None:
            await asyncio.shield(task)

    def _expiry(self, conference_id: str, endpoint_id: str) -> asyncio.Task[None] | None:
        """The task closing this endpoint: started now if it is still in its conference."""
        key = (conference_id, endpoint_id)
        task = self._expiring.get(key)
        if task is not None:
            return task
        conference = self._conferences.get(conference_id)
        endpoint = conference.remove(endpoint_id) if conference is not None else None
        if conference is None or endpoint is None:
            return None
        self._drop_if_empty(conference)
        if isinstance(endpoint, PlainEndpoint):  # nothing to wait for
            self._plain.close(endpoint)
            log.info("endpoint %s/%s: expired", conference_id, endpoint_id)
            return None
        task = asyncio.get_running_loop().create_task(
            self._close_endpoint(endpoint), name=f"bridge-expire-{endpoint_id}")
        self._expiring[key] = task
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            if self._expiring.get(key) is t:
                del self._expiring[key]

        task.add_done_callback(done)
        return task

    async def _close_endpoint(self, endpoint: Endpoint) -> None:
        try:
            await endpoint.close()
        except Exception:
            log.exception("endpoint %s/%s: error while closing", endpoint.conference_id,
                          endpoint.endpoint_id)
        finally:
            totals = endpoint.transport.totals()
            for name in COUNTER_NAMES:
                setattr(self._retired, name, getattr(self._retired, name)
                        + getattr(totals, name))
        log.info("endpoint %s/%s: expired", endpoint.conference_id, endpoint.endpoint_id)

    async def receive_sources(
        self, conference_id: str, endpoint_id: str
    ) -> tuple[ReceiveSource, ...]:
        self._get(conference_id, endpoint_id)
        return self._conferences[conference_id].forwarder.receive_sources(endpoint_id)

    def subscribe(self, listener: BridgeListener) -> Callable[[], None]:
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def stats(self) -> dict[str, int]:
        """Gauges (conferences, endpoints*, plain_links) and running counts: the browsers'
        transports' (COUNTER_NAMES), the local links' ("plain_*"), the forwarders'."""
        endpoints = [e for c in self._conferences.values() for e in c.endpoints.values()]
        plain = len(self._plain)
        totals: dict[str, int] = {
            "conferences": len(self._conferences),
            "endpoints": len(endpoints) + plain,
            "endpoints_connected": sum(e.state == "connected" for e in endpoints) + plain,
            "endpoints_failed": self.endpoints_failed,
            **self._plain.stats(),
            **{f"send_batch_{k}": v for k, v in self.egress.stats().items()},
            **port_stats(self.udp, self.tcp),
        }
        counters = [e.transport.totals() for e in endpoints]
        for name in COUNTER_NAMES:
            totals[name] = getattr(self._retired, name) + sum(
                getattr(c, name) for c in counters)
        for key, value in self._retired_forwarder.items():
            totals[f"forwarder_{key}"] = value
        for conference in self._conferences.values():
            for key, value in conference.forwarder.stats().items():
                totals[f"forwarder_{key}"] = totals.get(f"forwarder_{key}", 0) + value
        return totals

    def resources(self) -> dict[str, int]:
        """Live tasks, sockets and timers the bridge holds (tests check they go to 0).
        "endpoints" counts plain ones too (they hold nothing else); "ports": endpoints
        attached to the shared ports."""
        conferences = list(self._conferences.values())
        endpoints = [e for c in conferences for e in c.endpoints.values()]
        return {
            "conferences": len(conferences),
            "endpoints": len(endpoints) + sum(len(c.plain) for c in conferences),
            "ports": (len(self.udp.demux) if self.udp else 0)
            + (len(self.tcp.demux) if self.tcp else 0),
            "sockets": sum(e.transport.open_sockets() for e in endpoints),
            "timers": sum(c.timer_armed for c in conferences),
            "tasks": len(self._tasks) + sum(e.has_task for e in endpoints),
        }

    # --- events ------------------------------------------------------------------------

    def emit(self, event: BridgeEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("bridge: listener failed on %r", event)

    def _endpoint_connected(self, endpoint: Endpoint) -> None:
        self.emit(EndpointConnected(endpoint.conference_id, endpoint.endpoint_id))

    def _plain_connected(self, endpoint: PlainEndpoint) -> None:
        if self._plain.current(endpoint):  # not expired in the meantime
            self.emit(EndpointConnected(endpoint.conference_id, endpoint.endpoint_id))

    def _endpoint_failed(self, endpoint: Endpoint, reason: str) -> None:
        """The bridge expires a failed endpoint itself; the focus removes the participant
        (its own expire() is then a no-op)."""
        self.endpoints_failed += 1
        conference = self._conferences.get(endpoint.conference_id)
        if conference is not None and conference.endpoints.get(endpoint.endpoint_id) is endpoint:
            self._expiry(endpoint.conference_id, endpoint.endpoint_id)
        self.emit(EndpointFailed(endpoint.conference_id, endpoint.endpoint_id, reason))

    # --- lookups -----------------------------------------------------------------------

    def _find(self, conference_id: str, endpoint_id: str) -> Endpoint | PlainEndpoint | None:
        conference = self._conferences.get(conference_id)
        if conference is None:
            return None
        return conference.endpoints.get(endpoint_id) or conference.plain.get(endpoint_id)

    def _get(self, conference_id: str, endpoint_id: str) -> Endpoint | PlainEndpoint:
        endpoint = self._find(conference_id, endpoint_id)
        if endpoint is None:
            raise UnknownEndpoint(f"{conference_id}/{endpoint_id}")
        return endpoint

    def _conference(self, conference_id: str) -> Conference:
        conference = self._conferences.get(conference_id)
        if conference is None:
            conference = self._conferences[conference_id] = Conference(conference_id, self)
            conference.start_timer()
        return conference

    def _drop_if_empty(self, conference: Conference) -> None:
        current = self._conferences.get(conference.conference_id)
        if conference.empty and current is conference:
            for key, value in conference.forwarder.stats().items():
                if key not in FORWARDER_GAUGES:  # keep running totals growing
                    self._retired_forwarder[key] = self._retired_forwarder.get(key, 0) + value
            conference.close()
            del self._conferences[conference.conference_id]
            log.info("conference %s: no endpoints left, removed", conference.conference_id)


def _call_soon(callback: Callable[[], object]) -> None:
    asyncio.get_running_loop().call_soon(callback)
