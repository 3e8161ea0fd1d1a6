"""The machine's own floor for late ticks: a 20 ms timer chain that does nothing else.

Not a test. Run: ``.venv/bin/python tests/bench/bench_wakeup.py [--seconds 60] [--busy]``.
One process pinned to core 0 (the server's core in the benchmarks) runs the media clock's
pattern, ``loop.call_at`` at absolute 20 ms deadlines on uvloop, and counts the wake-ups more
than 10 ms late, the threshold of the mixer's late ticks. Nothing in it can be slow: a late
wake-up is the machine (on a virtual machine an idle vCPU waits for the host to deliver its
timer interrupt, and that wait is not counted as steal). ``--busy`` keeps core 1 busy
meanwhile with a child process (stopped by PID at the end), as the load is in the benchmarks.

A legs or versus step allows under 1% late ticks; this is the share the machine alone takes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys

import uvloop

INTERVAL = 0.020
LATE = 0.010


async def chain(count: int) -> list[float]:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    late: list[float] = []
    done = asyncio.Event()

    def tick(k: int) -> None:
        late.append(loop.time() - (t0 + k * INTERVAL))
        if k >= count:
            done.set()
            return
        loop.call_at(t0 + (k + 1) * INTERVAL, tick, k + 1)

    loop.call_at(t0 + INTERVAL, tick, 1)
    await done.wait()
    return late


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--busy", action="store_true", help="keep core 1 busy meanwhile")
    args = parser.parse_args()
    cpus = os.cpu_count() or 1
    os.sched_setaffinity(0, {0})
    busy = None
    if args.busy and cpus > 1:
        busy = subprocess.Popen(["taskset", "-c", "1", sys.executable, "-c",
                                 f"import time\nend = time.monotonic() + {args.seconds + 5}\n"
                                 "while time.monotonic() < end: pass"])
    try:
        late = uvloop.run(chain(max(1, int(args.seconds / INTERVAL))))
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    over = sorted(x for x in late if x > LATE)
    late.sort()
    sys.stdout.write(
        f"{len(late)} ticks{' (core 1 busy)' if busy is not None else ''}: "
        f"median {late[len(late) // 2] * 1e3:.2f} ms, p99 {late[int(len(late) * 0.99)] * 1e3:.2f} "
        f"ms, max {late[-1] * 1e3:.1f} ms; more than 10 ms late: {len(over)} "
        f"({100 * len(over) / len(late):.2f}%) {[round(x * 1e3) for x in over][:20]}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
