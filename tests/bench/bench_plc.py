"""Micro-benchmark of loss concealment (gateway/media/plc.py): the CPU cost of a lost frame.

Not a test. Run: ``.venv/bin/python tests/bench/bench_plc.py [--frames 5000]``.
It prints microseconds per lost 20 ms G.711 frame at 8 kHz, for the three ways a loss is
concealed: the first frame of a loss (the pitch search and the synthetic signal for the
whole loss), a frame further into a loss (a slice of that signal), and a lost frame whose
successor is already in the jitter buffer (interpolated from both sides). Each is timed
against the same history (speech-like: a 180 Hz voice with noise), the good frames that
rebuild the history between losses subtracted.

Why it matters: when a carrier or a network hiccup drops a packet on every call at once,
every leg conceals in the same mix tick, so the first-frame cost times the number of legs
lands in one tick (500 legs x 100 us made a 50 ms tick; docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.media.plc import Concealer

FRAME = 160


def history() -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    t = np.arange(FRAME * 4)
    sig = 8000 * np.sin(2 * np.pi * 180 * t / 8000) + rng.normal(0, 500, t.size)
    pcm = np.clip(np.rint(sig), -32768, 32767).astype(np.int16)
    return [pcm[i * FRAME : (i + 1) * FRAME] for i in range(4)]


def per_frame(run: Callable[[], None], frames: int) -> float:
    started = time.perf_counter()
    for _ in range(frames):
        run()
    return (time.perf_counter() - started) / frames * 1e6


def measure(frames: int) -> dict[str, float]:
    good = history()
    plc = Concealer(FRAME, 8000)

    def refill() -> None:
        for f in good:
            plc.good(f)

    def first() -> None:
        refill()
        plc.conceal()

    def further() -> None:
        refill()
        plc.conceal()
        plc.conceal()

    def interpolated() -> None:
        refill()
        plc.interpolate(good[0])

    base = per_frame(refill, frames)
    first_us = per_frame(first, frames) - base
    further_us = per_frame(further, frames) - base - first_us
    return {"first": first_us, "further": further_us,
            "interpolated": per_frame(interpolated, frames) - base}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    runs = [measure(args.frames) for _ in range(args.runs)]
    for key in ("first", "further", "interpolated"):
        values = [r[key] for r in runs]
        sys.stdout.write(f"{key:>13}: {statistics.median(values):6.1f} us per lost frame "
                         f"(median of {args.runs} runs of {args.frames}; "
                         f"min {min(values):.1f})\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
