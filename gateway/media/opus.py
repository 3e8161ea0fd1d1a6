"""Opus (RFC 6716) for phones, in RTP as RFC 7587 says: libopus through ``opuslib``.

The RTP clock of Opus is always 48 kHz and its rtpmap always says two channels; what we
encode and decode is mono PCM at ``sample_rate`` (8 or 16 kHz for phones). libopus takes
and gives those rates directly, so nothing is resampled: a 20 ms frame is
``sample_rate / 50`` samples and advances the RTP timestamp by 960.

One ``OpusCodec`` is one stream's codec state: encoding and decoding use two separate
libopus states (an encoder and a decoder, each created on first use), so one instance can
decode what a phone sends and encode what it hears without the two interfering, and a
decode-only instance (a browser's voice) never allocates an encoder. Instances are not
shared between streams.

Loss: ``decode_lost()`` gives a concealed frame (libopus PLC); given the payload of the
packet after the lost one, it decodes that packet's in-band FEC copy (LBRR) of the lost
frame instead, falling back to PLC when the packet carries none. Our encoder sends FEC
(``fec=True``: OPUS_SET_INBAND_FEC plus an expected loss of ``loss_percent``).

Encoder settings: APPLICATION_VOIP, SIGNAL_VOICE, ``complexity`` 5, and ``bitrate`` None
means 24 kbit/s at 16 kHz (libopus's own choice there, 19 kbit/s, falls back to
mediumband when FEC is on) and libopus's automatic rate at 8 kHz (11 kbit/s).
``max_bitrate`` (a receiver's maxaveragebitrate) lowers whichever of those is above it.

Calls go to libopus through opuslib's ctypes function objects with buffers allocated once
per instance (opuslib's own ``decode`` builds a Python list per frame, twice as slow).
"""

from __future__ import annotations

import ctypes
import logging
from typing import Any

import numpy as np
import numpy.typing as npt
import opuslib
import opuslib.api.ctl
import opuslib.api.decoder
import opuslib.api.encoder

log = logging.getLogger(__name__)

Pcm = npt.NDArray[np.int16]

CLOCK_RATE = 48000
FRAME_TICKS = CLOCK_RATE // 50          # RTP timestamp step of a 20 ms frame
SAMPLE_RATES = (8000, 12000, 16000, 24000, 48000)
MAX_PACKET = 1500                       # bytes: one RTP payload at most
MAX_PACKET_MS = 120                     # the longest Opus packet
WIDEBAND_BITRATE = 24000                # default at 16 kHz: keeps SILK wideband with FEC on

_Int16Ptr = ctypes.POINTER(ctypes.c_int16)
_encode: Any = opuslib.api.encoder.libopus_encode
_decode: Any = opuslib.api.decoder.libopus_decode


class OpusError(ValueError):
    """libopus refused a packet or a frame (a corrupt payload from the network, usually)."""


def packet_ticks(payload: bytes) -> int:
    """The duration of an Opus packet in 48 kHz RTP ticks, from its TOC byte (RFC 6716
    section 3.1); 0 when the packet is empty or malformed."""
    if not payload:
        return 0
    toc = payload[0]
    config = toc >> 3
    if config < 12:                       # SILK: 10, 20, 40, 60 ms
        size = (480, 960, 1920, 2880)[config & 3]
    elif config < 16:                     # hybrid: 10, 20 ms
        size = (480, 960)[config & 1]
    else:                                 # CELT: 2.5, 5, 10, 20 ms
        size = (120, 240, 480, 960)[config & 3]
    code = toc & 3
    if code == 0:
        frames = 1
    elif code < 3:
        frames = 2
    else:
        frames = payload[1] & 0x3F if len(payload) > 1 else 0
    ticks = size * frames
    return ticks if ticks <= CLOCK_RATE * MAX_PACKET_MS // 1000 else 0


_silence_cache: dict[int, bytes] = {}


