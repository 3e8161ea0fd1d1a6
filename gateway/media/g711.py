"""G.711 mu-law (PCMU) and A-law (PCMA) with numpy lookup tables.

Encoding indexes a 65536-entry table with the int16 samples reinterpreted as uint16;
decoding indexes a 256-entry table with the payload bytes. Both work on a whole frame at
once. The tables are built at import from the ITU-T G.711 segment rules (the same
arithmetic as the G.191 reference ``g711.c``: mu-law on 14 bits, A-law on 13 bits); the
lookups run in C (``native._mixcore``: numpy's indexing of a 160-sample frame cost five
times as much, most of it entering and leaving the call).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from native._mixcore import lut_decode, lut_encode

Pcm = npt.NDArray[np.int16]

_SEG_ULAW_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)
_SEG_ALAW_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], dtype=np.int32)
_ULAW_BIAS = 0x84
_ULAW_CLIP = 8159

#: the code for a zero sample: what a silent frame is made of
ULAW_SILENCE = 0xFF
ALAW_SILENCE = 0xD5


def _all_samples() -> npt.NDArray[np.int32]:
    # index i of the encode table is the int16 whose bit pattern is i
    return np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)


def _build_ulaw_encode() -> npt.NDArray[np.uint8]:
    pcm = _all_samples() >> 2                              # 14-bit sample
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(pcm), _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    seg = np.searchsorted(_SEG_ULAW_END, magnitude, side="left")
    mantissa = (magnitude >> (np.minimum(seg, 7) + 1)) & 0x0F
    code = np.where(seg >= 8, 0x7F, (seg << 4) | mantissa)
    return (code ^ mask).astype(np.uint8)


def _build_alaw_encode() -> npt.NDArray[np.uint8]:
    pcm = _all_samples() >> 3                              # 13-bit sample
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    magnitude = np.where(pcm >= 0, pcm, -pcm - 1)
    seg = np.searchsorted(_SEG_ALAW_END, magnitude, side="left")
    shift = np.where(seg < 2, 1, np.minimum(seg, 7))
    code = np.where(seg >= 8, 0x7F, (seg << 4) | ((magnitude >> shift) & 0x0F))
    return (code ^ mask).astype(np.uint8)


def _build_ulaw_decode() -> npt.NDArray[np.int16]:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + _ULAW_BIAS) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, _ULAW_BIAS - t, t - _ULAW_BIAS).astype(np.int16)


def _build_alaw_decode() -> npt.NDArray[np.int16]:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    t = np.where(seg == 0, t + 8, t + 0x108)
    t = np.where(seg > 1, t << np.maximum(seg - 1, 0), t)
    return np.where(a & 0x80, t, -t).astype(np.int16)


ULAW_ENCODE = _build_ulaw_encode()
ALAW_ENCODE = _build_alaw_encode()
ULAW_DECODE = _build_ulaw_decode()
ALAW_DECODE = _build_alaw_decode()
for _table in (ULAW_ENCODE, ALAW_ENCODE, ULAW_DECODE, ALAW_DECODE):
    _table.flags.writeable = False


_INT16 = np.dtype(np.int16)


def encode(table: npt.NDArray[np.uint8], pcm: Pcm) -> bytes:
    """``pcm`` (int16) through an encode table: one byte a sample."""
    try:
        return lut_encode(table, pcm)
    except (BufferError, ValueError):  # not contiguous (a strided view): numpy says ValueError
        return lut_encode(table, np.ascontiguousarray(pcm))


def decode(table: npt.NDArray[np.int16], payload: bytes) -> Pcm:
    """``payload`` through a decode table: a new (read-only) int16 array."""
    return np.frombuffer(lut_decode(table, payload), _INT16)


def ulaw_encode(pcm: Pcm) -> bytes:
    return encode(ULAW_ENCODE, pcm)


def ulaw_decode(payload: bytes) -> Pcm:
    return decode(ULAW_DECODE, payload)


def alaw_encode(pcm: Pcm) -> bytes:
    return encode(ALAW_ENCODE, pcm)


def alaw_decode(payload: bytes) -> Pcm:
    return decode(ALAW_DECODE, payload)
