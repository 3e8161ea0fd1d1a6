"""Figure 3: memory per idle call and per active call.

For each kind, a fresh server (pinned to core 0, `[media] timeout = 600` so silent calls
stay up) first takes a few warm-up calls (first-use allocations are not per-call cost), then
its RSS (/proc/PID/status VmRSS) is read; sipp places N calls in rooms of 5 and holds them:

- idle: in a room, the caller sends no RTP (sipp `call_hold.xml`);
- active: the caller streams a PCMU tone both ways (sipp `call_rtp.xml`).

With all N legs up (and a few seconds of media for the active kind) RSS is read again;
(RSS delta) / N is the figure, in KiB per call. RSS after every call has hung up is reported
too (what the server keeps: allocator caches, or a leak).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

from peers.sipp import Sipp

from .common import (
    Budget,
    Figure,
    Target,
    live_calls,
    new_sipp,
    room_names,
    rss_kib,
    scenario,
    sipp_failures,
    start_target,
    wait_stats,
    write_rooms_csv,
    write_tone,
)

log = logging.getLogger("bench.memory")

ROOM_SIZE = 5
RAMP_RATE = 100
WARMUP_CALLS = 10


@dataclass
class MemoryRun:
    kind: str
    n: int
    legs_up: int = 0
    rss_before: int = 0
    rss_held: int = 0
    rss_after: int = 0
    ok: bool = False
    note: str = ""

    @property
    def per_call_kib(self) -> float:
        return (self.rss_held - self.rss_before) / self.n if self.n else 0.0

    def summary(self) -> str:
        return (f"{self.kind}: N={self.n} ({self.legs_up} up), RSS {self.rss_before} -> "
                f"{self.rss_held} KiB held -> {self.rss_after} KiB after hang-up: "
                f"{self.per_call_kib:.1f} KiB/call{'; ' + self.note if self.note else ''}")


def _wait_zero(target: Target) -> None:
    if target.server is not None:
        wait_stats(target.server, lambda s: live_calls(s) == 0, timeout=15.0)


def _calls(target: Target, workdir: Path, name: str, n: int, media: bool,
           hold_s: float) -> tuple[Sipp, float]:
    rooms = room_names("bench", math.ceil(n / ROOM_SIZE))
    target.create_rooms(rooms)
    csv = write_rooms_csv(workdir / f"rooms-{name}.csv", rooms, ROOM_SIZE)
    ramp_s = n / RAMP_RATE
    sipp = new_sipp(workdir, name, scenario("call_rtp.xml" if media else "call_hold.xml"),
                    target.sip_address, service="bench", calls=n, rate=RAMP_RATE, limit=n,
                    hold_ms=int((ramp_s + hold_s) * 1000), inf=csv,
                    timeout_s=2 * ramp_s + hold_s + 30,
                    extra_args=["-recv_timeout", "5000"])
    sipp.start()
    return sipp, ramp_s


def run_kind(workdir: Path, kind: str, n: int, against: str) -> MemoryRun:
    media = kind == "active"
    run = MemoryRun(kind=kind, n=n)
    target = start_target(workdir, against=against, extra={"media": {"timeout": 600.0}},
                          name=f"mem-{kind}")
    try:
        warm, _ = _calls(target, workdir, f"warm-{kind}", WARMUP_CALLS, True, 2.0)
        warm.wait()
        _wait_zero(target)
        time.sleep(1.0)
        run.rss_before = rss_kib(target.pid)
        hold_s = 10.0 if media else 8.0
        sipp, ramp_s = _calls(target, workdir, f"mem-{kind}", n, media, hold_s)
        if target.server is not None:
            st = wait_stats(target.server, lambda s: s.get("legs", live_calls(s)) >= n,
                            timeout=ramp_s + 10)
            run.legs_up = st.get("legs", live_calls(st)) if st else 0
        else:
            time.sleep(ramp_s + 1)
            run.legs_up = n
        time.sleep(4.0 if media else 2.0)  # media flowing: jitter buffers and queues fill
        run.rss_held = rss_kib(target.pid)
        res = sipp.wait()
        _wait_zero(target)
        time.sleep(1.0)
        run.rss_after = rss_kib(target.pid)
        failures = sipp_failures(res)
        run.ok = run.legs_up >= n and res.returncode == 0 and not failures
        if not run.ok:
            run.note = (f"sipp exit {res.returncode}, {res.successful}/{n} ok, "
                        f"{run.legs_up} legs up {failures or ''}")
    finally:
        target.stop()
    log.info("memory %s", run.summary())
    return run


def measure(workdir: Path, *, against: str = "server", n: int = 200,
            budget_s: float = 120.0) -> Figure:
    budget = Budget(budget_s)
    workdir.mkdir(parents=True, exist_ok=True)
    write_tone(workdir / "tone.ulaw")
    runs: list[MemoryRun] = []
    for kind in ("idle", "active"):
        if not budget.fits(n / RAMP_RATE + 30):
            log.warning("memory: time budget spent before the %s run", kind)
            break
        runs.append(run_kind(workdir, kind, n, against))
    parts = []
    for run in runs:
        text = f"{run.kind} {run.per_call_kib:.0f} KiB/call"
        if not run.ok:
            text += f" (incomplete: {run.note})"
        parts.append(text)
    base = runs[0].rss_before if runs else 0
    return Figure(
        figure="Memory per call",
        measured=", ".join(parts) if parts else "not measured",
        goal="report (no target set)",
        how=(f"server RSS (VmRSS) before and while holding N={n} calls in rooms of "
             f"{ROOM_SIZE}, after {WARMUP_CALLS} warm-up calls; idle = no RTP from the caller "
             f"([media] timeout 600), active = PCMU tone both ways; (delta)/N; "
             f"base RSS {base / 1024:.0f} MiB"),
        met=None,
        details={"runs": [r.summary() for r in runs],
                 "idle_kib_per_call": next((round(r.per_call_kib, 1) for r in runs
                                            if r.kind == "idle"), None),
                 "active_kib_per_call": next((round(r.per_call_kib, 1) for r in runs
                                              if r.kind == "active"), None),
                 "seconds": round(budget.elapsed(), 1)},
    )
