"""Packet builders and a room of endpoints around one Forwarder, for the bridge core tests.

Packets are built with struct (RFC 3550 / RFC 8285 by hand); what the forwarder sends is
read back with aiortc's parsers, an independent implementation.
"""

from __future__ import annotations

import struct

from aiortc.rtp import RtcpPacket, RtpPacket

from bridge.api import BridgeEvent, MediaSource
from bridge.forwarder import Forwarder, ForwarderSettings

OPUS = 111
VP8 = 96
VP8_RTX = 97
H264 = 102
LEVEL_ID, TWCC_ID, MID_ID = 1, 3, 4


def ext_block(exts: list[tuple[int, bytes]], two_byte: bool = False) -> bytes:
    """An RFC 8285 header extension block (profile, length, elements, padding)."""
    body = b""
    for ext_id, value in exts:
        if two_byte:
            body += bytes((ext_id, len(value))) + value
        else:
            assert 1 <= len(value) <= 16 and 1 <= ext_id <= 14
            body += bytes(((ext_id << 4) | (len(value) - 1),)) + value
    body += b"\x00" * (-len(body) % 4)
    profile = 0x1000 if two_byte else 0xBEDE
    return struct.pack("!HH", profile, len(body) // 4) + body


def rtp(ssrc: int, seq: int, ts: int = 0, pt: int = OPUS, payload: bytes = b"\xab" * 40,
        exts: list[tuple[int, bytes]] | None = None, two_byte: bool = False,
        marker: int = 0, padding: int = 0) -> bytes:
    b0 = 0x80
    block = b""
    if exts:
        b0 |= 0x10
        block = ext_block(exts, two_byte)
    tail = b""
    if padding:
        b0 |= 0x20
        tail = b"\x00" * (padding - 1) + bytes((padding,))
    header = struct.pack("!BBHII", b0, (marker << 7) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
    return header + block + payload + tail


def audio(ssrc: int, seq: int, level: int | None = 30, twcc: int | None = None,
          mid: bytes | None = None, two_byte: bool = False) -> bytes:
    exts: list[tuple[int, bytes]] = []
    if level is not None:
        exts.append((LEVEL_ID, bytes((0x80 | level,))))
    if twcc is not None:
        exts.append((TWCC_ID, struct.pack("!H", twcc & 0xFFFF)))
    if mid is not None:
        exts.append((MID_ID, mid))
    return rtp(ssrc, seq, ts=960 * seq, exts=exts, two_byte=two_byte)


def vp8_payload(keyframe: bool, start: bool = True) -> bytes:
    """VP8 payload descriptor with a 15-bit picture id, then the payload header."""
    descriptor = bytes((0x90 if start else 0x80, 0x80, 0x81, 0x23))  # X, S; I; M + pid
    header = bytes((0x00 if keyframe else 0x01, 0x00, 0x00))  # P bit 0 = key frame
    return descriptor + header + b"\x55" * 30


def vp8(ssrc: int, seq: int, keyframe: bool = False, start: bool = True,
        twcc: int | None = None) -> bytes:
    exts = [(TWCC_ID, struct.pack("!H", twcc & 0xFFFF))] if twcc is not None else None
    return rtp(ssrc, seq, ts=3000 * seq, pt=VP8, payload=vp8_payload(keyframe, start),
               exts=exts)


def is_rtcp(data: bytes) -> bool:
    return len(data) >= 2 and 192 <= data[1] <= 223


class Room:
    """N endpoints e0..e{N-1} in one forwarder: audio SSRC 1000+i, camera 2000+i (RTX
    3000+i) when `video`; the forwarder's output collected per endpoint."""

    def __init__(self, n: int, settings: ForwarderSettings | None = None,
                 video: bool = False) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.fwd = Forwarder("conf1", settings or ForwarderSettings(),
                             lambda endpoint_id, data: self.sent.append((endpoint_id, data)))
        self.ids = [f"e{i}" for i in range(n)]
        self.now = 100.0
        for i, endpoint_id in enumerate(self.ids):
            self.fwd.add_endpoint(endpoint_id)
            sources = [MediaSource(endpoint_id, "audio", 1000 + i)]
            if video:
                sources.append(MediaSource(endpoint_id, "video", 2000 + i, rtx_ssrc=3000 + i,
                                           video_type="camera"))
            self.fwd.set_sources(endpoint_id, tuple(sources))
        self.seq = dict.fromkeys(self.ids, 0)

    def take(self) -> list[tuple[str, bytes]]:
        out, self.sent = self.sent, []
        return out

    def rtp_for(self, endpoint_id: str, ssrc: int | None = None) -> list[RtpPacket]:
        """Drain; the RTP that went to `endpoint_id` (of `ssrc`), parsed by aiortc."""
        packets = [RtpPacket.parse(d) for e, d in self.take()
                   if e == endpoint_id and not is_rtcp(d)]
        return [p for p in packets if ssrc is None or p.ssrc == ssrc]

    def rtcp_for(self, endpoint_id: str) -> list[object]:
        out: list[object] = []
        for e, d in self.take():
            if e == endpoint_id and is_rtcp(d) and not (d[0] & 0x1F == 15 and d[1] == 205):
                out.extend(RtcpPacket.parse(d))
        return out

    def speak(self, endpoint_id: str, level: int, seconds: float,
              others_level: int = 127) -> None:
        """Every endpoint sends 20 ms audio packets for `seconds`; `endpoint_id` at
        `level`, the others at `others_level`; timers run as the forwarder asks."""
        for _ in range(round(seconds / 0.02)):
            self.now += 0.02
            for i, e in enumerate(self.ids):
                self.seq[e] += 1
                lvl = level if e == endpoint_id else others_level
                self.fwd.on_rtp(e, audio(1000 + i, self.seq[e], lvl), self.now)
            self.run_timers()

    def run_timers(self) -> None:
        for _ in range(20):
            when = self.fwd.get_timer()
            if when is None or when > self.now:
                return
            self.fwd.handle_timer(self.now)

    def events(self) -> list[BridgeEvent]:
        out = []
        event = self.fwd.next_event()
        while event is not None:
            out.append(event)
            event = self.fwd.next_event()
        return out
