"""Figure: genuine calls while one source floods INVITEs (issue 13, item 4).

The server (core 0) trusts 127.0.0.1 only (`sip.trusted_peers`), with every other setting
at its default. From 127.0.0.2 a raw UDP script (tests/integration/peers/sipflood.py, on
core 1) sends INVITEs with SDP at `flood_rate` a second, each a new call to the same number,
never ACKed: three times the call rate the server carries (550 calls/s, the call setup
figure in docs/benchmarks.md), the rate at which OPTIONS went unanswered for 35 s before.
Meanwhile sipp (core 1) places genuine calls from 127.0.0.1 at `call_rate` a second
(INVITE, 200, ACK, 1 s hold, BYE; `X-Room-Name`), and a probe from 127.0.0.4 sends an
OPTIONS every 0.25 s and times the answer. The same genuine calls run first without the
flood, on the same server: on a shared machine that baseline says what the machine gave.

The figure is the share of genuine calls that succeeded (goal 99%), with the server's RSS
(/proc/PID/status) before the flood and at the end, the OPTIONS probes answered, and what
became of the flood (dropped before parsing, refused, blocked; from /api/stats).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any

from peers.sipflood import probe_options
from peers.sipp import SippResult

from .common import (
    REPO,
    Budget,
    CpuMeter,
    Figure,
    Target,
    live_calls,
    new_sipp,
    procs,
    rss_kib,
    scenario,
    sipp_failures,
    start_target,
    wait_stats,
    write_rooms_csv,
)

log = logging.getLogger("bench.flood")

ROOM = "bench"
CARRIED_RATE = 550  # calls/s: the call setup figure (docs/benchmarks.md)
FLOODER = REPO / "tests" / "integration" / "peers" / "sipflood.py"
ATTACKER = "127.0.0.2"
PROBE = "127.0.0.4"
GOAL_PERCENT = 99.0


class _Prober:
    """OPTIONS from PROBE every `interval` s in a thread: answered count, worst delay."""

    def __init__(self, target: str, interval: float = 0.25) -> None:
        self.target = target
        self.interval = interval
        self.sent = 0
        self.answered = 0
        self.worst_ms = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="options-probe", daemon=True)

    def start(self) -> _Prober:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            status = probe_options(PROBE, self.target, timeout=2.0)
            took = (time.monotonic() - started) * 1000
            self.sent += 1
            if status == 200:
                self.answered += 1
                self.worst_ms = max(self.worst_ms, took)
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))


def _genuine(target: Target, workdir: Path, name: str, calls: int, rate: int,
             rooms_csv: Path, duration_s: float) -> tuple[SippResult, CpuMeter, _Prober]:
    """Genuine calls from 127.0.0.1 (sipp), with the OPTIONS probe running meanwhile."""
    prober = _Prober(target.sip_address).start()
    sipp = new_sipp(workdir, name, scenario("call_hold.xml"), target.sip_address,
                    service="bench", calls=calls, rate=rate, limit=max(rate * 5, 20),
                    hold_ms=1000, inf=rooms_csv, timeout_s=duration_s + 30,
                    extra_args=["-recv_timeout", "5000", "-max_recv_loops", "100000",
                                "-max_sched_loops", "100000"])
    meter = CpuMeter(target.pid).start()
    sipp.start()
    res = sipp.wait()
    meter.stop()
    prober.stop()
    return res, meter, prober


def measure(workdir: Path, *, budget_s: float = 150.0, duration_s: float = 20.0,
            call_rate: int = 50, flood_rate: int = 3 * CARRIED_RATE) -> Figure:
    """A baseline run of genuine calls alone, then the same calls under the flood, on one
    server; the figure is the second, the first shows what the machine gave that day."""
    budget = Budget(budget_s)
    workdir.mkdir(parents=True, exist_ok=True)
    rooms_csv = write_rooms_csv(workdir / "rooms.csv", [ROOM], 1)
    calls = int(call_rate * duration_s)
    target = start_target(workdir, against="server", name="flood-target",
                          extra={"sip": {"trusted_peers": ["127.0.0.1"]}})
    try:
        target.create_rooms([ROOM])
        assert target.server is not None
        pid = target.pid
        base, base_meter, base_probe = _genuine(target, workdir, "baseline", calls, call_rate,
                                                rooms_csv, duration_s)
        wait_stats(target.server, lambda s: live_calls(s) == 0, timeout=20.0)
        rss_before = rss_kib(pid)
        flood_s = duration_s + 4
        flooder = procs.start_process(
            [sys.executable, str(FLOODER), "--bind", ATTACKER, "--target", target.sip_address,
             "--kind", "invite", "--rate", str(flood_rate), "--duration", f"{flood_s:g}"],
            name="flooder", log_dir=workdir, timeout_s=flood_s + 30)
        time.sleep(2.0)  # the flood is on before the first genuine call
        res, meter, prober = _genuine(target, workdir, "genuine", calls, call_rate, rooms_csv,
                                      duration_s)
        flooder.wait(timeout=flood_s + 30)
        flood = _summary(flooder.log_text())
        st = wait_stats(target.server, lambda s: live_calls(s) == 0, timeout=40.0)
        rss_end = rss_kib(pid)
        healthy = target.healthy()
    finally:
        target.stop()
    ok = max(res.successful, 0)
    percent = 100.0 * ok / calls if calls else 0.0
    base_percent = 100.0 * max(base.successful, 0) / calls if calls else 0.0
    failures = sipp_failures(res)
    shed = {k: v for k, v in st.items() if k.startswith("sip_")}
    measured = (f"{percent:.2f}% of {calls} genuine calls succeeded ({call_rate}/s for "
                f"{duration_s:g} s) while {ATTACKER} sent {flood.get('sent', 0)} INVITEs at "
                f"{flood_rate}/s (without the flood: {base_percent:.2f}%); server RSS "
                f"{rss_before // 1024} MB before the flood, {rss_end // 1024} MB at the end; "
                f"OPTIONS from another address answered {prober.answered}/{prober.sent} "
                f"(worst {prober.worst_ms:.0f} ms; without the flood {base_probe.answered}/"
                f"{base_probe.sent}, worst {base_probe.worst_ms:.0f} ms); server CPU "
                f"{meter.percent:.0f}% of a core (waited {meter.wait_percent:.0f}%; without "
                f"the flood {base_meter.percent:.0f}%, waited {base_meter.wait_percent:.0f}%)")
    how = (f"server on core 0 trusting 127.0.0.1 only, default [sip.limits]; the flooder "
           f"(tests/integration/peers/sipflood.py) and sipp on core 1; flood = 3x the "
           f"{CARRIED_RATE} calls/s call setup figure, each INVITE a new call never ACKed; "
           f"genuine calls: sipp call_hold.xml (X-Room-Name, 1 s hold), first alone, then "
           f"under the flood on the same server; after: {shed}, live calls {live_calls(st)}, "
           f"healthy {healthy}")
    if failures:
        how += f"; sipp failures {failures}"
    log.info("flood: %s", measured)
    return Figure(
        figure="Genuine calls under an INVITE flood (3x capacity)",
        measured=measured,
        goal=f"{GOAL_PERCENT:g}% of genuine calls succeed",
        how=how,
        met=percent >= GOAL_PERCENT and healthy,
        details={"calls": calls, "successful": ok, "success_percent": round(percent, 2),
                 "baseline_success_percent": round(base_percent, 2),
                 "call_rate": call_rate, "flood_rate": flood_rate, "flood": flood,
                 "rss_before_kib": rss_before, "rss_end_kib": rss_end,
                 "options_sent": prober.sent, "options_answered": prober.answered,
                 "options_worst_ms": round(prober.worst_ms, 1),
                 "baseline_options_worst_ms": round(base_probe.worst_ms, 1),
                 "server_cpu_percent": round(meter.percent, 1),
                 "server_waited_percent": round(meter.wait_percent, 1),
                 "baseline_server_cpu_percent": round(base_meter.percent, 1),
                 "baseline_server_waited_percent": round(base_meter.wait_percent, 1),
                 "stats_after": shed, "sipp_failures": failures,
                 "seconds": round(budget.elapsed(), 1)},
    )


def _summary(text: str) -> dict[str, Any]:
    lines = [ln for ln in text.splitlines() if ln.startswith("{")]
    if not lines:
        return {}
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except ValueError:
        return {}
    return result