class OpusCodec:
    """Opus for one stream (see the module docstring); implements ``AudioCodec``."""

    name = "OPUS"
    clock_rate = CLOCK_RATE
    channels = 1                # what we encode and decode; the rtpmap says /2 (RFC 7587)
    timestamp_step = FRAME_TICKS
    bytes_per_tick: int | None = None   # framed: a packet cannot be cut
    #: a packet's duration in RTP ticks, for jitter buffers (40 and 60 ms packets)
    packet_ticks = staticmethod(packet_ticks)

    def __init__(
        self,
        payload_type: int,
        sample_rate: int = 16000,
        *,
        complexity: int = 5,
        bitrate: int | None = None,
        max_bitrate: int | None = None,
        fec: bool = True,
        loss_percent: int = 10,
    ) -> None:
        if sample_rate not in SAMPLE_RATES:
            raise ValueError(f"Opus cannot run at {sample_rate} Hz (one of {SAMPLE_RATES})")
        if not 0 <= complexity <= 10:
            raise ValueError(f"Opus complexity {complexity} is not in 0..10")
        self.payload_type = payload_type
        self.sample_rate = sample_rate
        self.frame_samples = sample_rate // 50
        self.complexity = complexity
        self.bitrate = bitrate
        self.max_bitrate = max_bitrate
        self.fec = fec
        self.loss_percent = loss_percent
        self._encoder: Any = None
        self._decoder: Any = None
        self._packet = ctypes.create_string_buffer(MAX_PACKET)
        self._pcm = np.zeros(sample_rate * MAX_PACKET_MS // 1000, dtype=np.int16)
        self._pcm_ptr = self._pcm.ctypes.data_as(_Int16Ptr)
        self._frame = np.zeros(self.frame_samples, dtype=np.int16)  # the encoder's input
        self._frame_ptr = self._frame.ctypes.data_as(_Int16Ptr)

    # --- encoding ---------------------------------------------------------------------

    def _new_encoder(self) -> Any:
        enc = opuslib.Encoder(self.sample_rate, 1, opuslib.APPLICATION_VOIP)
        state = enc.encoder_state
        ctl = opuslib.api.encoder.encoder_ctl
        ctl(state, opuslib.api.ctl.set_complexity, self.complexity)
        ctl(state, opuslib.api.ctl.set_signal, opuslib.SIGNAL_VOICE)
        bitrate = self.bitrate
        if bitrate is None and self.sample_rate >= 16000:
            # libopus's automatic rate (19 kbit/s at 16 kHz) drops to mediumband once FEC
            # takes its share: 5 kHz comes out 17 dB down and 6.5 kHz not at all
            bitrate = WIDEBAND_BITRATE
        if self.max_bitrate is not None:  # the far end's maxaveragebitrate (RFC 7587)
            current = bitrate if bitrate is not None else ctl(
                state, opuslib.api.ctl.get_bitrate)
            if current > self.max_bitrate:
                bitrate = self.max_bitrate
        if bitrate is not None:
            ctl(state, opuslib.api.ctl.set_bitrate, bitrate)
        if self.fec:
            # (opuslib's ``inband_fec`` property setter drops its value: call the ctl)
            ctl(state, opuslib.api.ctl.set_inband_fec, 1)
            ctl(state, opuslib.api.ctl.set_packet_loss_perc, self.loss_percent)
        return enc

    def encode(self, pcm: npt.NDArray[np.int16]) -> bytes:
        """One 20 ms frame (``frame_samples`` samples) to one Opus packet."""
        if pcm.shape != (self.frame_samples,):
            raise ValueError(f"Opus at {self.sample_rate} Hz encodes frames of "
                             f"{self.frame_samples} samples, got {pcm.shape}")
        if self._encoder is None:
            self._encoder = self._new_encoder()
        if pcm.dtype != np.int16:
            pcm = np.clip(pcm, -32768, 32767)
        # (copying into a buffer whose pointer is kept is cheaper than a pointer per frame)
        np.copyto(self._frame, pcm, casting="unsafe")
        n = int(_encode(self._encoder.encoder_state, self._frame_ptr,
                        self.frame_samples, self._packet, MAX_PACKET))
        if n < 0:
            raise OpusError(f"opus_encode failed ({n})")
        return ctypes.string_at(self._packet, n)

    def silence(self) -> bytes:
        """A 20 ms packet that decodes to silence (from a throwaway encoder, so this
        stream's encoder state is untouched)."""
        cached = _silence_cache.get(self.sample_rate)
        if cached is None:
            scratch = OpusCodec(self.payload_type, self.sample_rate, fec=False)
            zeros = np.zeros(self.frame_samples, dtype=np.int16)
            for _ in range(3):
                cached = scratch.encode(zeros)
            assert cached is not None
            _silence_cache[self.sample_rate] = cached
        return cached

    # --- decoding ---------------------------------------------------------------------

    def _state(self) -> Any:
        if self._decoder is None:
            self._decoder = opuslib.Decoder(self.sample_rate, 1)
        return self._decoder.decoder_state

    def decode(self, payload: bytes) -> npt.NDArray[np.int16]:
        """One Opus packet to PCM at ``sample_rate``: ``frame_samples`` samples for a
        20 ms packet (more for a 40 or 60 ms one). ``OpusError`` for a corrupt packet."""
        n = int(_decode(self._state(), payload, len(payload), self._pcm_ptr, self._pcm.size,
                        0))
        if n < 0:
            raise OpusError(f"opus_decode failed ({n}) on a {len(payload)}-byte packet")
        return self._pcm[:n].copy()

    def decode_lost(self, next_payload: bytes | None = None) -> npt.NDArray[np.int16]:
        """A 20 ms frame for a lost packet: rebuilt from ``next_payload``'s in-band FEC
        when it has some, else concealed by libopus (which fades out over repeated
        losses)."""
        state = self._state()
        frame = self.frame_samples
        n = -1
        if next_payload:
            n = int(_decode(state, next_payload, len(next_payload), self._pcm_ptr, frame, 1))
        if n < 0:
            n = int(_decode(state, None, 0, self._pcm_ptr, frame, 0))
        if n < 0:
            log.debug("opus: concealment failed (%d)", n)
            return np.zeros(frame, dtype=np.int16)
        return self._pcm[:n].copy()

    def reset(self) -> None:
        """Drop both libopus states (a new stream); they are created again on use."""
        self._encoder = None
        self._decoder = None

    def __repr__(self) -> str:
        return f"<OPUS/48000 pt={self.payload_type} pcm={self.sample_rate}>"
