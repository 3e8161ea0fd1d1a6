"""Plain endpoints: the gateway's phone callers and room mixers at the bridge.

A plain endpoint carries plain RTP and RTCP: no ICE, DTLS or SRTP, because the other side
is a media component of our own. It is connected as soon as it is allocated, has no
liveness timeout (a silent phone sends nothing at all with DTX: its owner expires it), and
holds no socket, task or timer.

In one process the packets go through a `LocalLink` (bridge.api.PlainEndpointAllocation's
"local:<conference_id>/<endpoint_id>" media): `send_rtp` / `send_rtcp` call the conference
forwarder directly with the loop's time, and whatever the forwarder sends to the endpoint
comes back through the link's `on_rtp` / `on_rtcp` callbacks, told apart by the RTCP packet
types 192-223 in the second byte (RFC 5761). The callbacks run synchronously inside the
forwarder's fan-out: they should queue the packet, not send back into a link.

States: connected --close()--> closed (a closed endpoint drops what its link sends).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, fields

from bridge.api import HeaderExtension, PayloadType, PlainEndpointAllocation

log = logging.getLogger(__name__)

PacketIn = Callable[[bytes, float], None]  # into the conference: (data, now)
PacketOut = Callable[[bytes], None]  # out to the link's owner


class UnknownMedia(LookupError):
    """connect_local() named media the bridge has no plain endpoint for (never allocated,
    expired, or not a "local:" name)."""


def local_media(conference_id: str, endpoint_id: str) -> str:
    return f"local:{conference_id}/{endpoint_id}"


@dataclass(slots=True)
class PlainCounters:
    """Packets through every local link of the bridge (running counts)."""

    rtp_received: int = 0  # from links into the bridge
    rtcp_received: int = 0
    rtp_sent: int = 0  # from the bridge out to links
    rtcp_sent: int = 0
    dropped: int = 0  # sent into a closed link (its endpoint expired)
    undelivered: int = 0  # for an endpoint with no open link
    callback_errors: int = 0  # the link owner's on_rtp / on_rtcp raised


class PlainEndpoint:
    """One plain endpoint in a conference: no socket, no task, no timeout."""

    def __init__(
        self,
        allocation: PlainEndpointAllocation,
        *,
        rtp_in: PacketIn,
        rtcp_in: PacketIn,
        clock: Callable[[], float],
        counters: PlainCounters,
    ) -> None:
        self.allocation = allocation
        self.conference_id = allocation.conference_id
        self.endpoint_id = allocation.endpoint_id
        self.media = allocation.media
        self.state = "connected"
        self.link: LocalLink | None = None
        self.rtp_in = rtp_in
        self.rtcp_in = rtcp_in
        self.clock = clock
        self.counters = counters

    def __repr__(self) -> str:
        return f"PlainEndpoint({self.conference_id}/{self.endpoint_id} {self.state})"

    def connect(self, on_rtp: PacketOut, on_rtcp: PacketOut) -> LocalLink:
        """Open the link; a link opened before is closed (its sends are dropped)."""
        if self.state != "connected":
            raise UnknownMedia(f"{self.media}: endpoint {self.state}")
        if self.link is not None:
            log.warning("endpoint %s/%s: linked again; the old link is closed",
                        self.conference_id, self.endpoint_id)
            self.link.close()
        self.link = LocalLink(self, on_rtp, on_rtcp)
        log.info("endpoint %s/%s: local link open", self.conference_id, self.endpoint_id)
        return self.link

    def send(self, data: bytes) -> bool:
        """What the forwarder sends to this endpoint: to the link's owner, now."""
        link = self.link
        counters = self.counters
        if link is None:
            counters.undelivered += 1
            return False
        try:
            if len(data) > 1 and 191 < data[1] < 224:  # RTCP packet types 192-223
                counters.rtcp_sent += 1
                link.on_rtcp(data)
            else:
                counters.rtp_sent += 1
                link.on_rtp(data)
        except Exception:  # the owner's bug must not stop the fan-out to the others
            counters.callback_errors += 1
            if counters.callback_errors % 1000 == 1:
                log.exception("endpoint %s/%s: link callback failed (%d so far)",
                              self.conference_id, self.endpoint_id, counters.callback_errors)
            return False
        return True

    def close(self) -> None:
        if self.state == "closed":
            return
        log.info("endpoint %s/%s: %s -> closed", self.conference_id, self.endpoint_id,
                 self.state)
        self.state = "closed"
        if self.link is not None:
            self.link.close()


