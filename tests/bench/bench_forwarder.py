"""Micro-benchmark of the SFU core: microseconds per forwarded packet through Forwarder.

Not a test. Run: ``.venv/bin/python tests/bench/bench_forwarder.py [--rooms 20] [--seconds 10]``.
Rooms of 10 endpoints, each sending 50 Opus packets/s (20 ms) with the audio-level and
transport-cc header extensions, as Chromium does; every packet fans out to the 9 others.
Time is simulated (the forwarder takes `now`), so the run goes as fast as the CPU allows and
includes the forwarder's timers (transport-cc feedback every 100 ms, receiver reports,
dominant speaker, statistics). The send callback only counts: the I/O side (SRTP protect,
UDP send) is not in this figure, it is the floor the issue measures beside it.

Printed: CPU microseconds per forwarded packet and per received packet, and the forwarded
packets per second one core would sustain at that cost (the issue's goal: < 20 us).
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bridge.api import MediaSource
from bridge.forwarder import Forwarder, ForwarderSettings

ROOM = 10
PPS = 50


def audio_packet(ssrc: int, seq: int, level: int, twcc: int) -> bytes:
    """Opus RTP with the one-byte header extensions 1 (audio level) and 3 (transport-cc)."""
    ext = bytes((0x10, 0x80 | level, 0x31)) + struct.pack("!H", twcc) + b"\x00\x00\x00"
    header = struct.pack("!BBHII", 0x90, 111, seq & 0xFFFF, (seq * 960) & 0xFFFFFFFF, ssrc)
    return header + struct.pack("!HH", 0xBEDE, len(ext) // 4) + ext + b"\x5a" * 60


def run(rooms: int, seconds: float) -> tuple[float, int, int, int, float]:
    """(CPU seconds, packets in, RTP forwarded, RTCP sent, wall seconds)."""
    sent = [0, 0]  # RTP, RTCP

    def send(endpoint_id: str, data: bytes) -> None:
        sent[192 <= data[1] <= 223] += 1

    forwarders = []
    for r in range(rooms):
        fwd = Forwarder(f"room{r}", ForwarderSettings(), send)
        for i in range(ROOM):
            endpoint_id = f"r{r}e{i}"
            fwd.add_endpoint(endpoint_id)
            fwd.set_sources(endpoint_id, (MediaSource(endpoint_id, "audio", r * 100 + i + 1),))
        forwarders.append(fwd)
    ticks = int(seconds * PPS)
    # packets built ahead, so that the loop below measures the forwarder, not the builder
    bank = [[[audio_packet(r * 100 + i + 1, k, 25 if i == k // 100 % ROOM else 90, k)
              for i in range(ROOM)] for r in range(rooms)] for k in range(ticks)]
    ids = [[f"r{r}e{i}" for i in range(ROOM)] for r in range(rooms)]
    packets_in = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    now = 1000.0
    for k in range(ticks):
        now += 1.0 / PPS
        for r, fwd in enumerate(forwarders):
            row, names, on_rtp = bank[k][r], ids[r], fwd.on_rtp
            for i in range(ROOM):
                on_rtp(names[i], row[i], now)
            when = fwd.get_timer()
            if when is not None and when <= now:
                fwd.handle_timer(now)
            packets_in += ROOM
    cpu = time.process_time() - cpu0
    return cpu, packets_in, sent[0], sent[1], time.perf_counter() - wall0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0, help="simulated media time")
    args = parser.parse_args()
    run(2, 1.0)  # warm up
    cpu, packets_in, forwarded, rtcp, wall = run(args.rooms, args.seconds)
    per_forwarded = cpu / forwarded * 1e6
    out = sys.stdout
    out.write(f"forwarder core: {args.rooms} rooms x {ROOM} endpoints x {PPS} audio pkt/s, "
              f"{args.seconds:g} s simulated\n")
    out.write(f"  {packets_in} packets in, {forwarded} forwarded, {rtcp} RTCP sent, "
              f"{cpu:.2f} s CPU ({wall:.2f} s wall)\n")
    out.write(f"  {per_forwarded:.2f} us CPU per forwarded packet, "
              f"{cpu / packets_in * 1e6:.2f} us per received packet\n")
    out.write(f"  {1e6 / per_forwarded:,.0f} forwarded packets/s on one core at that cost "
              f"(goal: under 20 us per forwarded packet)\n")
    load = forwarded / args.seconds / (forwarded / cpu)
    out.write(f"  these {args.rooms * ROOM} endpoints in real time would use {load:.0%} "
              f"of one core in the core alone\n")


if __name__ == "__main__":
    main()
