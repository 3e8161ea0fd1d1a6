"""Recording figures: concurrent audio-only recordings on one core, and the CPU of one video
recording (active speaker, and a grid of four cameras) at 720p30.

Both run the recorder's own code (recorder/session.py, recorder/video_out.py) in a child
process pinned to one core, fed in real time the way the bridge feeds it: RTP packets as
they would arrive, and ticked as the service ticks them (every 20 ms, recorder/service.py's
`TICK`, one recording per loop callback). The bridge's cost of forwarding each
speaker's packets once more (to the recorder's endpoint) is not in these figures: it is the
bridge's per-packet cost, in its own rows.

- recordings: rooms of 5 participants, all talking (Opus at 32 kbit/s from a voice-like
  signal, 50 packets a second each, with their RFC 6464 levels); each recording ticked
  every 20 ms, one per loop callback, as the service does; steps of N recordings for
  `window_s` each; a step passes when the process used under 90% of its core and the
  feeding loop was never more than 100 ms late (the timeline holds packets 200 ms). The
  figure is the largest N that passed.
- video: one recording at 1280x720, 30 fps, preset veryfast, fed one 640x480 VP8 camera at
  30 fps (a moving picture: FFmpeg's test source); then a grid fed four. CPU is the whole
  process's (every thread) over the window, in percent of one core.

    python -m tests.bench --only recordings --only video-recording
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

from .common import Figure

FIGURES = {
    "recordings": ("Audio recordings on one core (rooms of 5, all talking)", "50 recordings"),
    "video-recording": ("CPU of one video recording (720p30)", "report (no target set)"),
}
SERVER_CPU = 0
STEPS = (20, 40, 60, 80, 100, 130, 160)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _opus_packets(count: int) -> list[bytes]:
    """Opus at 32 kbit/s of a voice-like signal (a tone with vibrato and noise)."""
    import numpy as np
    import opuslib
    enc = opuslib.Encoder(48000, 1, opuslib.APPLICATION_VOIP)
    opuslib.api.encoder.encoder_ctl(enc.encoder_state, opuslib.api.ctl.set_bitrate, 32000)
    rng = np.random.default_rng(3)
    out = []
    for i in range(count):
        t = (np.arange(960) + i * 960) / 48000
        pcm = 6000 * np.sin(2 * np.pi * (180 + 40 * np.sin(2 * np.pi * 3 * t)) * t)
        pcm += rng.normal(0, 800, 960)
        out.append(bytes(enc.encode(pcm.astype(np.int16).tobytes(), 960)))
    return out


async def _audio_step(count: int, window_s: float, folder: Path) -> dict[str, Any]:
    from recorder.service import TICK
    from recorder.session import Recording
    payloads = _opus_packets(250)
    loop = asyncio.get_running_loop()
    start = loop.time()
    recordings = [Recording(f"r{i}", f"room{i}", folder / f"r{i}", start, time.time())
                  for i in range(count)]
    header = struct.Struct("!BBHII")
    seq = 0
    start = loop.time()  # (opening the files took a moment)
    next_at = start
    worst_late = 0.0
    warm = start + 2.0
    measured_from: tuple[float, float] | None = None
    running = True

    async def ticker() -> None:  # recorder/service.py's loop: one recording a callback
        tick_at = loop.time()
        while running:
            for rec in recordings:
                rec.tick(loop.time())
                await asyncio.sleep(0)
            tick_at = max(tick_at + TICK, loop.time())
            await asyncio.sleep(tick_at - loop.time())

    ticking = loop.create_task(ticker())
    while loop.time() - start < window_s + 2.0:
        now = loop.time()
        if measured_from is None and now >= warm:
            measured_from = (_cpu(), now)
            worst_late = 0.0
        worst_late = max(worst_late, now - next_at)
        payload_i = seq % len(payloads)
        for r, rec in enumerate(recordings):
            for speaker in range(5):
                ssrc = 1000 * r + speaker + 1
                # with the RFC 6464 level a browser (and the gateway) puts in each packet
                level = bytes((0xBE, 0xDE, 0, 1, 0x10, 0x80 | (20 + 7 * speaker), 0, 0))
                packet = header.pack(0x90, 111, seq & 0xFFFF, (seq * 960) & 0xFFFFFFFF,
                                     ssrc) + level + payloads[(payload_i + speaker * 37) % 250]
                rec.on_rtp(packet, now)
        seq += 1
        next_at += 0.02
        await asyncio.sleep(max(0.0, next_at - loop.time()))
    cpu1, t1 = _cpu(), loop.time()
    running = False
    await ticking
    for rec in recordings:
        rec.stop(t1, time.time(), "bench")
    assert measured_from is not None
    c0, w0 = measured_from
    return {"recordings": count, "cpu": (cpu1 - c0) / (t1 - w0), "worst_late_ms":
            round(worst_late * 1000, 1)}


def _camera_packets(frames: int, ssrc: int, pattern: str) -> list[list[bytes]]:
    """`frames` VP8 frames of FFmpeg's moving test picture, 640x480, as RTP packets."""
    import av
    ctx = av.CodecContext.create("libvpx", "w")
    ctx.width, ctx.height, ctx.pix_fmt = 640, 480, "yuv420p"
    ctx.time_base = Fraction(1, 30)
    ctx.bit_rate = 800_000
    ctx.gop_size = 60
    ctx.options = {"deadline": "realtime", "cpu-used": "8"}
    src = av.open(f"{pattern}=size=640x480:rate=30", format="lavfi")
    out: list[list[bytes]] = []
    seq = 1
    encoded: list[bytes] = []
    for i, frame in enumerate(src.decode(video=0)):
        if i >= frames:
            break
        frame = frame.reformat(format="yuv420p")
        frame.pts = i
        encoded += [bytes(p) for p in ctx.encode(frame)]
    encoded += [bytes(p) for p in ctx.encode(None)]
    src.close()
    header = struct.Struct("!BBHII")
    for n, data in enumerate(encoded):
        chunks = [data[i:i + 1100] for i in range(0, len(data), 1100)]
        packets = []
        for i, chunk in enumerate(chunks):
            desc = bytes([0x90 if i == 0 else 0x80, 0x80, 0x80 | (n >> 8) & 0x7F, n & 0xFF])
            marker = 0x80 if i == len(chunks) - 1 else 0
            packets.append(header.pack(0x80, 96 | marker, seq & 0xFFFF, n * 3000, ssrc)
                           + desc + chunk)
            seq += 1
        out.append(packets)
    return out


