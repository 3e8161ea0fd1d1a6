"""The receiver-side yardstick: how many packets reach a phone behind its stream's phase.

A stream of 20 ms packets has a phase: the offset of its arrivals from a 20 ms grid. A jitter
buffer absorbs small wobbles; a packet more than 10 ms behind the phase the stream usually
keeps is one the phone's buffer has to wait for (or drop). Pure functions over arrival
times, so any load generator (sipp legs observed on loopback, the Janus side-by-side bench)
is judged the same way:

- ``lateness(arrivals, indices=None)``: for each packet, seconds behind the stream's usual
  phase (positive: behind, negative: early). Packet i's phase is
  ``arrivals[i] - indices[i] * interval`` (indices: its position in the stream, e.g. the
  unwrapped RTP sequence number minus the first; None: the arrival order), and the usual
  phase is the median phase over blocks of ``block`` packets (1 s at 50 packets/s), so a
  lost packet, a skipped tick or a slow drift moves the reference with the stream instead
  of making every later packet look late.
- ``late_count(...)``: how many are more than ``threshold`` (10 ms) behind.
- ``phase_report(streams)``: the totals over many streams (``PhaseReport``: ``packets``,
  ``late``, ``streams``, ``fraction``, ``worst`` the largest lateness seen).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

INTERVAL = 0.020
THRESHOLD = 0.010
BLOCK = 50


def lateness(arrivals: Sequence[float], indices: Sequence[int] | None = None, *,
             interval: float = INTERVAL, block: int = BLOCK) -> list[float]:
    """Seconds each packet arrived behind its stream's usual phase (see the module)."""
    n = len(arrivals)
    if n == 0:
        return []
    t = np.asarray(arrivals, dtype=np.float64)
    idx = np.arange(n, dtype=np.float64) if indices is None \
        else np.asarray(indices, dtype=np.float64)
    if idx.shape != t.shape:
        raise ValueError("arrivals and indices differ in length")
    phase = t - t[0] - idx * interval
    out = np.empty(n, dtype=np.float64)
    for start in range(0, n, block):
        chunk = phase[start:start + block]
        if len(chunk) < block and start:  # a short last block: judged with the one before
            ref = float(np.median(phase[max(0, start - block):start + block]))
        else:
            ref = float(np.median(chunk))
        out[start:start + block] = chunk - ref
    return [float(x) for x in out]


def late_count(arrivals: Sequence[float], indices: Sequence[int] | None = None, *,
               interval: float = INTERVAL, threshold: float = THRESHOLD,
               block: int = BLOCK) -> int:
    """Packets more than ``threshold`` seconds behind the stream's usual phase."""
    return sum(1 for x in lateness(arrivals, indices, interval=interval, block=block)
               if x > threshold)


@dataclass(frozen=True, slots=True)
class PhaseReport:
    packets: int
    late: int
    streams: int
    worst: float  # the largest lateness seen, seconds

    @property
    def fraction(self) -> float | None:
        return self.late / self.packets if self.packets else None

    def summary(self) -> str:
        frac = self.fraction
        return (f"{100 * frac:.2f}% of {self.packets} packets >{THRESHOLD * 1000:.0f} ms "
                f"behind phase ({self.streams} streams, worst {self.worst * 1000:.1f} ms)"
                if frac is not None else "no packets observed")


def phase_report(streams: Iterable[tuple[Sequence[float], Sequence[int] | None]], *,
                 interval: float = INTERVAL, threshold: float = THRESHOLD,
                 block: int = BLOCK) -> PhaseReport:
    """Totals over streams of (arrivals, indices or None)."""
    packets = late = count = 0
    worst = 0.0
    for arrivals, indices in streams:
        behind = lateness(arrivals, indices, interval=interval, block=block)
        if not behind:
            continue
        count += 1
        packets += len(behind)
        late += sum(1 for x in behind if x > threshold)
        worst = max(worst, max(behind))
    return PhaseReport(packets, late, count, worst)


def unwrap_seq(seqs: Sequence[int]) -> list[int]:
    """16-bit RTP sequence numbers as positions from the first (wraps and reordering
    within half the space handled)."""
    out: list[int] = []
    if not seqs:
        return out
    prev = seqs[0]
    pos = 0
    for s in seqs:
        step = (s - prev) & 0xFFFF
        pos += step - 0x10000 if step >= 0x8000 else step
        prev = s
        out.append(pos)
    return out
