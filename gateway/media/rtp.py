"""RTP packets (RFC 3550 section 5.1): parse and serialize, sans-I/O.

``RtpPacket.parse(data).serialize() == data`` holds for every well-formed packet whose
padding octets are zero except the last one (the count), which is what every sender we
know writes. Anything that is not a valid RTP packet raises ``ValueError`` and nothing
else.

The audio fast path in ``gateway/rtp_session.py`` does not build an ``RtpPacket``: for the
common 12-byte header (version 2, no padding, extension or CSRC) it reads the fields with
``HEADER.unpack_from`` and slices the payload.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

RTP_VERSION = 2
HEADER_SIZE = 12
#: first octet of the common header: V=2, P=0, X=0, CC=0
PLAIN_FIRST_OCTET = 0x80

#: B (V/P/X/CC), B (M/PT), H sequence number, I timestamp, I SSRC
HEADER = struct.Struct("!BBHII")
_EXT_HEADER = struct.Struct("!HH")


def is_rtcp(data: bytes) -> bool:
    """True when a datagram on a multiplexed port is RTCP (RFC 5761 section 4).

    RTCP packet types 192..223 occupy the second octet where RTP has marker plus
    payload type; payload types 64..95 are therefore never used for RTP.
    """
    return len(data) >= 2 and 192 <= data[1] <= 223


@dataclass(slots=True)
class RtpPacket:
    payload_type: int = 0
    sequence_number: int = 0
    timestamp: int = 0
    ssrc: int = 0
    marker: bool = False
    payload: bytes = b""
    csrc: list[int] = field(default_factory=list)
    #: ``None`` when the X bit is clear; the 16-bit "defined by profile" field otherwise
    extension_profile: int | None = None
    #: the header extension body, a multiple of 4 octets (without its 4-octet header)
    extension: bytes = b""
    #: number of padding octets including the final count octet; 0 = no padding
    padding_size: int = 0

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Parse one RTP packet; raise ``ValueError`` on anything malformed."""
        size = len(data)
        if size < HEADER_SIZE:
            raise ValueError(f"RTP packet too short ({size} bytes)")
        first, second, seq, ts, ssrc = HEADER.unpack_from(data, 0)
        if first >> 6 != RTP_VERSION:
            raise ValueError(f"RTP version {first >> 6}, expected 2")
        has_padding = bool(first & 0x20)
        has_extension = bool(first & 0x10)
        csrc_count = first & 0x0F
        pos = HEADER_SIZE
        end = size
        if has_padding:
            padding_size = data[-1]
            if padding_size == 0:
                raise ValueError("RTP padding count is zero")
            end -= padding_size
        else:
            padding_size = 0
        if pos + 4 * csrc_count > end:
            raise ValueError("RTP CSRC list exceeds the packet")
        csrc = list(struct.unpack_from(f"!{csrc_count}I", data, pos)) if csrc_count else []
        pos += 4 * csrc_count
        extension_profile: int | None = None
        extension = b""
        if has_extension:
            if pos + 4 > end:
                raise ValueError("RTP header extension exceeds the packet")
            extension_profile, words = _EXT_HEADER.unpack_from(data, pos)
            pos += 4
            if pos + 4 * words > end:
                raise ValueError("RTP header extension length exceeds the packet")
            extension = bytes(data[pos : pos + 4 * words])
            pos += 4 * words
        if pos > end:
            raise ValueError("RTP padding exceeds the packet")
        return cls(
            payload_type=second & 0x7F,
            sequence_number=seq,
            timestamp=ts,
            ssrc=ssrc,
            marker=bool(second & 0x80),
            payload=bytes(data[pos:end]),
            csrc=csrc,
            extension_profile=extension_profile,
            extension=extension,
            padding_size=padding_size,
        )

    def serialize(self) -> bytes:
        """The packet on the wire; ``ValueError`` if a field is out of range."""
        if not 0 <= self.payload_type <= 127:
            raise ValueError(f"payload type {self.payload_type} out of range")
        if len(self.csrc) > 15:
            raise ValueError("more than 15 CSRCs")
        if not 0 <= self.padding_size <= 255:
            raise ValueError(f"padding size {self.padding_size} out of range")
        first = (RTP_VERSION << 6) | len(self.csrc)
        if self.padding_size:
            first |= 0x20
        if self.extension_profile is not None:
            first |= 0x10
        second = self.payload_type | (0x80 if self.marker else 0)
        try:
            parts = [
                HEADER.pack(
                    first,
                    second,
                    self.sequence_number & 0xFFFF,
                    self.timestamp & 0xFFFFFFFF,
                    self.ssrc & 0xFFFFFFFF,
                )
            ]
            if self.csrc:
                parts.append(struct.pack(f"!{len(self.csrc)}I", *self.csrc))
            if self.extension_profile is not None:
                if len(self.extension) % 4:
                    raise ValueError("RTP header extension is not a multiple of 4 octets")
                parts.append(_EXT_HEADER.pack(self.extension_profile, len(self.extension) // 4))
                parts.append(self.extension)
        except struct.error as exc:
            raise ValueError(str(exc)) from exc
        parts.append(self.payload)
        if self.padding_size:
            parts.append(bytes(self.padding_size - 1) + bytes((self.padding_size,)))
        return b"".join(parts)


def build_header(
    payload_type: int, sequence_number: int, timestamp: int, ssrc: int, marker: bool
) -> bytes:
    """The plain 12-byte header (no CSRC, extension or padding) for the send fast path."""
    return HEADER.pack(
        PLAIN_FIRST_OCTET,
        payload_type | (0x80 if marker else 0),
        sequence_number & 0xFFFF,
        timestamp & 0xFFFFFFFF,
        ssrc,
    )
