"""The streaming resampler: frequency, level, stopband and frame edges."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.media.resample import Resampler, lowpass


def tone(freq: float, rate: int, seconds: float = 0.5, amp: float = 8000.0) -> np.ndarray:
    n = np.arange(int(rate * seconds))
    return np.rint(amp * np.sin(2 * np.pi * freq * n / rate)).astype(np.int16)


def fit(signal: np.ndarray, freq: float, rate: int) -> tuple[float, float]:
    """(amplitude of ``freq`` in ``signal``, rms of what is not that sinusoid)."""
    n = np.arange(signal.size)
    basis = np.stack([np.sin(2 * np.pi * freq * n / rate), np.cos(2 * np.pi * freq * n / rate)],
                     axis=1)
    coef, *_ = np.linalg.lstsq(basis, signal.astype(np.float64), rcond=None)
    residual = signal - basis @ coef
    return float(np.hypot(*coef)), float(np.sqrt(np.mean(residual**2)))


def peak_hz(signal: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(signal.size)))
    return float(np.argmax(spectrum) * rate / signal.size)


def by_frames(r: Resampler, pcm: np.ndarray, frame: int) -> np.ndarray:
    return np.concatenate([r.process(pcm[i : i + frame]) for i in range(0, pcm.size, frame)])


@pytest.mark.parametrize(("low", "high"), [(8000, 16000), (16000, 48000), (8000, 48000)])
def test_tone_up_then_down_keeps_frequency_and_level(low: int, high: int) -> None:
    pcm = tone(1000, low)
    up = by_frames(Resampler(low, high), pcm, low // 50)
    assert up.size == pcm.size * high // low
    steady = up[high // 10 :]                       # skip the filter's start-up
    assert abs(peak_hz(steady, high) - 1000) < 5
    amp, noise = fit(steady, 1000, high)
    assert abs(amp - 8000) < 0.01 * 8000 and noise < 0.005 * 8000
    down = by_frames(Resampler(high, low), up, high // 50)
    assert down.size == pcm.size
    steady = down[low // 10 :]
    assert abs(peak_hz(steady, low) - 1000) < 5
    amp, noise = fit(steady, 1000, low)
    assert abs(amp - 8000) < 0.02 * 8000 and noise < 0.01 * 8000


def test_tone_above_the_new_nyquist_is_removed_when_downsampling() -> None:
    pcm = tone(6000, 16000)                         # would alias to 2 kHz at 8 kHz
    out = by_frames(Resampler(16000, 8000), pcm, 320)[800:]
    rms_in = np.sqrt(np.mean(pcm.astype(np.float64) ** 2))
    rms_out = np.sqrt(np.mean(out.astype(np.float64) ** 2))
    assert 20 * np.log10(rms_out / rms_in) < -30     # the design gives about -50 dB
    # and speech-band content passes: 3 kHz keeps its level
    passed = by_frames(Resampler(16000, 8000), tone(3000, 16000), 320)[800:]
    assert abs(fit(passed, 3000, 8000)[0] - 8000) < 0.01 * 8000


def test_upsampling_leaves_no_image() -> None:
    out = by_frames(Resampler(8000, 16000), tone(3000, 8000), 160)[1600:]
    amp, _ = fit(out, 3000, 16000)
    image, _ = fit(out, 5000, 16000)                # 8000 - 3000: the zero-stuffing image
    assert abs(amp - 8000) < 0.01 * 8000
    assert 20 * np.log10(image / amp) < -40


@pytest.mark.parametrize(("src", "dst"), [(8000, 16000), (16000, 8000), (48000, 16000),
                                          (16000, 48000), (48000, 8000)])
def test_frames_join_without_discontinuity(src: int, dst: int) -> None:
    pcm = tone(440, src, seconds=0.3) + tone(2900, src, seconds=0.3, amp=3000)
    whole = Resampler(src, dst).process(pcm)
    framed = by_frames(Resampler(src, dst), pcm, src // 50)
    assert np.array_equal(framed, whole)            # frame edges are invisible
    # odd chunk sizes too (the downsampling phase carries over)
    r = Resampler(src, dst)
    sizes = [7, 1, 333, 2, 160, 13]
    parts, i, k = [], 0, 0
    while i < pcm.size:
        parts.append(r.process(pcm[i : i + sizes[k % len(sizes)]]))
        i += sizes[k % len(sizes)]
        k += 1
    assert np.array_equal(np.concatenate(parts), whole)
    # no click: the largest step between neighbours stays that of a smooth signal
    steps = np.abs(np.diff(framed[len(framed) // 4 :].astype(np.int32)))
    bound = 2 * np.pi * (440 * 8000 + 2900 * 3000) / dst * 1.1
    assert steps.max() < bound


def test_frame_sizes_and_passthrough_and_bad_rates() -> None:
    assert Resampler(8000, 16000).process(np.zeros(160, np.int16)).shape == (320,)
    assert Resampler(16000, 8000).process(np.zeros(320, np.int16)).shape == (160,)
    assert Resampler(48000, 16000).process(np.zeros(960, np.int16)).shape == (320,)
    assert Resampler(16000, 8000).process(np.zeros(0, np.int16)).shape == (0,)
    same = Resampler(16000, 16000)
    pcm = tone(1000, 16000, 0.02)
    assert np.array_equal(same.process(pcm), pcm)
    loud = np.full(320, 32767, dtype=np.int16)       # overshoot near full scale is clipped
    out = Resampler(16000, 8000).process(np.concatenate([loud, -loud, loud]))
    assert out.dtype == np.int16
    for bad in ((8000, 44100), (0, 8000), (16000, 12000)):
        with pytest.raises(ValueError):
            Resampler(*bad)


def test_reset_forgets_history() -> None:
    r = Resampler(8000, 16000)
    first = r.process(tone(1000, 8000, 0.02))
    r.process(tone(700, 8000, 0.02))
    r.reset()
    assert np.array_equal(r.process(tone(1000, 8000, 0.02)), first)


def test_lowpass_design_meets_its_stopband() -> None:
    h = lowpass(16000, 3400, 4000)
    assert len(h) % 2 == 1 and abs(h.sum() - 1) < 1e-9
    freqs = np.linspace(4000, 8000, 400)
    response = np.abs(np.exp(-2j * np.pi * np.outer(freqs, np.arange(len(h))) / 16000) @ h)
    assert 20 * np.log10(response.max()) < -49
    passband = np.abs(np.exp(-2j * np.pi * np.outer(np.linspace(0, 3400, 100),
                                                   np.arange(len(h))) / 16000) @ h)
    assert np.all(np.abs(20 * np.log10(passband)) < 0.1)
