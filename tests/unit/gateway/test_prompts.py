"""Prompt loading (shipped and operator's files), PromptPlayer framing, and tones."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from gateway.prompts import (
    FRAME_SAMPLES,
    PROMPT_NAMES,
    SHIPPED_DIR,
    PromptError,
    PromptPlayer,
    PromptSet,
    read_wav,
    to_frames,
)
from gateway.tones import JOIN_TONE, LEAVE_TONE, SILENCE_FRAME, comfort_noise_frame, join_tone


def write_wav(path: Path, samples: np.ndarray, rate: int = 8000, channels: int = 1,
              width: int = 2) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(samples.tobytes())


def dominant_hz(samples: np.ndarray, rate: int = 8000) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.fft.rfftfreq(samples.size, 1 / rate)[int(np.argmax(spectrum))])


def test_every_prompt_is_shipped_as_8k_mono_16bit() -> None:
    for name in PROMPT_NAMES:
        path = SHIPPED_DIR / f"{name}.wav"
        with wave.open(str(path), "rb") as wav:
            assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (8000, 1, 2)


def test_shipped_prompts_load_with_sane_levels_and_lengths() -> None:
    prompts = PromptSet.load()
    assert set(prompts.names) == set(PROMPT_NAMES)
    for name in PROMPT_NAMES:
        samples = prompts.samples(name)
        assert samples.dtype == np.int16
        assert samples.size % FRAME_SAMPLES == 0
        peak = int(np.abs(samples.astype(np.int32)).max())
        assert 8000 < peak <= 32767, name  # audible, normalised, not clipped to nothing
        assert 0.5 < prompts.duration(name) < 8.0, name
    assert prompts.duration("welcome") > prompts.duration("goodbye")


def test_operator_folder_overrides_one_prompt(tmp_path: Path) -> None:
    custom = (np.arange(400, dtype=np.int16) * 7).astype(np.int16)
    write_wav(tmp_path / "goodbye.wav", custom)
    prompts = PromptSet.load(tmp_path)
    samples = prompts.samples("goodbye")
    assert samples.size == 480  # 400 samples -> 3 frames
    assert np.array_equal(samples[:400], custom)
    assert not samples[400:].any()
    # The others still come from the shipped folder.
    assert np.array_equal(prompts.samples("welcome"), PromptSet.load().samples("welcome"))


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"rate": 16000}, "16000 Hz"),
        ({"channels": 2}, "2 channels"),
        ({"width": 1}, "8-bit"),
    ],
)
def test_bad_operator_file_is_refused_naming_it(tmp_path: Path, kwargs: dict[str, int],
                                                 words: str) -> None:
    write_wav(tmp_path / "welcome.wav", np.zeros(800, dtype=np.int16), **kwargs)
    with pytest.raises(PromptError) as info:
        PromptSet.load(tmp_path)
    assert "welcome.wav" in str(info.value)
    assert words in str(info.value)


def test_not_a_wav_is_refused(tmp_path: Path) -> None:
    (tmp_path / "muted.wav").write_bytes(b"ID3 this is an mp3, honest")
    with pytest.raises(PromptError, match=r"muted\.wav"):
        PromptSet.load(tmp_path)


def test_missing_shipped_file_and_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(PromptError, match=r"welcome\.wav: not found"):
        PromptSet.load(shipped_dir=tmp_path)
    with pytest.raises(PromptError, match="not a directory"):
        PromptSet.load(tmp_path / "nope")


def test_read_wav_empty(tmp_path: Path) -> None:
    write_wav(tmp_path / "x.wav", np.zeros(0, dtype=np.int16))
    with pytest.raises(PromptError, match="no audio"):
        read_wav(tmp_path / "x.wav")


def test_player_yields_frames_with_last_zero_padded() -> None:
    samples = np.arange(1, 351, dtype=np.int16)  # 350 samples: 2 full frames + 30
    player = PromptPlayer(to_frames(samples), "x")
    frames = list(player)
    assert [f.shape for f in frames] == [(160,)] * 3
    assert np.array_equal(np.concatenate(frames)[:350], samples)
    assert not frames[2][30:].any()
    assert player.finished and player.done and not player.stopped
    assert player.next_frame() is None


def test_player_stop() -> None:
    player = PromptSet.load().player("welcome")
    assert player.next_frame() is not None
    player.stop()
    assert player.next_frame() is None
    assert player.stopped and player.done and not player.finished


def test_frames_are_read_only() -> None:
    frame = PromptSet.load().player("muted").next_frame()
    assert frame is not None
    with pytest.raises(ValueError):
        frame[0] = 1


def test_join_tone_rises_and_leave_tone_falls() -> None:
    for tone in (JOIN_TONE, LEAVE_TONE):
        assert tone.dtype == np.int16 and tone.shape[1] == 160
        assert 0.25 <= tone.shape[0] * 0.020 <= 0.4
        flat = tone.reshape(-1)
        peak = int(np.abs(flat.astype(np.int32)).max())
        assert 4000 < peak < 16000
        # No click: the first and last samples of the clip are near zero.
        assert abs(int(flat[0])) < 200
    join = JOIN_TONE.reshape(-1)
    leave = LEAVE_TONE.reshape(-1)
    assert dominant_hz(join[:800]) < dominant_hz(join[1500:2300])
    assert dominant_hz(leave[:800]) > dominant_hz(leave[1500:2300])
    assert join_tone().frame_count == JOIN_TONE.shape[0]


def test_silence_and_comfort_noise() -> None:
    assert SILENCE_FRAME.shape == (160,) and not SILENCE_FRAME.any()
    noise = comfort_noise_frame(np.random.default_rng(1))
    assert noise.shape == (160,) and noise.dtype == np.int16
    assert 0 < np.abs(noise.astype(np.int32)).max() < 100
