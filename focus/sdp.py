"""The server's SDP offers to a browser, and the browser's answers (docs/signaling.md).

One RTCPeerConnection per browser, Unified Plan, BUNDLE and rtcp-mux:

- m-lines 0-2 are the browser's own sending slots, `a0` (audio), `v0` (camera) and `s0`
  (screen), `a=recvonly` from the server;
- then one `a=sendonly` m-line per source of another participant, `r1`, `r2`, ... A slot
  whose source went away turns `a=inactive` (its port stays, so BUNDLE is undisturbed); a
  later source of the same kind may reuse it, but not in the same offer that freed it, so
  the browser always sees the transceiver stop before it carries someone else's media.

`ReceiveSlots` keeps one receiver's mids stable across offers; `build_offer()` writes the
offer; `parse_answer()` reads the browser's ICE/DTLS parameters and the sources it sends
(`a=ssrc`, `a=ssrc-group:FID` for RTX, `a=msid`). Errors in an answer raise `SdpError`.
Pure functions and data: no I/O.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from bridge.api import (
    DtlsFingerprint,
    EndpointAllocation,
    HeaderExtension,
    IceCandidate,
    MediaKind,
    MediaSource,
    PayloadType,
    ReceiveSource,
    TransportDescription,
    VideoType,
)

__all__ = [
    "AUDIO_LEVEL_URI",
    "DEFAULT_HEADER_EXTENSIONS",
    "DEFAULT_PAYLOAD_TYPES",
    "OWN_SLOTS",
    "ParsedAnswer",
    "ReceiveSlot",
    "ReceiveSlots",
    "SdpError",
    "build_offer",
    "parse_answer",
    "tracks_json",
]

log = logging.getLogger(__name__)

AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
TWCC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
_VIDEO_ONLY_EXTENSIONS = frozenset({
    "urn:ietf:params:rtp-hdrext:toffset", "urn:3gpp:video-orientation",
    "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay",
    "http://www.webrtc.org/experiments/rtp-hdrext/video-content-type",
    "http://www.webrtc.org/experiments/rtp-hdrext/video-timing",
    "http://www.webrtc.org/experiments/rtp-hdrext/color-space",
})  # fmt: skip
_VIDEO_FB = ("nack", "nack pli", "ccm fir", "goog-remb", "transport-cc")

DEFAULT_PAYLOAD_TYPES: tuple[PayloadType, ...] = (
    PayloadType(111, "opus", 48000, 2, "minptime=10;useinbandfec=1", ("transport-cc",)),
    PayloadType(96, "VP8", 90000, 1, "", _VIDEO_FB),
    PayloadType(97, "rtx", 90000, 1, "apt=96"),
    PayloadType(102, "H264", 90000, 1,
                "profile-level-id=42e01f;packetization-mode=1;level-asymmetry-allowed=1",
                _VIDEO_FB),
    PayloadType(103, "rtx", 90000, 1, "apt=102"),
)  # fmt: skip
DEFAULT_HEADER_EXTENSIONS: tuple[HeaderExtension, ...] = (
    HeaderExtension(1, AUDIO_LEVEL_URI), HeaderExtension(3, TWCC_URI), HeaderExtension(4, MID_URI),
)  # fmt: skip

# mid -> (kind, video type) of the browser's own sending slots, in m-line order.
OWN_SLOTS: dict[str, tuple[MediaKind, VideoType | None]] = {
    "a0": ("audio", None), "v0": ("video", "camera"), "s0": ("video", "screen"),
}  # fmt: skip

MAX_SDP_LINES = 20000
MAX_CANDIDATES = 64
_ICE_CHARS = re.compile(r"[A-Za-z0-9+/]+")
_HASHES = frozenset({"sha-1", "sha-224", "sha-256", "sha-384", "sha-512"})
_FINGERPRINT = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){15,63}")
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]{1,256}")
_HOST = re.compile(r"[A-Za-z0-9.:%_-]{1,255}")  # IPv4, IPv6 (zone too), mDNS names
_DIRECTIONS = frozenset({"sendrecv", "sendonly", "recvonly", "inactive"})


class SdpError(ValueError):
    """The browser's SDP is malformed or does not fit the offer (the client's fault)."""


# -- receive slots -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReceiveSlot:
    mid: str
    kind: MediaKind
    source: ReceiveSource | None  # None: inactive

    @property
    def key(self) -> tuple[str, int] | None:
        return _key(self.source) if self.source is not None else None


def _key(source: ReceiveSource) -> tuple[str, int]:
    """A source's identity: its sender and the sender's SSRC (what the receiver sees may
    be rewritten by the bridge)."""
    return (source.source.endpoint_id, source.source.ssrc)


class ReceiveSlots:
    """One receiver's `r` m-lines: stable mids, inactive slots reused by kind."""

    def __init__(self) -> None:
        self._slots: list[ReceiveSlot] = []

    @property
    def slots(self) -> tuple[ReceiveSlot, ...]:
        return tuple(self._slots)

    def differs(self, sources: Iterable[ReceiveSource]) -> bool:
        """Whether `assign(sources)` would change what the receiver is offered."""
        current = {s.source for s in self._slots if s.source is not None}
        wanted: dict[tuple[str, int], ReceiveSource] = {}
        for source in sources:
            wanted.setdefault(_key(source), source)
        return current != set(wanted.values())

    def assign(self, sources: Iterable[ReceiveSource]) -> tuple[ReceiveSlot, ...]:
        """The slots for the next offer, given every source the receiver should get now."""
        wanted: dict[tuple[str, int], ReceiveSource] = {}
        for source in sources:
            wanted.setdefault(_key(source), source)
        reusable = [i for i, s in enumerate(self._slots) if s.source is None]
        for i, slot in enumerate(self._slots):
            if slot.source is None:
                continue
            current = wanted.pop(_key(slot.source), None)
            self._slots[i] = ReceiveSlot(slot.mid, slot.kind, current)
        for source in wanted.values():
            kind = source.source.kind
            index = next((i for i in reusable if self._slots[i].kind == kind), None)
            if index is not None:
                reusable.remove(index)
                self._slots[index] = ReceiveSlot(self._slots[index].mid, kind, source)
            else:
                self._slots.append(ReceiveSlot(f"r{len(self._slots) + 1}", kind, source))
        return self.slots


