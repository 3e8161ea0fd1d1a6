"""Streaming sample-rate conversion between the telephony rates, numpy only.

``Resampler(from_rate, to_rate).process(pcm)`` converts one chunk (normally a 20 ms frame)
and keeps the filter history between calls, so a stream cut into frames comes out exactly as
if it had been converted in one piece: no clicks at frame edges. One instance per stream and
direction.

The rates must be integer multiples of each other (8000, 16000, 24000, 48000 ...): upsampling
by L and downsampling by M are polyphase FIRs (one ``np.convolve`` per branch and chunk), so
no multiplication is spent on the zeros of upsampling or on outputs that are dropped.

The filter is a Kaiser-windowed sinc designed at the higher rate: flat (ripple < 0.05 dB) up
to 0.425 of the lower rate (3.4 kHz for 8 kHz, 6.8 kHz for 16 kHz), at least ``STOPBAND_DB``
down from half the lower rate on (4 kHz / 8 kHz), so downsampling does not alias and
upsampling leaves no images. It is linear phase: the delay is ``delay`` samples of the
output rate (about 2.5 ms for 8 <-> 16 kHz, 1.2 ms for 16 <-> 48 kHz).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

Pcm = npt.NDArray[np.int16]
Floats = npt.NDArray[np.float64]

PASS_FRACTION = 0.425   # passband edge, as a fraction of the lower rate
STOP_FRACTION = 0.5     # stopband edge: the lower rate's Nyquist frequency
STOPBAND_DB = 50.0


def lowpass(rate: int, pass_hz: float, stop_hz: float, atten_db: float = STOPBAND_DB
            ) -> npt.NDArray[np.float64]:
    """A linear-phase Kaiser-windowed sinc lowpass (odd length, unity DC gain)."""
    if not 0 < pass_hz < stop_hz <= rate / 2:
        raise ValueError(f"bad lowpass edges {pass_hz}/{stop_hz} Hz at {rate} Hz")
    if atten_db > 50:
        beta = 0.1102 * (atten_db - 8.7)
    else:
        beta = 0.5842 * (atten_db - 21) ** 0.4 + 0.07886 * (atten_db - 21)
    width = 2 * math.pi * (stop_hz - pass_hz) / rate
    taps = math.ceil((atten_db - 8) / (2.285 * width)) + 1
    taps += 1 - taps % 2
    cutoff = (pass_hz + stop_hz) / 2 / rate
    m = np.arange(taps) - (taps - 1) / 2
    h: npt.NDArray[np.float64] = 2 * cutoff * np.sinc(2 * cutoff * m) * np.kaiser(taps, beta)
    h /= h.sum()
    return h


def _to_int16(y: Floats) -> Pcm:
    np.rint(y, out=y)
    np.minimum(y, 32767, out=y)
    np.maximum(y, -32768, out=y)
    return y.astype(np.int16)


class Resampler:
    """One stream's converter from ``from_rate`` to ``to_rate`` (streaming, stateful)."""

    __slots__ = ("_down", "_hist", "_phases", "_skip", "_taps", "_up", "delay", "from_rate",
                 "to_rate")

    def __init__(self, from_rate: int, to_rate: int) -> None:
        if from_rate <= 0 or to_rate <= 0:
            raise ValueError(f"bad rates {from_rate} -> {to_rate}")
        low, high = min(from_rate, to_rate), max(from_rate, to_rate)
        if high % low:
            raise ValueError(f"{from_rate} -> {to_rate}: rates must be integer multiples")
        self.from_rate = from_rate
        self.to_rate = to_rate
        factor = high // low
        self._up = factor if to_rate > from_rate else 1
        self._down = factor if from_rate > to_rate else 1
        self._skip = 0          # downsampling: input samples to skip before the next output
        self._phases: list[Floats] = []
        self._taps = 0          # taps per polyphase branch
        self._hist: Floats = np.zeros(0)
        self.delay = 0
        if factor == 1:
            return
        h = lowpass(high, PASS_FRACTION * low, STOP_FRACTION * low)
        taps = -(-len(h) // factor)
        padded = np.zeros(taps * factor)
        padded[: len(h)] = h
        if self._up > 1:
            padded *= factor                          # gain L makes up for the zero stuffing
            self.delay = (len(h) - 1) // 2            # in output samples
        else:
            self.delay = (len(h) - 1) // 2 // factor
        # branch p: taps p, p + factor, p + 2 factor ... (convolution order)
        self._phases = [padded[p::factor].copy() for p in range(factor)]
        self._taps = taps
        # history: what the longest branch needs before the first new sample
        self._hist = np.zeros(taps - 1 if self._up > 1 else taps * factor - 1)

    def process(self, pcm: Pcm) -> Pcm:
        """Convert the next chunk of the stream. Upsampling by L gives exactly L samples per
        input sample; downsampling by M gives about len/M samples (the phase carries over
        when a chunk is not a multiple of M)."""
        if not self._phases:
            return pcm
        n = pcm.size
        if n == 0:
            return np.zeros(0, dtype=np.int16)
        hist = self._hist
        ext = np.empty(hist.size + n)
        ext[: hist.size] = hist
        ext[hist.size :] = pcm
        self._hist = ext[n:]
        if self._up > 1:
            up = self._up
            out = np.empty(n * up)
            for p, branch in enumerate(self._phases):
                # y[nL + p] = L * sum_k h[p + kL] x[n - k]
                out[p::up] = np.convolve(ext, branch, "valid")
            return _to_int16(out)
        down = self._down
        skip = self._skip
        self._skip = (skip - n) % down
        count = -(-(n - skip) // down) if n > skip else 0
        if count == 0:
            return np.zeros(0, dtype=np.int16)
        span = count + self._taps - 1
        acc = np.zeros(count)
        for p, branch in enumerate(self._phases):
            # y[j] = sum_p sum_k h[p + kM] x[t_j - p - kM], t_j = skip + jM
            start = skip + down - 1 - p
            acc += np.convolve(ext[start : start + (span - 1) * down + 1 : down], branch,
                               "valid")
        return _to_int16(acc)

    def reset(self) -> None:
        """Forget the history (a new stream)."""
        self._hist[:] = 0.0
        self._skip = 0

    def __repr__(self) -> str:
        return (f"<Resampler {self.from_rate}->{self.to_rate} "
                f"taps={self._taps}x{len(self._phases)}>")
