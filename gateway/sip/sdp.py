"""SDP (RFC 8866) parsing and serializing, and the audio offer/answer rules of RFC 3264.

`SessionDescription.parse(data)` and `serialize()` are a symmetric pair. Attributes the model
knows (rtpmap, fmtp, ptime, the direction) are typed fields; every other line is kept in order
so that it survives a round trip. `negotiate_audio()` picks a codec from an offer,
`build_answer()` and `build_offer()` write our side. Codecs are described by `CodecSpec` and named
"NAME/rate[/channels]" ("PCMU/8000", "opus/48000/2"), so G722 and Opus are a table entry away.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import RemoteProtocolError

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


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
# RFC 3551 static payload types, for offers that omit a=rtpmap.
STATIC_PAYLOAD_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("PCMU", 8000, 1),
    3: ("GSM", 8000, 1),
    4: ("G723", 8000, 1),
    8: ("PCMA", 8000, 1),
    9: ("G722", 8000, 1),
    13: ("CN", 8000, 1),
    18: ("G729", 8000, 1),
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


@dataclass(slots=True)
class Origin:
    username: str = "-"
    session_id: str = "0"
    session_version: int = 0
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "0.0.0.0"

    @classmethod
    def parse(cls, text: str) -> Origin:
        parts = text.split()
        if len(parts) != 6:
            raise RemoteProtocolError(f"bad SDP o= line {text!r}")
        try:
            version = int(parts[2])
        except ValueError:
            raise RemoteProtocolError(f"bad SDP session version {parts[2]!r}") from None
        return cls(parts[0], parts[1], version, parts[3], parts[4], parts[5])

    def __str__(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.session_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass(slots=True)
class Connection:
    address: str  # may carry a multicast "/ttl" suffix, kept as is
    addrtype: str = "IP4"
    nettype: str = "IN"

    @classmethod
    def parse(cls, text: str) -> Connection:
        parts = text.split()
        if len(parts) != 3:
            raise RemoteProtocolError(f"bad SDP c= line {text!r}")
        return cls(parts[2], parts[1], parts[0])

    @property
    def host(self) -> str:
        return self.address.split("/", 1)[0]

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


@dataclass(slots=True)
class RtpMap:
    encoding: str
    clock_rate: int
    channels: int | None = None

    @classmethod
    def parse(cls, text: str) -> RtpMap:
        parts = text.split("/")
        try:
            if len(parts) == 2:
                return cls(parts[0], int(parts[1]))
            if len(parts) == 3:
                return cls(parts[0], int(parts[1]), int(parts[2]))
        except ValueError:
            pass
        raise RemoteProtocolError(f"bad SDP rtpmap {text!r}")

    def __str__(self) -> str:
        tail = f"/{self.channels}" if self.channels is not None else ""
        return f"{self.encoding}/{self.clock_rate}{tail}"


Attribute = tuple[str, str | None]  # a=name:value, or a=name (flag)


def _parse_attribute(value: str) -> Attribute:
    name, sep, rest = value.partition(":")
    return (name, rest if sep else None)


def _format_attribute(attr: Attribute) -> str:
    name, value = attr
    return f"a={name}" if value is None else f"a={name}:{value}"


@dataclass(slots=True)
class MediaDescription:
    media: str  # "audio", "video", ...
    port: int  # 0: rejected or disabled
    proto: str  # "RTP/AVP", ...
    formats: list[str]
    port_count: int | None = None
    title: str | None = None  # i=
    connection: Connection | None = None
    bandwidths: list[str] = field(default_factory=list)
    key: str | None = None
    rtpmap: dict[int, RtpMap] = field(default_factory=dict)
    fmtp: dict[int, str] = field(default_factory=dict)
    ptime: int | None = None
    direction: str | None = None  # None: not stated here (session level or sendrecv)
    attributes: list[Attribute] = field(default_factory=list)  # every other a= line, in order

    @property
    def rejected(self) -> bool:
        return self.port == 0

    def payload_types(self) -> list[int]:
        """The formats as RTP payload types (formats that are not integers are skipped)."""
        return [int(f) for f in self.formats if f.isdigit()]

    def codec_of(self, pt: int) -> tuple[str, int, int] | None:
        """(name, clock rate, channels) for a payload type, from a=rtpmap or the static table."""
        mapping = self.rtpmap.get(pt)
        if mapping is not None:
            return (mapping.encoding, mapping.clock_rate, mapping.channels or 1)
        return STATIC_PAYLOAD_TYPES.get(pt)

    def attribute(self, name: str) -> str | None:
        for attr_name, value in self.attributes:
            if attr_name == name:
                return value if value is not None else ""
        return None

    def _parse_line(self, kind: str, value: str) -> None:
        if kind == "i":
            self.title = value
        elif kind == "c":
            self.connection = Connection.parse(value)
        elif kind == "b":
            self.bandwidths.append(value)
        elif kind == "k":
            self.key = value
        elif kind == "a":
            self._parse_media_attribute(value)
        # other line types inside a media section are ignored (RFC 8866: unknown are ignored)

    def _parse_media_attribute(self, value: str) -> None:
        name, attr_value = _parse_attribute(value)
        if name in DIRECTIONS and attr_value is None:
            self.direction = name
            return
        if name in ("rtpmap", "fmtp") and attr_value is not None:
            pt_text, _, rest = attr_value.partition(" ")
            if pt_text.isdigit():
                if name == "rtpmap":
                    self.rtpmap[int(pt_text)] = RtpMap.parse(rest.strip())
                else:
                    self.fmtp[int(pt_text)] = rest.strip()
                return
        if name == "ptime" and attr_value is not None:
            try:
                self.ptime = int(float(attr_value))
            except ValueError:
                raise RemoteProtocolError(f"bad SDP ptime {attr_value!r}") from None
            return
        self.attributes.append((name, attr_value))

    def lines(self) -> list[str]:
        port = str(self.port) if self.port_count is None else f"{self.port}/{self.port_count}"
        out = [f"m={self.media} {port} {' '.join([self.proto, *self.formats])}"]
        if self.title is not None:
            out.append(f"i={self.title}")
        if self.connection is not None:
            out.append(f"c={self.connection}")
        out.extend(f"b={b}" for b in self.bandwidths)
        if self.key is not None:
            out.append(f"k={self.key}")
        written: set[int] = set()
        for pt in self.payload_types():
            if pt in written:
                continue
            written.add(pt)
            if pt in self.rtpmap:
                out.append(f"a=rtpmap:{pt} {self.rtpmap[pt]}")
            if pt in self.fmtp:
                out.append(f"a=fmtp:{pt} {self.fmtp[pt]}")
        for pt, mapping in self.rtpmap.items():  # maps for formats not listed: keep them
            if pt not in written:
                out.append(f"a=rtpmap:{pt} {mapping}")
        for pt, params in self.fmtp.items():
            if pt not in written:
                out.append(f"a=fmtp:{pt} {params}")
        if self.ptime is not None:
            out.append(f"a=ptime:{self.ptime}")
        out.extend(_format_attribute(a) for a in self.attributes)
        if self.direction is not None:
            out.append(f"a={self.direction}")
        return out


@dataclass(slots=True)
class SessionDescription:
    origin: Origin = field(default_factory=Origin)
    name: str = "-"
    version: int = 0
    info: str | None = None
    uri: str | None = None
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    connection: Connection | None = None
    bandwidths: list[str] = field(default_factory=list)
    times: list[str] = field(default_factory=lambda: ["0 0"])  # t= values
    repeats: list[str] = field(default_factory=list)  # r= lines (kept, not interpreted)
    zone: str | None = None
    key: str | None = None
    direction: str | None = None
    attributes: list[Attribute] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)

    @classmethod
    def parse(cls, data: bytes | str) -> SessionDescription:
        """Parse SDP text; raises RemoteProtocolError when it is not SDP."""
        if isinstance(data, bytes):
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                raise RemoteProtocolError("SDP is not UTF-8") from None
        else:
            text = data
        sd = cls(times=[])
        current: MediaDescription | None = None
        seen_version = seen_origin = False
        for raw in text.splitlines():
            line = raw.strip()
            if not line:
                continue
            if len(line) < 2 or line[1] != "=":
                raise RemoteProtocolError(f"bad SDP line {line[:40]!r}")
            kind, value = line[0], line[2:]
            if kind == "m":
                current = _parse_media_line(value)
                sd.media.append(current)
            elif current is not None:
                current._parse_line(kind, value)
            elif kind == "v":
                if value.strip() != "0":
                    raise RemoteProtocolError(f"unsupported SDP version {value!r}")
                seen_version = True
            elif kind == "o":
                sd.origin = Origin.parse(value)
                seen_origin = True
            else:
                sd._parse_session_line(kind, value)
        if not seen_version or not seen_origin:
            raise RemoteProtocolError("SDP without v= or o= line")
        if not sd.times:
            sd.times.append("0 0")
        return sd

    def _parse_session_line(self, kind: str, value: str) -> None:
        if kind == "s":
            self.name = value
        elif kind == "i":
            self.info = value
        elif kind == "u":
            self.uri = value
        elif kind == "e":
            self.emails.append(value)
        elif kind == "p":
            self.phones.append(value)
        elif kind == "c":
            self.connection = Connection.parse(value)
        elif kind == "b":
            self.bandwidths.append(value)
        elif kind == "t":
            self.times.append(value)
        elif kind == "r":
            self.repeats.append(value)
        elif kind == "z":
            self.zone = value
        elif kind == "k":
            self.key = value
        elif kind == "a":
            name, attr_value = _parse_attribute(value)
            if name in DIRECTIONS and attr_value is None:
                self.direction = name
            else:
                self.attributes.append((name, attr_value))

    def serialize(self) -> bytes:
        out = [f"v={self.version}", f"o={self.origin}", f"s={self.name or '-'}"]
        if self.info is not None:
            out.append(f"i={self.info}")
        if self.uri is not None:
            out.append(f"u={self.uri}")
        out.extend(f"e={e}" for e in self.emails)
        out.extend(f"p={p}" for p in self.phones)
        if self.connection is not None:
            out.append(f"c={self.connection}")
        out.extend(f"b={b}" for b in self.bandwidths)
        for index, timing in enumerate(self.times or ["0 0"]):
            out.append(f"t={timing}")
            if index == 0:
                out.extend(f"r={r}" for r in self.repeats)
        if self.zone is not None:
            out.append(f"z={self.zone}")
        if self.key is not None:
            out.append(f"k={self.key}")
        out.extend(_format_attribute(a) for a in self.attributes)
        if self.direction is not None:
            out.append(f"a={self.direction}")
        for media in self.media:
            out.extend(media.lines())
        return ("\r\n".join(out) + "\r\n").encode("utf-8")

    def connection_for(self, media: MediaDescription) -> Connection | None:
        return media.connection if media.connection is not None else self.connection

    def direction_of(self, media: MediaDescription) -> str:
        """The effective direction of a media section (media level, session level, sendrecv).

        RFC 2543 hold (c=0.0.0.0) means "do not send to me": sendrecv reads as sendonly and
        recvonly as inactive.
        """
        direction = media.direction or self.direction or "sendrecv"
        connection = self.connection_for(media)
        if connection is not None and connection.host in ("0.0.0.0", "::"):
            direction = {"sendrecv": "sendonly", "recvonly": "inactive"}.get(direction, direction)
        return direction

    def first_media(self, kind: str) -> MediaDescription | None:
        for media in self.media:
            if media.media == kind and not media.rejected:
                return media
        return None


def _parse_media_line(value: str) -> MediaDescription:
    parts = value.split()
    if len(parts) < 3:
        raise RemoteProtocolError(f"bad SDP m= line {value!r}")
    port_text, _, count_text = parts[1].partition("/")
    try:
        port = int(port_text)
        count = int(count_text) if count_text else None
    except ValueError:
        raise RemoteProtocolError(f"bad SDP media port {parts[1]!r}") from None
    if not 0 <= port <= 65535:
        raise RemoteProtocolError(f"bad SDP media port {port}")
    return MediaDescription(parts[0], port, parts[2], parts[3:], port_count=count)


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
