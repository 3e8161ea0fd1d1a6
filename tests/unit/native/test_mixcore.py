"""native._mixcore against numpy written out in the test (the reference arithmetic)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from gateway.media import g711
from native._mixcore import lut_decode, lut_encode, mix, peak

RNG = np.random.default_rng(7)


def voice(n: int = 160, scale: float = 8000.0) -> npt.NDArray[np.int16]:
    return np.clip(RNG.normal(0, scale, n), -32768, 32767).astype(np.int16)


def reference(voices: list[npt.NDArray[np.int16]], tones: list[npt.NDArray[np.int16]],
              threshold: int) -> tuple[npt.NDArray[np.int16], list[int]]:
    quiet = [i for i, v in enumerate(voices) if int(np.abs(v.astype(np.int32)).max()) <= threshold]
    total = np.zeros(voices[0].size if voices else tones[0].size, dtype=np.int32)
    for i, v in enumerate(voices):
        if i not in quiet:
            total += v
    for t in tones:
        total += t
    rows = [total - (0 if i in quiet else v.astype(np.int32)) for i, v in enumerate(voices)]
    rows.append(total)
    return np.clip(np.array(rows), -32768, 32767).astype(np.int16), quiet


@pytest.mark.parametrize("n", [160, 320])
@pytest.mark.parametrize("count", [0, 1, 2, 5, 40])  # 40: more than the C side's stack rows
def test_mix_gives_every_voice_its_n_minus_1_mix_and_the_full_mix(n: int, count: int) -> None:
    voices = [voice(n, 12000.0) for _ in range(count)]  # loud: the sums clip
    if count > 1:
        voices[1] = np.full(n, 16, dtype=np.int16)     # at the threshold: silent
        voices[0][5] = -32768                          # |-32768| is 32768, not negative
    tones = [voice(n, 500.0)]
    out = np.full((count + 3, n), 99, dtype=np.int16)
    quiet = mix(voices, tones, 16, out, n)
    want, want_quiet = reference(voices, tones, 16)
    assert quiet == want_quiet
    assert (out[: count + 1] == want).all()
    assert (out[count + 1 :] == 99).all()  # rows past the mix untouched


def test_mix_refuses_wrong_buffers_without_touching_memory() -> None:
    out = np.zeros((3, 160), dtype=np.int16)
    with pytest.raises(ValueError):
        mix([voice(), voice(159)], [], 16, out, 160)        # a short voice
    with pytest.raises(ValueError):
        mix([voice(), voice()], [], 16, out[:2], 160)       # out too short for 2 + 1 rows
    with pytest.raises(TypeError):
        mix([voice().astype(np.int32)], [], 16, out, 160)   # not int16
    with pytest.raises(ValueError):
        mix([voice()], [voice(80)], 16, out, 160)           # a short tone
    with pytest.raises((BufferError, ValueError)):
        mix([voice(320)[::2]], [], 16, out, 160)            # not contiguous
    with pytest.raises((TypeError, BufferError)):
        mix([voice()], [], 16, bytes(960), 160)             # out not writable
    with pytest.raises(ValueError):
        mix([], [], 16, out, 0)


def test_lookups_are_the_tables_indexing() -> None:
    every = np.arange(65536, dtype=np.uint16).view(np.int16)
    for enc in (g711.ULAW_ENCODE, g711.ALAW_ENCODE):
        assert lut_encode(enc, every) == enc[every.view(np.uint16)].tobytes()
    every_byte = bytes(range(256))
    for dec in (g711.ULAW_DECODE, g711.ALAW_DECODE):
        assert np.array_equal(np.frombuffer(lut_decode(dec, every_byte), np.int16), dec)
    assert g711.ulaw_encode(every[::2]) == g711.ULAW_ENCODE[every[::2].view(np.uint16)].tobytes()
    with pytest.raises(ValueError):
        lut_encode(g711.ULAW_DECODE, every)   # not a 65536-byte table
    with pytest.raises(ValueError):
        lut_decode(g711.ULAW_ENCODE, b"\x00")  # not a 256-sample table
    with pytest.raises(TypeError):
        lut_encode(g711.ULAW_ENCODE, every.astype(np.int32))


def test_peak_is_the_largest_magnitude() -> None:
    assert peak(np.zeros(0, dtype=np.int16)) == 0
    assert peak(np.array([3, -5, 4], dtype=np.int16)) == 5
    assert peak(np.array([100, -32768], dtype=np.int16)) == 32768
    frame = voice()
    assert peak(frame) == int(np.abs(frame.astype(np.int32)).max())
    with pytest.raises(TypeError):
        peak(frame.astype(np.float32))
