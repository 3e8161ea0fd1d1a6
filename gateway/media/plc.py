"""Packet loss concealment for decoded PCM, a simple take on ITU-T G.711 Appendix I.

On a lost frame the concealer estimates the pitch period of the recent history (40..120
samples at 8 kHz, by normalized autocorrelation), repeats the last period, keeps the level
for the first 10 ms, then fades by 20 % per 10 ms, so that 60 ms after the loss began the
output is silence (``conceal()`` returns ``None``). The first good frame after a loss is
cross-faded from the synthetic signal over 4 ms to avoid a click.

Work is done only when a frame is lost; ``good()`` just keeps references to the last
frames.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

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
