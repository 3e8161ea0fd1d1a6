# ruff: noqa: SIM115 - the writers own their files (a crash leaves them open)
"""The recorder's files: Ogg Opus (our writer) and Matroska (our writer), read back by
FFmpeg's demuxers (PyAV), whole and cut short as a kill -9 leaves them."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from recorder.media import FRAME_SAMPLES, RATE, OpusEncoder, silence_packet
from recorder.mkv import MatroskaOpusWriter, vint_size
from recorder.ogg import OggOpusWriter, ogg_crc


def tone(freq: float, frames: int) -> list[np.ndarray]:
    t = np.arange(frames * FRAME_SAMPLES) / RATE
    pcm = (8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)
    return [pcm[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES] for i in range(frames)]


def packets(freq: float, frames: int) -> list[bytes]:
    enc = OpusEncoder()
    return [enc.encode(f) for f in tone(freq, frames)]


def decode_all(path: Path, stream: int = 0) -> tuple[np.ndarray, float | None]:
    """Every sample of one audio stream (48 kHz mono) and the stream's start time (s)."""
    with av.open(str(path)) as container:
        s = container.streams.audio[stream]
        start = float(s.start_time * s.time_base) if s.start_time is not None else None
        chunks = [f.to_ndarray().reshape(-1) for f in container.decode(s)]
    return np.concatenate(chunks), start


def peak_freq(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.argmax(spectrum) * RATE / samples.size)


def test_ogg_crc_matches_the_spec_check_value() -> None:
    # the Ogg CRC (poly 0x04C11DB7, no reflection, init 0) of "123456789"
    assert ogg_crc(b"123456789") == 0x89A1897F


def test_ogg_opus_plays_back_the_tone_for_its_duration(tmp_path: Path) -> None:
    path = tmp_path / "mix.opus"
    writer = OggOpusWriter(open(path, "wb"))
    for p in packets(440, 150):
        writer.write(p)
    writer.close()
    samples, _ = decode_all(path)
    assert abs(samples.size - 150 * FRAME_SAMPLES) <= FRAME_SAMPLES  # 3 s, within a frame
    assert abs(peak_freq(samples[4800:]) - 440) < 5


def test_ogg_cut_short_plays_up_to_its_last_page(tmp_path: Path) -> None:
    """kill -9: nothing closes the file; every full page (a second) is on disk."""
    path = tmp_path / "mix.opus"
    fh = open(path, "wb")
    writer = OggOpusWriter(fh)
    for p in packets(440, 170):  # 3.4 s: three full pages, the fourth not written
        writer.write(p)
    copy = tmp_path / "killed.opus"
    copy.write_bytes(path.read_bytes())  # what a crash leaves
    fh.close()
    samples, _ = decode_all(copy)
    assert abs(samples.size / RATE - 3.0) < 0.05


def test_mkv_tracks_named_added_late_and_durations(tmp_path: Path) -> None:
    path = tmp_path / "tracks.mkv"
    writer = MatroskaOpusWriter(open(path, "w+b"))
    a, b = packets(440, 250), packets(1000, 150)
    writer.add_track(1, "SSRC 1")
    for i in range(250):
        if i == 100:
            writer.add_track(2, "Bob")  # joins 2 s in
        writer.write(1, i * 20, a[i])
        if i >= 100:
            writer.write(2, i * 20, b[i - 100])
    writer.rename_track(1, "Alice")  # the bridge said whose it is
    writer.close(250 * 20)
    with av.open(str(path)) as container:
        names = [s.metadata.get("title") for s in container.streams.audio]
        assert names == ["Alice", "Bob"]
        assert abs(float(container.duration or 0) / 1e6 - 5.0) < 0.03
    alice, _ = decode_all(path, 0)
    bob, start_b = decode_all(path, 1)
    assert abs(alice.size / RATE - 5.0) <= 0.02
    assert abs(bob.size / RATE - 3.0) <= 0.02 and abs((start_b or 0) - 2.0) < 0.03
    assert abs(peak_freq(alice[4800:]) - 440) < 5 and abs(peak_freq(bob[4800:]) - 1000) < 5


def test_mkv_cut_short_plays_without_an_index(tmp_path: Path) -> None:
    path = tmp_path / "tracks.mkv"
    fh = open(path, "w+b")
    writer = MatroskaOpusWriter(fh)
    writer.add_track(1, "Alice")
    for i, p in enumerate(packets(440, 230)):  # 4.6 s: four whole clusters written
        writer.write(1, i * 20, p)
    copy = tmp_path / "killed.mkv"
    copy.write_bytes(path.read_bytes())
    fh.close()
    samples, _ = decode_all(copy)
    assert abs(samples.size / RATE - 4.0) < 0.05


def test_filler_decodes_to_silence(tmp_path: Path) -> None:
    path = tmp_path / "quiet.opus"
    writer = OggOpusWriter(open(path, "wb"))
    for _ in range(50):
        writer.write(silence_packet())
    writer.close()
    samples, _ = decode_all(path)
    assert float(np.abs(samples).max()) < 0.002  # (float samples, full scale 1.0)


def test_ebml_sizes() -> None:
    assert vint_size(0) == b"\x80" and vint_size(126) == b"\xfe"
    assert vint_size(127) == b"\x40\x7f" and vint_size(300) == b"\x41\x2c"
