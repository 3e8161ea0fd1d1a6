"""Figure 1: call setup rate, the RFC 7502 way.

sipp (core 1) places calls at a fixed rate to a room by header (`X-Room-Name: bench`):
INVITE with SDP, 100/180 optional, 200, ACK, a short hold (1 s), BYE, 200. Each trial runs
`duration_s` seconds worth of calls at one rate. A trial passes only if every call
succeeded (sipp exit 0, no failed call of any kind: unexpected message, retransmission
limit, receive timeout), sipp kept at least 90% of the asked rate (a slow server holds calls
up to sipp's concurrency cap and so lowers the rate), and afterwards the server is healthy
with its live calls back to 0. Rates rise along a ladder to the first failure, then a
bisection between the last pass and the first failure narrows it, within a time budget.
The figure is the highest passing rate, with the server's CPU (one core) at that rate.

What a call is and what the server needs for it (the scenario, the user dialled, the -inf
file, the config, what is created over the API) is a `Setup`: `PLAIN` here, a trunk with
digest in callrate_digest.py; the ladder, bisection and trials are the same for both
(`search`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import (
    CONTENDED_PERCENT,
    Budget,
    CpuMeter,
    Figure,
    Target,
    elapsed_seconds,
    live_calls,
    new_sipp,
    scenario,
    sipp_error_tail,
    sipp_failures,
    sipp_late_messages,
    socket_inodes,
    start_target,
    udp_counters,
    wait_stats,
)

log = logging.getLogger("bench.callrate")

LADDER = (50, 100, 200, 300, 400, 500, 600, 800, 1000, 1250, 1500, 2000, 2500, 3000)
ROOM = "bench"
GOAL = 500


def _create_room(target: Target) -> None:
    target.create_rooms([ROOM])


@dataclass(frozen=True)
class Setup:
    """One kind of call: sipp's `scenario` dialling `service`, with `inf_lines` as its -inf
    file (SEQUENTIAL); the server started with `extra` config and then `prepare`d over its
    API; `call` says in the figure's text what a call is."""

    scenario: str = "call_hold.xml"
    service: str = "bench"
    inf_lines: tuple[str, ...] = (ROOM,)
    extra: Mapping[str, Any] = field(default_factory=dict)
    prepare: Callable[[Target], None] = _create_room
    call: str = f"INVITE+SDP (X-Room-Name: {ROOM}) -> 200 -> ACK"


PLAIN = Setup()


@dataclass
class Trial:
    rate: int
    calls: int
    ok: bool
    successful: int = 0
    failed: int = 0
    achieved_rate: float = 0.0
    cpu_percent: float = 0.0
    cpu_ms_per_call: float = 0.0
    cpu_wait_percent: float = 0.0    # server runnable, but core 0 busy with another process
    retransmissions: int = 0
    late_messages: int = 0
    setup_ms: float = 0.0            # mean INVITE -> 200 time (sipp ResponseTime1)
    server_sip_drops: int = 0
    wall_s: float = 0.0
    reasons: list[str] = field(default_factory=list)

    def summary(self) -> str:
        verdict = "pass" if self.ok else "FAIL: " + "; ".join(self.reasons)
        return (f"{self.rate}/s x {self.calls}: {self.successful} ok, {self.failed} failed, "
                f"achieved {self.achieved_rate:.0f}/s, INVITE->200 {self.setup_ms:.0f} ms mean, "
                f"server CPU {self.cpu_percent:.0f}% "
                f"({self.cpu_ms_per_call:.2f} ms/call, waited {self.cpu_wait_percent:.0f}% "
                f"for the core), {self.retransmissions} retrans, "
                f"{self.late_messages} late msgs, {self.server_sip_drops} dropped at the "
                f"server socket -> {verdict}")


def _creation_time(rows: list[dict[str, str]], calls: int) -> float:
    """Seconds from sipp's start until it had created `calls` calls, interpolated between
    the per-second stat rows."""
    prev_t, prev_n = 0.0, 0
    for row in rows:
        try:
            n = int(row.get("TotalCallCreated", "0"))
        except ValueError:
            continue
        t = elapsed_seconds(row.get("ElapsedTime(C)", ""))
        if n >= calls:
            if n == prev_n:
                return t
            return prev_t + (t - prev_t) * (calls - prev_n) / (n - prev_n)
        prev_t, prev_n = t, n
    return 0.0


def write_inf(path: Path, lines: tuple[str, ...]) -> Path:
    """A sipp -inf file read in order (fields of a line separated by ';')."""
    path.write_text("\n".join(["SEQUENTIAL", *lines]) + "\n")
    return path