class LocalLink:
    """The owner's end of a plain endpoint's in-process packet link."""

    __slots__ = ("_endpoint", "counters", "media", "on_rtcp", "on_rtp")

    def __init__(self, endpoint: PlainEndpoint, on_rtp: PacketOut, on_rtcp: PacketOut) -> None:
        self._endpoint: PlainEndpoint | None = endpoint
        self.media = endpoint.media
        self.counters = endpoint.counters
        self.on_rtp = on_rtp
        self.on_rtcp = on_rtcp

    def __repr__(self) -> str:
        return f"LocalLink({self.media}{' closed' if self.closed else ''})"

    @property
    def closed(self) -> bool:
        return self._endpoint is None

    def send_rtp(self, data: bytes) -> None:
        """Plain RTP from the owner into the conference (dropped, counted, once closed)."""
        endpoint = self._endpoint
        if endpoint is None:
            self.counters.dropped += 1
            return
        self.counters.rtp_received += 1
        endpoint.rtp_in(data, endpoint.clock())

    def send_rtcp(self, data: bytes) -> None:
        endpoint = self._endpoint
        if endpoint is None:
            self.counters.dropped += 1
            return
        self.counters.rtcp_received += 1
        endpoint.rtcp_in(data, endpoint.clock())

    def close(self) -> None:
        """Stop the link (the endpoint stays allocated until it is expired)."""
        endpoint = self._endpoint
        if endpoint is None:
            return
        self._endpoint = None
        if endpoint.link is self:
            endpoint.link = None
            log.info("endpoint %s/%s: local link closed", endpoint.conference_id,
                     endpoint.endpoint_id)


class PlainEndpoints:
    """The bridge's plain endpoints by media name, and the counters of all their links."""

    def __init__(self) -> None:
        self._by_media: dict[str, PlainEndpoint] = {}
        self.counters = PlainCounters()

    def __len__(self) -> int:
        return len(self._by_media)

    def create(self, conference_id: str, endpoint_id: str,
               payload_types: tuple[PayloadType, ...],
               header_extensions: tuple[HeaderExtension, ...], *, rtp_in: PacketIn,
               rtcp_in: PacketIn, clock: Callable[[], float]) -> PlainEndpoint:
        allocation = PlainEndpointAllocation(
            conference_id=conference_id, endpoint_id=endpoint_id, payload_types=payload_types,
            header_extensions=header_extensions, media=local_media(conference_id, endpoint_id))
        endpoint = PlainEndpoint(allocation, rtp_in=rtp_in, rtcp_in=rtcp_in, clock=clock,
                                 counters=self.counters)
        self._by_media[endpoint.media] = endpoint
        return endpoint

    def current(self, endpoint: PlainEndpoint) -> bool:
        """Still allocated (not expired, not replaced)."""
        return self._by_media.get(endpoint.media) is endpoint

    def close(self, endpoint: PlainEndpoint) -> None:
        endpoint.close()
        if self.current(endpoint):
            del self._by_media[endpoint.media]

    def connect(self, media: str, on_rtp: PacketOut, on_rtcp: PacketOut) -> LocalLink:
        endpoint = self._by_media.get(media)
        if endpoint is None:
            raise UnknownMedia(f"no plain endpoint for media {media!r}")
        return endpoint.connect(on_rtp, on_rtcp)

    def stats(self) -> dict[str, int]:
        """"endpoints_plain" and "plain_links" (gauges), "plain_<counter>" (running)."""
        out = {"endpoints_plain": len(self._by_media),
               "plain_links": sum(e.link is not None for e in self._by_media.values())}
        for f in fields(self.counters):
            out[f"plain_{f.name}"] = getattr(self.counters, f.name)
        return out
