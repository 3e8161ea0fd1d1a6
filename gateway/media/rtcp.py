"""RTCP packets (RFC 3550 section 6): SR, RR, SDES, BYE and compound packets, sans-I/O.

``parse_compound(data)`` returns every packet of a compound datagram; packet types we do
not model (APP, RTPFB, PSFB, XR...) come back as ``RtcpUnknownPacket`` so that a compound
packet still serializes back to the same bytes. Padding (the P bit, normally only on the
last packet and only with SRTCP) is accepted and dropped. Garbage raises ``ValueError``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_APP = 204

SDES_END = 0
SDES_CNAME = 1

#: seconds from 1900-01-01 (NTP era 0) to 1970-01-01 (Unix epoch)
NTP_UNIX_OFFSET = 2_208_988_800

_COMMON = struct.Struct("!BBH")
_SENDER_INFO = struct.Struct("!IQIII")
_REPORT_BLOCK = struct.Struct("!IIIIII")


def ntp_from_unix(wall: float) -> int:
    """64-bit NTP timestamp (32.32 fixed point) for a Unix time in seconds."""
    return int((wall + NTP_UNIX_OFFSET) * (1 << 32)) & 0xFFFF_FFFF_FFFF_FFFF


def ntp_middle32(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp: the LSR value of RFC 3550 section 6.4.1."""
    return (ntp >> 16) & 0xFFFF_FFFF


@dataclass(slots=True)
class RtcpReportBlock:
    ssrc: int
    fraction_lost: int = 0          # 0..255, lost / expected since the last report * 256
    packets_lost: int = 0           # cumulative, signed 24 bits
    highest_sequence: int = 0       # extended highest sequence number received
    jitter: int = 0                 # interarrival jitter in timestamp units
    lsr: int = 0                    # middle 32 bits of the last SR's NTP timestamp
    dlsr: int = 0                   # delay since that SR in 1/65536 s

    @classmethod
    def parse(cls, data: bytes, pos: int) -> RtcpReportBlock:
        ssrc, lost_word, highest, jitter, lsr, dlsr = _REPORT_BLOCK.unpack_from(data, pos)
        lost = lost_word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 1 << 24
        return cls(ssrc, lost_word >> 24, lost, highest, jitter, lsr, dlsr)

    def serialize(self) -> bytes:
        if not 0 <= self.fraction_lost <= 255:
            raise ValueError("fraction lost out of range")
        lost = max(-(1 << 23), min((1 << 23) - 1, self.packets_lost)) & 0xFFFFFF
        return _REPORT_BLOCK.pack(
            self.ssrc,
            (self.fraction_lost << 24) | lost,
            self.highest_sequence & 0xFFFFFFFF,
            self.jitter & 0xFFFFFFFF,
            self.lsr & 0xFFFFFFFF,
            self.dlsr & 0xFFFFFFFF,
        )


@dataclass(slots=True)
class RtcpSenderInfo:
    ntp_timestamp: int = 0
    rtp_timestamp: int = 0
    packet_count: int = 0
    octet_count: int = 0


@dataclass(slots=True)
class RtcpSrPacket:
    ssrc: int
    sender_info: RtcpSenderInfo
    reports: list[RtcpReportBlock] = field(default_factory=list)
    #: profile-specific extension after the report blocks (rare), kept for round trips
    extension: bytes = b""

    def serialize(self) -> bytes:
        info = self.sender_info
        body = _SENDER_INFO.pack(
            self.ssrc,
            info.ntp_timestamp & 0xFFFF_FFFF_FFFF_FFFF,
            info.rtp_timestamp & 0xFFFFFFFF,
            info.packet_count & 0xFFFFFFFF,
            info.octet_count & 0xFFFFFFFF,
        )
        body += b"".join(r.serialize() for r in self.reports) + self.extension
        return _header(RTCP_SR, len(self.reports), body)


@dataclass(slots=True)
class RtcpRrPacket:
    ssrc: int
    reports: list[RtcpReportBlock] = field(default_factory=list)
    extension: bytes = b""

    def serialize(self) -> bytes:
        body = struct.pack("!I", self.ssrc)
        body += b"".join(r.serialize() for r in self.reports) + self.extension
        return _header(RTCP_RR, len(self.reports), body)


@dataclass(slots=True)
class RtcpSdesChunk:
    ssrc: int
    items: list[tuple[int, bytes]] = field(default_factory=list)   # (item type, value)

    @property
    def cname(self) -> str | None:
        for item_type, value in self.items:
            if item_type == SDES_CNAME:
                return value.decode("utf-8", "replace")
        return None


@dataclass(slots=True)
class RtcpSdesPacket:
    chunks: list[RtcpSdesChunk] = field(default_factory=list)

    def serialize(self) -> bytes:
        body = bytearray()
        for chunk in self.chunks:
            body += struct.pack("!I", chunk.ssrc)
            for item_type, value in chunk.items:
                if not 1 <= item_type <= 255 or len(value) > 255:
                    raise ValueError("bad SDES item")
                body += bytes((item_type, len(value))) + value
            # one to four null octets: the end item plus padding to a 32-bit boundary
            body += bytes(4 - len(body) % 4)
        return _header(RTCP_SDES, len(self.chunks), bytes(body))


