"""Tones the mixer plays: join (two rising beeps), leave (two falling beeps), silence.

Computed once at import as read-only frames (shape ``(n, 160)``, int16, 8 kHz) so playing a
tone copies nothing: ``PromptPlayer(JOIN_TONE, "join")``. Each beep has 5 ms raised-cosine
edges, so there is no click at its start or end.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from gateway.prompts import FRAME_SAMPLES, SAMPLE_RATE, Frames, PromptPlayer, to_frames

TONE_LEVEL = 0.25  # peak, as a fraction of full scale (about -12 dBFS)
RAMP_SECONDS = 0.005


def beep(freq_hz: float, seconds: float, level: float = TONE_LEVEL,
         rate: int = SAMPLE_RATE) -> npt.NDArray[np.float64]:
    """One sine beep as floats in [-1, 1], with raised-cosine edges."""
    n = round(seconds * rate)
    t = np.arange(n) / rate
    wave = level * np.sin(2 * np.pi * freq_hz * t)
    ramp = min(round(RAMP_SECONDS * rate), n // 2)
    if ramp > 0:
        edge = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
        wave[:ramp] *= edge
        wave[n - ramp:] *= edge[::-1]
    return wave


def gap(seconds: float, rate: int = SAMPLE_RATE) -> npt.NDArray[np.float64]:
    return np.zeros(round(seconds * rate))


def sequence(*parts: npt.NDArray[np.float64], frame_samples: int = FRAME_SAMPLES) -> Frames:
    """Join float parts into int16 frames (the last zero-padded)."""
    joined = np.concatenate(parts)
    pcm = np.clip(np.round(joined * 32767.0), -32768, 32767).astype(np.int16)
    return to_frames(pcm, frame_samples)


# 0.12 s beep, 0.06 s gap, 0.12 s beep: 0.3 s, 15 frames.
JOIN_TONE: Frames = sequence(beep(660.0, 0.12), gap(0.06), beep(880.0, 0.12))
LEAVE_TONE: Frames = sequence(beep(880.0, 0.12), gap(0.06), beep(660.0, 0.12))

SILENCE_FRAME: npt.NDArray[np.int16] = np.zeros(FRAME_SAMPLES, dtype=np.int16)
SILENCE_FRAME.flags.writeable = False


def comfort_noise_frame(rng: np.random.Generator, level_dbfs: float = -70.0,
                        frame_samples: int = FRAME_SAMPLES) -> npt.NDArray[np.int16]:
    """A frame of very low white noise, for listeners who would otherwise hear dead air."""
    rms = 32767.0 * 10.0 ** (level_dbfs / 20.0)
    noise = rng.normal(0.0, rms, frame_samples)
    return np.clip(np.round(noise), -32768, 32767).astype(np.int16)


def join_tone() -> PromptPlayer:
    return PromptPlayer(JOIN_TONE, "join_tone")


def leave_tone() -> PromptPlayer:
    return PromptPlayer(LEAVE_TONE, "leave_tone")


# Quiet music for callers waiting in a lobby: a slow arpeggio of soft notes (about
# -24 dBFS peak), 8 s, looped by gateway/phone_lobby.py while the caller waits.
HOLD_LEVEL = 0.06
HOLD_NOTES = (523.25, 659.25, 783.99, 659.25, 587.33, 698.46, 880.0, 698.46)  # C E G E D F A F


def _hold_music() -> Frames:
    parts: list[npt.NDArray[np.float64]] = []
    for freq in HOLD_NOTES:
        parts += [beep(freq, 0.7, HOLD_LEVEL), gap(0.3)]
    return sequence(*parts)


HOLD_MUSIC: Frames = _hold_music()


def hold_music() -> PromptPlayer:
    return PromptPlayer(HOLD_MUSIC, "hold_music")