def tracks_json(slots: Iterable[ReceiveSlot]) -> dict[str, dict[str, object]]:
    """The offer message's `tracks`: mid -> whose media the m-line carries (active only)."""
    return {
        s.mid: {"participant": s.source.source.endpoint_id, "kind": s.kind,
                "video_type": s.source.source.video_type}
        for s in slots
        if s.source is not None
    }  # fmt: skip


# -- the offer ---------------------------------------------------------------------------------


def _is_video(pt: PayloadType) -> bool:
    return pt.clock_rate == 90000


def _codec_lines(payload_types: Sequence[PayloadType]) -> list[str]:
    lines: list[str] = []
    for pt in payload_types:
        channels = f"/{pt.channels}" if pt.channels > 1 else ""
        lines.append(f"a=rtpmap:{pt.pt} {pt.name}/{pt.clock_rate}{channels}")
        lines.extend(f"a=rtcp-fb:{pt.pt} {fb}" for fb in pt.rtcp_fb)
        if pt.fmtp:
            lines.append(f"a=fmtp:{pt.pt} {pt.fmtp}")
    return lines


def _candidate_line(c: IceCandidate) -> str:
    line = (f"a=candidate:{c.foundation} {c.component} {c.protocol} {c.priority} {c.host} "
            f"{c.port} typ {c.type}")  # fmt: skip
    if c.related_address is not None and c.related_port is not None:
        line += f" raddr {c.related_address} rport {c.related_port}"
    if c.tcptype is not None:
        line += f" tcptype {c.tcptype}"
    return line


def _address(host: str) -> str:
    return f"IN IP6 {host}" if ":" in host else f"IN IP4 {host}"


@dataclass(frozen=True, slots=True)
class _Section:
    mid: str
    kind: MediaKind
    direction: str
    source: ReceiveSource | None = None


