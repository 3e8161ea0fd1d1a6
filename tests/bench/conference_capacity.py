"""Phone callers mixed with browsers on one core (issue 4's capacity figure), two loads:

- "all" (the goal's figure): rooms of 4 sipp phones (PCMU espeak speech looped by
  `rtp_stream`, `X-Room-Name`) and 2 synthetic browsers (conference_load.SyntheticBrowser:
  /ws, ICE + DTLS-SRTP, 50 pre-encoded Opus packets/s of speech with RFC 6464 levels), every
  one of them talking all the time: each phone's voice is encoded to Opus and each phone
  gets its own mix;
- "one" (a meeting): the same rooms where one phone talks and the 3 other phones and the 2
  browsers are quiet (sipp streams mu-law silence; the browsers send Opus silence with level
  127, as a browser does without DTX): the quiet phones share one encoded mix, and nobody's
  silence is encoded or decoded.

N phones step up on one server until the mix clock is late on 1% of its ticks, then
bisection on fresh servers (server on core 0; sipp and the browsers on core 1).
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .common import (
    CONTENDED_PERCENT,
    Budget,
    CpuMeter,
    Figure,
    SwitchboardServer,
    create_rooms,
    new_sipp,
    scenario,
    stats,
    stop_server,
    write_rooms_csv,
)
from .conference import FIGURES, Pcm, _quiet_aiortc, conference_server
from .conference_peers import make_speech, opus_frames

log = logging.getLogger("bench.conference")

CAPACITY_LADDER = (20, 40, 60, 80, 100, 120, 140, 160, 180, 200, 240, 280, 320)
PHONES_PER_ROOM, BROWSERS_PER_ROOM = 4, 2
CAPACITY_GOAL = 150
RAMP_RATE = 50      # calls/s while a step adds its phones
SETTLE_S = 3.0
# /api/stats is sampled this often in a window: each request holds the server's loop for a
# few ms (1.3 ms for the figures alone at 152 phones, plus the HTTP), which once a second
# made up a good part of the late ticks near the limit (152 phones, one talker a room: 2.0%
# and 2.9% late sampled each second, 0.73% sampled only at the window's ends).
STATS_EVERY_S = 5.0
LATE_LIMIT = 0.01


@dataclass
class CapacityStep:
    n: int
    ok: bool = False
    legs_up: int = 0
    browsers: int = 0          # connected synthetic browsers
    ticks: int = 0
    late: int = 0
    skipped: int = 0
    cpu_percent: float = 0.0
    wait_percent: float = 0.0  # the server runnable while another process held core 0
    bench_cpu_percent: float = 0.0
    bench_wait_percent: float = 0.0
    load_late: float = 0.0     # share of the browsers' 2 ms send slots that ran > 10 ms late
    decoded: float = 0.0       # browser streams decoded by the gateway (mean of samples)
    streams: float = 0.0       # browser streams at the gateway's mixer endpoints
    held_max_ms: float = 0.0   # the longest the mixer held the event loop at once (server life)
    held_mean_ms: float = 0.0  # the mean of the mixer's slices in the window
    rates: dict[str, float] = field(default_factory=dict)  # packets/s in the window
    reasons: list[str] = field(default_factory=list)

    @property
    def late_fraction(self) -> float | None:
        deadlines = self.ticks + self.skipped
        return (self.late + self.skipped) / deadlines if deadlines else None

    @property
    def contended(self) -> bool:
        """Another process held core 0, or held core 1 and the load fell behind."""
        return self.wait_percent >= CONTENDED_PERCENT or (
            self.bench_wait_percent >= CONTENDED_PERCENT and self.load_late > 0.01)

    def summary(self) -> str:
        late = self.late_fraction
        rates = ", ".join(f"{k} {v:,.0f}/s" for k, v in self.rates.items())
        return (f"N={self.n}: {self.legs_up} legs, {self.browsers} browsers, late "
                f"{100 * late if late is not None else float('nan'):.2f}% of "
                f"{self.ticks + self.skipped} ticks, server CPU {self.cpu_percent:.0f}% "
                f"(waited {self.wait_percent:.0f}%), bench CPU {self.bench_cpu_percent:.0f}% "
                f"(waited {self.bench_wait_percent:.0f}%), browser streams decoded "
                f"{self.decoded:.1f} of {self.streams:.1f}; mixer held the loop "
                f"{self.held_mean_ms:.1f} ms a slice, at most {self.held_max_ms:.1f} ms; "
                f"{rates} -> "
                + ("pass" if self.ok else "FAIL: " + "; ".join(self.reasons)))


async def _window(server: SwitchboardServer, load: Any, n: int,
                  window_s: float) -> CapacityStep:
    loop = asyncio.get_running_loop()
    step = CapacityStep(n)
    server_cpu, bench_cpu = CpuMeter(server.pid).start(), CpuMeter(os.getpid()).start()
    c = load.counters
    sent0, received0, late0 = c.sent, c.received, c.late_ticks
    a = await asyncio.to_thread(stats, server)
    t0, samples = loop.time(), []
    while (left := t0 + window_s - loop.time()) > 0:
        await asyncio.sleep(min(STATS_EVERY_S, left))
        samples.append(await asyncio.to_thread(stats, server))
    server_cpu.stop()
    bench_cpu.stop()
    b = samples[-1] if samples else {}
    wall = max(loop.time() - t0, 1e-9)

    def delta(key: str) -> int:
        return b.get(key, 0) - a.get(key, 0)

    step.legs_up, step.browsers = b.get("legs", 0), load.connected
    step.ticks, step.late = delta("mix_ticks"), delta("mix_ticks_late")
    step.skipped = delta("mix_ticks_skipped")
    step.held_max_ms = b.get("mix_tick_max_us", 0) / 1000
    step.held_mean_ms = delta("mix_tick_busy_us") / 1000 / max(
        delta("mix_slices") + delta("mix_ticks"), 1)
    step.cpu_percent, step.wait_percent = server_cpu.percent, server_cpu.wait_percent
    step.bench_cpu_percent, step.bench_wait_percent = bench_cpu.percent, bench_cpu.wait_percent
    step.load_late = (c.late_ticks - late0) / (wall / 0.002)
    step.decoded = statistics.mean(s.get("browser_streams_decoded", 0) for s in samples) \
        if samples else 0.0
    step.streams = statistics.mean(s.get("browser_streams", 0) for s in samples) \
        if samples else 0.0
    step.rates = {"RTP in (phones)": delta("rtp_rx_packets") / wall,
                  "RTP out (phones)": delta("rtp_tx_packets") / wall,
                  "uplink (phones to bridge)": delta("uplink_packets") / wall,
                  "browsers sent": (c.sent - sent0) / wall,
                  "browsers received": (c.received - received0) / wall}
    browsers = n // PHONES_PER_ROOM * BROWSERS_PER_ROOM
    if step.legs_up < n:
        step.reasons.append(f"only {step.legs_up}/{n} phone legs")
    if step.browsers < browsers:
        step.reasons.append(f"only {step.browsers}/{browsers} browsers connected")
    late = step.late_fraction
    if late is None:
        step.reasons.append("no mix ticks in /api/stats")
    elif late >= LATE_LIMIT:
        step.reasons.append(f"{100 * late:.2f}% late ticks")
    for key in ("RTP in (phones)", "RTP out (phones)"):
        if step.rates[key] < 0.9 * n * 50:
            step.reasons.append(f"{key} {step.rates[key]:,.0f}/s < 90% of {n * 50:,}")
    # Each browser gets at least the other browser of its room (50/s) from the bridge.
    if step.rates["browsers received"] < 0.9 * browsers * 50:
        step.reasons.append(f"browsers received {step.rates['browsers received']:,.0f}/s < "
                            f"90% of {browsers * 50:,}")
    step.ok = not step.reasons
    log.info("capacity %s", step.summary())
    return step


def _stream_scenario(workdir: Path, name: str, pcm8k: Pcm) -> Path:
    """sipp's call_rtp.xml streaming `NAME.ulaw` (raw mu-law, looped) instead of the tone."""
    from gateway.media.codecs import codec_by_name

    (workdir / f"{name}.ulaw").write_bytes(codec_by_name("PCMU").encode(pcm8k))
    path = workdir / f"call_{name}.xml"
    path.write_text(scenario("call_rtp.xml").read_text().replace("tone.ulaw", f"{name}.ulaw"))
    return path


