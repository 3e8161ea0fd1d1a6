"""Video frames out of RTP packets: VP8 (RFC 7741) and H.264 (RFC 6184), sans-I/O.

The recorder's bridge endpoint gets the video it records (the active speaker's camera, the
screen share) as the bridge forwards it to any receiver: RTP, one SSRC per source. A
`FrameAssembler` per SSRC collects the packets of one frame (one RTP timestamp, the marker
bit on its last packet) and gives the frame's bitstream to the decoder:

- VP8: the payload descriptor of each packet is removed; a frame starts with a packet whose
  S bit is set and partition index is 0; it is a key frame when the first byte of that
  partition has its P bit clear.
- H.264: single NAL unit packets, STAP-A aggregates and FU-A fragments become an Annex B
  byte stream (start codes); a frame holding an IDR slice (type 5) is a key frame.

A frame with a missing packet (a gap in sequence numbers, within the frame or between it
and the last frame, no start, an unparsable payload) is dropped, and so is every frame after
it until a key frame: decoding from a reference that never arrived gives smeared garbage.
`needs_keyframe` is then true; the owner asks the sender for one (a PLI) at most once per
`KEYFRAME_INTERVAL`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

KEYFRAME_INTERVAL = 1.0  # seconds between PLIs for one source
MAX_FRAME_PACKETS = 2000  # a frame larger than this is dropped (about 2.4 MB)
START_CODE = b"\x00\x00\x00\x01"


class DepacketizeError(ValueError):
    """A payload that cannot be part of a frame."""


def vp8_payload(payload: bytes) -> tuple[bytes, bool, bool]:
    """(VP8 data, starts a frame, key frame) of one RTP payload (RFC 7741 section 4.2)."""
    size = len(payload)
    if size < 1:
        raise DepacketizeError("empty VP8 payload")
    b0 = payload[0]
    pos = 1
    if b0 & 0x80:  # X: extension byte
        if size < 2:
            raise DepacketizeError("VP8 descriptor cut short")
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # I: picture id, 7 or 15 bits
            if pos >= size:
                raise DepacketizeError("VP8 descriptor cut short")
            pos += 2 if payload[pos] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            pos += 1
        if ext & 0x30:  # T or K: TID/Y/KEYIDX
            pos += 1
    if pos >= size:
        raise DepacketizeError("VP8 payload without data")
    start = bool(b0 & 0x10) and (b0 & 0x07) == 0
    key = start and not (payload[pos] & 0x01)
    return payload[pos:], start, key


def h264_payload(payload: bytes) -> tuple[bytes, bool, bool]:
    """(Annex B data, starts a NAL unit, holds an IDR slice) of one RTP payload."""
    size = len(payload)
    if size < 1:
        raise DepacketizeError("empty H.264 payload")
    nal_type = payload[0] & 0x1F
    if 1 <= nal_type <= 23:
        return START_CODE + payload, True, nal_type == 5
    if nal_type == 24:  # STAP-A
        out = bytearray()
        key = False
        pos = 1
        while pos + 2 <= size:
            length = (payload[pos] << 8) | payload[pos + 1]
            pos += 2
            if length == 0 or pos + length > size:
                raise DepacketizeError("STAP-A unit cut short")
            key = key or (payload[pos] & 0x1F) == 5
            out += START_CODE + payload[pos:pos + length]
            pos += length
        if not out:
            raise DepacketizeError("empty STAP-A")
        return bytes(out), True, key
    if nal_type == 28:  # FU-A
        if size < 3:
            raise DepacketizeError("FU-A cut short")
        header = payload[1]
        inner = header & 0x1F
        if header & 0x80:  # start of the fragmented NAL unit
            nal = bytes([(payload[0] & 0xE0) | inner])
            return START_CODE + nal + payload[2:], True, inner == 5
        return payload[2:], False, False
    raise DepacketizeError(f"H.264 packetization type {nal_type} not supported")


@dataclass(slots=True)
class VideoFrame:
    """One encoded frame as the decoder wants it."""

    ssrc: int
    timestamp: int  # RTP, 90 kHz
    data: bytes
    keyframe: bool


class FrameAssembler:
    """The packets of one SSRC into whole frames (see the module)."""

    def __init__(self, ssrc: int, codec: str) -> None:
        if codec not in ("VP8", "H264"):
            raise ValueError(f"no depacketizer for {codec}")
        self.ssrc = ssrc
        self.codec = codec
        self._parse = vp8_payload if codec == "VP8" else h264_payload
        self._ts: int | None = None
        self._parts: dict[int, tuple[bytes, bool, bool]] = {}  # seq -> parsed payload
        self._marker_seq: int | None = None
        self._expect: int | None = None  # the sequence number after the last frame's
        self.waiting_keyframe = True  # nothing decodable before the first key frame
        self.frames = 0
        self.dropped = 0
        self.malformed = 0
        self.last_pli = float("-inf")

    def needs_keyframe(self, now: float) -> bool:
        """True (once per KEYFRAME_INTERVAL) while a key frame is wanted: send a PLI."""
        if self.waiting_keyframe and now - self.last_pli >= KEYFRAME_INTERVAL:
            self.last_pli = now
            return True
        return False

    def push(self, seq: int, timestamp: int, marker: bool, payload: bytes) -> VideoFrame | None:
        """One RTP packet; the frame it completed, if any."""
        if self._ts is not None and timestamp != self._ts:
            self._drop("a frame never completed")  # the next frame began: this one is lost
        self._ts = timestamp
        try:
            parsed = self._parse(payload)
        except DepacketizeError as exc:
            self.malformed += 1
            log.debug("SSRC %d: %s", self.ssrc, exc)
            self._drop("a malformed packet")
            self._ts = timestamp  # the rest of this frame is dropped too (no start)
            self._parts[seq & 0xFFFF] = (b"", False, False)
            return None
        if len(self._parts) >= MAX_FRAME_PACKETS:
            self._drop("a frame too large")
            return None
        self._parts[seq & 0xFFFF] = parsed
        if marker:
            self._marker_seq = seq & 0xFFFF
        if self._marker_seq is None:
            return None
        return self._complete()

    def _complete(self) -> VideoFrame | None:
        parts = self._parts
        last = self._marker_seq
        assert last is not None and self._ts is not None
        count = len(parts)
        first = (last - count + 1) & 0xFFFF
        seqs = [(first + i) & 0xFFFF for i in range(count)]
        if any(s not in parts for s in seqs):
            return None  # a packet before the marker is still missing (maybe reordered)
        head = parts[seqs[0]]
        if not head[1] or any(not parts[s][0] and not parts[s][1] for s in seqs):
            self._drop("the frame's first packet was lost")
            return None
        data = b"".join(parts[s][0] for s in seqs)
        key = any(parts[s][2] for s in seqs)
        frame = VideoFrame(self.ssrc, self._ts, data, key)
        if self._expect is not None and seqs[0] != self._expect:
            self.waiting_keyframe = True  # a whole frame in between was lost
        self._expect = (last + 1) & 0xFFFF
        self._reset()
        if self.waiting_keyframe and not key:
            self.dropped += 1
            return None
        self.waiting_keyframe = False
        self.frames += 1
        return frame

    def _drop(self, why: str) -> None:
        if self._parts:
            self.dropped += 1
            if not self.waiting_keyframe:
                log.debug("SSRC %d: frame dropped (%s); waiting for a key frame", self.ssrc,
                          why)
            self.waiting_keyframe = True
        self._reset()

    def _reset(self) -> None:
        self._parts = {}
        self._marker_seq = None
        self._ts = None