def build_offer(
    allocation: EndpointAllocation,
    slots: Sequence[ReceiveSlot],
    *,
    session_id: int,
    version: int,
) -> str:
    """The offer for one browser: its own slots a0/v0/s0 (recvonly), then `slots`."""
    transport = allocation.transport
    payload_types = allocation.payload_types or DEFAULT_PAYLOAD_TYPES
    extensions = allocation.header_extensions or DEFAULT_HEADER_EXTENSIONS
    sections = [_Section(mid, kind, "recvonly") for mid, (kind, _) in OWN_SLOTS.items()]
    sections += [
        _Section(s.mid, s.kind, "sendonly" if s.source is not None else "inactive", s.source)
        for s in slots
    ]
    candidates = [c for c in transport.candidates if c.component == 1]
    default = candidates[0] if candidates else None
    port = default.port if default else 9
    connection = _address(default.host) if default else "IN IP4 0.0.0.0"
    lines = [
        "v=0",
        f"o=- {session_id} {version} IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE " + " ".join(s.mid for s in sections),
        "a=msid-semantic: WMS *",
    ]
    if transport.ice_lite:
        lines.append("a=ice-lite")
    for section in sections:
        video = section.kind == "video"
        pts = [pt for pt in payload_types if _is_video(pt) == video]
        exts = [e for e in extensions
                if (e.uri not in _VIDEO_ONLY_EXTENSIONS or video)
                and (e.uri != AUDIO_LEVEL_URI or not video)]  # fmt: skip
        lines.append(f"m={section.kind} {port} UDP/TLS/RTP/SAVPF "
                     + " ".join(str(pt.pt) for pt in pts))  # fmt: skip
        lines.append(f"c={connection}")
        lines.extend(_candidate_line(c) for c in candidates)
        lines.append("a=end-of-candidates")
        lines.append(f"a=ice-ufrag:{transport.ice_ufrag}")
        lines.append(f"a=ice-pwd:{transport.ice_pwd}")
        lines.extend(f"a=fingerprint:{f.algorithm} {f.value}" for f in transport.fingerprints)
        lines.append(f"a=setup:{transport.setup}")
        lines.append(f"a=mid:{section.mid}")
        lines.extend(f"a=extmap:{e.id} {e.uri}" for e in exts)
        lines.append(f"a={section.direction}")
        lines.append("a=rtcp-mux")
        if video:
            lines.append("a=rtcp-rsize")
        lines.extend(_codec_lines(pts))
        if section.source is not None:
            lines.extend(_source_lines(section.source))
    return "\r\n".join(lines) + "\r\n"


def _source_lines(receive: ReceiveSource) -> list[str]:
    source = receive.source
    stream = source.endpoint_id
    label = source.video_type or source.kind
    track = f"{source.endpoint_id}-{label}-{receive.ssrc}"
    cname = source.endpoint_id
    lines = [f"a=msid:{stream} {track}"]
    ssrcs = [receive.ssrc]
    if receive.rtx_ssrc is not None:
        lines.append(f"a=ssrc-group:FID {receive.ssrc} {receive.rtx_ssrc}")
        ssrcs.append(receive.rtx_ssrc)
    for ssrc in ssrcs:
        lines.append(f"a=ssrc:{ssrc} cname:{cname}")
        lines.append(f"a=ssrc:{ssrc} msid:{stream} {track}")
    return lines


# -- parsing an answer -------------------------------------------------------------------------


@dataclass(slots=True)
class _Media:
    kind: str
    port: int
    attributes: list[tuple[str, str]] = field(default_factory=list)

    def values(self, name: str) -> list[str]:
        return [v for n, v in self.attributes if n == name]

    def value(self, name: str) -> str | None:
        found = self.values(name)
        return found[0] if found else None

    @property
    def mid(self) -> str | None:
        return self.value("mid")

    @property
    def direction(self) -> str:
        found = [n for n, _ in self.attributes if n in _DIRECTIONS]
        return found[0] if found else "sendrecv"


