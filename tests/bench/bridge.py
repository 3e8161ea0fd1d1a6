"""The browser-meetings figures: the bridge's forwarding cost, audio endpoints on one core,
and the time from joining to the first remote audio in a browser.

- forwarding, endpoints: the bridge alone (`Bridge(BridgeSettings(address="127.0.0.1"))`, no
  focus, no web) runs in its own process pinned to core 0 (tests/bench/bridge_runner.py);
  the load generator (tests/bench/bridge_load.py) runs pinned to core 1: synthetic endpoints
  with real ICE and DTLS-SRTP, in rooms of 10, each sending 50 Opus-sized packets/s with the
  audio-level and transport-cc extensions; they count what the bridge forwards to them.
  CPU is utime + stime of the bridge process over a window of whole 20 ms ticks (on
  loopback the kernel charges the delivery of a datagram to its sender, so this includes
  delivering what the bridge sends, as the floor does); forwarded packets are the
  forwarder's `packets_out` over the same stretch; loss is counted at the receivers, a
  packet later than 200 ms counting as lost (tests/bench/bridge_load.py says how). The floor
  (one SRTP protect plus one UDP sendto of a packet the same size) is measured in the bridge
  process in the same run. `forwarding` measures at 50 and at 100 endpoints; `endpoints`
  climbs a ladder of endpoint counts to the first failure, then bisects on fresh processes.
  The bridge's wait for its core (schedstat) and the hypervisor's steal are recorded per
  window; a failing window with the bridge waiting >= 5% is measured again.
- join: `switchboard serve` and two headless Chromiums run inside their own
  `unshare -n bash -c ...` (loopback only, as tests/browser does); one page is in the room,
  another joins again and again, and its own clock times the click on Join to the first
  inbound audio RTP packet in getStats() (polled every 5 ms).

    python -m tests.bench --only forwarding --only endpoints --only join
    python -m tests.bench.bridge join-browser --out FILE   # the part inside the namespace
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import (
    CONTENDED_PERCENT,
    LOAD_CPU,
    REPO,
    SERVER_CPU,
    BenchError,
    Budget,
    Figure,
    procs,
)

log = logging.getLogger("bench.bridge")

FIGURES: dict[str, tuple[str, str]] = {
    "forwarding": ("Bridge: CPU per forwarded packet",
                   "< 20 us per forwarded packet (50,000/s on a core); floor ~10 us"),
    "endpoints": ("Bridge: audio endpoints on one core", "300 endpoints with <1% loss"),
    "join": ("Join to first remote audio", "report (no target set)"),
}
ROOM_SIZE = 10
FORWARDING_LOADS = (50, 100)   # endpoints: 22,500 and 45,000 forwarded packets/s
LADDER = (100, 200, 250, 300, 350, 400, 500)
ENDPOINTS_GOAL = 300
US_GOAL = 20.0
FLOOR_PACKETS = 20000
PORTS = 1000                   # a free block; the bridge binds its first port (one port for all)


def _pinned(cpu: int, argv: list[str]) -> list[str]:
    if cpu < (os.cpu_count() or 1) and shutil.which("taskset"):
        return ["taskset", "-c", str(cpu), *argv]
    return argv


def _machine() -> str:
    load = os.getloadavg()
    return f"load average {load[0]:.2f} on {os.cpu_count()} cores"


# --- the bridge runner and the load generator -----------------------------------------------


def _run_load(workdir: Path, plan: dict[str, Any], budget_s: float) -> dict[str, Any]:
    """Start the bridge runner (core 0) and the generator (core 1) with `plan`; wait for the
    generator's result (bounded by `budget_s`), stop both by PID."""
    workdir.mkdir(parents=True, exist_ok=True)
    low = procs.find_port_block(PORTS, kinds=("udp",))
    ready = workdir / "runner.port"
    ready.unlink(missing_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    runner = procs.start_process(
        _pinned(SERVER_CPU, [sys.executable, "-m", "tests.bench.bridge_runner",
                             "--ports", f"{low}-{low + PORTS - 1}", "--ready", str(ready)]),
        name="bridge-runner", log_dir=workdir, timeout_s=budget_s + 60, cwd=REPO, env=env)
    generator = None
    try:
        if not procs.wait_until(lambda: ready.exists() or not runner.running(), 30.0) \
                or not ready.exists():
            raise BenchError(f"the bridge runner did not start:\n{runner.log_tail(20)}")
        port = int(ready.read_text())
        plan_path, out = workdir / "plan.json", workdir / "load.json"
        plan_path.write_text(json.dumps(plan))
        out.unlink(missing_ok=True)
        generator = procs.start_process(
            _pinned(LOAD_CPU, [sys.executable, "-m", "tests.bench.bridge_load",
                               "--control", str(port), "--bridge-pid", str(runner.main_pid),
                               "--plan", str(plan_path), "--out", str(out)]),
            name="bridge-load", log_dir=workdir, timeout_s=budget_s + 45, cwd=REPO, env=env)
        try:
            generator.wait(timeout=budget_s + 40)
        except subprocess.TimeoutExpired:
            log.warning("bridge load generator overran its budget: stopping it")
        if not out.exists():
            raise BenchError(f"the load generator left no result:\n{generator.log_tail(20)}")
        result: dict[str, Any] = json.loads(out.read_text())
        if not runner.running():
            result["runner_died"] = runner.log_tail(20)
        return result
    finally:
        if generator is not None:
            generator.stop()
        runner.stop(term_timeout=25.0)


def _step_line(s: dict[str, Any]) -> str:
    us = s.get("us_per_forwarded")
    us_s = f"{us:.1f}" if us else "n/a"
    verdict = f"FAIL: {'; '.join(s['reasons'])}" if s["reasons"] else "pass"
    late = f", {s['too_late']} too late" if s.get("too_late") else ""
    return (f"N={s['n']}: loss {100 * s['loss']:.2f}% ({s['received']}/{s['expected']}{late}), "
            f"{s['forwarded'] / max(s['window_s'], 1e-9):,.0f} forwarded/s, bridge CPU "
            f"{s['bridge_cpu_percent']:.0f}% (waited {s['bridge_wait_percent']:.0f}%, "
            f"hypervisor steal {s.get('bridge_core_steal_percent', 0):.0f}%), "
            f"{us_s} us/forwarded, generator CPU {s['generator_cpu_percent']:.0f}%, socket "
            f"drops bridge {s['bridge_socket_drops']} generator {s['generator_socket_drops']}, "
            f"late sends {s['late_subticks']}, skipped {s['skipped_sends']} -> {verdict}")


def _not_the_bridge(step: dict[str, Any]) -> bool:
    """The window says nothing sure about the bridge: the generator ran out of CPU, or it
    failed while another process held either core (even after measuring again). A window that
    passes although the bridge waited for its core is a pass."""
    return bool(step.get("generator_saturated") or (step.get("contended") and not step["ok"]))


def _error(result: dict[str, Any]) -> str:
    return result.get("error") or result.get("runner_died") or ""


def measure_forwarding(workdir: Path, *, budget_s: float = 90.0, window_s: float = 10.0,
                       loads: tuple[int, ...] = FORWARDING_LOADS) -> Figure:
    """The cost per forwarded packet at each endpoint count of `loads` (one bridge process,
    rooms added between windows); the figure is the last load's, the busiest."""
    title, goal = FIGURES["forwarding"]
    machine = _machine()
    plan = {"steps": list(loads), "window_s": window_s, "settle_s": 3.0,
            "budget_s": budget_s - 20, "room_size": ROOM_SIZE, "floor_packets": FLOOR_PACKETS,
            "stop_on_saturation": False, "contended_percent": CONTENDED_PERCENT}
    result = _run_load(workdir, plan, budget_s)
    steps = [s for s in result.get("steps", []) if s.get("us_per_forwarded")]
    floor = result.get("floor") or {}
    how = (f"bridge alone in a process on core {SERVER_CPU}; synthetic endpoints (aiortc ICE "
           f"+ DTLS-SRTP, {result.get('profile', '?')}) on core {LOAD_CPU} in rooms of "
           f"{ROOM_SIZE}, 50 pkt/s each, 104-byte RTP (audio-level + transport-cc extensions, "
           f"80-byte payload), at {' then '.join(map(str, loads))} endpoints; {window_s:g} s "
           f"windows: bridge utime+stime / forwarder packets_out; loss counted at the "
           f"receivers; floor = SRTP protect + sendto of a 104-byte packet in the bridge "
           f"process ({FLOOR_PACKETS} packets, before the media starts); {machine}")
    if not steps:
        err = _error(result) or result.get("stopped") or "no window measured"
        return Figure(title, "not measured", goal, f"{how}; error: {err}"[:900],
                      details=result)
    s = steps[-1]
    us = float(s["us_per_forwarded"])
    floor_us = floor.get("protect_sendto_us")
    floor_s = (f"floor {floor_us:.1f} us (protect {floor['protect_us']:.1f} + sendto "
               f"{floor['sendto_us']:.1f})" if floor_us else "floor not measured")
    at = "; ".join(f"{x['us_per_forwarded']:.1f} us at {x['n']} endpoints "
                   f"({x['forwarded'] / x['window_s']:,.0f}/s, bridge CPU "
                   f"{x['bridge_cpu_percent']:.0f}%, waited {x['bridge_wait_percent']:.0f}% "
                   f"for the core, loss {100 * x['loss']:.2f}%)" for x in steps)
    measured = (f"{us:.1f} us CPU per forwarded packet = {1e6 / us:,.0f} forwarded packets/s "
                f"on a core; {floor_s}; {at}")
    details = {"us_per_forwarded": round(us, 2), "packets_per_s_per_core": round(1e6 / us),
               "floor_us": round(floor_us, 2) if floor_us else None, "floor": floor,
               "endpoints": s["n"], "srtp_profile": result.get("profile"),
               "bridge_waited_for_core_percent": s["bridge_wait_percent"],
               "generator_cpu_percent": s["generator_cpu_percent"], "machine": machine,
               "steps": [_step_line(x) for x in result.get("steps", [])],
               "windows": result.get("steps", []), "seconds": result.get("seconds")}
    return Figure(title, measured, goal, how, met=us < US_GOAL if s["ok"] else False,
                  details=details)


def _endpoints_plan(steps: list[int], window_s: float, budget_s: float) -> dict[str, Any]:
    return {"steps": steps, "window_s": window_s, "settle_s": 2.0, "budget_s": budget_s,
            "room_size": ROOM_SIZE, "floor_packets": 0, "stop_on_saturation": True,
            "contended_percent": CONTENDED_PERCENT}


def measure_endpoints(workdir: Path, *, budget_s: float = 200.0, window_s: float = 8.0,
                      ladder: tuple[int, ...] = LADDER) -> Figure:
    """Up the ladder on one bridge process to the first failure; then bisect, each try on a
    fresh bridge and generator (a bridge pushed past saturation is not a clean start)."""
    title, goal = FIGURES["endpoints"]
    machine = _machine()
    budget = Budget(budget_s)
    result = _run_load(workdir / "ladder",
                       _endpoints_plan(list(ladder), window_s, budget_s * 0.6 - 20),
                       budget_s * 0.6)
    steps: list[dict[str, Any]] = list(result.get("steps", []))
    notes = [x for x in (result.get("stopped"), _error(result)) if x]

    def verdicts() -> tuple[int, int]:
        good = max((x["n"] for x in steps if x["ok"]), default=0)
        bad = min((x["n"] for x in steps if not x["ok"] and not _not_the_bridge(x)),
                  default=0)
        return good, bad

    good, bad = verdicts()
    while bad and bad - good > ROOM_SIZE:
        mid = (good + bad) // 2 // ROOM_SIZE * ROOM_SIZE
        cost = 25.0 + window_s + mid / ROOM_SIZE * 0.5
        if mid in (good, bad) or not budget.fits(cost + 10):
            break
        tried = _run_load(workdir / f"n{mid}", _endpoints_plan([mid], window_s, cost),
                          cost + 20)
        if not tried.get("steps"):
            notes.append(f"N={mid}: {_error(tried) or 'not measured'}")
            break
        steps += tried["steps"]
        good, bad = verdicts()
    how = (f"bridge alone on core {SERVER_CPU}; synthetic endpoints (aiortc ICE + DTLS-SRTP) "
           f"on core {LOAD_CPU}, rooms of {ROOM_SIZE}, 50 audio pkt/s each; N up "
           f"{', '.join(map(str, ladder))} (rooms added to a running load) to the first "
           f"failure, then bisection on fresh processes; {window_s:g} s windows; pass: loss "
           f"<= 1% at the receivers (expected = sent x 9; a packet later than 200 ms is "
           f"lost) and every endpoint connected; a "
           f"failing window in which the bridge waited >={CONTENDED_PERCENT:g}% for its core "
           f"(or the generator did and fell behind) is measured again, up to twice; the "
           f"ladder stops when the generator saturates core {LOAD_CPU} (CPU >= 90% or "
           f"skipped sends); {machine}")
    if notes:
        how += f"; {'; '.join(notes)}"
    passed = [x for x in steps if x["ok"]]
    best = max(passed, key=lambda x: x["n"]) if passed else None
    saturated = next((x for x in steps if _not_the_bridge(x)), None)
    details = {"best_endpoints": good, "first_failing": bad or None,
               "lower_bound_at": saturated["n"] if saturated else None,
               "steps": [_step_line(x) for x in steps], "machine": machine,
               "windows": steps, "seconds": round(budget.elapsed(), 1)}
    if best is None:
        if not steps or (saturated is not None and not bad):
            return Figure(title, "not measured", goal, how[:1200], details=details)
        return Figure(title, "0 endpoints (no step passed)", goal, how[:1200], met=False,
                      details=details)
    # A lower bound when the generator ran out of CPU, or the machine was busy, before the
    # bridge failed.
    bound = saturated if saturated is not None and not bad else None
    measured = (f"{'>= ' if bound is not None else ''}{best['n']} endpoints (loss "
                f"{100 * best['loss']:.2f}%, {best['forwarded'] / best['window_s']:,.0f} "
                f"forwarded/s at {best['us_per_forwarded']:.1f} us each, bridge CPU "
                f"{best['bridge_cpu_percent']:.0f}% (waited {best['bridge_wait_percent']:.0f}% "
                f"for the core), generator CPU {best['generator_cpu_percent']:.0f}%)")
    if bound is not None and bound.get("contended"):
        measured += (f"; a lower bound: N={bound['n']} failed while the machine was busy (bridge "
                     f"waited {bound['bridge_wait_percent']:.0f}%, generator "
                     f"{bound['generator_wait_percent']:.0f}% for their cores)")
    elif bound is not None:
        measured += (f"; a lower bound: the generator saturated core {LOAD_CPU} at "
                     f"N={bound['n']}")
    elif bad:
        worst = next(x for x in steps if x["n"] == bad and not x["ok"])
        measured += f"; N={bad} fails: {'; '.join(worst['reasons'])}"
    met = True if best["n"] >= ENDPOINTS_GOAL else (None if bound is not None else False)
    return Figure(title, measured, goal, how[:1200], met=met, details=details)


# --- join to first remote audio, in Chromium -------------------------------------------------


def measure_join(workdir: Path, *, budget_s: float = 150.0, joins: int = 5) -> Figure:
    title, goal = FIGURES["join"]
    machine = _machine()
    how = (f"switchboard serve + 2 headless Chromiums in `unshare -n` (loopback only, all "
           f"cores): one page in the room sends its fake microphone; another joins {joins} times "
           f"(audio only, leaving in between); the joining page's clock from the click on "
           f"Join to the first inbound audio RTP packet in getStats() (polled every 5 ms); "
           f"median; {machine}")
    missing = [p for p in ("unshare", "bash", "/usr/bin/chromium") if shutil.which(p) is None]
    if missing:
        return Figure(title, "not measured", goal, f"{how}; missing {', '.join(missing)}")
    result, times, error = run_join_child("tests.bench.bridge", "join-browser", "join.json",
                                          workdir, joins, budget_s)
    if error:
        return Figure(title, "not measured", goal, f"{how}; error: {error}"[:900],
                      details=result or {})
    assert result is not None
    median = statistics.median(times)
    breakdown = result.get("breakdown", [])

    def med(key: str) -> str:
        values = [b[key] for b in breakdown if b.get(key) is not None]
        return f"{statistics.median(values):.0f}" if values else "n/a"

    measured = (f"{median:.0f} ms median over {len(times)} joins (min {min(times):.0f}, max "
                f"{max(times):.0f}); of which click -> the server's offer applied: median "
                f"{med('offer_ms')} ms")
    if len(times) < joins:
        measured += f"; {joins - len(times)} joins heard nothing"
    result["machine"] = machine
    return Figure(title, measured, goal, how, details=result)


_JOIN_JS = """
async () => {
  const t0 = performance.now();
  const marks = {offer_ms: null, first_audio_ms: null};
  document.querySelector('#join-button').click();
  while (performance.now() - t0 < 15000) {
    const pc = window.switchboard && window.switchboard.pc;
    if (pc) {
      if (marks.offer_ms === null && pc.remoteDescription) marks.offer_ms = performance.now() - t0;
      const report = await pc.getStats();
      let got = false;
      report.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'audio' && (s.packetsReceived || 0) > 0)
          got = true;
      });
      if (got) { marks.first_audio_ms = performance.now() - t0; return marks; }
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  return marks;
}
"""


def join_browser(out: Path, joins: int, workdir: Path, budget_s: float) -> None:
    """Inside the namespace: the server, a host page, and `joins` timed joins."""
    sys.path.insert(0, str(REPO / "tests" / "browser"))
    from browser_harness import Browser, join_meeting, loopback_up, network_interfaces
    from playwright.sync_api import sync_playwright
    from real_server import SwitchboardProcess

    result: dict[str, Any] = {"first_audio_ms": [], "breakdown": [], "error": None}
    deadline = time.monotonic() + budget_s

    def save() -> None:
        out.write_text(json.dumps(result, indent=1) + "\n")

    if network_interfaces() != ["lo"] or not loopback_up():
        result["error"] = f"not in a loopback-only namespace: {network_interfaces()}"
        save()
        return
    server = SwitchboardProcess.start(workdir / "server", max_seconds=int(budget_s) + 30)
    try:
        with sync_playwright() as p:
            host = Browser(p, workdir / "host-profile")
            guest = Browser(p, workdir / "guest-profile")
            try:
                url = f"{server.url}/bench-join"
                join_meeting(host.open(url), "Host", mic=True, camera=False)
                for _ in range(joins):
                    if time.monotonic() > deadline - 20:
                        result["error"] = "time budget spent"
                        break
                    page = guest.open(url)
                    page.wait_for_selector("#join-button:not([disabled])")
                    page.fill("#name-input", "Guest")
                    if page.get_attribute("#pre-cam", "aria-pressed") == "true":
                        page.click("#pre-cam")
                    marks = page.evaluate(_JOIN_JS)
                    result["breakdown"].append(marks)
                    result["first_audio_ms"].append(marks.get("first_audio_ms"))
                    save()
                    page.close()
                    time.sleep(1.0)  # the server notices the leave before the next join
            finally:
                guest.close()
                host.close()
    except Exception as err:
        result["error"] = f"{type(err).__name__}: {err}"
        result["server_log"] = server.log_tail(20)
    finally:
        server.stop()
        save()


def join_child_main(join: Callable[[Path, int, Path, float], None], figure: str,
                    joins: int, budget: float) -> None:
    """The command line of a join figure's part run inside `unshare -n` (run_join_child)."""
    parser = argparse.ArgumentParser(description=f"the part of the {figure} figure run "
                                                 "inside `unshare -n`")
    parser.add_argument("what", choices=["join-browser"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--joins", type=int, default=joins)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--budget", type=float, default=budget)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    join(args.out, args.joins, args.workdir, args.budget)


def main() -> None:
    join_child_main(join_browser, "join", 5, 120.0)



def run_join_child(module: str, name: str, out_name: str, workdir: Path, joins: int,
                   budget_s: float) -> tuple[dict[str, Any] | None, list[float], str]:
    """Run `python -m MODULE join-browser` in `unshare -n` (a loopback-only namespace; the
    child builds whatever it needs in there), on every core; its JSON result, the joins'
    times to first audio, and an error ("" when there are times)."""
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / out_name
    out.unlink(missing_ok=True)
    inner = (f"ip link set lo up && exec {shlex.quote(sys.executable)} -m {module} "
             f"join-browser --out {shlex.quote(str(out))} --joins {joins} "
             f"--workdir {shlex.quote(str(workdir))} --budget {budget_s - 20:.0f}")
    argv = ["unshare", "-n", "bash", "-c", inner]
    if shutil.which("taskset"):  # unpinned: this process (and so its children) is on core 1
        argv = ["taskset", "-c", f"0-{(os.cpu_count() or 1) - 1}", *argv]
    proc = procs.start_process(argv, name=name, log_dir=workdir, timeout_s=budget_s,
                               cwd=REPO, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        proc.wait(timeout=budget_s + 10)
    except subprocess.TimeoutExpired:
        log.warning("%s overran its budget", name)
    finally:
        proc.stop()
    if not out.exists():
        return None, [], f"no result: {proc.log_tail(8)}"
    result: dict[str, Any] = json.loads(out.read_text())
    times = [t for t in result.get("first_audio_ms", []) if t is not None]
    if not times:
        return result, [], str(result.get("error") or "no join heard audio")
    return result, times, ""

if __name__ == "__main__":
    main()
