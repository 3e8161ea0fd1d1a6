"""The focus -> bridge seam: allocate, update, expire; plain dataclasses in and out.

Modelled on Jicofo's ColibriSessionManager: the focus never holds a live object of the
bridge, so the same calls can go over the network (a cluster's bridges) later. Everything
here is immutable data; the in-process implementation is `bridge.service.Bridge`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

MediaKind = Literal["audio", "video"]
VideoType = Literal["camera", "screen"]
# What an endpoint is sent: every other endpoint's sources (as a browser), only their audio
# (the gateway's room mixer), or nothing (a phone caller's send-only endpoint).
ReceivePolicy = Literal["all", "audio", "none"]


@dataclass(frozen=True, slots=True)
class IceCandidate:
    """One ICE candidate, as in an SDP a=candidate line (RFC 8839)."""

    foundation: str
    component: int
    protocol: str  # "udp" | "tcp" (ICE-TCP, RFC 6544)
    priority: int
    host: str
    port: int
    type: str  # "host" | "srflx" | "relay"
    related_address: str | None = None
    related_port: int | None = None
    tcptype: str | None = None  # "passive" for the bridge's ICE-TCP candidate


@dataclass(frozen=True, slots=True)
class DtlsFingerprint:
    algorithm: str  # "sha-256"
    value: str  # "AB:CD:..."


@dataclass(frozen=True, slots=True)
class TransportDescription:
    """ICE and DTLS parameters of one side of an endpoint's transport (BUNDLE: one per
    endpoint). `setup` is the DTLS role in SDP terms: "actpass" | "active" | "passive"."""

    ice_ufrag: str
    ice_pwd: str
    fingerprints: tuple[DtlsFingerprint, ...]
    setup: str
    candidates: tuple[IceCandidate, ...] = ()
    ice_lite: bool = False


@dataclass(frozen=True, slots=True)
class PayloadType:
    """A codec as negotiated on the endpoint (the same numbers for every endpoint of a
    conference: the focus offers fixed payload types)."""

    pt: int
    name: str  # "opus", "VP8", "H264", "rtx"
    clock_rate: int
    channels: int = 1
    fmtp: str = ""
    rtcp_fb: tuple[str, ...] = ()  # "nack", "nack pli", "ccm fir", "goog-remb", "transport-cc"


@dataclass(frozen=True, slots=True)
class HeaderExtension:
    id: int
    uri: str  # e.g. "urn:ietf:params:rtp-hdrext:ssrc-audio-level"


@dataclass(frozen=True, slots=True)
class MediaSource:
    """One stream an endpoint sends: its SSRC (and the RTX SSRC for video), kind, and the
    ids the receivers' SDP uses (msid stream and track)."""

    endpoint_id: str
    kind: MediaKind
    ssrc: int
    rtx_ssrc: int | None = None
    video_type: VideoType | None = None  # video only
    stream_id: str = ""
    track_id: str = ""


@dataclass(frozen=True, slots=True)
class EndpointAllocation:
    """The bridge's side of a new endpoint: what the focus puts into the browser's offer."""

    conference_id: str
    endpoint_id: str
    transport: TransportDescription
    payload_types: tuple[PayloadType, ...]
    header_extensions: tuple[HeaderExtension, ...]


