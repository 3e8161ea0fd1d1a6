"""Audio codecs of the phone side behind one small protocol, and a factory keyed by name.

A codec has two rates: ``clock_rate`` is the RTP timestamp rate from the SDP rtpmap and
``sample_rate`` the PCM rate of its frames. They are equal for G.711; G.722 will have
8000 and 16000, Opus 48000 and 48000. ``frame_samples`` counts PCM samples per 20 ms frame
and ``timestamp_step`` the RTP timestamp increment per frame.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import numpy.typing as npt

from . import g711

FRAME_MS = 20


class AudioCodec(Protocol):
    name: str              # the rtpmap encoding name, upper case: "PCMU"
    payload_type: int
    clock_rate: int        # RTP timestamp units per second
    sample_rate: int       # PCM samples per second in and out of encode/decode
    channels: int
    frame_samples: int     # PCM samples per 20 ms frame (160 for G.711)
    timestamp_step: int    # RTP timestamp increment per 20 ms frame (160 for G.711)
    #: payload bytes per timestamp unit when a packet can be cut anywhere (G.711: 1, so a
    #: jitter buffer can turn 30 ms packets into 20 ms frames); None for framed codecs (Opus)
    bytes_per_tick: int | None

    def encode(self, pcm: npt.NDArray[np.int16]) -> bytes: ...

    def decode(self, payload: bytes) -> npt.NDArray[np.int16]: ...

    def silence(self) -> bytes:
        """One encoded 20 ms frame of silence."""
        ...


def _as_int16(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    if pcm.dtype == np.int16:
        return pcm
    return np.clip(pcm, -32768, 32767).astype(np.int16)


class _G711:
    """Shared shape of the two G.711 laws: 8000 Hz, one byte per sample."""

    sample_rate = 8000
    clock_rate = 8000
    channels = 1
    frame_samples = 8000 * FRAME_MS // 1000
    timestamp_step = frame_samples
    #: payload bytes per RTP timestamp unit, for jitter buffers that split packets
    bytes_per_tick: int | None = 1
    _silence_code = 0
    _encode_table = g711.ULAW_ENCODE
    _decode_table = g711.ULAW_DECODE

    def __init__(self, name: str, payload_type: int) -> None:
        self.name = name
        self.payload_type = payload_type
        self._silence = bytes((self._silence_code,)) * self.frame_samples

    def encode(self, pcm: npt.NDArray[np.int16]) -> bytes:
        return self._encode_table[_as_int16(pcm).view(np.uint16)].tobytes()

    def decode(self, payload: bytes) -> npt.NDArray[np.int16]:
        return self._decode_table[np.frombuffer(payload, dtype=np.uint8)]

    def silence(self) -> bytes:
        return self._silence

    def __repr__(self) -> str:
        return f"<{self.name}/{self.clock_rate} pt={self.payload_type}>"


class PcmuCodec(_G711):
    _silence_code = g711.ULAW_SILENCE
    _encode_table = g711.ULAW_ENCODE
    _decode_table = g711.ULAW_DECODE

    def __init__(self, payload_type: int = 0) -> None:
        super().__init__("PCMU", payload_type)


class PcmaCodec(_G711):
    _silence_code = g711.ALAW_SILENCE
    _encode_table = g711.ALAW_ENCODE
    _decode_table = g711.ALAW_DECODE

    def __init__(self, payload_type: int = 8) -> None:
        super().__init__("PCMA", payload_type)


#: name -> (factory taking a payload type, static payload type or None for dynamic ones)
_REGISTRY: dict[str, tuple[Callable[[int], AudioCodec], int | None]] = {
    "PCMU": (PcmuCodec, 0),
    "PCMA": (PcmaCodec, 8),
}

SUPPORTED_CODECS: tuple[str, ...] = tuple(_REGISTRY)


def codec_by_name(name: str, payload_type: int | None = None) -> AudioCodec:
    """A codec for an rtpmap encoding name (case-insensitive).

    ``payload_type`` defaults to the static one (0 for PCMU, 8 for PCMA); dynamic codecs
    added later must be given theirs. Raises ``ValueError`` for an unsupported name.
    """
    entry = _REGISTRY.get(name.upper())
    if entry is None:
        raise ValueError(f"unsupported codec {name!r}")
    factory, static_pt = entry
    pt = static_pt if payload_type is None else payload_type
    if pt is None or not 0 <= pt <= 127:
        raise ValueError(f"codec {name!r} needs a payload type in 0..127, got {pt!r}")
    return factory(pt)
