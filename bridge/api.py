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


@dataclass(frozen=True, slots=True)
class IceCandidate:
    """One ICE candidate, as in an SDP a=candidate line (RFC 8839)."""

    foundation: str
    component: int
    protocol: str  # "udp" (TCP candidates later)
    priority: int
    host: str
    port: int
    type: str  # "host" | "srflx" | "relay"
    related_address: str | None = None
    related_port: int | None = None


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
class EndpointUpdate:
    """What the focus learned from the browser's answer (None: unchanged)."""

    transport: TransportDescription | None = None
    sources: tuple[MediaSource, ...] | None = None  # everything the endpoint sends, now
    last_n: int | None = None
    # The focus's mute: the bridge drops this endpoint's audio for everyone (moderator mute
    # must hold even against a modified client).
    audio_forced_off: bool | None = None


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

    async def update(self, conference_id: str, endpoint_id: str, update: EndpointUpdate) -> None:
        ...

    async def expire(self, conference_id: str, endpoint_id: str) -> None: ...

    async def receive_sources(
        self, conference_id: str, endpoint_id: str
    ) -> tuple[ReceiveSource, ...]:
        """The sources this endpoint should be offered to receive (every other endpoint's),
        with the SSRCs the bridge will use towards it."""
        ...

    def subscribe(self, listener: BridgeListener) -> Callable[[], None]: ...

    def stats(self) -> dict[str, int]: ...