def run_trial(target: Target, workdir: Path, rate: int, *, duration_s: float,
              hold_ms: int, rooms_csv: Path, name: str = "", setup: Setup = PLAIN) -> Trial:
    calls = max(int(rate * duration_s), 1)
    hold_s = hold_ms / 1000
    limit = max(int(rate * (hold_s + 3)), 20)
    sipp = new_sipp(workdir, name or f"rate{rate}", scenario(setup.scenario),
                    target.sip_address, service=setup.service, calls=calls, rate=rate,
                    limit=limit, hold_ms=hold_ms,
                    inf=rooms_csv, timeout_s=duration_s + hold_s + 25,
                    extra_args=["-recv_timeout", "5000", "-max_recv_loops", "100000",
                                "-max_sched_loops", "100000"])
    inodes = socket_inodes(target.pid)
    drops0 = udp_counters(inodes).drops
    meter = CpuMeter(target.pid).start()
    started = time.monotonic()
    sipp.start()
    res = sipp.wait()
    meter.stop()
    trial = Trial(rate=rate, calls=calls, ok=True, successful=res.successful,
                  failed=res.failed, cpu_percent=meter.percent,
                  cpu_wait_percent=meter.wait_percent,
                  retransmissions=res.counter("Retransmissions"),
                  late_messages=sipp_late_messages(res),
                  server_sip_drops=udp_counters(inodes).drops - drops0,
                  wall_s=time.monotonic() - started)
    trial.cpu_ms_per_call = 1000 * meter.cpu / max(res.successful, 1)
    trial.setup_ms = 1000 * elapsed_seconds(res.stats.get("ResponseTime1(C)", ""))
    created_in = _creation_time(res.rows, calls)
    trial.achieved_rate = calls / created_in if created_in > 0 else 0.0
    if res.returncode != 0:
        trial.reasons.append(f"sipp exit {res.returncode} ({res.meaning})")
    failures = sipp_failures(res)
    if failures:
        trial.reasons.append(", ".join(f"{k}={v}" for k, v in failures.items()))
        tail = sipp_error_tail(res)
        if tail:
            trial.reasons.append(tail[:300])
    if res.successful != calls:
        trial.reasons.append(f"{res.successful}/{calls} calls succeeded")
    if created_in > 0 and trial.achieved_rate < 0.9 * rate:
        trial.reasons.append(f"rate held at {trial.achieved_rate:.0f}/s only")
    if not target.healthy():
        trial.reasons.append("server unhealthy afterwards")
    elif target.server is not None:
        st = wait_stats(target.server, lambda s: live_calls(s) == 0, timeout=15.0)
        if not st:
            trial.reasons.append("/api/stats does not answer")
        elif live_calls(st) != 0:
            trial.reasons.append(f"{live_calls(st)} calls still live 15 s after the run")
    trial.ok = not trial.reasons
    log.info("call rate %s", trial.summary())
    return trial


@dataclass
class Search:
    """The trials of one ladder and bisection: the best passing one, the first failing one
    of the ladder, the lowest rate seen failing (`hi`)."""

    best: Trial | None
    first_bad: Trial | None
    trials: list[Trial]
    hi: int
    budget: Budget


def measure(workdir: Path, *, against: str = "server", budget_s: float = 240.0,
            duration_s: float = 10.0, hold_ms: int = 1000,
            ladder: tuple[int, ...] = LADDER) -> Figure:
    found = search(workdir, PLAIN, against=against, budget_s=budget_s, duration_s=duration_s,
                   hold_ms=hold_ms, ladder=ladder)
    return _figure(found.best, found.first_bad, found.trials, found.hi, duration_s, hold_ms,
                   against, found.budget)