@dataclass(slots=True)
class RtcpByePacket:
    sources: list[int] = field(default_factory=list)
    reason: bytes | None = None

    def serialize(self) -> bytes:
        body = b"".join(struct.pack("!I", s) for s in self.sources)
        if self.reason is not None:
            if len(self.reason) > 255:
                raise ValueError("BYE reason too long")
            reason = bytes((len(self.reason),)) + self.reason
            body += reason + bytes(-len(reason) % 4)
        return _header(RTCP_BYE, len(self.sources), body)


@dataclass(slots=True)
class RtcpUnknownPacket:
    packet_type: int
    count: int        # the 5-bit field after V/P (report count, subtype, FMT...)
    body: bytes

    def serialize(self) -> bytes:
        return _header(self.packet_type, self.count, self.body)


RtcpPacket = RtcpSrPacket | RtcpRrPacket | RtcpSdesPacket | RtcpByePacket | RtcpUnknownPacket


def _header(packet_type: int, count: int, body: bytes) -> bytes:
    if len(body) % 4:
        raise ValueError("RTCP packet body is not a multiple of 4 octets")
    if not 0 <= count <= 31:
        raise ValueError("RTCP count out of range")
    return _COMMON.pack(0x80 | count, packet_type, len(body) // 4) + body


def serialize_compound(packets: list[RtcpPacket]) -> bytes:
    return b"".join(p.serialize() for p in packets)


def parse_compound(data: bytes) -> list[RtcpPacket]:
    """Every packet of a (compound) RTCP datagram; ``ValueError`` on garbage."""
    packets: list[RtcpPacket] = []
    pos = 0
    size = len(data)
    if size < 4:
        raise ValueError("RTCP datagram too short")
    while pos < size:
        if pos + 4 > size:
            raise ValueError("truncated RTCP header")
        first, packet_type, words = _COMMON.unpack_from(data, pos)
        if first >> 6 != 2:
            raise ValueError(f"RTCP version {first >> 6}, expected 2")
        length = 4 * (words + 1)
        if pos + length > size:
            raise ValueError("RTCP length exceeds the datagram")
        body_end = pos + length
        if first & 0x20:
            padding = data[body_end - 1]
            if padding == 0 or padding > length - 4:
                raise ValueError("bad RTCP padding")
            body_end -= padding
        packets.append(_parse_one(packet_type, first & 0x1F, data, pos + 4, body_end))
        pos += length
    return packets


def _parse_one(packet_type: int, count: int, data: bytes, pos: int, end: int) -> RtcpPacket:
    if packet_type == RTCP_SR:
        if pos + 24 + 24 * count > end:
            raise ValueError("truncated SR")
        ssrc, ntp, rtp_ts, packets, octets = _SENDER_INFO.unpack_from(data, pos)
        pos += 24
        reports = [RtcpReportBlock.parse(data, pos + 24 * i) for i in range(count)]
        pos += 24 * count
        info = RtcpSenderInfo(ntp, rtp_ts, packets, octets)
        return RtcpSrPacket(ssrc, info, reports, bytes(data[pos:end]))
    if packet_type == RTCP_RR:
        if pos + 4 + 24 * count > end:
            raise ValueError("truncated RR")
        (ssrc,) = struct.unpack_from("!I", data, pos)
        pos += 4
        reports = [RtcpReportBlock.parse(data, pos + 24 * i) for i in range(count)]
        pos += 24 * count
        return RtcpRrPacket(ssrc, reports, bytes(data[pos:end]))
    if packet_type == RTCP_SDES:
        return RtcpSdesPacket(_parse_sdes_chunks(count, data, pos, end))
    if packet_type == RTCP_BYE:
        if pos + 4 * count > end:
            raise ValueError("truncated BYE")
        sources = list(struct.unpack_from(f"!{count}I", data, pos))
        pos += 4 * count
        reason: bytes | None = None
        if pos < end:
            reason_len = data[pos]
            if pos + 1 + reason_len > end:
                raise ValueError("BYE reason exceeds the packet")
            reason = bytes(data[pos + 1 : pos + 1 + reason_len])
        return RtcpByePacket(sources, reason)
    return RtcpUnknownPacket(packet_type, count, bytes(data[pos:end]))


def _parse_sdes_chunks(count: int, data: bytes, pos: int, end: int) -> list[RtcpSdesChunk]:
    chunks: list[RtcpSdesChunk] = []
    for _ in range(count):
        if pos + 4 > end:
            raise ValueError("truncated SDES chunk")
        (ssrc,) = struct.unpack_from("!I", data, pos)
        pos += 4
        items: list[tuple[int, bytes]] = []
        while True:
            if pos >= end:
                raise ValueError("SDES chunk without end item")
            item_type = data[pos]
            if item_type == SDES_END:
                pos += 1
                pos += -pos % 4   # null octets up to the next 32-bit boundary
                break
            if pos + 2 > end or pos + 2 + data[pos + 1] > end:
                raise ValueError("SDES item exceeds the packet")
            item_len = data[pos + 1]
            items.append((item_type, bytes(data[pos + 2 : pos + 2 + item_len])))
            pos += 2 + item_len
        chunks.append(RtcpSdesChunk(ssrc, items))
    return chunks
