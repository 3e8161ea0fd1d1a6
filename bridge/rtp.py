"""RTP and RTCP on the wire, for a forwarder: look at bytes, rewrite a copy, build feedback.

Nothing here builds a packet object per RTP packet: the forwarder's fast path reads the
fixed header with one `struct` call, finds the header extensions it cares about with
`scan_extensions` and rewrites a `bytearray` copy only when a receiver needs other values.

RTP: RFC 3550 section 5.1 (header), RFC 8285 (one-byte and two-byte header extensions),
RFC 4588 (RTX), RFC 7741 (VP8 payload descriptor), RFC 6184 (H.264 NAL units).
RTCP: RFC 3550 section 6 (SR, RR, SDES), RFC 4585 (generic NACK, PLI), RFC 5104 (FIR),
draft-alvestrand-rmcat-remb (REMB).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

# with_sequence(data, seq, twcc_pos, twcc_seq): a copy with another sequence number and, if
# twcc_pos >= 0, transport-wide sequence number. In C, because the bridge's way out
# (native/_egress.c) does the same rewrite into its send buffer: one implementation.
from native._egress import with_sequence as with_sequence

RTP_HEADER = struct.Struct("!BBHII")  # V/P/X/CC, M/PT, sequence number, timestamp, SSRC
U16 = struct.Struct("!H")
U32 = struct.Struct("!I")
_HH = struct.Struct("!HH")
_RTCP_HEADER = struct.Struct("!BBH")
_TWO_SSRC = struct.Struct("!II")
_SR_INFO = struct.Struct("!IQIII")  # sender SSRC, NTP, RTP timestamp, packets, octets
_BLOCK = struct.Struct("!IB3sIIII")

ONE_BYTE_PROFILE = 0xBEDE
NO_EXTENSIONS = (-1, -1, -1, -1)

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_RTPFB = 205
RTCP_PSFB = 206
RTPFB_NACK = 1
RTPFB_TRANSPORT_CC = 15
PSFB_PLI = 1
PSFB_FIR = 4
PSFB_AFB = 15  # application layer feedback: REMB


class RtcpError(ValueError):
    """A malformed RTCP packet (the remote end's fault)."""


# --- RTP --------------------------------------------------------------------------------


def scan_extensions(
    data: bytes, level_id: int, twcc_id: int, mid_id: int
) -> tuple[int, int, int, int]:
    """Offsets of the header extensions the forwarder uses, in one pass over the block.

    Returns (audio level value offset, transport-wide sequence number offset, start and end
    of the whole MID element); -1 where absent. Both RFC 8285 forms are read; a malformed
    block gives what was found before the fault. The caller checked len(data) >= 12.
    """
    b0 = data[0]
    if not b0 & 0x10:
        return NO_EXTENSIONS
    pos = 12 + 4 * (b0 & 0x0F)
    size = len(data)
    if size < pos + 4:
        return NO_EXTENSIONS
    profile, words = _HH.unpack_from(data, pos)
    pos += 4
    end = pos + 4 * words
    if end > size:
        return NO_EXTENSIONS
    level = twcc = mid_start = mid_end = -1
    if profile == ONE_BYTE_PROFILE:
        while pos < end:
            b = data[pos]
            if b == 0:  # padding
                pos += 1
                continue
            ext_id = b >> 4
            if ext_id == 15:  # reserved: stop reading (RFC 8285 section 4.2)
                break
            value = pos + 1
            nxt = value + (b & 0x0F) + 1
            if nxt > end:
                break
            if ext_id == level_id:
                level = value
            elif ext_id == twcc_id:
                if nxt - value == 2:
                    twcc = value
            elif ext_id == mid_id:
                mid_start, mid_end = pos, nxt
            pos = nxt
    elif profile & 0xFFF0 == 0x1000:
        while pos < end:
            ext_id = data[pos]
            if ext_id == 0:
                pos += 1
                continue
            if pos + 2 > end:
                break
            value = pos + 2
            nxt = value + data[pos + 1]
            if nxt > end:
                break
            if ext_id == level_id:
                if nxt > value:
                    level = value
            elif ext_id == twcc_id:
                if nxt - value == 2:
                    twcc = value
            elif ext_id == mid_id:
                mid_start, mid_end = pos, nxt
            pos = nxt
    return level, twcc, mid_start, mid_end


def extension_value(data: bytes, ext_id: int) -> bytes | None:
    """The value of header extension `ext_id` (either form), or None."""
    if len(data) < 12:
        return None
    found = scan_extensions(data, ext_id, -1, -1)[0]
    if found < 0:
        return None
    b0 = data[0]
    profile = U16.unpack_from(data, 12 + 4 * (b0 & 0x0F))[0]
    one_byte = profile == ONE_BYTE_PROFILE
    length = (data[found - 1] & 0x0F) + 1 if one_byte else data[found - 1]
    return bytes(data[found : found + length])


def payload_bounds(data: bytes) -> tuple[int, int]:
    """(start, end) of the payload, after CSRCs and extensions, before padding.

    Raises ValueError when the header does not fit the packet.
    """
    size = len(data)
    if size < 12:
        raise ValueError("RTP packet shorter than its fixed header")
    b0 = data[0]
    start = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        if size < start + 4:
            raise ValueError("RTP extension header truncated")
        start += 4 + 4 * U16.unpack_from(data, start + 2)[0]
    end = size
    if b0 & 0x20:
        end -= data[-1]
    if start > end:
        raise ValueError("RTP header or padding longer than the packet")
    return start, end


def is_vp8_keyframe(data: bytes, start: int, end: int) -> bool:
    """True for the first packet of a VP8 key frame (RFC 7741 sections 4.2 and 4.3)."""
    if end - start < 2:
        return False
    b = data[start]
    if not b & 0x10 or b & 0x07:  # S bit: start of a partition; PID 0: the first one
        return False
    pos = start + 1
    if b & 0x80:  # X: extension octet
        x = data[pos]
        pos += 1
        if x & 0x80:  # I: picture id, 7 or 15 bits
            if pos >= end:
                return False
            pos += 2 if data[pos] & 0x80 else 1
        if x & 0x40:  # L: TL0PICIDX
            pos += 1
        if x & 0x30:  # T or K: TID/KEYIDX
            pos += 1
    if pos >= end:
        return False
    return not data[pos] & 0x01  # the VP8 payload header's P bit: 0 for a key frame


def is_h264_keyframe(data: bytes, start: int, end: int) -> bool:
    """True for a packet that starts an IDR picture or carries an SPS (RFC 6184)."""
    if end - start < 1:
        return False
    nal = data[start] & 0x1F
    if nal in (5, 7):
        return True
    if nal == 24:  # STAP-A: 16-bit size, then the NAL unit
        pos = start + 1
        while pos + 2 < end:
            length = U16.unpack_from(data, pos)[0]
            if data[pos + 2] & 0x1F in (5, 7):
                return True
            pos += 2 + length
        return False
    if nal == 28 and end - start >= 2:  # FU-A: the start fragment of an IDR
        fu = data[start + 1]
        return bool(fu & 0x80) and fu & 0x1F == 5
    return False


def starts_keyframe(data: bytes, vp8_pt: int, h264_pt: int) -> bool:
    """True when a video packet may start a receiver's stream: the first packet of a VP8
    or H.264 key frame, or any packet of a payload type we cannot look into."""
    pt = data[1] & 0x7F
    if pt != vp8_pt and pt != h264_pt:
        return True
    try:
        start, end = payload_bounds(data)
    except ValueError:
        return False
    if pt == vp8_pt:
        return is_vp8_keyframe(data, start, end)
    return is_h264_keyframe(data, start, end)


def blank(data: bytes, start: int, end: int) -> bytes:
    """The packet with bytes [start, end) zeroed: a header extension element becomes
    padding (RFC 8285: zero bytes between elements are skipped), the length unchanged."""
    return data[:start] + bytes(end - start) + data[end:]


def unwrap_rtx(data: bytes, ssrc: int, payload_type: int) -> bytes | None:
    """The original packet inside an RFC 4588 retransmission, or None for padding only.

    Header extensions and CSRCs stay; the original sequence number comes from the payload.
    """
    start, end = payload_bounds(data)
    if end - start < 2:
        return None
    header = bytearray(data[:start])
    header[0] &= 0xDF  # the padding went with the RTX payload
    header[1] = (header[1] & 0x80) | payload_type
    header[2:4] = data[start : start + 2]
    U32.pack_into(header, 8, ssrc)
    return bytes(header) + data[start + 2 : end]


# --- RTCP: reading ------------------------------------------------------------------------


class ReportBlock(NamedTuple):
    ssrc: int
    fraction_lost: int  # 0..255
    packets_lost: int  # cumulative, signed 24 bits
    highest_sequence: int
    jitter: int
    lsr: int
    dlsr: int


def split_rtcp(data: bytes) -> tuple[list[tuple[int, int, bytes]], bool]:
    """Split a compound packet into (packet type, count or FMT, body without header or
    padding). The bool is True when something was malformed: what came before is kept."""
    packets: list[tuple[int, int, bytes]] = []
    pos = 0
    size = len(data)
    while pos < size:
        if size - pos < 4:
            return packets, True
        b0, packet_type, words = _RTCP_HEADER.unpack_from(data, pos)
        end = pos + 4 + 4 * words
        if b0 >> 6 != 2 or end > size:
            return packets, True
        body = data[pos + 4 : end]
        if b0 & 0x20:
            pad = body[-1] if body else 0
            if pad == 0 or pad > len(body):
                return packets, True
            body = body[:-pad]
        packets.append((packet_type, b0 & 0x1F, body))
        pos = end
    return packets, False


def parse_report_blocks(body: bytes, offset: int, count: int) -> list[ReportBlock]:
    if len(body) < offset + 24 * count:
        raise RtcpError("report blocks truncated")
    blocks = []
    for i in range(count):
        ssrc, fraction, lost, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(
            body, offset + 24 * i)
        packets_lost = int.from_bytes(lost, "big", signed=True)
        blocks.append(ReportBlock(ssrc, fraction, packets_lost, highest, jitter, lsr, dlsr))
    return blocks


def parse_sr(body: bytes) -> tuple[int, int, int, int, int]:
    """(sender SSRC, NTP timestamp, RTP timestamp, packet count, octet count)."""
    if len(body) < 24:
        raise RtcpError("sender report truncated")
    ssrc, ntp, rtp_ts, packets, octets = _SR_INFO.unpack_from(body)
    return ssrc, ntp, rtp_ts, packets, octets


def parse_feedback_ssrcs(body: bytes) -> tuple[int, int]:
    """(sender SSRC, media source SSRC) of an RTPFB/PSFB packet."""
    if len(body) < 8:
        raise RtcpError("feedback packet truncated")
    sender, media = _TWO_SSRC.unpack_from(body)
    return int(sender), int(media)


def parse_nack(body: bytes) -> list[int]:
    """The sequence numbers a generic NACK asks for (RFC 4585 section 6.2.1)."""
    if len(body) < 12 or len(body) % 4:
        raise RtcpError("generic NACK length invalid")
    seqs: list[int] = []
    for pos in range(8, len(body), 4):
        pid, blp = _HH.unpack_from(body, pos)
        seqs.append(pid)
        bit = 0
        while blp:
            if blp & 1:
                seqs.append((pid + bit + 1) & 0xFFFF)
            blp >>= 1
            bit += 1
    return seqs


def parse_fir(body: bytes) -> list[int]:
    """The media SSRCs a FIR asks a key frame of (RFC 5104 section 4.3.1)."""
    if len(body) < 16 or len(body) % 8:
        raise RtcpError("FIR length invalid")
    return [U32.unpack_from(body, pos)[0] for pos in range(8, len(body), 8)]


def parse_remb(body: bytes) -> tuple[int, list[int]] | None:
    """(bitrate in bit/s, media SSRCs) of a REMB, or None for another AFB message."""
    if len(body) < 16 or body[8:12] != b"REMB":
        return None
    count = body[12]
    exponent = body[13] >> 2
    mantissa = ((body[13] & 0x03) << 16) | U16.unpack_from(body, 14)[0]
    if len(body) < 16 + 4 * count:
        raise RtcpError("REMB SSRC list truncated")
    ssrcs = [U32.unpack_from(body, 16 + 4 * i)[0] for i in range(count)]
    return mantissa << exponent, ssrcs


# --- RTCP: writing ------------------------------------------------------------------------


def rtcp_header(packet_type: int, count: int, body_length: int) -> bytes:
    return _RTCP_HEADER.pack(0x80 | count, packet_type, body_length // 4)


def report_block(ssrc: int, fraction_lost: int, packets_lost: int, highest_sequence: int,
                 jitter: int, lsr: int, dlsr: int) -> bytes:
    lost = max(-(1 << 23), min(packets_lost, (1 << 23) - 1))
    return _BLOCK.pack(ssrc, fraction_lost, lost.to_bytes(3, "big", signed=True),
                       highest_sequence & 0xFFFFFFFF, jitter & 0xFFFFFFFF,
                       lsr & 0xFFFFFFFF, dlsr & 0xFFFFFFFF)


def build_rr(sender_ssrc: int, blocks: list[bytes]) -> bytes:
    body = U32.pack(sender_ssrc) + b"".join(blocks[:31])
    return rtcp_header(RTCP_RR, min(len(blocks), 31), len(body)) + body


def build_sdes_cname(ssrc: int, cname: bytes) -> bytes:
    chunk = U32.pack(ssrc) + bytes((1, len(cname))) + cname + b"\x00"
    chunk += b"\x00" * (-len(chunk) % 4)
    return rtcp_header(RTCP_SDES, 1, len(chunk)) + chunk


def build_sr_without_blocks(body: bytes) -> bytes:
    """A sender's SR as a receiver should see it: its sender info, none of its report
    blocks (those are about what the sender receives)."""
    if len(body) < 24:
        raise RtcpError("sender report truncated")
    return rtcp_header(RTCP_SR, 0, 24) + body[:24]


def build_pli(sender_ssrc: int, media_ssrc: int) -> bytes:
    return rtcp_header(RTCP_PSFB, PSFB_PLI, 8) + _TWO_SSRC.pack(sender_ssrc, media_ssrc)


def build_nack(sender_ssrc: int, media_ssrc: int, seqs: list[int]) -> bytes:
    """A generic NACK for `seqs` (16-bit sequence numbers, any order)."""
    fci = bytearray()
    ordered = sorted(set(seqs))
    if ordered and ordered[-1] - ordered[0] > 0x8000:  # the list spans a wrap: start past it
        cut = max(range(len(ordered)), key=lambda i: ordered[i] - ordered[i - 1] if i else -1)
        ordered = ordered[cut:] + ordered[:cut]
    i = 0
    while i < len(ordered):
        pid = ordered[i]
        blp = 0
        i += 1
        while i < len(ordered):
            d = (ordered[i] - pid - 1) & 0xFFFF
            if d >= 16:
                break
            blp |= 1 << d
            i += 1
        fci += _HH.pack(pid, blp)
    body = _TWO_SSRC.pack(sender_ssrc, media_ssrc) + bytes(fci)
    return rtcp_header(RTCP_RTPFB, RTPFB_NACK, len(body)) + body


def build_remb(sender_ssrc: int, bitrate: int, ssrcs: list[int]) -> bytes:
    exponent = 0
    mantissa = max(0, bitrate)
    while mantissa > 0x3FFFF:
        mantissa >>= 1
        exponent += 1
    body = (_TWO_SSRC.pack(sender_ssrc, 0) + b"REMB"
            + bytes((len(ssrcs), (exponent << 2) | (mantissa >> 16)))
            + U16.pack(mantissa & 0xFFFF) + b"".join(U32.pack(s) for s in ssrcs))
    return rtcp_header(RTCP_PSFB, PSFB_AFB, len(body)) + body
