"""The browsers' voices towards the phones of one room, sans-I/O.

The bridge forwards every browser's Opus audio of the room to the gateway's mixer endpoint
(one per room, however many phones). Each SSRC becomes one `BrowserStream`: a jitter buffer
and an Opus decoder, added to the room mixer as a contributor that follows the room's rate
(libopus decodes straight to 8 or 16 kHz: no resampling).

Decoding is the expensive part, so only the loudest few streams are decoded: their RFC 6464
levels (read from the RTP header extension, no decoding) rank them each tick and the
`max_decoded` loudest that spoke within the last `HANGOVER` are decoded, once each, whatever
the number of phones (the hangover keeps a talker's pauses between words intact). The
others' packets go through the jitter buffer and are dropped. A stream that sends nothing for
`stream_timeout` seconds (its browser left, or muted with DTX) is removed from the mixer.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from typing import Protocol

import numpy as np
import numpy.typing as npt

from gateway.media.jitterbuffer import FrameKind, JitterBuffer, JitterFrame
from gateway.media.rtp import HEADER
from gateway.mixer import Contributor
from gateway.uplink import LEVEL_SILENT

log = logging.getLogger(__name__)

Pcm = npt.NDArray[np.int16]
LOUDNESS_DECAY = 0.7  # per tick: how fast a stream's ranking loudness falls after it stops
HANGOVER = 0.5  # s a stream stays mixable after its level last showed speech (pauses between
#                 words must not cut it: deselecting drops the frame being played)
SELECTED_BONUS = 6.0  # dB: a stream being decoded keeps its place against one barely louder
SILENT_LOUDNESS = 127 - 75  # loudness (127 - level) at or under which a stream is not mixed


class Decoder(Protocol):
    def decode(self, payload: bytes) -> Pcm: ...

    def decode_lost(self, next_payload: bytes | None = None) -> Pcm: ...


DecoderFactory = Callable[[int], Decoder]  # sample rate -> a new Opus decoder


class MixerLike(Protocol):
    def add_source(self, room: str, source_id: str, source: Contributor) -> None: ...

    def remove(self, leg_id: str) -> None: ...

    def room_rate(self, room: str) -> int: ...


def parse_rtp(data: bytes, level_ext_id: int) -> tuple[int, int, int, bool, int, bytes] | None:
    """(ssrc, seq, timestamp, marker, level, payload) of a plain RTP packet, or None when it
    is malformed. ``level`` is the RFC 6464 level, 127 when absent."""
    size = len(data)
    if size < 12 or data[0] >> 6 != 2:
        return None
    b0, b1, seq, ts, ssrc = HEADER.unpack_from(data)
    offset = 12 + 4 * (b0 & 0x0F)
    level = LEVEL_SILENT
    if b0 & 0x10:
        if offset + 4 > size:
            return None
        profile, words = struct.unpack_from("!HH", data, offset)
        start = offset + 4
        offset = start + 4 * words
        if offset > size:
            return None
        if profile == 0xBEDE:
            i = start
            while i < offset:
                byte = data[i]
                if byte == 0:  # padding
                    i += 1
                    continue
                ext_id, length = byte >> 4, (byte & 0x0F) + 1
                if ext_id == 15:
                    break
                if ext_id == level_ext_id and i + 1 < offset:
                    level = data[i + 1] & 0x7F
                i += 1 + length
    end = size
    if b0 & 0x20:
        pad = data[-1]
        if pad == 0 or offset + pad > size:
            return None
        end = size - pad
    if end <= offset:
        return None
    return ssrc, seq, ts, bool(b1 & 0x80), level, data[offset:end]


class BrowserStream:
    """One browser's audio as a mixer contributor (``sample_rate`` 0: the room's rate)."""

    sample_rate = 0

    def __init__(self, ssrc: int, room: RoomAudio) -> None:
        self.ssrc = ssrc
        self.room = room
        self.buffer = JitterBuffer(clock_rate=48000, frame_ticks=960, bytes_per_tick=None,
                                   start_ms=40.0, min_ms=20.0, max_ms=200.0)
        self.loudness = 0.0  # 127 - level, decaying: for ranking
        self.last_packet = 0.0
        self.active_until = 0.0  # the end of the hangover after the last speech
        self.selected = False
        self.decoder: Decoder | None = None
        self.decoder_rate = 0
        self.decoded = 0

    def on_packet(self, seq: int, ts: int, marker: bool, level: int, payload: bytes,
                  now: float) -> None:
        self.last_packet = now
        self.buffer.insert(self.ssrc, seq, ts, marker, payload, now)
        loud = float(LEVEL_SILENT - level)
        if loud > self.loudness:
            self.loudness = loud
        if loud > SILENT_LOUDNESS:
            self.active_until = now + HANGOVER

    def pull_frame(self, now: float) -> Pcm | None:
        buffer = self.buffer
        pcm = self._decode(buffer.pop(now))
        if buffer.drop_due:  # a spare frame is dropped in a pause
            if self.selected:
                buffer.played(pcm)
            else:  # not decoded: its audio levels say whether it is quiet
                buffer.heard(now >= self.active_until)
        return pcm

    def _decode(self, frame: JitterFrame) -> Pcm | None:
        self.loudness *= LOUDNESS_DECAY
        if not self.selected:
            return None
        rate = self.room.rate()
        if self.decoder is None or self.decoder_rate != rate:
            self.decoder = self.room.new_decoder(rate)
            self.decoder_rate = rate
        if frame.kind is FrameKind.AUDIO:
            self.decoded += 1
            return self.decoder.decode(frame.payload)
        if frame.kind is FrameKind.LOST:
            return self.decoder.decode_lost(frame.payload or None)
        return None


class RoomAudio:
    """The browsers' streams of one room, as contributors of the room's mix."""

    def __init__(self, room: str, mixer: MixerLike, new_decoder: DecoderFactory, *,
                 max_decoded: int = 3, level_ext_id: int = 1, stream_timeout: float = 2.0,
                 max_streams: int = 64) -> None:
        self.room = room
        self.mixer = mixer
        self.new_decoder = new_decoder
        self.max_decoded = max_decoded
        self.level_ext_id = level_ext_id
        self.stream_timeout = stream_timeout
        self.max_streams = max_streams
        self.streams: dict[int, BrowserStream] = {}
        self.ignored: set[int] = set()  # SSRCs of our own callers (never mixed back)
        self.malformed = 0
        self.packets = 0
        self.closed = False

    def rate(self) -> int:
        return self.mixer.room_rate(self.room)

    def source_id(self, ssrc: int) -> str:
        return f"browser:{self.room}:{ssrc}"

    def on_rtp(self, data: bytes, now: float) -> None:
        """A packet the bridge forwarded to the mixer endpoint."""
        if self.closed:
            return
        parsed = parse_rtp(data, self.level_ext_id)
        if parsed is None:
            self.malformed += 1
            return
        ssrc, seq, ts, marker, level, payload = parsed
        if ssrc in self.ignored:
            return
        stream = self.streams.get(ssrc)
        if stream is None:
            if len(self.streams) >= self.max_streams:
                self.malformed += 1
                return
            stream = self.streams[ssrc] = BrowserStream(ssrc, self)
            self.mixer.add_source(self.room, self.source_id(ssrc), stream)
            log.info("room %s: browser audio SSRC %d joins the phones' mix", self.room, ssrc)
        self.packets += 1
        stream.on_packet(seq, ts, marker, level, payload, now)

    def before_tick(self, now: float) -> None:
        """Pick the loudest streams to decode this tick; drop streams that went quiet."""
        streams = self.streams
        if not streams:
            return
        for ssrc in [s for s, st in streams.items()
                     if now - st.last_packet > self.stream_timeout]:
            del streams[ssrc]
            self.mixer.remove(self.source_id(ssrc))
            log.info("room %s: browser audio SSRC %d left the phones' mix", self.room, ssrc)
        # Candidates: streams that spoke within the hangover; the loudest of them (a stream
        # being decoded gets a bonus against one barely louder) are decoded.
        ranked = sorted((s for s in streams.values() if now < s.active_until), reverse=True,
                        key=lambda s: s.loudness + (SELECTED_BONUS if s.selected else 0.0))
        chosen = {id(s) for s in ranked[: self.max_decoded]}
        for stream in streams.values():
            stream.selected = id(stream) in chosen

    def decoding(self) -> int:
        return sum(1 for s in self.streams.values() if s.selected)

    def close(self) -> None:
        self.closed = True
        for ssrc in list(self.streams):
            self.mixer.remove(self.source_id(ssrc))
        self.streams.clear()
