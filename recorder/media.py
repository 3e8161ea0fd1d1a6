"""The recorder's media pieces: RTP parsing, Opus (libopus through opuslib, as the gateway
uses it) and the room mix.

The mix is made from the same packets the per-speaker tracks keep: each frame of the
timeline (recorder/timeline.py) decodes every track's real packet at 48 kHz (fillers are
silence and are not decoded), sums them, clips to 16 bits and encodes one Opus packet.
Why here and not from the gateway's phone mixer: that mixer runs only while a room has
phone callers and decodes only its loudest few browsers, while a recording must hear a
browsers-only room too; the recorder's endpoint at the bridge gets every speaker, the
callers included (their voices as the gateway encodes them for the bridge), so the mix is
the room as a browser hears it.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt
import opuslib

log = logging.getLogger(__name__)

OPUS_PT = 111
RATE = 48000
FRAME_SAMPLES = RATE // 50
Pcm = npt.NDArray[np.int16]
_RTP = struct.Struct("!BBHII")


def parse_rtp(data: bytes) -> tuple[int, int, int, int, bytes] | None:
    """(payload type, ssrc, seq, timestamp, payload) of an RTP packet, or None when it is
    malformed (or RTCP)."""
    size = len(data)
    if size < 12:
        return None
    b0, b1, seq, ts, ssrc = _RTP.unpack_from(data)
    if b0 >> 6 != 2 or 191 < b1 < 224:
        return None
    offset = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        if offset + 4 > size:
            return None
        (words,) = struct.unpack_from("!H", data, offset + 2)
        offset += 4 + 4 * words
    end = size
    if b0 & 0x20:
        pad = data[-1]
        if pad == 0 or offset + pad > size:
            return None
        end -= pad
    if end <= offset:
        return None
    return b1 & 0x7F, ssrc, seq, ts, data[offset:end]


class OpusEncoder:
    """Mono 48 kHz Opus, 20 ms frames (the mix)."""

    def __init__(self, bitrate: int = 48000, complexity: int = 5) -> None:
        # Complexity 5, not libopus's default 10: a fifth of the CPU (0.07 ms a frame, not
        # 0.32, on voice), for a difference nobody hears at 48 kbit/s; it is the mix's
        # largest cost after the decoding (docs/recording.md, "Costs").
        self._enc = opuslib.Encoder(RATE, 1, opuslib.APPLICATION_AUDIO)
        opuslib.api.encoder.encoder_ctl(self._enc.encoder_state,
                                        opuslib.api.ctl.set_bitrate, bitrate)
        opuslib.api.encoder.encoder_ctl(self._enc.encoder_state,
                                        opuslib.api.ctl.set_complexity, complexity)

    def encode(self, pcm: Pcm) -> bytes:
        return bytes(self._enc.encode(pcm.tobytes(), FRAME_SAMPLES))


_silence: bytes | None = None


def silence_packet() -> bytes:
    """A 20 ms Opus packet that decodes to silence: the timeline's filler."""
    global _silence
    if _silence is None:
        enc = OpusEncoder(16000)
        zeros = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        for _ in range(3):
            _silence = enc.encode(zeros)
    assert _silence is not None
    return _silence


class RoomMix:
    """Decode, sum and encode: one Opus packet of the mix per timeline frame."""

    def __init__(self, bitrate: int = 48000) -> None:
        self.encoder = OpusEncoder(bitrate)
        self.decoders: dict[int, opuslib.Decoder] = {}
        self.errors = 0
        self._sum = np.zeros(FRAME_SAMPLES, dtype=np.int32)

    def frame(self, payloads: Iterable[tuple[int, bytes, bool]]) -> Pcm:
        """(track number, payload, filled) of every track for one frame: the mix's PCM
        (valid until the next call); `encode()` makes it Opus."""
        total = self._sum
        total[:] = 0
        for number, payload, filled in payloads:
            if filled:
                continue
            decoder = self.decoders.get(number)
            if decoder is None:
                decoder = self.decoders[number] = opuslib.Decoder(RATE, 1)
            try:
                pcm = np.frombuffer(decoder.decode(payload, FRAME_SAMPLES * 3), dtype=np.int16)
            except opuslib.OpusError:
                self.errors += 1
                continue
            n = min(FRAME_SAMPLES, pcm.size)
            total[:n] += pcm[:n]
        return np.minimum(np.maximum(total, -32768), 32767).astype(np.int16)

    def encode(self, pcm: Pcm) -> bytes:
        return self.encoder.encode(pcm)