async def _video_step(layout: str, cameras: int, window_s: float, folder: Path
                      ) -> dict[str, Any]:
    from recorder.video_out import AvPipeline, Mp4Output, VideoSettings
    patterns = ("testsrc2", "smptebars", "mandelbrot", "rgbtestsrc")
    streams = [_camera_packets(300, 5000 + i, patterns[i % len(patterns)])
               for i in range(cameras)]
    settings = VideoSettings(layout=layout)
    loop = asyncio.get_running_loop()
    start = loop.time()
    pipeline = AvPipeline("bench", Mp4Output(str(folder / f"{layout}.mp4")), settings, start,
                          {96: "VP8"}, clock=loop.time)
    pipeline.begin()
    import numpy as np
    pcm = np.zeros(960, dtype=np.int16)
    n = 0
    next_at = start
    measured_from: tuple[float, float] | None = None
    while loop.time() - start < window_s + 2.0:
        now = loop.time()
        if measured_from is None and now >= start + 2.0:
            measured_from = (_cpu(), now)
            frames_at = pipeline.frames_out
        for stream in streams:
            for packet in stream[n % len(stream)]:
                # timestamps move on across the loop of 300 frames
                rtp_ts = (n * 3000) & 0xFFFFFFFF
                packet = packet[:4] + rtp_ts.to_bytes(4, "big") + packet[8:]
                pipeline.on_rtp(packet, now)
        if n % 3 == 0:  # the mix: 20 ms frames, about 1.5 per video frame
            for k in range(2):
                pipeline.on_audio(n // 3 * 2 + k, pcm)
        n += 1
        next_at += 1 / 30
        await asyncio.sleep(max(0.0, next_at - loop.time()))
    cpu1, t1 = _cpu(), loop.time()
    frames = pipeline.frames_out
    pipeline.finish()
    assert measured_from is not None
    c0, w0 = measured_from
    return {"layout": layout, "cameras": cameras, "cpu": (cpu1 - c0) / (t1 - w0),
            "fps_out": (frames - frames_at) / (t1 - w0), "skipped": pipeline.skipped,
            "error": pipeline.error}


def _child(kind: str, arg: int, window_s: float, layout: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sb-bench-rec-") as tmp:
        if kind == "audio":
            return asyncio.run(_audio_step(arg, window_s, Path(tmp)))
        return asyncio.run(_video_step(layout, arg, window_s, Path(tmp)))


def _run_child(kind: str, arg: int, window_s: float, layout: str = "speaker",
               budget_s: float = 120.0) -> dict[str, Any]:
    argv = ["taskset", "-c", str(SERVER_CPU), sys.executable, "-m", "tests.bench.recording",
            kind, str(arg), str(window_s), layout]
    out = subprocess.run(argv, capture_output=True, timeout=budget_s, check=True,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})
    result: dict[str, Any] = json.loads(out.stdout.decode().strip().splitlines()[-1])
    return result


def measure_recordings(window_s: float = 10.0) -> Figure:
    title, goal = FIGURES["recordings"]
    steps = []
    best = 0
    for count in STEPS:
        step = _run_child("audio", count, window_s, budget_s=window_s + 120)
        step["passed"] = step["cpu"] < 0.90 and step["worst_late_ms"] <= 100
        steps.append(step)
        if not step["passed"]:
            break
        best = count
    per = [s["cpu"] / s["recordings"] for s in steps if s["passed"]]
    cost = f"; {1000 * min(per):.1f} ms CPU per recording-second" if per else ""
    return Figure(title, f"{best} recordings{cost}", goal,
                  f"recorder code in one process pinned to a core, {window_s:.0f} s steps, "
                  "5 talking participants a room (Opus 32 kbit/s); pass: <90% CPU and the "
                  "feed never >100 ms late; bridge forwarding not included",
                  met=best >= 50, details={"steps": steps})


def measure_video(window_s: float = 10.0) -> Figure:
    title, goal = FIGURES["video-recording"]
    speaker = _run_child("video", 1, window_s, "speaker", budget_s=window_s + 180)
    grid = _run_child("video", 4, window_s, "grid", budget_s=window_s + 180)
    measured = (f"speaker: {100 * speaker['cpu']:.0f}% of a core "
                f"({speaker['fps_out']:.1f} fps out); grid of 4: {100 * grid['cpu']:.0f}% "
                f"({grid['fps_out']:.1f} fps out)")
    return Figure(title, measured, goal,
                  "recorder/video_out.py pinned to one core: 640x480 VP8 cameras at 30 fps "
                  "decoded, scaled, composed, libx264 veryfast 1280x720 30 fps 2.5 Mbit/s + "
                  "AAC into MP4; CPU of every thread",
                  met=None, details={"speaker": speaker, "grid": grid})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=("audio", "video"))
    parser.add_argument("arg", type=int)
    parser.add_argument("window", type=float)
    parser.add_argument("layout", nargs="?", default="speaker")
    args = parser.parse_args()
    sys.stdout.write(json.dumps(_child(args.kind, args.arg, args.window, args.layout)) + "\n")


if __name__ == "__main__":
    main()
