"""Packet loss concealment for decoded PCM, after ITU-T G.711 Appendix I.

On a lost frame the concealer estimates the pitch period of the recent history (2.5..15 ms:
20..120 samples at 8 kHz, 40..240 at 16 kHz for G.722, by normalized autocorrelation over
the last 20 ms) and plays the history on a loop, as Appendix I does:

- a loop of the last pitch period; 20 ms into a loss (a second lost frame) it widens to the
  last two periods, 10 ms later to three, so that a long loss buzzes less. Each change of
  loop is overlap-added over a quarter period;
- the end of each loop is overlap-added (a quarter period) with the signal just before its
  start, so the loop wraps without a step;
- the level holds for 10 ms, then fades by 20 % per 10 ms: 60 ms after the loss began the
  output is silence (``conceal()`` returns ``None``). On top of that, a signal that was
  dying away (its last period weaker than the one before) keeps dying away at that rate;
- the first good frame after a loss is cross-faded from the synthetic signal over 4 ms,
  plus 4 ms per 10 ms of loss beyond 20 ms (at most 10 ms).

Where this departs from Appendix I, PESQ (P.862) on speech with 3 % loss of 20 ms frames
said so: pitch down to 2.5 ms (Appendix I stops at 5 ms, and doubles the period of voices
above 200 Hz), widening and the longer recovery cross-fade only from the second lost 20 ms
frame on (from 10 ms they cost 0.03 MOS), and the decay of a dying signal (+0.04 MOS).

Appendix I also smooths the start of the loss by overlap-adding into the last quarter
period of the good signal, which costs every frame a 3.75 ms delay. Here the good frames
go out untouched and undelayed; instead the synthetic signal starts with an offset that
decays to zero over a quarter period: the difference between the last real sample and the
sample the loop wraps from, so the first synthetic sample continues the real one.

When the frame after the loss is already known (a jitter buffer holds the next packet)
and the codec is stateless, :meth:`Concealer.interpolate` fills the gap from both sides:
the forward extension of the history and a backward pitch-periodic extension of the next
frame (the forward method run on the time-reversed frame), cross-faded over the gap, so
the gap joins the next frame without a recovery cross-fade.

Work is done only when a frame is lost; ``good()`` just keeps references to the last
frames (and cross-fades the first one after a loss). Opus does not come here: libopus
conceals (or uses FEC) itself.

:class:`FrameDecoder` puts a codec and the concealer behind the jitter buffer: it turns the
buffer's frames (audio, lost, continued, empty) into PCM frames for one stream.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from native._plc import extend

from .codecs import AudioCodec, ConcealingCodec
from .jitterbuffer import FrameKind, JitterFrame

Pcm = npt.NDArray[np.int16]
Signal = npt.NDArray[np.float32]

MIN_PITCH_MS = 2.5    # 400 Hz
MAX_PITCH_MS = 15     # 67 Hz
HOLD_MS = 10          # full level at first
FADE_MS = 50          # then linear fade to zero: 20 % per 10 ms
WIDEN_START_MS = 20   # the loop grows by one pitch period 20 ms into a loss,
WIDEN_MS = 10         # then every 10 ms,
MAX_PERIODS = 3       # up to three periods
DECAY_FLOOR = 0.3     # a dying signal's level may fall at most to this per pitch period
RECOVER_MS = 4        # cross-fade on recovery: 4 ms after up to 20 ms of loss,
RECOVER_STEP_MS = 4   # plus 4 ms for every further 10 ms of loss,
RECOVER_MAX_MS = 10   # at most 10 ms


def _to_pcm(signal: Signal) -> Pcm:
    out: Pcm = np.clip(np.rint(signal), -32768, 32767).astype(np.int16)
    return out


def _ramp(count: int) -> Signal:
    """Weights rising from just above 0 to just below 1 over ``count`` samples."""
    return (np.arange(1, count + 1, dtype=np.float32) / np.float32(count + 1)).astype(np.float32)


class Concealer:
    """Stateful loss concealment for one stream of fixed-size frames."""

    __slots__ = (
        "_elapsed",
        "_first_span",
        "_gains",
        "_history",
        "_history_frames",
        "_max_pitch",
        "_min_pitch",
        "_silent_after",
        "_synth",
        "_ten_ms",
        "_widen_span",
        "_zero",
        "frame_samples",
        "sample_rate",
    )

    def __init__(self, frame_samples: int = 160, sample_rate: int = 8000) -> None:
        self.frame_samples = frame_samples
        self.sample_rate = sample_rate
        self._min_pitch = round(sample_rate * MIN_PITCH_MS / 1000)   # 20 samples at 8 kHz
        self._max_pitch = sample_rate * MAX_PITCH_MS // 1000        # 120 samples
        self._ten_ms = sample_rate // 100
        self._first_span = sample_rate * WIDEN_START_MS // 1000
        self._widen_span = sample_rate * WIDEN_MS // 1000
        # three of the longest periods and the overlap before them; a 20 ms window compared
        # at the longest pitch lag
        needed = max(MAX_PERIODS * self._max_pitch + self._max_pitch // 4,
                     frame_samples + self._max_pitch)
        self._history_frames = max(2, -(-needed // frame_samples))
        self._history: list[Pcm] = []
        self._zero: Pcm = np.zeros(frame_samples, dtype=np.int16)
        # the level over a whole loss, and the last frame or recovery cross-fade after it
        hold = sample_rate * HOLD_MS // 1000
        fade = sample_rate * FADE_MS // 1000
        self._silent_after = hold + fade
        after = max(frame_samples, sample_rate * RECOVER_MAX_MS // 1000)
        t = np.arange(hold + fade + after, dtype=np.float32)
        self._gains: Signal = np.clip(1.0 - (t - hold) / fade, 0.0, 1.0).astype(np.float32)
        self._synth: Signal | None = None   # the whole loss, levels applied, once it began
        self._elapsed = 0                   # samples concealed in the current loss

    @property
    def concealing(self) -> bool:
        return self._elapsed > 0

    def reset(self) -> None:
        """Forget the history (a new talk spurt or stream)."""
        self._history.clear()
        self._synth = None
        self._elapsed = 0

    def good(self, pcm: Pcm) -> Pcm:
        """Record a decoded frame; returns it, cross-faded if it ends a loss."""
        if self._elapsed:
            if self._synth is not None:
                pcm = self._recover(pcm)
            self._elapsed = 0
            self._synth = None
        history = self._history
        history.append(pcm)
        if len(history) > self._history_frames:
            del history[0]
        return pcm

    def conceal(self) -> Pcm | None:
        """A synthetic frame for a lost one, or ``None`` once it has faded to silence."""
        synthetic = self._next_synthetic()
        if synthetic is None:
            self._remember(self._zero)
            return None
        out = _to_pcm(synthetic)
        self._remember(out)
        return out

    def interpolate(self, following: Pcm) -> Pcm:
        """A synthetic frame for a lost one that ``following`` (decoded PCM, ideally a whole
        frame) comes right after: the forward extension of the history cross-faded into a
        backward extension of ``following``. This ends the loss: ``good(following)`` next
        returns it untouched. Without history it fades the backward extension in."""
        n = self.frame_samples
        forward = self._next_synthetic()
        backward = self._extend(np.ascontiguousarray(following[::-1], dtype=np.float32),
                                n)[::-1]
        weights = _ramp(n)
        mixed = backward * weights
        if forward is not None:
            mixed += forward * (np.float32(1.0) - weights)
        out = _to_pcm(mixed)
        self._elapsed = 0
        self._synth = None
        self._remember(out)
        return out

    # internals

    def _next_synthetic(self) -> Signal | None:
        """The next frame of the loss's synthetic signal (levels applied), or None: no
        history, or faded out."""
        n = self.frame_samples
        start = self._elapsed
        self._elapsed = start + n
        synth = self._synth
        if synth is None:
            if start or not self._history:
                return None
            hist = np.concatenate(self._history).astype(np.float32)
            synth = self._extend(hist, self._gains.size)
            synth *= self._gains
            self._synth = synth
        if start >= self._silent_after:
            return None
        return synth[start : start + n]

    def _remember(self, pcm: Pcm) -> None:
        """Concealed frames join the history, so that it stays one continuous signal."""
        history = self._history
        if history:
            history.append(pcm)
            if len(history) > self._history_frames:
                del history[0]

    def _recover(self, pcm: Pcm) -> Pcm:
        """Cross-fade the first good frame after a loss in from the synthetic signal."""
        assert self._synth is not None
        elapsed = self._elapsed
        beyond = max(0, -(-(elapsed - 2 * self._ten_ms) // self._ten_ms))   # 10 ms after 20
        ms = min(RECOVER_MS + RECOVER_STEP_MS * beyond, RECOVER_MAX_MS)
        ov = min(self.sample_rate * ms // 1000, pcm.size)
        tail = self._synth[elapsed : elapsed + ov]
        if tail.size < ov:
            tail = np.concatenate((tail, np.zeros(ov - tail.size, dtype=np.float32)))
        ramp = _ramp(ov)
        out = pcm.copy()
        out[:ov] = _to_pcm(tail * (np.float32(1.0) - ramp) + pcm[:ov].astype(np.float32) * ramp)
        return out

    def _extend(self, hist: Signal, count: int) -> Signal:
        """``count`` samples continuing ``hist`` pitch-periodically: the last period looped,
        two then three periods from ``WIDEN_START_MS`` on, each switch overlap-added; the
        level follows the decay of the last two periods, if any. The pitch is the lag in
        [min, max] pitch that best predicts the last 20 ms of ``hist`` (normalized
        autocorrelation). The arithmetic is native/_plc.c's (numpy's per-call overhead made
        a concealment cost 100 us; a lost packet on every leg at once made a late tick)."""
        out: Signal = np.empty(count, dtype=np.float32)
        extend(hist, out, self.frame_samples, self._min_pitch, self._max_pitch,
               self._first_span, self._widen_span, MAX_PERIODS, DECAY_FLOOR)
        return out


class FrameDecoder:
    """One received stream's jitter buffer frames to PCM: decode, conceal, and split the
    longer packets of framed codecs (a 40 ms Opus packet: AUDIO then CONTINUED).

    Every frame out has ``codec.frame_samples`` samples. Codecs with their own concealment
    (:class:`ConcealingCodec`: Opus) get ``decode_lost(next_payload)`` for a LOST frame, so
    Opus rebuilds it from the next packet's in-band FEC when the jitter buffer has that
    packet; the others go through :class:`Concealer` at the codec's rate. For a stateless
    codec (``codec.stateless``: G.711, whose decoding of a payload twice is harmless) a LOST
    frame that carries the next packet is interpolated towards it
    (:meth:`Concealer.interpolate`). A payload the codec refuses (``ValueError``) is counted
    in ``undecodable`` and concealed.
    """

    __slots__ = ("_concealer", "_decode_lost", "_pending", "_stateless", "codec", "undecodable")

    def __init__(self, codec: AudioCodec) -> None:
        self.codec = codec
        self._concealer = Concealer(codec.frame_samples, codec.sample_rate)
        self._decode_lost = codec.decode_lost if isinstance(codec, ConcealingCodec) else None
        self._stateless = bool(getattr(codec, "stateless", False))
        self._pending: Pcm | None = None     # decoded audio beyond the last frame
        self.undecodable = 0

    def use(self, codec: AudioCodec) -> None:
        """Decode with another instance of the same codec and rates from now on."""
        self.codec = codec
        self._decode_lost = codec.decode_lost if isinstance(codec, ConcealingCodec) else None
        self._stateless = bool(getattr(codec, "stateless", False))

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
        if next_payload and self._stateless:
            try:
                following = self.codec.decode(next_payload)
            except ValueError:
                following = None
            if following is not None and following.size:
                return self._concealer.interpolate(following)
        return self._concealer.conceal()
