"""Audio codecs of the phone side behind one small protocol, and a factory keyed by name.

A codec has two rates: ``clock_rate`` is the RTP timestamp rate from the SDP rtpmap and
``sample_rate`` the PCM rate of its frames. ``frame_samples`` counts PCM samples per 20 ms
frame and ``timestamp_step`` the RTP timestamp increment per frame:

=======  ==========  ===========  =============  ==============  ==============
codec    clock_rate  sample_rate  frame_samples  timestamp_step  bytes_per_tick
=======  ==========  ===========  =============  ==============  ==============
PCMU/A   8000        8000         160            160             1
G722     8000        16000        320            160             1
OPUS     48000       8000/16000   160/320        960             None (framed)
=======  ==========  ===========  =============  ==============  ==============

A codec instance is one stream's state: G.711 has none, G.722 (ADPCM) and Opus do, each
with separate encoder and decoder states. ``codec_by_name`` returns a new instance on every
call; never share a G.722 or Opus instance between two streams (two phones, or the shared
mix and a phone's own mix).

Codecs that conceal losses themselves (Opus) also have ``decode_lost(next_payload=None)``:
see :class:`ConcealingCodec`. G.722 and Opus are imported on first use (PyAV, libopus).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

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


@runtime_checkable
class ConcealingCodec(AudioCodec, Protocol):
    """A codec with its own loss concealment (Opus: PLC, or in-band FEC from the packet
    that follows the lost one)."""

    def decode_lost(self, next_payload: bytes | None = None) -> npt.NDArray[np.int16]: ...


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
    #: no decoder state: a payload may be decoded twice (concealment looks ahead with it)
    stateless: bool = True
    _silence_code = 0
    _encode_table = g711.ULAW_ENCODE
    _decode_table = g711.ULAW_DECODE

    def __init__(self, name: str, payload_type: int) -> None:
        self.name = name
        self.payload_type = payload_type
        self._silence = bytes((self._silence_code,)) * self.frame_samples

    def encode(self, pcm: npt.NDArray[np.int16]) -> bytes:
        return g711.encode(self._encode_table, pcm if pcm.dtype == np.int16 else _as_int16(pcm))

    def decode(self, payload: bytes) -> npt.NDArray[np.int16]:
        return g711.decode(self._decode_table, payload)

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


def _g722(payload_type: int, sample_rate: int | None, options: dict[str, Any]) -> AudioCodec:
    from .g722 import SAMPLE_RATE, G722Codec

    _check_rate("G722", sample_rate, SAMPLE_RATE)
    _no_options("G722", options)
    return G722Codec(payload_type)


def _opus(payload_type: int, sample_rate: int | None, options: dict[str, Any]) -> AudioCodec:
    from .opus import OpusCodec

    return OpusCodec(payload_type, 16000 if sample_rate is None else sample_rate, **options)


def _pcmu(payload_type: int, sample_rate: int | None, options: dict[str, Any]) -> AudioCodec:
    _check_rate("PCMU", sample_rate, 8000)
    _no_options("PCMU", options)
    return PcmuCodec(payload_type)


def _pcma(payload_type: int, sample_rate: int | None, options: dict[str, Any]) -> AudioCodec:
    _check_rate("PCMA", sample_rate, 8000)
    _no_options("PCMA", options)
    return PcmaCodec(payload_type)


def _check_rate(name: str, sample_rate: int | None, fixed: int) -> None:
    if sample_rate is not None and sample_rate != fixed:
        raise ValueError(f"{name} runs at {fixed} Hz, not {sample_rate}")


def _no_options(name: str, options: dict[str, Any]) -> None:
    if options:
        raise ValueError(f"{name} has no options ({', '.join(sorted(options))})")


_Factory = Callable[[int, "int | None", dict[str, Any]], AudioCodec]

#: name -> (factory, static payload type or None for dynamic ones), in our preference order
_REGISTRY: dict[str, tuple[_Factory, int | None]] = {
    "OPUS": (_opus, None),
    "G722": (_g722, 9),
    "PCMU": (_pcmu, 0),
    "PCMA": (_pcma, 8),
}

SUPPORTED_CODECS: tuple[str, ...] = tuple(_REGISTRY)


def opus_fmtp_options(fmtp: dict[str, str]) -> dict[str, Any]:
    """What the far end's Opus fmtp (RFC 7587 section 6.1, keys lower case) asks of what we
    send it, as ``codec_by_name`` arguments:

    - ``maxplaybackrate`` or ``sprop-maxcapturerate`` of 8000 or less: it renders (or has)
      narrowband only, so its stream runs at 8 kHz (``sample_rate``), keeping its room
      narrowband and sparing the bits of a band it would drop;
    - ``maxaveragebitrate`` (6000-510000): ``max_bitrate``, a cap on the bitrate;
    - ``useinbandfec``: in-band FEC only where its decoder says it uses it ("1"; absent
      means 0).

    Values that are not numbers, or out of range, are ignored (the defaults stay).
    """
    options: dict[str, Any] = {"fec": fmtp.get("useinbandfec", "0").strip() == "1"}
    rates = [_fmtp_int(fmtp, key, 8000, 48000)
             for key in ("maxplaybackrate", "sprop-maxcapturerate")]
    if any(rate is not None and rate <= 8000 for rate in rates):
        options["sample_rate"] = 8000
    bitrate = _fmtp_int(fmtp, "maxaveragebitrate", 6000, 510000)
    if bitrate is not None:
        options["max_bitrate"] = bitrate
    return options


def _fmtp_int(fmtp: dict[str, str], key: str, low: int, high: int) -> int | None:
    value = fmtp.get(key, "").strip()
    if not value.isdigit() or len(value) > 7:
        return None
    number = int(value)
    return number if low <= number <= high else None


def codec_by_name(
    name: str, payload_type: int | None = None, *, sample_rate: int | None = None,
    **options: Any,
) -> AudioCodec:
    """A NEW codec instance (its own encoder and decoder state) for an rtpmap encoding
    name, case-insensitive: "PCMU", "PCMA", "G722", "opus".

    ``payload_type`` defaults to the static one (0 PCMU, 8 PCMA, 9 G722); Opus is dynamic
    and must be given its type. ``sample_rate`` picks Opus's PCM rate (8000 or 16000,
    default 16000); for the others it may only repeat their fixed rate. ``options`` go to
    the Opus constructor (``complexity``, ``bitrate``, ``max_bitrate``, ``fec``,
    ``loss_percent``).
    Raises ``ValueError`` for an unsupported name, a missing or bad payload type, or a bad
    rate or option.
    """
    entry = _REGISTRY.get(name.upper())
    if entry is None:
        raise ValueError(f"unsupported codec {name!r}")
    factory, static_pt = entry
    pt = static_pt if payload_type is None else payload_type
    if pt is None or not 0 <= pt <= 127:
        raise ValueError(f"codec {name!r} needs a payload type in 0..127, got {pt!r}")
    try:
        return factory(pt, sample_rate, options)
    except TypeError as exc:        # an option Opus does not have
        raise ValueError(f"codec {name!r}: {exc}") from None