@dataclass(frozen=True, slots=True)
class PlainEndpointAllocation:
    """The bridge's side of a plain endpoint: plain RTP and RTCP (no ICE, DTLS or SRTP) for
    a media component of our own, the gateway. It is connected at once and has no liveness
    timeout (a silent phone sends nothing: DTX); its owner expires it.

    `payload_types` and `header_extensions` are the conference's (the same numbers as the
    browsers'): audio goes as Opus on payload type 111 with the RFC 6464 audio level in
    one-byte header extension 1, exactly like a browser's. Its sources are declared with
    `EndpointUpdate(sources=...)` as a browser's are. A plain endpoint starts with
    `receive="audio"` (it has no use for video); a phone caller's is set to "none" and
    shares a `group` with its gateway's room mixer.

    `media` names the packet link to the endpoint:

    - "local:<conference_id>/<endpoint_id>": the bridge runs in this process; the composition
      root connects to it with `Bridge.connect_local(media, on_rtp, on_rtcp)`.
    - "udp:HOST:PORT": reserved for a bridge on another host (plain RTP/RTCP multiplexed on
      one UDP port, RFC 5761); not implemented yet.
    """

    conference_id: str
    endpoint_id: str
    payload_types: tuple[PayloadType, ...]
    header_extensions: tuple[HeaderExtension, ...]
    media: str


@dataclass(frozen=True, slots=True)
class EndpointUpdate:
    """What the focus learned from the browser's answer (None: unchanged)."""

    transport: TransportDescription | None = None
    sources: tuple[MediaSource, ...] | None = None  # everything the endpoint sends, now
    last_n: int | None = None
    # The focus's mute: the bridge drops this endpoint's audio for everyone (moderator mute
    # must hold even against a modified client).
    audio_forced_off: bool | None = None
    # What the endpoint is sent (a new browser endpoint starts with "all", a plain one with
    # "audio").
    receive: ReceivePolicy | None = None
    # Endpoints with the same non-empty group never receive each other's sources: the
    # gateway mixes its own phones itself. "" leaves the group (a new endpoint has none).
    group: str | None = None


@dataclass(frozen=True, slots=True)
class ReceiveSource:
    """A source as one receiver sees it: after the bridge rewrote SSRCs, the receiver gets
    the stream on `ssrc` (and `rtx_ssrc`), stable for as long as the sender sends."""

    source: MediaSource
    ssrc: int
    rtx_ssrc: int | None = None


# Events the bridge reports to the focus.


@dataclass(frozen=True, slots=True)
class EndpointConnected:
    conference_id: str
    endpoint_id: str


@dataclass(frozen=True, slots=True)
class EndpointFailed:
    """ICE or DTLS failed, or no packet for the bridge's timeout: the focus removes the
    participant."""

    conference_id: str
    endpoint_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class DominantSpeakerChanged:
    conference_id: str
    endpoint_id: str | None
    previous: tuple[str, ...] = ()  # recent speakers, most recent first


@dataclass(frozen=True, slots=True)
class EndpointStats:
    """Periodic per-endpoint figures for the connection-quality indicator."""

    conference_id: str
    endpoint_id: str
    rtt_ms: float | None
    receive_bitrate: int
    send_bitrate: int
    loss_fraction: float  # of what the endpoint sent us, last interval
    extra: dict[str, float] = field(default_factory=dict)


BridgeEvent = EndpointConnected | EndpointFailed | DominantSpeakerChanged | EndpointStats
BridgeListener = Callable[[BridgeEvent], None]


class BridgeSession(Protocol):
    """What the focus may ask of a bridge."""

    async def allocate(self, conference_id: str, endpoint_id: str) -> EndpointAllocation: ...

    async def allocate_plain(
        self, conference_id: str, endpoint_id: str
    ) -> PlainEndpointAllocation:
        """A plain endpoint (the gateway's phone callers and room mixer); update, expire and
        receive_sources take it as they take a browser's."""
        ...

    async def update(self, conference_id: str, endpoint_id: str, update: EndpointUpdate) -> None:
        ...

    async def expire(self, conference_id: str, endpoint_id: str) -> None: ...

    async def receive_sources(
        self, conference_id: str, endpoint_id: str
    ) -> tuple[ReceiveSource, ...]:
        """The sources this endpoint should be offered to receive (every other endpoint's,
        as its `receive` and `group` allow), with the SSRCs the bridge will use towards it."""
        ...

    def subscribe(self, listener: BridgeListener) -> Callable[[], None]: ...

    def stats(self) -> dict[str, int]: ...