@dataclass(slots=True)
class _Description:
    attributes: list[tuple[str, str]] = field(default_factory=list)
    media: list[_Media] = field(default_factory=list)

    def values(self, name: str) -> list[str]:
        return [v for n, v in self.attributes if n == name]


def _parse(text: str) -> _Description:
    lines = text.splitlines()
    if len(lines) > MAX_SDP_LINES:
        raise SdpError(f"more than {MAX_SDP_LINES} lines")
    if not lines or lines[0].strip() != "v=0":
        raise SdpError("expected 'v=0' first")
    description = _Description()
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line:
            continue
        if len(line) < 2 or line[1] != "=":
            raise SdpError(f"line {number}: expected 'x=...'")
        kind, value = line[0], line[2:]
        if kind == "m":
            parts = value.split()
            if len(parts) < 3 or not parts[1].split("/")[0].isdigit():
                raise SdpError(f"line {number}: bad m-line")
            description.media.append(_Media(parts[0], int(parts[1].split("/")[0])))
        elif kind == "a":
            name, _, attr = value.partition(":")
            target = description.media[-1] if description.media else description
            target.attributes.append((name, attr))
    return description


def _check_ice(ufrag: str | None, pwd: str | None) -> tuple[str, str]:
    if ufrag is None or not 4 <= len(ufrag) <= 256 or not _ICE_CHARS.fullmatch(ufrag):
        raise SdpError("ice-ufrag: missing or malformed")
    if pwd is None or not 22 <= len(pwd) <= 256 or not _ICE_CHARS.fullmatch(pwd):
        raise SdpError("ice-pwd: missing or malformed")
    return ufrag, pwd


def _fingerprint(value: str) -> DtlsFingerprint:
    algorithm, _, digest = value.strip().partition(" ")
    algorithm = algorithm.lower()
    if algorithm not in _HASHES or not _FINGERPRINT.fullmatch(digest.strip()):
        raise SdpError(f"fingerprint: malformed {value[:80]!r}")
    return DtlsFingerprint(algorithm, digest.strip().upper())


def _candidate(value: str) -> IceCandidate | None:
    """One a=candidate value; None for candidates the bridge cannot use (TCP, RTCP)."""
    parts = value.split()
    if len(parts) < 8 or parts[6] != "typ":
        raise SdpError(f"candidate: malformed {value[:80]!r}")
    foundation, component, protocol, priority, host, port, _, kind = parts[:8]
    if not (component.isdigit() and priority.isdigit() and port.isdigit()):
        raise SdpError(f"candidate: malformed {value[:80]!r}")
    if not _TOKEN.fullmatch(foundation) or not _HOST.fullmatch(host) or \
            kind not in ("host", "srflx", "prflx", "relay"):  # fmt: skip
        raise SdpError(f"candidate: malformed {value[:80]!r}")
    if protocol.lower() != "udp" or int(component) != 1:
        return None
    extras = dict(zip(parts[8::2], parts[9::2], strict=False))
    rport = extras.get("rport")
    return IceCandidate(
        foundation=foundation, component=1, protocol="udp", priority=int(priority),
        host=host, port=int(port), type=kind, related_address=extras.get("raddr"),
        related_port=int(rport) if rport is not None and rport.isdigit() else None,
    )  # fmt: skip


def _bundle(description: _Description) -> list[str]:
    for group in description.values("group"):
        parts = group.split()
        if parts and parts[0] == "BUNDLE":
            return parts[1:]
    return []


def _accepted(media: _Media, bundle: Sequence[str]) -> bool:
    """Port 0 rejects an m-line, except one still in the BUNDLE group (RFC 8843
    `bundle-only`: Firefox answers so)."""
    return media.port != 0 or (media.mid is not None and media.mid in bundle)


