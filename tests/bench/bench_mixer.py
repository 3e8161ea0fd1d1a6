"""Micro-benchmark of ConferenceMixer.tick: 60 rooms x 5 legs (300 legs), fake legs.

Not a test. Run: ``.venv/bin/python tests/bench/bench_mixer.py [--rooms 60] [--legs 5]``.
It prints microseconds per tick for a few speaking patterns; one tick every 20 ms means the
budget of a whole core is 20,000 us, and a tick should stay far below it (say < 3,000 us) so
that the loop's other work (SIP, RTP sockets) fits and late ticks stay under 1%.

Uses the real G.711 encoder from gateway/media/codecs.py when it exists, else a numpy
lookup-table stand-in of the same cost.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.mixer import ConferenceMixer, EncodeFn

Pcm = npt.NDArray[np.int16]


def encoder_lookup() -> tuple[Callable[[str], EncodeFn], str]:
    try:
        from gateway.media.codecs import codec_by_name
    except ImportError:
        table = (np.arange(65536, dtype=np.uint32) >> 8).astype(np.uint8)  # any 64K LUT

        def stand_in(codec: str) -> EncodeFn:
            def encode(pcm: Pcm) -> bytes:
                return bytes(table[pcm.view(np.uint16)].tobytes())
            return encode

        return stand_in, "numpy LUT stand-in"

    def real(codec: str) -> EncodeFn:
        return codec_by_name(codec).encode

    return real, "gateway.media.codecs G.711"


class BenchLeg:
    __slots__ = ("codec_name", "frame", "leg_id", "sent")

    def __init__(self, leg_id: str, codec_name: str, frame: Pcm | None) -> None:
        self.leg_id = leg_id
        self.codec_name = codec_name
        self.frame = frame
        self.sent = 0

    def pull_frame(self, now: float) -> Pcm | None:
        return self.frame

    def send_payload(self, payload: bytes) -> None:
        self.sent += 1


def run(rooms: int, legs: int, speakers: int, ticks: int,
        lookup: Callable[[str], EncodeFn]) -> list[float]:
    rng = np.random.default_rng(7)
    mixer = ConferenceMixer(lookup)
    voices = [rng.integers(-8000, 8000, 160).astype(np.int16) for _ in range(16)]
    for r in range(rooms):
        for i in range(legs):
            codec = "PCMU" if (r + i) % 3 else "PCMA"
            frame = voices[(r + i) % len(voices)] if i < speakers else None
            mixer.add_leg(f"room-{r}", BenchLeg(f"{r}-{i}", codec, frame))
    for _ in range(20):  # warm up
        mixer.tick(0.0)
    samples = []
    for k in range(ticks):
        start = time.perf_counter()
        mixer.tick(k * 0.02)
        samples.append((time.perf_counter() - start) * 1e6)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=60)
    parser.add_argument("--legs", type=int, default=5)
    parser.add_argument("--ticks", type=int, default=500)
    args = parser.parse_args()
    lookup, what = encoder_lookup()
    out = sys.stdout
    out.write(f"mixer tick, {args.rooms} rooms x {args.legs} legs, encoder: {what}\n")
    for speakers in (0, 1, 2, args.legs):
        samples = run(args.rooms, args.legs, speakers, args.ticks, lookup)
        samples.sort()
        p99 = samples[int(len(samples) * 0.99) - 1]
        out.write(
            f"  {speakers} speaking per room: median {statistics.median(samples):7.0f} us, "
            f"p99 {p99:7.0f} us, max {samples[-1]:7.0f} us "
            f"({statistics.median(samples) / 20000 * 100:.1f}% of a 20 ms tick)\n"
        )


if __name__ == "__main__":
    main()
