"""The recording's mix (recorder/media.py): the loudest speakers of each frame, by the level
their packets carry."""

from __future__ import annotations

import numpy as np
import opuslib

from recorder.media import FRAME_SAMPLES, RATE, RoomMix, audio_level

TONES = (300.0, 500.0, 700.0, 900.0, 1100.0)


def opus_tone(hz: float, frames: int) -> list[bytes]:
    enc = opuslib.Encoder(RATE, 1, opuslib.APPLICATION_AUDIO)
    t = np.arange(FRAME_SAMPLES * frames) / RATE
    pcm = (5000 * np.sin(2 * np.pi * hz * t)).astype(np.int16)
    return [bytes(enc.encode(pcm[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES].tobytes(),
                             FRAME_SAMPLES)) for i in range(frames)]


def power(pcm: np.ndarray, hz: float) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    freqs = np.fft.rfftfreq(pcm.size, 1 / RATE)
    return float(spectrum[np.abs(freqs - hz) < 30].max())


def test_only_the_three_loudest_are_mixed_and_the_left_out_start_afresh() -> None:
    packets = {hz: opus_tone(hz, 30) for hz in TONES}
    mix = RoomMix()
    levels = (40, 10, 60, 20, 30)  # 500, 900 and 1100 Hz are the loudest three
    heard = []
    for i in range(30):
        row = [(n + 1, packets[hz][i], False) for n, hz in enumerate(TONES)]
        heard.append(mix.frame(row, levels).copy())
    pcm = np.concatenate(heard[10:])
    loud = {hz: power(pcm, hz) for hz in TONES}
    assert min(loud[500.0], loud[900.0], loud[1100.0]) > 20 * max(loud[300.0], loud[700.0])
    assert mix.skipped == 2 * 30 and mix.left_out == {1, 3}
    # 300 Hz gets loud: it is decoded again, by a fresh decoder
    row = [(n + 1, packets[hz][0], False) for n, hz in enumerate(TONES)]
    mix.frame(row, (0, 10, 60, 20, 30))
    assert 1 not in mix.left_out and 5 in mix.left_out


def test_fillers_are_never_decoded_and_unknown_levels_count_as_loud() -> None:
    packets = opus_tone(400.0, 1)
    mix = RoomMix(speakers=1)
    mix.frame([(1, packets[0], True), (2, packets[0], False)], (127, -1))
    assert mix.skipped == 0 and set(mix.decoders) == {2}


def test_audio_level_reads_the_one_byte_extension() -> None:
    header = bytes((0x90, 111, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9))
    assert audio_level(header + bytes((0xBE, 0xDE, 0, 1, 0x10, 0x80 | 42, 0, 0)) + b"x") == 42
    assert audio_level(header + bytes((0xBE, 0xDE, 0, 1, 0x20, 5, 0, 0)) + b"x") == -1  # id 2
    assert audio_level(bytes((0x80, 111)) + bytes(10) + b"payload") == -1
    assert audio_level(header + bytes((0xBE, 0xDE, 0, 9))) == -1  # cut short
