"""SDP (RFC 8866) as text: the session description model, parsed and serialized.

`SessionDescription.parse(data)` and `serialize()` are a symmetric pair. Attributes the model
knows (rtpmap, fmtp, ptime, the direction) are typed fields; every other line is kept in order
so that it survives a round trip. The codec table and the offer/answer rules of RFC 3264 are in
`sdp.py`, which re-exports everything here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import RemoteProtocolError

__all__ = [
    "DIRECTIONS",
    "STATIC_PAYLOAD_TYPES",
    "Attribute",
    "Connection",
    "MediaDescription",
    "Origin",
    "RtpMap",
    "SessionDescription",
]

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")

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