def search(workdir: Path, setup: Setup, *, against: str = "server", budget_s: float = 240.0,
           duration_s: float = 10.0, hold_ms: int = 1000,
           ladder: tuple[int, ...] = LADDER) -> Search:
    """Rates up the ladder to the first failure, then bisection (the module docstring)."""
    budget = Budget(budget_s)
    workdir.mkdir(parents=True, exist_ok=True)
    rooms_csv = write_inf(workdir / "calls.csv", setup.inf_lines)
    trials: list[Trial] = []
    target: Target | None = None
    restarts = 0

    def fresh_target() -> Target:
        nonlocal restarts
        restarts += 1
        t = start_target(workdir, against=against, extra=setup.extra,
                         name=f"target{restarts}")
        if t.server is not None:
            try:
                setup.prepare(t)
            except BaseException:
                t.stop()
                raise
        return t

    def step_cost(rate: int) -> float:
        return duration_s + hold_ms / 1000 + 8 + (0 if target is not None else 4)

    def attempt_once(rate: int) -> Trial:
        nonlocal target
        if target is None:
            target = fresh_target()
        trial = run_trial(target, workdir, rate, duration_s=duration_s, hold_ms=hold_ms,
                          rooms_csv=rooms_csv, name=f"rate{rate}-{len(trials) + 1}",
                          setup=setup)
        trials.append(trial)
        if not trial.ok:  # the next trial gets a fresh server
            target.stop()
            target = None
        else:
            time.sleep(1.0)
        return trial

    def attempt(rate: int) -> Trial:
        """A failure while another process took the server's core (it waited at least
        CONTENDED_PERCENT of the time) is tried again on a fresh server, at most twice: the
        machine is shared, and a noisy neighbour should not set the figure. A failure
        without contention is final."""
        trial = attempt_once(rate)
        for _ in range(2):
            if trial.ok or trial.cpu_wait_percent < CONTENDED_PERCENT \
                    or not budget.fits(step_cost(rate)):
                break
            log.info("call rate: %d/s failed (server waited %.0f%% for its core), trying "
                     "again", rate, trial.cpu_wait_percent)
            trial = attempt_once(rate)
        return trial

    best: Trial | None = None
    first_bad: Trial | None = None
    try:
        for rate in ladder:
            if not budget.fits(step_cost(rate)):
                log.warning("call rate: time budget spent before %d/s", rate)
                break
            trial = attempt(rate)
            if trial.ok:
                best = trial
            else:
                first_bad = trial
                break
        lo = best.rate if best else 0
        hi = first_bad.rate if first_bad else 0
        while first_bad is not None and hi - lo > max(10, lo * 0.05):
            mid = int(round((lo + hi) / 2 / 10) * 10)
            if mid in (lo, hi) or not budget.fits(step_cost(mid)):
                break
            trial = attempt(mid)
            if trial.ok:
                lo, best = mid, trial
            else:
                hi = mid
    finally:
        if target is not None:
            target.stop()
    return Search(best, first_bad, trials, hi, budget)


def _figure(best: Trial | None, first_bad: Trial | None, trials: list[Trial], hi: int,
            duration_s: float, hold_ms: int, against: str, budget: Budget) -> Figure:
    how = (f"sipp uac on core 1 -> {against} pinned to core 0; {PLAIN.call} -> "
           f"{hold_ms} ms hold -> BYE; {duration_s:g} s trials on a "
           f"rising ladder then bisection; pass = 0 failed calls, sipp exit 0, >=90% of the "
           f"rate held, server healthy with 0 live calls after; 'waited' = time the server was "
           f"runnable while another process held its core (a failure with >="
           f"{CONTENDED_PERCENT:g}% waited is run again)")
    if first_bad is not None:
        bad_reason = next(("; ".join(t.reasons[1:] or t.reasons) for t in reversed(trials)
                           if t.rate == hi and t.reasons), "")
        how += f"; first failing rate {hi}/s ({bad_reason[:160]})"
    elif trials:
        how += f"; no failure up to {trials[-1].rate}/s (ladder or time budget ended)"
    if best is None:
        measured = "0 calls/s (no rate passed)" if trials else "not measured"
    else:
        measured = f"{best.rate} calls/s"
        measured += (f" (server CPU {best.cpu_percent:.0f}% of one core, waited "
                     f"{best.cpu_wait_percent:.0f}% for it, "
                     f"{best.cpu_ms_per_call:.2f} ms CPU per call; INVITE->200 mean "
                     f"{best.setup_ms:.0f} ms, {best.retransmissions} retransmissions)")
    return Figure(
        figure="Call setup rate (RFC 7502)",
        measured=measured,
        goal=f"{GOAL} calls/s on one core",
        how=how,
        met=(best.rate >= GOAL) if best else (False if trials else None),
        details={"best_rate": best.rate if best else 0,
                 "server_cpu_percent": round(best.cpu_percent, 1) if best else None,
                 "server_cpu_ms_per_call": round(best.cpu_ms_per_call, 3) if best else None,
                 "server_waited_for_core_percent":
                     round(best.cpu_wait_percent, 1) if best else None,
                 "setup_ms_mean": round(best.setup_ms, 1) if best else None,
                 "retransmissions": best.retransmissions if best else None,
                 "first_failing_rate": first_bad.rate if first_bad else None,
                 "trials": [t.summary() for t in trials],
                 "seconds": round(budget.elapsed(), 1)},
    )
