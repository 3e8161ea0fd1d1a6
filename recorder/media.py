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

import ctypes
import logging
import struct
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import opuslib
import opuslib.api.decoder

log = logging.getLogger(__name__)

OPUS_PT = 111
LEVEL_EXT_ID = 1  # the conference's ssrc-audio-level header extension (bridge/service.py)
MIX_SPEAKERS = 3  # the mix decodes the loudest few speakers of each frame
RATE = 48000
FRAME_SAMPLES = RATE // 50
Pcm = npt.NDArray[np.int16]
_RTP = struct.Struct("!BBHII")
# libopus's opus_decode through opuslib's ctypes function object, into one buffer allocated
# once: opuslib's own Decoder.decode allocates and converts per call, which costs more than
# libopus's decoding itself (0.045 ms of 0.08 a frame here).
_opus_decode: Any = opuslib.api.decoder.libopus_decode
_Int16Ptr = ctypes.POINTER(ctypes.c_int16)


def audio_level(data: bytes, ext_id: int = LEVEL_EXT_ID) -> int:
    """The RFC 6464 level (0 loudest .. 127 silence) in a packet's one-byte header
    extension (RFC 8285), or -1 when it has none."""
    if len(data) < 16 or not data[0] & 0x10:
        return -1
    offset = 12 + 4 * (data[0] & 0x0F)
    if offset + 4 > len(data) or data[offset] != 0xBE or data[offset + 1] != 0xDE:
        return -1
    end = offset + 4 + 4 * ((data[offset + 2] << 8) | data[offset + 3])
    pos = offset + 4
    end = min(end, len(data))
    while pos < end:
        b = data[pos]
        if b == 0:  # padding
            pos += 1
            continue
        ident, length = b >> 4, (b & 0x0F) + 1
        if ident == 15:
            break
        if ident == ext_id and pos + 1 < end:
            return data[pos + 1] & 0x7F
        pos += 1 + length
    return -1


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
    """Decode, sum and encode: one Opus packet of the mix per timeline frame.

    Only the `speakers` loudest real packets of a frame are decoded (by the RFC 6464 level
    their senders put in them; a packet without one counts as loud): as the gateway's mixer
    does for phones, and as people hear a room where everyone talks at once. Decoding is the
    mix's largest cost (docs/recording.md, "Costs"). A speaker left out gets a fresh decoder
    when next decoded (no prediction from the audio it skipped)."""

    def __init__(self, bitrate: int = 48000, speakers: int = MIX_SPEAKERS) -> None:
        self.encoder = OpusEncoder(bitrate)
        self.speakers = speakers
        self.decoders: dict[int, Any] = {}  # track number -> libopus decoder state
        self.left_out: set[int] = set()
        self.errors = 0
        self.skipped = 0  # packets not decoded: not among the loudest
        self._sum = np.zeros(FRAME_SAMPLES, dtype=np.int32)
        self._pcm = np.zeros(FRAME_SAMPLES * 6, dtype=np.int16)  # up to 120 ms
        self._pcm_ptr = self._pcm.ctypes.data_as(_Int16Ptr)
        self._owners: dict[int, opuslib.Decoder] = {}  # keeps each state alive

    def frame(self, payloads: Iterable[tuple[int, bytes, bool]],
              levels: Sequence[int] = ()) -> Pcm:
        """(track number, payload, filled) of every track for one frame, and their levels
        (Frame.levels): the mix's PCM (valid until the next call); `encode()` makes it
        Opus."""
        total = self._sum
        total[:] = 0
        rows = [(levels[i] if i < len(levels) else -1, number, payload)
                for i, (number, payload, filled) in enumerate(payloads) if not filled]
        if len(rows) > self.speakers:
            rows.sort(key=lambda r: r[0])  # loudest (lowest level) first; unknown (-1) first
            for _, number, _ in rows[self.speakers:]:
                self.left_out.add(number)
            self.skipped += len(rows) - self.speakers
            del rows[self.speakers:]
        buf, ptr, size = self._pcm, self._pcm_ptr, self._pcm.size
        for _, number, payload in rows:
            state = self.decoders.get(number)
            if state is None or number in self.left_out:
                self.left_out.discard(number)
                owner = self._owners[number] = opuslib.Decoder(RATE, 1)
                state = self.decoders[number] = owner.decoder_state
            n = int(_opus_decode(state, payload, len(payload), ptr, size, 0))
            if n < 0:  # a corrupt packet
                self.errors += 1
                continue
            n = min(FRAME_SAMPLES, n)
            total[:n] += buf[:n]
        return np.minimum(np.maximum(total, -32768), 32767).astype(np.int16)

    def encode(self, pcm: Pcm) -> bytes:
        return self.encoder.encode(pcm)