def _start_phones(server: SwitchboardServer, workdir: Path, name: str, script: Path,
                  rooms: list[str], per_room: int, hold_s: float) -> Any:
    calls = len(rooms) * per_room
    return new_sipp(workdir, name, script, server.sip_address, service="bench",
                    calls=calls, rate=RAMP_RATE, limit=calls, hold_ms=int(hold_s * 1000),
                    inf=write_rooms_csv(workdir / f"{name}.csv", rooms, per_room),
                    timeout_s=hold_s + calls / RAMP_RATE + 30, timeout_error=False,
                    extra_args=["-recv_timeout", "5000", "-max_recv_loops", "100000",
                                "-max_sched_loops", "100000"]).start()


async def _capacity(server: SwitchboardServer, workdir: Path, budget: Budget,
                    window_s: float, ladder: Sequence[int], sipps: list[Any],
                    talkers: str) -> tuple[list[CapacityStep], str]:
    from .conference_load import BrowserLoad

    speech = make_speech(workdir)
    talk = _stream_scenario(workdir, "speech", speech[8000])
    if talkers == "all":
        load = BrowserLoad(server.base_url, opus_frames(speech[48000]))
    else:
        quiet = _stream_scenario(workdir, "silence", np.zeros(8000, dtype=np.int16))
        load = BrowserLoad(server.base_url, opus_frames(np.zeros(48000, dtype=np.int16)))
    load.start_clock()
    steps: list[CapacityStep] = []
    rooms_up, stopped = 0, ""
    try:
        for n in ladder:
            rooms = [f"cap-{i}" for i in range(rooms_up, n // PHONES_PER_ROOM)]
            calls = len(rooms) * PHONES_PER_ROOM
            cost = len(rooms) * 0.8 + calls / RAMP_RATE + SETTLE_S + window_s + 8
            if not budget.fits(cost):
                stopped = f"time budget spent before N={n}"
                break
            await asyncio.to_thread(create_rooms, server, rooms)
            errors = await load.add(rooms, BROWSERS_PER_ROOM)
            hold_s = budget.left() + 60
            if talkers == "all":
                sipps.append(_start_phones(server, workdir, f"cap{n}", talk, rooms,
                                           PHONES_PER_ROOM, hold_s))
            else:
                sipps.append(_start_phones(server, workdir, f"cap{n}-talk", talk, rooms, 1,
                                           hold_s))
                sipps.append(_start_phones(server, workdir, f"cap{n}-quiet", quiet, rooms,
                                           PHONES_PER_ROOM - 1, hold_s))
            rooms_up = n // PHONES_PER_ROOM
            loop = asyncio.get_running_loop()
            deadline = loop.time() + calls / RAMP_RATE + 10
            while loop.time() < deadline and \
                    (await asyncio.to_thread(stats, server)).get("legs", 0) < n:
                await asyncio.sleep(0.25)
            await asyncio.sleep(SETTLE_S)
            step = await _window(server, load, n, window_s)
            for _ in range(2):  # another process on a core: measure the window again
                if step.ok or not step.contended or not budget.fits(window_s + 2):
                    break
                log.info("capacity: N=%d failed while contended: measuring again", n)
                step = await _window(server, load, n, window_s)
            if errors:
                step.reasons.append(f"{len(errors)} browsers could not join ({errors[0]})")
                step.ok = False
            steps.append(step)
            if not step.ok:
                stopped = f"N={n} failed"
                break
        else:
            stopped = "end of the ladder"
    finally:
        await asyncio.wait_for(load.close(), 60.0)
    return steps, stopped


def opus_floor(workdir: Path, phones: int, talkers: str, ticks: int = 150) -> float:
    """Percent of a core that the Opus work alone of ``phones`` callers takes, in this
    process with no I/O: one encode a tick per talking phone (8 kHz, the server's default
    settings) and one 8 kHz decode per browser stream the gateway mixes (rooms of 4 + 2,
    browsers talking only under "all"), every stream with its own codec state, taken in
    turn as the server's mixer does. What is left of the core is for everything else."""
    from gateway.conference_audio import AudioSettings
    from gateway.media.opus import OpusCodec

    settings = AudioSettings()  # the server's defaults
    speech = make_speech(workdir)
    pcm, packets = speech[8000], opus_frames(speech[48000], 4.0)
    frames = [np.ascontiguousarray(pcm[i * 160:(i + 1) * 160]) for i in range(pcm.size // 160)]
    talking = phones if talkers == "all" else phones // PHONES_PER_ROOM
    decoded = phones // PHONES_PER_ROOM * BROWSERS_PER_ROOM if talkers == "all" else 0
    encoders = [settings.voice_encoder(8000) for _ in range(talking)]
    decoders = [OpusCodec(111, 8000) for _ in range(decoded)]
    started = time.process_time()
    for k in range(ticks):
        for i, encoder in enumerate(encoders):
            encoder.encode(frames[(k + 7 * i) % len(frames)])
        for i, decoder in enumerate(decoders):
            decoder.decode(packets[(k + 5 * i) % len(packets)][0])
    return 100 * (time.process_time() - started) / ticks / 0.020


def measure_capacity(workdir: Path, *, budget_s: float = 300.0, window_s: float = 10.0,
                     ladder: Sequence[int] = CAPACITY_LADDER, talkers: str = "all") -> Figure:
    """Up the ladder on one server to the first failure, then bisect (to a multiple of a
    room) on fresh servers while the budget lasts."""
    from .conference_peers import use_loopback_only

    if talkers not in ("all", "one"):
        raise ValueError(f"talkers: 'all' or 'one', not {talkers!r}")
    title, goal = FIGURES["capacity" if talkers == "all" else "conversation"]
    budget = Budget(budget_s)
    workdir.mkdir(parents=True, exist_ok=True)
    use_loopback_only()
    _quiet_aiortc()

    def run(steps: Sequence[int], name: str) -> tuple[list[CapacityStep], str]:
        server = conference_server(workdir / name, rtp_ports=2 * max(steps) + 100,
                                   bridge_ports=max(steps) + 200)
        sipps: list[Any] = []
        try:
            return asyncio.run(asyncio.wait_for(
                _capacity(server, workdir / name, budget, window_s, steps, sipps, talkers),
                budget.left() + 60))
        finally:
            stop_server(server)
            for sipp in sipps:
                if sipp.proc is not None:
                    sipp.proc.stop()

    steps, stopped = run(ladder, "ladder")
    while True:
        good = max((x.n for x in steps if x.ok), default=0)
        # A failure while another process held a core says nothing sure: no bisection.
        bad = min((x.n for x in steps if not x.ok and x.n > good and not x.contended),
                  default=0)
        mid = (good + bad) // 2 // PHONES_PER_ROOM * PHONES_PER_ROOM
        if not bad or mid <= good or mid >= bad or \
                not budget.fits(15 + mid / PHONES_PER_ROOM + mid / RAMP_RATE + 2 * window_s):
            break
        more, why = run((mid,), f"n{mid}")
        if not more:
            stopped += f"; N={mid} not measured ({why})"
            break
        steps += more
    floor = opus_floor(workdir, CAPACITY_GOAL, talkers)
    log.info("capacity: Opus work alone of %d phones (%s talking): %.0f%% of a core",
             CAPACITY_GOAL, talkers, floor)
    return _capacity_figure(title, goal, steps, stopped, window_s, budget, talkers, floor)


def _capacity_figure(title: str, goal: str, steps: list[CapacityStep], stopped: str,
                     window_s: float, budget: Budget, talkers: str = "all",
                     floor: float | None = None) -> Figure:
    passed = [s for s in steps if s.ok]
    best = max(passed, key=lambda s: s.n) if passed else None
    failing = [s for s in steps if not s.ok and (best is None or s.n > best.n)]
    failed = min(failing, key=lambda s: s.n) if failing else None
    load = (f"sipp phones ({PHONES_PER_ROOM} per room, X-Room-Name, PCMU espeak speech "
            f"looped by rtp_stream) and {BROWSERS_PER_ROOM} synthetic browsers per room (/ws "
            f"signaling, ICE + DTLS-SRTP, 50 Opus packets/s of speech with RFC 6464 levels), "
            f"all talking at once") if talkers == "all" else (
            f"sipp phones ({PHONES_PER_ROOM} per room, X-Room-Name, PCMU): one talks (espeak "
            f"speech looped by rtp_stream), {PHONES_PER_ROOM - 1} stream mu-law silence; "
            f"{BROWSERS_PER_ROOM} synthetic browsers per room (/ws signaling, ICE + DTLS-SRTP) "
            f"send 50 Opus packets/s of silence (level 127)")
    how = (f"switchboard on core 0; on core 1 {load}; N phones up "
           f"{', '.join(map(str, CAPACITY_LADDER))}"
           f" (rooms added to the running load), then bisection on fresh servers; {window_s:g} s"
           f" windows: late = (late + "
           f"skipped) / (ticks + skipped) from /api/stats, CPU from /proc; pass: < 1% late, "
           f"every leg and browser up, >= 90% of the phones' RTP both ways, browsers get "
           f">= 90% of their room's other browser; a failing window while a core was busy "
           f"is measured again; stopped: {stopped}")
    if floor is not None:
        how += (f"; Opus work alone of {CAPACITY_GOAL} such phones, in the bench process "
                f"without I/O (opus_floor): {floor:.0f}% of a core")
    details = {"best_phones": best.n if best else 0, "opus_floor_percent": floor,
               "first_failing": failed.n if failed else None,
               "steps": [s.summary() for s in steps], "seconds": round(budget.elapsed(), 1)}
    busy = failed is not None and failed.contended
    busy_note = (f" (measured while the machine was busy: the server waited "
                 f"{failed.wait_percent:.0f}% for core 0, the load {failed.bench_wait_percent:.0f}%"
                 f" for core 1: a lower bound)") if failed is not None and busy else ""
    if best is None:
        measured = "0 phones (no step passed)" if steps else "not measured"
        if failed is not None:
            measured += f"; N={failed.n}: {'; '.join(failed.reasons)}{busy_note}"
        return Figure(title, measured, goal, how, met=None if busy or not steps else False,
                      details=details)
    late = best.late_fraction or 0.0
    measured = (f"{best.n} phones + {best.n // 2} browsers in {best.n // PHONES_PER_ROOM} "
                f"rooms ({100 * late:.2f}% late ticks); server CPU {best.cpu_percent:.0f}% "
                f"(waited {best.wait_percent:.0f}% for the core) = "
                f"{best.cpu_percent / best.n:.2f}% of a core per phone (with half a browser "
                f"each); browser streams decoded by the gateway: {best.decoded:.0f} of "
                f"{best.streams:.0f}")
    if failed is not None:
        measured += f"; N={failed.n} fails: {'; '.join(failed.reasons)}{busy_note}"
    details |= {"cpu_percent": round(best.cpu_percent, 1),
                "cpu_percent_per_phone": round(best.cpu_percent / best.n, 3),
                "server_waited_percent": round(best.wait_percent, 1),
                "browser_streams_decoded": round(best.decoded, 1),
                "browser_streams": round(best.streams, 1)}
    met = True if best.n >= CAPACITY_GOAL else (None if busy else False)
    return Figure(title, measured, goal, how, met=met, details=details)
