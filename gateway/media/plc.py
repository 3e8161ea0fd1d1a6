"""Packet loss concealment for decoded PCM, a simple take on ITU-T G.711 Appendix I.

On a lost frame the concealer estimates the pitch period of the recent history (5..15 ms:
40..120 samples at 8 kHz, 80..240 at 16 kHz for G.722, by normalized autocorrelation),
repeats the last period, keeps the level for the first 10 ms, then fades by 20 % per 10 ms,
so that 60 ms after the loss began the output is silence (``conceal()`` returns ``None``).
The first good frame after a loss is cross-faded from the synthetic signal over 4 ms to
avoid a click. Opus does not come here: libopus conceals (or uses FEC) itself.

Work is done only when a frame is lost; ``good()`` just keeps references to the last
frames.

:class:`FrameDecoder` puts a codec and the concealer behind the jitter buffer: it turns the
buffer's frames (audio, lost, continued, empty) into PCM frames for one stream.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from .codecs import AudioCodec, ConcealingCodec
from .jitterbuffer import FrameKind, JitterFrame

Pcm = npt.NDArray[np.int16]

HOLD_MS = 10          # full level at first
FADE_MS = 50          # then linear fade to zero: 20 % per 10 ms
OVERLAP_MS = 4        # cross-fade on recovery


class Concealer:
    """Stateful loss concealment for one stream of fixed-size frames."""

    __slots__ = (
        "_elapsed",
        "_history",
        "_history_frames",
        "_max_pitch",
        "_min_pitch",
        "_overlap",
        "_period",
        "_phase",
        "frame_samples",
        "sample_rate",
    )

    def __init__(self, frame_samples: int = 160, sample_rate: int = 8000) -> None:
        self.frame_samples = frame_samples
        self.sample_rate = sample_rate
        self._min_pitch = sample_rate // 200          # 5 ms: 40 samples at 8 kHz
        self._max_pitch = sample_rate * 15 // 1000    # 15 ms: 120 samples
        self._overlap = sample_rate * OVERLAP_MS // 1000
        # enough history for a 20 ms window compared at the longest pitch lag
        needed = frame_samples + self._max_pitch
        self._history_frames = max(2, -(-needed // frame_samples))
        self._history: list[Pcm] = []
        self._period: npt.NDArray[np.float32] | None = None
        self._phase = 0
        self._elapsed = 0              # samples concealed in the current loss

    @property
    def concealing(self) -> bool:
        return self._elapsed > 0

    def reset(self) -> None:
        """Forget the history (a new talk spurt or stream)."""
        self._history.clear()
        self._period = None
        self._elapsed = 0

    def good(self, pcm: Pcm) -> Pcm:
        """Record a decoded frame; returns it, cross-faded if it ends a loss."""
        if self._elapsed and self._period is not None:
            pcm = self._crossfade(pcm)
        self._elapsed = 0
        self._period = None
        history = self._history
        history.append(pcm)
        if len(history) > self._history_frames:
            del history[0]
        return pcm

    def conceal(self) -> Pcm | None:
        """A synthetic frame for a lost one, or ``None`` once it has faded to silence."""
        n = self.frame_samples
        if self._period is None:
            if not self._history or self._elapsed:
                self._elapsed += n
                return None
            self._start_loss()
        assert self._period is not None
        start = self._elapsed
        self._elapsed += n
        gains = self._gains(start, n)
        if gains is None:
            return None
        out: Pcm = np.clip(np.rint(self._synth(n) * gains), -32768, 32767).astype(np.int16)
        return out

    # internals

    def _start_loss(self) -> None:
        hist = np.concatenate(self._history).astype(np.float32)
        pitch = self._estimate_pitch(hist)
        self._period = hist[-pitch:].copy()
        self._phase = 0

    def _estimate_pitch(self, hist: npt.NDArray[np.float32]) -> int:
        window = min(self.frame_samples, len(hist) - self._max_pitch)
        if window < self._min_pitch:
            return min(len(hist), self._max_pitch)
        ref = hist[-window:]
        # candidate windows ending lag samples before the end, for lag in [min, max]
        views = sliding_window_view(hist[: len(hist) - self._min_pitch], window)
        lo = len(hist) - window - self._max_pitch
        hi = len(hist) - window - self._min_pitch
        candidates = views[lo : hi + 1]                  # row i: lag = max_pitch - i
        energy = np.einsum("ij,ij->i", candidates, candidates) + 1e-3
        corr = candidates @ ref
        score = np.where(corr > 0, corr * corr / energy, 0.0)
        if not np.any(score > 0):
            return self._max_pitch
        return int(self._max_pitch - int(np.argmax(score)))

    def _gains(self, start: int, n: int) -> npt.NDArray[np.float32] | None:
        hold = self.sample_rate * HOLD_MS // 1000
        fade = self.sample_rate * FADE_MS // 1000
        if start >= hold + fade:
            return None
        t = np.arange(start, start + n, dtype=np.float32)
        return np.clip(1.0 - (t - hold) / fade, 0.0, 1.0).astype(np.float32)

    def _synth(self, n: int) -> npt.NDArray[np.float32]:
        period = self._period
        assert period is not None
        idx = (self._phase + np.arange(n)) % len(period)
        self._phase = (self._phase + n) % len(period)
        return period[idx]

    def _crossfade(self, pcm: Pcm) -> Pcm:
        ov = min(self._overlap, len(pcm))
        gains = self._gains(self._elapsed, ov)
        tail = np.zeros(ov, dtype=np.float32) if gains is None else self._synth(ov) * gains
        ramp = (np.arange(1, ov + 1, dtype=np.float32)) / (ov + 1)
        out = pcm.copy()
        out[:ov] = np.clip(
            np.rint(tail * (1.0 - ramp) + pcm[:ov].astype(np.float32) * ramp), -32768, 32767
        ).astype(np.int16)
        return out


class FrameDecoder:
    """One received stream's jitter buffer frames to PCM: decode, conceal, and split the
    longer packets of framed codecs (a 40 ms Opus packet: AUDIO then CONTINUED).

    Every frame out has ``codec.frame_samples`` samples. Codecs with their own concealment
    (:class:`ConcealingCodec`: Opus) get ``decode_lost(next_payload)`` for a LOST frame, so
    Opus rebuilds it from the next packet's in-band FEC when the jitter buffer has that
    packet; the others go through :class:`Concealer` at the codec's rate. A payload the
    codec refuses (``ValueError``) is counted in ``undecodable`` and concealed.
    """

    __slots__ = ("_concealer", "_decode_lost", "_pending", "codec", "undecodable")

    def __init__(self, codec: AudioCodec) -> None:
        self.codec = codec
        self._concealer = Concealer(codec.frame_samples, codec.sample_rate)
        self._decode_lost = codec.decode_lost if isinstance(codec, ConcealingCodec) else None
        self._pending: Pcm | None = None     # decoded audio beyond the last frame
        self.undecodable = 0

    def use(self, codec: AudioCodec) -> None:
        """Decode with another instance of the same codec and rates from now on."""
        self.codec = codec
        self._decode_lost = codec.decode_lost if isinstance(codec, ConcealingCodec) else None

    def frame(self, jf: JitterFrame) -> Pcm | None:
        """PCM for one popped frame; None for silence (EMPTY, or concealment faded out)."""
        kind = jf.kind
        if kind is FrameKind.AUDIO:
            self._pending = None
            try:
                pcm = self.codec.decode(jf.payload)
            except ValueError:                  # a corrupt packet from the network
                self.undecodable += 1
                return self._lost(None)
            return self._good(self._fit(pcm))
        if kind is FrameKind.CONTINUED:
            pending = self._pending
            if pending is None:
                return self._lost(None)
            self._pending = None
            return self._good(self._fit(pending))
        self._pending = None
        if kind is FrameKind.LOST:
            return self._lost(jf.payload or None)
        self._concealer.reset()
        return None

    def _good(self, pcm: Pcm) -> Pcm:
        return pcm if self._decode_lost is not None else self._concealer.good(pcm)

    def _fit(self, pcm: Pcm) -> Pcm:
        """One frame: the rest of a longer packet is kept for CONTINUED, a short one padded."""
        n = self.codec.frame_samples
        if pcm.size == n:
            return pcm
        if pcm.size > n:
            self._pending = pcm[n:]
            return pcm[:n]
        return np.concatenate((pcm, np.zeros(n - pcm.size, dtype=np.int16)))

    def _lost(self, next_payload: bytes | None) -> Pcm | None:
        if self._decode_lost is not None:
            return self._fit(self._decode_lost(next_payload))
        return self._concealer.conceal()
