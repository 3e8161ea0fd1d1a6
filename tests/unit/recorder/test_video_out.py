"""The video pipeline (recorder/video_out.py) without a bridge: VP8 RTP of two cameras and the
mix's PCM in, an MP4 out, read back with PyAV. Speaker layout shows the camera that sent
last; grid shows both side by side; nothing at all gives black frames, never no frames."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import av
import numpy as np
import pytest
from test_depacketize import encode, vp8_rtp

from recorder.video_out import AvPipeline, Mp4Output, VideoSettings

W, H = 320, 180


def rtp(pt: int, seq: int, ts: int, ssrc: int, marker: bool, payload: bytes) -> bytes:
    return struct.pack("!BBHII", 0x80, pt | (0x80 if marker else 0), seq & 0xFFFF,
                       ts & 0xFFFFFFFF, ssrc) + payload


def camera_packets(ssrc: int) -> list[list[bytes]]:
    frames = encode("libvpx", 12)  # 160x120 pictures (tests/unit/recorder/test_depacketize)
    out, seq = [], 100
    for n, (data, _) in enumerate(frames):
        payloads = vp8_rtp(data, n)
        out.append([rtp(96, seq + i, n * 3000, ssrc, i == len(payloads) - 1, p)
                    for i, p in enumerate(payloads)])
        seq += len(payloads)
    return out


def run(tmp_path: Path, layout: str, cameras: tuple[int, ...]) -> tuple[list[np.ndarray], int]:
    settings = VideoSettings(width=W, height=H, fps=10, bitrate=300_000, preset="ultrafast",
                             layout=layout)
    start = time.monotonic()
    pipeline = AvPipeline("r1", Mp4Output(str(tmp_path / f"{layout}.mp4")), settings, start,
                          {96: "VP8"})
    pipeline.begin()
    tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(960) / 48000)).astype(np.int16)
    streams = {ssrc: camera_packets(ssrc) for ssrc in cameras}
    for n in range(12):
        for frames in streams.values():
            for packet in frames[n]:
                pipeline.on_rtp(packet, time.monotonic())
        for k in range(5):
            pipeline.on_audio(n * 5 + k, tone)
        time.sleep(0.1)
    pipeline.finish()
    assert pipeline.error == ""
    with av.open(str(tmp_path / f"{layout}.mp4")) as container:
        (video,) = container.streams.video
        (sound,) = container.streams.audio
        assert (video.codec_context.name, video.width, video.height) == ("h264", W, H)
        assert sound.codec_context.name == "aac"
        pictures = [f.to_ndarray(format="gray") for f in container.decode(video=0)]
    with av.open(str(tmp_path / f"{layout}.mp4")) as container:
        samples = sum(f.samples for f in container.decode(audio=0))
    return pictures, samples


def test_speaker_layout_fills_the_picture_with_the_camera(tmp_path: Path) -> None:
    pictures, samples = run(tmp_path, "speaker", (1111,))
    assert len(pictures) >= 8
    assert samples >= 48000 * 1.0  # 1.2 s of mix went in
    last = pictures[-1]
    # 160x120 scaled to 240x180: bars left and right, the picture in the middle
    assert last[:, :30].max() <= 20 and last[:, 50:270].std() > 10


def test_grid_layout_shows_every_camera(tmp_path: Path) -> None:
    pictures, _ = run(tmp_path, "grid", (1111, 2222))
    last = pictures[-1]
    # two tiles of 160x180, each with a 160x120 picture centred: both halves have a picture
    assert last[40:140, 10:150].std() > 10 and last[40:140, 170:310].std() > 10
    assert last[:25, :].max() <= 20  # the bars above


def test_no_camera_gives_black_frames_not_none(tmp_path: Path) -> None:
    pictures, samples = run(tmp_path, "speaker", ())
    assert len(pictures) >= 8 and all(p.max() <= 20 for p in pictures)
    assert samples >= 48000


def test_an_output_that_cannot_open_is_an_error_not_a_crash(tmp_path: Path) -> None:
    settings = VideoSettings(width=W, height=H, fps=10)
    pipeline = AvPipeline("r2", Mp4Output(str(tmp_path / "no" / "such" / "dir.mp4")), settings,
                          time.monotonic(), {96: "VP8"})
    pipeline.begin()
    pipeline.finish()
    assert pipeline.error and "dir.mp4" not in pipeline.error


@pytest.fixture(autouse=True)
def _quiet_libav() -> None:
    av.logging.set_level(None)
