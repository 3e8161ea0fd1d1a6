"""Side by side with Janus AudioBridge (issue 14): the same load against Janus and against
Switchboard, in one run, each server alone on core 0, the load on core 1; both judged at the
receivers with one yardstick (tests/bench/phase.py).

Two figures:

- `versus-g711`: rooms of 5 G.711 (PCMU) participants, every one talking (espeak speech,
  looped). Janus: an AudioBridge room at 8 kHz per 5, each participant a plain-RTP `join`
  (codec pcmu) over the HTTP API. Switchboard: a SIP call per participant (`X-Room-Name`,
  PCMU), the room mixed N-1 on its 20 ms clock.
- `versus-mixed`: rooms of 4 PCMU + 2 Opus, every one talking. Janus: a 16 kHz AudioBridge
  room, 4 plain-RTP pcmu and 2 plain-RTP opus participants (Janus decodes, mixes and
  encodes each its own mix). Switchboard: 4 SIP phones and 2 synthetic browsers of the
  capacity figure (conference_load.SyntheticBrowser: /ws, ICE + DTLS-SRTP through the
  bridge, Opus speech); the phones get a mix each, each phone's voice is encoded to Opus for
  the browsers, the browsers' streams are forwarded (SRTP) and decoded into the phones' mix:
  more work per room than AudioBridge's.

A step of N participants passes when every participant got at least 90% of its packets and
under 1% of all the packets the plain-RTP participants received arrived more than 10 ms
behind their stream's phase (by the kernel's receive timestamps). Switchboard's browsers get
the count half only (at least 90% of their room's other browser's packets, as the capacity
figure): their streams are forwarded, not mixed. Beside each step: the server's CPU, the
share of the window it waited for core 0 (another process on it), and Switchboard's own
late mix ticks (AudioBridge has no such counter). N climbs the same ladder on both sides,
rooms added to the running load, to the first failure; a failure while a core was busy is
measured again once.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import (
    CONTENDED_PERCENT,
    Budget,
    CpuMeter,
    Figure,
    create_rooms,
    start_server,
    stats,
    stop_server,
)
from .janus import JanusApi, start_janus
from .janus_load import RtpLoad, RtpParticipant, Voice, call_switchboard, hang_up, join_janus
from .phase import Verdict, judge

log = logging.getLogger("bench.versus")

FIGURES: dict[str, tuple[str, str]] = {
    "versus-g711": ("G.711 legs mixed on one core, rooms of 5, side by side with Janus "
                    "AudioBridge", "600 legs, and >= 1.5x Janus in the same run"),
    "versus-mixed": ("Rooms of 4 PCMU + 2 Opus, everyone talking, side by side with Janus "
                     "AudioBridge (16 kHz room)",
                     "150 participants per core, and no fewer than Janus"),
}
ALIASES = {"versus-janus": ("versus-g711", "versus-mixed")}
LADDERS = {"versus-g711": (50, 100, 150, 200, 300, 400, 450, 500, 550, 600, 700, 800, 1000),
           "versus-mixed": (30, 60, 90, 120, 150, 180, 210, 240, 270, 300, 360)}
GOALS = {"versus-g711": (600, 1.5), "versus-mixed": (150, 1.0)}
SETTLE_S = 3.0
TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def core_busy_seconds(cpu: int, text: str | None = None) -> float:
    """user + nice + system time of core `cpu` from /proc/stat, in seconds (interrupt and
    softirq time left out: loopback packets are processed there, for whoever sends)."""
    if text is None:
        try:
            text = Path("/proc/stat").read_text()
        except OSError:
            return 0.0
    for line in text.splitlines():
        cols = line.split()
        if cols and cols[0] == f"cpu{cpu}":
            return sum(int(c) for c in cols[1:4]) / TICKS_PER_S
    return 0.0


@dataclass
class Step:
    side: str
    n: int
    verdict: Verdict | None = None
    cpu_percent: float = 0.0
    wait_percent: float = 0.0      # runnable, not running: summed over the server's threads
    others_percent: float = 0.0    # core 0 running other processes than the server
    load_wait_percent: float = 0.0
    load_late_slots: int = 0
    ticks: int | None = None       # Switchboard's mix clock (None: Janus has no counter)
    late_ticks: int | None = None
    browsers_short: int = 0
    reasons: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.reasons

    @property
    def contended(self) -> bool:
        return self.others_percent >= CONTENDED_PERCENT or (
            self.load_wait_percent >= CONTENDED_PERCENT and self.load_late_slots > 0)

    def summary(self) -> str:
        v = self.verdict
        got = (f"{100 * v.received_fraction:.1f}% of packets, {100 * v.late_fraction:.2f}% "
               f"> 10 ms behind (worst {1000 * v.worst_s:.0f} ms)") if v else "no verdict"
        ticks = "" if self.ticks is None else \
            f", server late ticks {self.late_ticks}/{self.ticks}"
        return (f"{self.side} N={self.n}: {got}{ticks}, server CPU {self.cpu_percent:.0f}% "
                f"(its threads waited {self.wait_percent:.0f}%; core 0 ran others "
                f"{self.others_percent:.0f}%), load waited "
                f"{self.load_wait_percent:.0f}% -> "
                + ("pass" if self.ok else "FAIL: " + "; ".join(self.reasons)))


def _voices(workdir: Path) -> tuple[dict[str, Voice], list[tuple[bytes, int]]]:
    """The speech every participant sends, PCMU and Opus, and the Opus frames with their
    RFC 6464 levels (for Switchboard's browsers)."""
    from gateway.media.codecs import codec_by_name

    from .conference_peers import make_speech, opus_frames

    speech = make_speech(workdir)
    ulaw = codec_by_name("PCMU").encode(speech[8000])
    pcmu = [ulaw[i:i + 160] for i in range(0, len(ulaw) - 159, 160)]
    frames = opus_frames(speech[48000])
    opus = [payload for payload, _ in frames]
    return {"pcmu": Voice(pcmu, 0, 8000), "opus": Voice(opus, 111, 48000)}, frames


def _room_codecs(figure: str) -> list[str]:
    return ["pcmu"] * 5 if figure == "versus-g711" else ["pcmu"] * 4 + ["opus"] * 2


class Side:
    """One server under the ladder: start, add rooms, measure, stop."""

    name = ""

    def __init__(self, figure: str, workdir: Path, voices: dict[str, Voice],
                 opus_frames: list[tuple[bytes, int]]) -> None:
        self.figure = figure
        self.workdir = workdir
        self.voices = voices
        self.opus_frames = opus_frames
        self.codecs = _room_codecs(figure)
        self.rooms = 0
        self.load: RtpLoad | None = None
        self.pid = 0

    async def start(self) -> None:
        raise NotImplementedError

    async def add_rooms(self, count: int) -> list[str]:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    def stats(self) -> dict[str, int]:
        return {}

    def extra_checks(self, step: Step, window_s: float) -> None:
        """Checks of participants that the phase yardstick does not see."""

    def _new_participants(self, count: int, prefix: str) -> list[tuple[RtpParticipant, str]]:
        out = []
        for r in range(self.rooms, self.rooms + count):
            for i, codec in enumerate(self.codecs):
                if self.name == "switchboard" and codec == "opus":
                    continue  # Switchboard's Opus participants are browsers
                voice = self.voices[codec]
                out.append((RtpParticipant(f"{prefix}{r}-{i}", f"vs-{r}", voice,
                                           voice.clock_rate), codec))
        return out


class JanusSide(Side):
    name = "janus"

    async def start(self) -> None:
        self.server = await asyncio.to_thread(start_janus, self.workdir, ports=3000)
        self.pid = self.server.pid
        self.api = await asyncio.to_thread(JanusApi, self.server.base_url)
        self.load = RtpLoad()
        self.load.start()

    async def add_rooms(self, count: int) -> list[str]:
        assert self.load is not None
        rate = 8000 if self.figure == "versus-g711" else 16000
        ids = {f"vs-{r}": 1000 + r for r in range(self.rooms, self.rooms + count)}
        for room_id in ids.values():
            await asyncio.to_thread(self.api.create_room, room_id, rate)
        new = self._new_participants(count, "j")
        for p, _ in new:
            self.load.add(p)
        errors = await asyncio.to_thread(join_janus, self.api, ids, [p for p, _ in new],
                                         [c for _, c in new])
        self.rooms += count
        return errors

    async def stop(self) -> None:
        if self.load is not None:
            self.load.close()
        await asyncio.to_thread(self.server.stop)


class SwitchboardSide(Side):
    name = "switchboard"

    async def start(self) -> None:
        from .conference import conference_server

        ladder = LADDERS[self.figure]
        if self.figure == "versus-g711":
            self.server = await asyncio.to_thread(start_server, self.workdir / "switchboard",
                                                  rtp_port_count=2 * max(ladder) + 200)
        else:
            self.server = await asyncio.to_thread(
                conference_server, self.workdir / "switchboard",
                rtp_ports=2 * max(ladder) + 200, bridge_ports=max(ladder) + 200)
        self.pid = self.server.pid
        self.load = RtpLoad()
        self.load.start()
        self.browsers: Any = None
        if self.figure == "versus-mixed":
            from .conference_load import BrowserLoad

            self.browsers = BrowserLoad(self.server.base_url, self.opus_frames)
            self.browsers.start_clock()

    async def add_rooms(self, count: int) -> list[str]:
        assert self.load is not None
        names = [f"vs-{r}" for r in range(self.rooms, self.rooms + count)]
        await asyncio.to_thread(create_rooms, self.server, names)
        errors: list[str] = []
        if self.browsers is not None:
            errors += await self.browsers.add(names, self.codecs.count("opus"))
        new = [p for p, _ in self._new_participants(count, "s")]
        for p in new:
            self.load.add(p)
        errors += await call_switchboard(("127.0.0.1", self.server.sip_port), new)
        self.rooms += count
        return errors

    def stats(self) -> dict[str, int]:
        return stats(self.server)

    def extra_checks(self, step: Step, window_s: float) -> None:
        if self.browsers is None:
            return
        # Each browser gets at least its room's other browser (50/s) from the bridge.
        need = 0.9 * 50 * window_s
        counts = [b.received - getattr(b, "window_start", 0) for b in self.browsers.browsers]
        step.browsers_short = sum(1 for c in counts if c < need)
        wanted = self.rooms * self.codecs.count("opus")
        if len(counts) < wanted:
            step.reasons.append(f"only {len(counts)}/{wanted} browsers connected")
        if step.browsers_short:
            step.reasons.append(f"{step.browsers_short} browsers got under 90% of their "
                                f"room's other browser")

    def mark_window(self) -> None:
        if self.browsers is not None:
            for b in self.browsers.browsers:
                b.window_start = b.received

    async def stop(self) -> None:
        if self.load is not None:
            await hang_up(self.load.participants)
            self.load.close()
        if self.browsers is not None:
            await asyncio.wait_for(self.browsers.close(), 60.0)
        await asyncio.to_thread(stop_server, self.server)


async def _window(side: Side, n: int, window_s: float) -> Step:
    assert side.load is not None
    step = Step(side.name, n)
    load = side.load
    server_cpu, load_cpu = CpuMeter(side.pid).start(), CpuMeter(os.getpid()).start()
    late0, core0 = load.late_slots, core_busy_seconds(0)
    a = await asyncio.to_thread(side.stats)
    if isinstance(side, SwitchboardSide):
        side.mark_window()
    load.record(True)
    t0 = load.loop.time()
    await asyncio.sleep(window_s)
    load.record(False)
    wall = load.loop.time() - t0
    b = await asyncio.to_thread(side.stats)
    server_cpu.stop()
    load_cpu.stop()
    step.cpu_percent, step.wait_percent = server_cpu.percent, server_cpu.wait_percent
    step.others_percent = max(0.0, 100 * (core_busy_seconds(0) - core0) / wall
                              - server_cpu.percent)
    step.load_wait_percent = load_cpu.wait_percent
    step.load_late_slots = load.late_slots - late0
    if a and b:
        step.ticks = b.get("mix_ticks", 0) - a.get("mix_ticks", 0)
        step.late_ticks = (b.get("mix_ticks_late", 0) - a.get("mix_ticks_late", 0)
                           + b.get("mix_ticks_skipped", 0) - a.get("mix_ticks_skipped", 0))
    expected = int(wall / 0.020)
    step.verdict = judge(p.receiver(expected) for p in load.participants)
    step.reasons += step.verdict.reasons
    side.extra_checks(step, wall)
    log.info("versus %s", step.summary())
    return step


async def _ladder(side: Side, ladder: Sequence[int], budget: Budget,
                  window_s: float) -> tuple[list[Step], str]:
    per_room = len(side.codecs)
    steps: list[Step] = []
    stopped = "end of the ladder"
    await side.start()
    try:
        for n in ladder:
            count = n // per_room - side.rooms
            if not budget.fits(n / 40 + SETTLE_S + 2 * window_s + 10):
                stopped = f"time budget spent before N={n}"
                break
            errors = await side.add_rooms(count)
            await asyncio.sleep(SETTLE_S)
            step = await _window(side, n, window_s)
            if not step.ok and step.contended and budget.fits(window_s + 2):
                log.info("versus %s: N=%d failed while a core was busy: again", side.name, n)
                step = await _window(side, n, window_s)
            if errors:
                step.reasons.append(f"{len(errors)} joins failed ({errors[0]})")
            steps.append(step)
            if not step.ok:
                stopped = f"N={n} failed"
                break
    finally:
        await side.stop()
    return steps, stopped


def measure(figure: str, workdir: Path, *, budget_s: float = 480.0,
            window_s: float = 10.0) -> Figure:
    """Janus first, then Switchboard, the same ladder, in one run; both sides and the
    ratio."""
    from .conference import _quiet_aiortc
    from .conference_peers import use_loopback_only

    title, goal = FIGURES[figure]
    workdir.mkdir(parents=True, exist_ok=True)
    use_loopback_only()
    _quiet_aiortc()
    voices, frames = _voices(workdir)
    results: dict[str, tuple[list[Step], str]] = {}
    for cls in (JanusSide, SwitchboardSide):
        side = cls(figure, workdir / cls.name, voices, frames)
        (workdir / cls.name).mkdir(parents=True, exist_ok=True)
        budget = Budget(budget_s / 2)
        results[side.name] = asyncio.run(asyncio.wait_for(
            _ladder(side, LADDERS[figure], budget, window_s), budget_s / 2 + 120))
    return _figure(figure, title, goal, results, window_s)


def _best(steps: list[Step]) -> Step | None:
    passed = [s for s in steps if s.ok]
    return max(passed, key=lambda s: s.n) if passed else None


def _side_text(name: str, steps: list[Step], stopped: str) -> str:
    best = _best(steps)
    failed = next((s for s in steps if not s.ok), None)
    if best is None:
        text = f"{name}: 0 (no step passed)"
    else:
        v = best.verdict
        late = f"{100 * v.late_fraction:.2f}% late" if v else ""
        ticks = "" if best.ticks is None else \
            f", own late ticks {best.late_ticks}/{best.ticks}"
        text = (f"{name}: {best.n} ({late} at the receivers{ticks}; CPU "
                f"{best.cpu_percent:.0f}%, core 0 ran others {best.others_percent:.0f}%)")
    if failed is not None:
        text += f"; N={failed.n} fails: {'; '.join(failed.reasons)[:160]}"
        if failed.contended:
            text += " (a core was busy: a lower bound)"
    elif stopped:
        text += f"; {stopped}"
    return text


def _figure(figure: str, title: str, goal: str, results: dict[str, tuple[list[Step], str]],
            window_s: float) -> Figure:
    j_steps, j_stop = results["janus"]
    s_steps, s_stop = results["switchboard"]
    jb, sb = _best(j_steps), _best(s_steps)
    jn, sn = (jb.n if jb else 0), (sb.n if sb else 0)
    ratio = sn / jn if jn else None
    ratio_s = f"{ratio:.2f}x" if ratio is not None else "n/a"
    measured = (f"{_side_text('Switchboard', s_steps, s_stop)} | "
                f"{_side_text('Janus', j_steps, j_stop)} | ratio {ratio_s}")
    need_n, need_ratio = GOALS[figure]
    met: bool | None = sn >= need_n and ratio is not None and ratio >= need_ratio
    if not met and any(not s.ok and s.contended for s in j_steps + s_steps):
        met = None  # a side stopped while another process held a core: not known
    if figure == "versus-g711":
        how = ("rooms of 5 PCMU participants, all talking (espeak speech): Janus AudioBridge "
               "rooms at 8 kHz with plain-RTP participants joined over its HTTP API, "
               "Switchboard SIP calls (X-Room-Name)")
    else:
        how = ("rooms of 4 PCMU + 2 Opus, all talking: Janus 16 kHz AudioBridge rooms, 6 "
               "plain-RTP participants (4 pcmu, 2 opus); Switchboard 4 SIP phones + 2 "
               "synthetic browsers (ICE, DTLS-SRTP through the bridge: Switchboard also "
               "encodes each phone for the browsers, forwards SRTP and decodes the browsers)")
    how += (f"; server on core 0, load on core 1, one run; {window_s:g} s windows; pass: every "
            f"participant >= 90% of its packets and < 1% of packets > 10 ms behind their "
            f"stream's phase (kernel receive timestamps; Switchboard's browsers: count only); "
            f"same ladder {', '.join(map(str, LADDERS[figure]))} on both sides")
    details = {"switchboard": sn, "janus": jn, "ratio": ratio,
               "steps": [s.summary() for s in j_steps + s_steps]}
    return Figure(title, measured, goal, how, met=met if (j_steps and s_steps) else None,
                  details=details)