def _transport(description: _Description) -> TransportDescription:
    bundle = _bundle(description)
    live = [m for m in description.media if _accepted(m, bundle)]
    if not live:
        raise SdpError("no m-line was accepted")
    tagged = next((m for m in live if bundle and m.mid == bundle[0]), live[0])

    def pick(name: str) -> list[str]:
        return tagged.values(name) or description.values(name)

    ufrag, pwd = _check_ice(next(iter(pick("ice-ufrag")), None), next(iter(pick("ice-pwd")), None))
    fingerprints = tuple(_fingerprint(v) for v in pick("fingerprint"))
    if not fingerprints:
        raise SdpError("fingerprint: missing")
    setup = next(iter(pick("setup")), "active")
    if setup not in ("active", "passive"):
        raise SdpError(f"setup: an answer must say active or passive, not {setup[:20]!r}")
    candidates: dict[tuple[str, str, int, str], IceCandidate] = {}
    in_bundle = [m for m in live if not bundle or m.mid in bundle]
    for media in in_bundle:
        for value in media.values("candidate"):
            candidate = _candidate(value)
            if candidate is None:
                continue
            key = (candidate.foundation, candidate.host, candidate.port, candidate.type)
            if len(candidates) < MAX_CANDIDATES:
                candidates.setdefault(key, candidate)
    return TransportDescription(
        ice_ufrag=ufrag, ice_pwd=pwd, fingerprints=fingerprints, setup=setup,
        candidates=tuple(candidates.values()), ice_lite="ice-lite" in dict(description.attributes),
    )  # fmt: skip


def _ssrc(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 2**32:
        raise SdpError(f"ssrc: malformed {text[:20]!r}")
    return int(text)


def _source(
    media: _Media, endpoint_id: str, mid: str, bundle: Sequence[str]
) -> MediaSource | None:
    kind, video_type = OWN_SLOTS[mid]
    if media.kind != kind:
        raise SdpError(f"mid {mid}: expected an {kind} m-line, not {media.kind[:10]!r}")
    if not _accepted(media, bundle) or media.direction not in ("sendonly", "sendrecv"):
        return None
    attributes: dict[int, dict[str, str]] = {}
    for value in media.values("ssrc"):
        number, _, rest = value.partition(" ")
        name, _, attr = rest.partition(":")
        attributes.setdefault(_ssrc(number), {}).setdefault(name, attr)
    rtx_of: dict[int, int] = {}
    for value in media.values("ssrc-group"):
        parts = value.split()
        if parts and parts[0] == "FID" and len(parts) == 3:
            rtx_of[_ssrc(parts[1])] = _ssrc(parts[2])
    rtx_ssrcs = set(rtx_of.values())
    primaries = [s for s in attributes if s not in rtx_ssrcs]
    if not primaries:
        log.info("endpoint %s: mid %s sends without a=ssrc lines: ignored", endpoint_id, mid)
        return None
    ssrc = primaries[0]
    msid = media.value("msid") or attributes[ssrc].get("msid", "")
    stream, _, track = msid.partition(" ")
    rtx = rtx_of.get(ssrc) if kind == "video" else None
    return MediaSource(
        endpoint_id=endpoint_id, kind=kind, ssrc=ssrc, rtx_ssrc=rtx, video_type=video_type,
        stream_id="" if stream == "-" else stream[:64], track_id=track[:64],
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class ParsedAnswer:
    transport: TransportDescription
    sources: tuple[MediaSource, ...]  # what the browser sends now, in slot order
    mids: tuple[str, ...]  # every m-line's mid, in order


def parse_answer(text: str, endpoint_id: str) -> ParsedAnswer:
    """The browser's answer: its transport, and a source per own slot it sends on."""
    description = _parse(text)
    mids = tuple(m.mid or "" for m in description.media)
    if len(set(mids)) != len(mids) or "" in mids:
        raise SdpError("every m-line needs a unique a=mid")
    transport = _transport(description)
    sources: list[MediaSource] = []
    bundle = _bundle(description)
    for media in description.media:
        if media.mid in OWN_SLOTS:
            source = _source(media, endpoint_id, media.mid, bundle)
            if source is not None:
                sources.append(source)
    used = [s.ssrc for s in sources] + [s.rtx_ssrc for s in sources if s.rtx_ssrc is not None]
    if len(set(used)) != len(used):
        raise SdpError("the same ssrc in two m-lines")
    return ParsedAnswer(transport=transport, sources=tuple(sources), mids=mids)
