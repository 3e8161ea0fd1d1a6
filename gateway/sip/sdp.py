"""SDP (RFC 8866) parsing and serializing, and the audio offer/answer rules of RFC 3264.

The SDP model (`SessionDescription`, `MediaDescription` and the values of their lines, with
`parse()` / `serialize()`) is in `sdp_syntax.py` and re-exported here; this module holds the
codec table and offer/answer. `negotiate_audio()` picks a codec from an offer,
`build_answer()` and `build_offer()` write our side. `media_host_kind()` says whether a
c= address can be sent to as it is, is hold, must be resolved once (a host name) or is
unusable (answer 488). Codecs are described by `CodecSpec` and named
"NAME/rate[/channels]" ("PCMU/8000", "opus/48000/2"), so G722 and Opus are a table entry away.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

from .errors import RemoteProtocolError
from .sdp_syntax import (
    DIRECTIONS,
    STATIC_PAYLOAD_TYPES,
    Attribute,
    Connection,
    MediaDescription,
    Origin,
    RtpMap,
    SessionDescription,
)

__all__ = [
    "DEFAULT_AUDIO_CODECS",
    "DIRECTIONS",
    "KNOWN_CODECS",
    "STATIC_PAYLOAD_TYPES",
    "TELEPHONE_EVENT",
    "Attribute",
    "AudioNegotiation",
    "CodecSpec",
    "Connection",
    "MediaDescription",
    "Origin",
    "RtpMap",
    "SessionDescription",
    "answer_direction",
    "build_answer",
    "build_offer",
    "codec_spec",
    "media_host_kind",
    "negotiate_audio",
    "parse_fmtp",
]


def _codec_key(name: str, clock_rate: int, channels: int) -> str:
    return f"{name.lower()}/{clock_rate}/{channels}"


@dataclass(frozen=True, slots=True)
class CodecSpec:
    """What we know about a codec: its rtpmap name, rates and (if any) static payload type."""

    name: str
    clock_rate: int
    channels: int = 1
    static_pt: int | None = None
    fmtp: str | None = None

    @property
    def key(self) -> str:
        return _codec_key(self.name, self.clock_rate, self.channels)

    def rtpmap(self) -> RtpMap:
        return RtpMap(self.name, self.clock_rate, self.channels if self.channels != 1 else None)


KNOWN_CODECS: dict[str, CodecSpec] = {
    spec.key: spec
    for spec in (
        CodecSpec("PCMU", 8000, static_pt=0),
        CodecSpec("PCMA", 8000, static_pt=8),
        CodecSpec("G722", 8000, static_pt=9),  # RTP clock 8000 by RFC 3551's historic error
        CodecSpec("opus", 48000, channels=2, fmtp="useinbandfec=1"),
        CodecSpec("telephone-event", 8000, fmtp="0-16"),
        CodecSpec("telephone-event", 48000, fmtp="0-16"),
    )
}
DEFAULT_AUDIO_CODECS: list[str] = ["PCMU/8000", "PCMA/8000", "telephone-event/8000"]
TELEPHONE_EVENT = "telephone-event"


def codec_spec(text: str) -> CodecSpec:
    """Resolve "PCMU", "pcma/8000" or "opus/48000/2" to a CodecSpec (unknown names are allowed
    with an explicit rate: they get a dynamic payload type)."""
    parts = text.split("/")
    name = parts[0]
    try:
        rate = int(parts[1]) if len(parts) > 1 else None
        channels = int(parts[2]) if len(parts) > 2 else None
    except ValueError:
        raise ValueError(f"bad codec name {text!r}") from None
    for spec in KNOWN_CODECS.values():
        if spec.name.lower() != name.lower():
            continue
        if rate is not None and spec.clock_rate != rate:
            continue
        if channels is not None and spec.channels != channels:
            continue
        return spec
    if rate is None:
        raise ValueError(f"unknown codec {text!r}: give its clock rate")
    return CodecSpec(name, rate, channels or 1)


# ---- offer/answer (RFC 3264) -------------------------------------------------------------


def answer_direction(offered: str, local: str = "sendrecv") -> str:
    """RFC 3264 section 6.1: we send only if the offerer receives and we want to send; we
    receive only if the offerer sends and we want to receive."""
    we_send = offered in ("sendrecv", "recvonly") and local in ("sendrecv", "sendonly")
    we_receive = offered in ("sendrecv", "sendonly") and local in ("sendrecv", "recvonly")
    if we_send and we_receive:
        return "sendrecv"
    if we_send:
        return "sendonly"
    if we_receive:
        return "recvonly"
    return "inactive"


@dataclass(frozen=True, slots=True)
class AudioNegotiation:
    """The outcome of negotiate_audio: the codec to use, DTMF and where to send."""

    codec: CodecSpec
    payload_type: int  # the offerer's payload type for the codec
    dtmf_payload_type: int | None
    remote_host: str
    remote_port: int
    direction: str  # the offerer's effective direction
    ptime: int | None
    media_index: int  # which m= line of the offer
    fmtp: str | None = None  # the offerer's fmtp for the codec (see parse_fmtp)
    dtmf_clock_rate: int | None = None  # the rtpmap rate of the chosen telephone-event

    @property
    def remote_address(self) -> tuple[str, int]:
        return (self.remote_host, self.remote_port)

    @property
    def on_hold(self) -> bool:
        """The offerer does not want to receive media (sendonly or inactive)."""
        return self.direction in ("sendonly", "inactive")


def _match_codec(media: MediaDescription, spec: CodecSpec) -> int | None:
    for pt in media.payload_types():
        codec = media.codec_of(pt)
        if codec is None:
            continue
        name, rate, channels = codec
        if (
            name.lower() == spec.name.lower()
            and rate == spec.clock_rate
            # RFC 7587 wants opus/48000/2 whatever is sent; "opus/48000" occurs too
            and (channels == spec.channels or name.lower() == "opus")
        ):
            return pt
    return None


def parse_fmtp(params: str | None) -> dict[str, str]:
    """"useinbandfec=1; maxplaybackrate=16000" -> {"useinbandfec": "1", ...} (keys lower
    case; a value-less item such as "0-16" maps to "")."""
    out: dict[str, str] = {}
    for item in (params or "").split(";"):
        key, _, value = item.strip().partition("=")
        if key:
            out[key.strip().lower()] = value.strip()
    return out


def negotiate_audio(
    offer: SessionDescription, supported: list[str] | None = None
) -> AudioNegotiation | None:
    """Pick the first audio codec in OUR preference order (``supported``) that the offer
    has, whatever the offer's order, on the first usable audio m= line. None: nothing in
    common (answer 488). "telephone-event/<rate>" in `supported` enables RFC 4733 DTMF:
    the offer's telephone-event at the chosen codec's clock rate when both sides have it,
    else one at another rate we support (phones offer telephone-event/8000 beside opus)."""
    specs = [codec_spec(name) for name in (supported or DEFAULT_AUDIO_CODECS)]
    audio_specs = [s for s in specs if s.name.lower() != TELEPHONE_EVENT]
    dtmf_specs = [s for s in specs if s.name.lower() == TELEPHONE_EVENT]
    for index, media in enumerate(offer.media):
        if media.media != "audio" or media.rejected or "RTP/" not in media.proto.upper():
            continue
        for spec in audio_specs:
            pt = _match_codec(media, spec)
            if pt is None:
                continue
            dtmf_pt = dtmf_rate = None
            for dtmf in sorted(dtmf_specs, key=lambda d: d.clock_rate != spec.clock_rate):
                dtmf_pt = _match_codec(media, dtmf)
                if dtmf_pt is not None:
                    dtmf_rate = dtmf.clock_rate
                    break
            connection = offer.connection_for(media)
            if connection is None:
                raise RemoteProtocolError("SDP audio without a c= line")
            return AudioNegotiation(
                codec=spec,
                payload_type=pt,
                dtmf_payload_type=dtmf_pt,
                remote_host=connection.host,
                remote_port=media.port,
                direction=offer.direction_of(media),
                ptime=media.ptime,
                media_index=index,
                fmtp=media.fmtp.get(pt),
                dtmf_clock_rate=dtmf_rate,
            )
    return None


def _addrtype(host: str) -> str:
    return "IP6" if ":" in host else "IP4"


def build_answer(
    offer: SessionDescription,
    local_host: str,
    local_port: int,
    supported: list[str] | None = None,
    *,
    session_id: str = "0",
    session_version: int = 0,
    local_direction: str = "sendrecv",
) -> tuple[SessionDescription, AudioNegotiation] | None:
    """Answer an offer with one audio stream; every other m= line is rejected (port 0).

    None when no audio codec is in common: the caller answers 488.
    """
    negotiation = negotiate_audio(offer, supported)
    if negotiation is None:
        return None
    answer = SessionDescription(
        origin=Origin("-", session_id, session_version, "IN", _addrtype(local_host), local_host),
        name="-",
        connection=Connection(local_host, _addrtype(local_host)),
    )
    for index, offered in enumerate(offer.media):
        if index != negotiation.media_index:
            answer.media.append(
                MediaDescription(offered.media, 0, offered.proto, list(offered.formats) or ["0"])
            )
            continue
        spec = negotiation.codec
        pt_text = str(negotiation.payload_type)
        media = MediaDescription("audio", local_port, offered.proto, [pt_text])
        media.rtpmap[negotiation.payload_type] = spec.rtpmap()
        # our own parameters (opus: what we receive) when we have some, else the offer's
        fmtp = spec.fmtp if spec.fmtp is not None else negotiation.fmtp
        if fmtp is not None:
            media.fmtp[negotiation.payload_type] = fmtp
        if negotiation.dtmf_payload_type is not None:
            dtmf_pt = negotiation.dtmf_payload_type
            media.formats.append(str(dtmf_pt))
            media.rtpmap[dtmf_pt] = RtpMap(TELEPHONE_EVENT,
                                           negotiation.dtmf_clock_rate or spec.clock_rate)
            media.fmtp[dtmf_pt] = offered.fmtp.get(dtmf_pt, "0-16")
        media.ptime = offered.ptime
        media.direction = answer_direction(negotiation.direction, local_direction)
        answer.media.append(media)
    return answer, negotiation


def build_offer(
    local_host: str,
    local_port: int,
    supported: list[str] | None = None,
    *,
    session_id: str = "0",
    session_version: int = 0,
    direction: str = "sendrecv",
    ptime: int | None = 20,
) -> SessionDescription:
    """An offer with one audio m= line listing our codecs in preference order."""
    specs = [codec_spec(name) for name in (supported or DEFAULT_AUDIO_CODECS)]
    used = {s.static_pt for s in specs if s.static_pt is not None}
    media = MediaDescription("audio", local_port, "RTP/AVP", [])
    next_dynamic = 96
    for spec in specs:
        if spec.static_pt is not None:
            pt = spec.static_pt
        elif spec.name.lower() == TELEPHONE_EVENT and 101 not in used:
            pt = 101
        else:
            while next_dynamic in used:
                next_dynamic += 1
            pt = next_dynamic
        used.add(pt)
        media.formats.append(str(pt))
        media.rtpmap[pt] = spec.rtpmap()
        if spec.fmtp is not None:
            media.fmtp[pt] = spec.fmtp
    media.ptime = ptime
    media.direction = direction
    return SessionDescription(
        origin=Origin("-", session_id, session_version, "IN", _addrtype(local_host), local_host),
        name="-",
        connection=Connection(local_host, _addrtype(local_host)),
        media=[media],
    )


# ---- the remote media address ----------------------------------------------------------

MediaHostKind = Literal["ip", "hold", "name", "bad"]
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def media_host_kind(host: str, ipv6: bool) -> MediaHostKind:
    """What a c= host is to a leg of one family (``ipv6``: the leg's sockets are IPv6).

    "ip": a numeric unicast address of the leg's family; "hold": 0.0.0.0 or :: (RFC 2543
    hold, still accepted as RFC 3264 allows); "name": a host name (RFC 1123 syntax, a last
    label that is not all digits) to resolve once; "bad": anything else (127.0.0.999, an
    IPv6 address on an IPv4 leg, multicast, broadcast, a zone id, garbage)."""
    if host in ("0.0.0.0", "::"):
        return "hold"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        if ((address.version == 6) != ipv6 or "%" in host or address.is_multicast
                or address.is_unspecified
                or address == ipaddress.IPv4Address("255.255.255.255")):
            return "bad"
        return "ip"
    name = host.lower().removesuffix(".")
    labels = name.split(".")
    if (len(name) > 253 or not all(_LABEL.match(label) for label in labels)
            or labels[-1].isdigit()):
        return "bad"
    return "name"
