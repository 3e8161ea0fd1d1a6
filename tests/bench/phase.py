"""The receiver-side yardstick of the side-by-side benchmark (issue 14): is a stream of RTP
packets steady enough for a phone's jitter buffer?

A receiver notes, for each packet, its arrival time (the kernel's receive timestamp) and its
RTP timestamp. A stream's *phase* is the arrival time its packets would have if every one
left the server exactly on its 20 ms clock: packet k is due at

    due(k) = anchor + (ts(k) - ts(anchor)) / clock_rate

and its lateness is arrival(k) - due(k). The anchor is the packet that arrived earliest
relative to its timestamp so far (the running minimum of arrival - ts / clock_rate): an early
packet moves the phase instead of being late, and lateness is never negative. A *segment*
ends where the stream restarts: a new SSRC, an RTP timestamp that goes backwards or leaps
more than `restart_s` away from what the arrival times say (a new source took the slot), or
a silence of more than `restart_s`; the next packet anchors a new segment. A steady shift
(`shift_run` packets in a row late by about the same amount: the sender skipped a tick
without moving its timestamps, or re-timed its clock) re-anchors too, as a jitter buffer
re-syncs after one glitch: its first packet is late, the rest are not.

Counting by RTP timestamp, not by arrival order, means a tick the server skipped is a lost
packet (it shows in the received / expected count), and a tick it sent late is a late one.

`judge()` puts the two halves of the verdict together: every participant got at least
`min_received` of the packets it should have, and under `max_late` of all packets arrived
more than `late_s` behind their stream's phase. `phase_report()` applies the same rule to
streams known by arrival times and sequence numbers (the legs bench's capture on loopback).
Everything here is pure (no I/O, no clock): one yardstick for every bench.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

LATE_S = 0.010        # a packet more than this behind its stream's phase is late
MAX_LATE = 0.01       # a step passes with under 1% of all packets late
MIN_RECEIVED = 0.90   # ... and every participant getting at least 90% of its packets
RESTART_S = 1.0
SHIFT_RUN = 25        # 0.5 s of packets late by one steady amount: the phase moved


@dataclass(frozen=True)
class Packet:
    arrival: float    # seconds (any origin, one clock for the stream)
    ts: int           # RTP timestamp
    ssrc: int = 0


@dataclass(frozen=True)
class StreamPhase:
    packets: int
    late: int          # arrived more than late_s behind the stream's phase
    segments: int      # 1 + restarts
    worst_s: float     # the largest lateness seen


def _segments(packets: Sequence[Packet], clock_rate: int,
              restart_s: float) -> list[list[tuple[float, float]]]:
    """Split a stream (in arrival order) where it restarts; each packet as
    (arrival, media time since the segment's first packet)."""
    out: list[list[tuple[float, float]]] = []
    first: Packet | None = None
    prev: Packet | None = None
    unwrapped = 0
    for p in packets:
        if prev is not None and first is not None:
            step = (p.ts - prev.ts) & 0xFFFFFFFF
            if step >= 0x80000000:
                step -= 1 << 32  # backwards
            media_gap = step / clock_rate
            wall_gap = p.arrival - prev.arrival
            if (p.ssrc != prev.ssrc or step < 0 or wall_gap > restart_s
                    or abs(media_gap - wall_gap) > restart_s):
                first = None
            else:
                unwrapped += step
        if first is None:
            first, unwrapped = p, 0
            out.append([])
        out[-1].append((p.arrival, unwrapped / clock_rate))
        prev = p
    return out


def stream_phase(packets: Sequence[Packet], clock_rate: int, *, late_s: float = LATE_S,
                 restart_s: float = RESTART_S, shift_run: int = SHIFT_RUN) -> StreamPhase:
    """Late packets of one received stream (packets in arrival order).

    Forward, as a receiver's jitter buffer sees it: the anchor is the earliest offset
    (arrival - media time) seen so far in the segment, so an early packet is never late and
    moves the phase. A run of `shift_run` late packets whose lateness stays within `late_s`
    of each other is a phase shift (the sender skipped or re-timed a tick and went on from
    there), not a run of late packets: the stream is re-anchored on it, its first packet
    counts as late (the receiver's one glitch) and the others not; the shift counts as a
    segment. The run is judged on its last `shift_run` packets, so packets that came in a
    burst at its start (a stall's catch-up) count as late but do not hide the shift.
    Lateness that varies (packets of a tick spread over a long, varying stretch)
    is never a shift and stays late."""
    if clock_rate <= 0:
        raise ValueError(f"clock_rate must be positive, not {clock_rate}")
    late, worst, shifts = 0, 0.0, 0
    segments = _segments(packets, clock_rate, restart_s)
    for segment in segments:
        anchor: float | None = None
        run: list[float] = []   # offsets of the current run of late packets
        for arrival, media in segment:
            offset = arrival - media
            if anchor is None or offset < anchor:
                anchor = offset
            lateness = offset - anchor
            worst = max(worst, lateness)
            if lateness <= late_s:
                run = []
                continue
            late += 1
            run.append(offset)
            steady = run[-shift_run:]  # the last shift_run: a burst before them does not
            if len(steady) >= shift_run and max(steady) - min(steady) <= late_s:  # count
                anchor = min(steady)
                late -= shift_run - 1
                shifts += 1
                run = []
    return StreamPhase(len(packets), late, len(segments) + shifts, worst)


@dataclass(frozen=True)
class Receiver:
    """What one participant got in a window: its stream(s) and how many it should have."""

    name: str
    packets: Sequence[Packet]
    clock_rate: int
    expected: int


@dataclass
class Verdict:
    ok: bool
    participants: int
    packets: int
    expected: int
    late: int
    short: list[str] = field(default_factory=list)  # participants under min_received
    worst_s: float = 0.0
    reasons: list[str] = field(default_factory=list)

    @property
    def late_fraction(self) -> float:
        return self.late / self.packets if self.packets else 0.0

    @property
    def received_fraction(self) -> float:
        return self.packets / self.expected if self.expected else 0.0


def judge(receivers: Iterable[Receiver], *, late_s: float = LATE_S, max_late: float = MAX_LATE,
          min_received: float = MIN_RECEIVED, restart_s: float = RESTART_S) -> Verdict:
    """The step's verdict: every receiver got >= min_received of `expected`, and under
    max_late of all packets were more than late_s behind their stream's phase."""
    v = Verdict(ok=True, participants=0, packets=0, expected=0, late=0)
    for r in receivers:
        phase = stream_phase(r.packets, r.clock_rate, late_s=late_s, restart_s=restart_s)
        v.participants += 1
        v.packets += phase.packets
        v.expected += r.expected
        v.late += phase.late
        v.worst_s = max(v.worst_s, phase.worst_s)
        if phase.packets < min_received * r.expected:
            v.short.append(r.name)
    if v.participants == 0:
        v.reasons.append("no receivers")
    if v.short:
        v.reasons.append(f"{len(v.short)} of {v.participants} participants got under "
                         f"{100 * min_received:.0f}% of their packets (first: {v.short[0]})")
    if v.packets and v.late_fraction >= max_late:
        v.reasons.append(f"{100 * v.late_fraction:.2f}% of packets more than "
                         f"{1000 * late_s:.0f} ms behind their stream's phase")
    v.ok = not v.reasons
    return v


def expected_packets(window_s: float, ptime_s: float = 0.020) -> int:
    return int(window_s / ptime_s)


def by_stream(packets: Iterable[Packet]) -> Mapping[int, list[Packet]]:
    """Packets grouped by SSRC, each group in arrival order (for a receiver that gets
    several forwarded streams, like a browser)."""
    out: dict[int, list[Packet]] = {}
    for p in packets:
        out.setdefault(p.ssrc, []).append(p)
    return out


# --- streams observed by sequence number (the legs bench's capture on loopback) -------------


@dataclass(frozen=True, slots=True)
class PhaseReport:
    """`stream_phase` totals over many streams."""

    packets: int
    late: int
    streams: int
    worst: float  # the largest lateness seen, seconds

    @property
    def fraction(self) -> float | None:
        return self.late / self.packets if self.packets else None

    def summary(self) -> str:
        frac = self.fraction
        return (f"{100 * frac:.2f}% of {self.packets} packets >{LATE_S * 1000:.0f} ms "
                f"behind phase ({self.streams} streams, worst {self.worst * 1000:.1f} ms)"
                if frac is not None else "no packets observed")


def phase_report(streams: Iterable[tuple[Sequence[float], Sequence[int] | None]], *,
                 interval: float = 0.020, late_s: float = LATE_S) -> PhaseReport:
    """`stream_phase` over streams given as (arrival times, positions in the stream or
    None for arrival order), e.g. positions from `unwrap_seq` of the RTP sequence numbers:
    position k is due `k * interval` after position 0, the same rule as a timestamp."""
    clock = 8000
    step = round(interval * clock)
    packets = late = count = 0
    worst = 0.0
    for arrivals, indices in streams:
        if not arrivals:
            continue
        positions = range(len(arrivals)) if indices is None else indices
        if len(positions) != len(arrivals):
            raise ValueError("arrivals and indices differ in length")
        phase = stream_phase([Packet(a, (k * step) & 0xFFFFFFFF)
                              for a, k in zip(arrivals, positions, strict=True)],
                             clock, late_s=late_s)
        count += 1
        packets += phase.packets
        late += phase.late
        worst = max(worst, phase.worst_s)
    return PhaseReport(packets, late, count, worst)


def ts_positions(stamps: Sequence[int], step: int = 160) -> list[int]:
    """32-bit RTP timestamps as positions in 20 ms frames from the first (`step` timestamp
    units a frame: 160 at 8 kHz; wraps handled): a skipped tick is a missing position."""
    out: list[int] = []
    if not stamps:
        return out
    first = stamps[0]
    for ts in stamps:
        delta = (ts - first) & 0xFFFFFFFF
        if delta >= 0x80000000:
            delta -= 1 << 32
        out.append(round(delta / step))
    return out


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
