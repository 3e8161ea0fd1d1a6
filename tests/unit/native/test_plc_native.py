"""native._plc against numpy written out in the test (the reference arithmetic: the
concealer's pitch search and loop as gateway/media/plc.py computed them before they moved
to C, with the sums in double precision as the C side keeps them), on voiced, noisy,
decaying and short signals at 8 and 16 kHz; and its refusals."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from native._plc import extend

Signal = npt.NDArray[np.float32]
RNG = np.random.default_rng(11)
MAX_PERIODS = 3
DECAY_FLOOR = 0.3


def ramp(count: int) -> Signal:
    return (np.arange(1, count + 1, dtype=np.float32) / np.float32(count + 1)).astype(np.float32)


def ref_pitch(hist: Signal, window_max: int, min_pitch: int, max_pitch: int) -> int:
    window = min(window_max, len(hist) - max_pitch)
    if window < min_pitch:
        return min(len(hist), max_pitch)
    ref = hist[-window:].astype(np.float64)
    views = sliding_window_view(hist[: len(hist) - min_pitch].astype(np.float64), window)
    lo = len(hist) - window - max_pitch
    hi = len(hist) - window - min_pitch
    candidates = views[lo : hi + 1]                  # row i: lag = max_pitch - i
    energy = np.einsum("ij,ij->i", candidates, candidates) + 1e-3
    corr = candidates @ ref
    score = np.where(corr > 0, corr * corr / energy, 0.0)[::-1]   # lag = min_pitch + i
    best, lag = 0.0, max_pitch
    for i, s in enumerate(score):              # a tie (within 1e-6) goes to the shorter lag
        if s > 0 and s > best * (1 + 1e-6):
            best, lag = float(s), min_pitch + i
    return lag


def ref_loop(hist: Signal, length: int, lap: int, r: Signal) -> Signal:
    end = hist.size
    loop = hist[end - length :].copy()
    if lap:
        before = hist[end - length - lap : end - length]
        loop[-lap:] = loop[-lap:] * (np.float32(1.0) - r) + before * r
    return loop


def ref_extend(hist: Signal, count: int, window_max: int, min_pitch: int, max_pitch: int,
               first_span: int, widen_span: int) -> tuple[Signal, int]:
    end = hist.size
    pitch = ref_pitch(hist, window_max, min_pitch, max_pitch)
    lap = min(pitch // 4, end - pitch)
    r = ramp(lap)
    fall = np.float32(1.0) - r
    most = min(MAX_PERIODS, (end - lap) // pitch)
    loop = ref_loop(hist, pitch, lap, r)
    step = hist[-1] - loop[-1]
    out = np.empty(count, dtype=np.float32)
    blend: Signal | None = None
    periods, phase, t = 1, 0, 0
    while True:
        span = count - t if periods >= most else (first_span if periods == 1 else widen_span)
        span = min(span, count - t)
        out[t : t + span] = loop[(phase + np.arange(span)) % loop.size]
        if blend is not None:
            m = min(lap, span)
            out[t : t + m] = out[t : t + m] * r[:m] + blend[:m] * fall[:m]
        t += span
        phase = (phase + span) % loop.size
        if t >= count:
            break
        blend = loop[(phase + np.arange(lap)) % loop.size]
        periods += 1
        loop = ref_loop(hist, pitch * periods, lap, r)
        phase %= pitch
    if end >= 2 * pitch:
        last = float(np.dot(hist[-pitch:].astype(np.float64), hist[-pitch:]))
        before = float(np.dot(hist[-2 * pitch : -pitch].astype(np.float64),
                              hist[-2 * pitch : -pitch]))
        if last < before:
            rate = max(DECAY_FLOOR, (last / before) ** 0.5)
            out *= np.power(np.float32(rate), np.arange(count, dtype=np.float32) / pitch)
    if lap:
        head = min(lap, count)
        out[:head] += step * fall[:head]
    return out, pitch


def voiced(samples: int, period: float, amp: float = 5000.0, decay: float = 1.0) -> Signal:
    t = np.arange(samples, dtype=np.float64)
    phase = 2 * np.pi * t / period
    level = amp * decay ** (t / period)
    sig = level * (np.sin(phase) + 0.4 * np.sin(2 * phase + 0.7) + 0.2 * np.sin(3 * phase + 1.9))
    return sig.astype(np.float32)


def c_extend(hist: Signal, count: int, window_max: int, min_pitch: int, max_pitch: int,
             first_span: int, widen_span: int) -> tuple[Signal, int]:
    out = np.empty(count, dtype=np.float32)
    pitch = extend(hist, out, window_max, min_pitch, max_pitch, first_span, widen_span,
                   MAX_PERIODS, DECAY_FLOOR)
    return out, pitch


RATES = {8000: (160, 20, 120, 160, 80), 16000: (320, 40, 240, 320, 160)}


@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize("kind", ["voiced", "noise", "decaying", "growing", "silence"])
def test_extend_matches_the_reference(rate: int, kind: int | str) -> None:
    frame, lo, hi, first, widen = RATES[rate]
    scale = rate // 8000
    for trial in range(20):
        period = float(RNG.uniform(lo, hi))
        n = frame * 4
        if kind == "voiced":
            hist = voiced(n, period) + RNG.normal(0, 200, n).astype(np.float32)
        elif kind == "noise":
            hist = RNG.normal(0, 3000, n).astype(np.float32)
        elif kind == "decaying":
            hist = voiced(n, period, decay=0.8)
        elif kind == "growing":
            hist = voiced(n, period, amp=500.0, decay=1.1)
        else:
            hist = np.zeros(n, dtype=np.float32)
        for count in (640 * scale, frame, 7):
            want, want_pitch = ref_extend(hist, count, frame, lo, hi, first, widen)
            got, pitch = c_extend(hist, count, frame, lo, hi, first, widen)
            assert pitch == want_pitch, (kind, trial, count)
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=0.05)


@pytest.mark.parametrize("size", [1, 19, 20, 100, 139, 140, 160, 200])
def test_short_histories_match_the_reference(size: int) -> None:
    """Too short to search (the whole history is the period) and just long enough: the
    interpolation extends one 20 ms frame backwards, the shortest history it meets."""
    hist = voiced(size, 57.0) + RNG.normal(0, 100, size).astype(np.float32)
    for count in (160, 640):
        want, want_pitch = ref_extend(hist, count, 160, 20, 120, 160, 80)
        got, pitch = c_extend(hist, count, 160, 20, 120, 160, 80)
        assert pitch == want_pitch
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=0.05)


def test_a_clean_tone_is_found_at_its_period_not_a_multiple() -> None:
    hist = voiced(640, 40.0)
    _, pitch = c_extend(hist, 160, 160, 20, 120, 160, 80)
    assert pitch == 40                     # 80 and 120 score the same, up to rounding
    hist = voiced(640, 80.0)
    out, pitch = c_extend(hist, 160, 160, 20, 120, 160, 80)
    assert pitch == 80
    # the first period out continues the tone (the offset only nudges the start)
    np.testing.assert_allclose(out[20:80], voiced(720, 80.0)[660:720], atol=60)


def test_empty_output_and_refusals() -> None:
    hist = voiced(640, 80.0)
    assert extend(hist, np.empty(0, dtype=np.float32), 160, 20, 120, 160, 80, 3, 0.3) == 0
    out = np.empty(160, dtype=np.float32)
    with pytest.raises(ValueError):
        extend(hist.astype(np.float64), out, 160, 20, 120, 160, 80, 3, 0.3)
    with pytest.raises(ValueError):
        extend(hist, out.astype(np.int16), 160, 20, 120, 160, 80, 3, 0.3)
    with pytest.raises((ValueError, BufferError)):
        extend(hist[::2], out, 160, 20, 120, 160, 80, 3, 0.3)          # not contiguous
    with pytest.raises((ValueError, TypeError, BufferError)):
        extend(hist, bytes(640), 160, 20, 120, 160, 80, 3, 0.3)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        extend(np.empty(0, dtype=np.float32), out, 160, 20, 120, 160, 80, 3, 0.3)
    with pytest.raises(ValueError):
        extend(hist, out, 160, 0, 120, 160, 80, 3, 0.3)                # no pitch range
    with pytest.raises(ValueError):
        extend(hist, out, 160, 20, 10, 160, 80, 3, 0.3)
