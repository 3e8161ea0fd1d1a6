"""Driving Debian's Chromium with Playwright for the meeting-page tests.

- `Browser`: one Chromium (a persistent context in a fresh profile directory) with fake
  microphone and camera, loopback-only WebRTC and autoplay allowed; `open(url)` gives a page
  whose console errors and uncaught exceptions are recorded (`errors(page)`). With
  `audio_file=WAV` the fake microphone plays that file (looped) instead of its beep.
- `join_meeting(page, name)`: fill the pre-join screen and join.
- `rtp_stats(page)`: the page's inbound/outbound RTP figures from getStats().
- `screenshot(page, name)`: a PNG in tests/browser/artifacts/.
- `wait_for(fn)`: poll a condition with a bound on time.
- `Browser.messages(page, type)`: the signaling messages the page received over /ws, as
  Chromium saw them on the wire (recorded by Playwright, not by the page's code).
- `remote_media(browser, page)`: every live remote source of the page with its sender (from
  the applied offer's `a=msid` and the server's `tracks` map) and its inbound-rtp figures.
- `Crowd` / `Member`: browsers joined to rooms of a server, each with its participant id.
- `Browser.freeze()` / `Browser.kill()`: SIGSTOP / SIGKILL this Chromium's own processes (found
  by its profile directory), to make a participant vanish without a word.
- `install_audio_probe(page)` / `inbound_audio(page)`: what the page receives from each
  remote participant as audio samples (WebAudio: the remote track into an AnalyserNode at
  16 kHz, its last 2 s), to measure in Python (dominant frequency, band energies).

Chromium must run inside a network namespace with only loopback (PEERS.md): the tests'
conftest fails the run otherwise.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from playwright.sync_api import (
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    ViewportSize,
    WebSocket,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required",
    # getDisplayMedia picks a source by itself instead of showing a picker.
    "--auto-accept-this-tab-capture",
    "--auto-select-desktop-capture-source=Entire screen",
)
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
DEFAULT_TIMEOUT_MS = 10_000


def network_interfaces() -> list[str]:
    """The interfaces of this process's network namespace (not /sys, which shows the host's)."""
    return [name for _, name in socket.if_nameindex()]


def loopback_up() -> bool:
    """127.0.0.1 answers (in a fresh namespace `lo` is down until `ip link set lo up`)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        try:
            server.bind(("127.0.0.1", 0))
            server.listen(1)
            with socket.create_connection(server.getsockname(), timeout=1.0):
                return True
        except OSError:
            return False


def wait_for(
    condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.1,
    message: str = "condition",
) -> T:
    """Poll `condition` until it returns something truthy; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    last: T = condition()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {message}")
        time.sleep(interval)
        last = condition()
    return last


@dataclass
class PageLog:
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    # Signaling messages (parsed JSON objects) received and sent on the page's /ws socket.
    received: list[dict[str, Any]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    closed_sockets: int = 0

    def on_websocket(self, ws: WebSocket) -> None:
        if not ws.url.endswith("/ws"):
            return

        def parse(into: list[dict[str, Any]], payload: str | bytes) -> None:
            try:
                msg = json.loads(payload)
            except ValueError:
                msg = {"type": "(not json)", "raw": repr(payload)[:200]}
            into.append(msg if isinstance(msg, dict) else {"type": "(not an object)"})

        ws.on("framereceived", lambda payload: parse(self.received, payload))
        ws.on("framesent", lambda payload: parse(self.sent, payload))

        def on_close(_: WebSocket) -> None:
            self.closed_sockets += 1

        ws.on("close", on_close)

    def all(self) -> list[str]:
        return self.console_errors + self.page_errors


class Browser:
    """One Chromium process with its own profile. Close it (the fixture does)."""

    def __init__(self, playwright: Playwright, profile: Path, *, mobile: bool = False,
                 audio_file: Path | None = None) -> None:
        options: dict[str, Any] = {"viewport": PHONE if mobile else DESKTOP}
        if mobile:
            options.update(is_mobile=True, has_touch=True, device_scale_factor=2)
        args = list(CHROMIUM_ARGS)
        if audio_file is not None:
            # A 16-bit PCM WAV, played in a loop as the fake microphone.
            if not audio_file.is_file():
                raise FileNotFoundError(f"fake microphone file {audio_file} is missing")
            args.append(f"--use-file-for-fake-audio-capture={audio_file}")
        self.audio_file = audio_file
        self.context: BrowserContext = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True,
            args=args, **options,
        )
        self.context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        self.profile = profile
        self.frozen = False
        self._logs: dict[Page, PageLog] = {}
        self._blank = list(self.context.pages)  # the page a persistent context opens with

    def open(self, url: str, *, viewport: ViewportSize | None = None) -> Page:
        page = self._blank.pop() if self._blank else self.context.new_page()
        page_log = PageLog()
        self._logs[page] = page_log

        def on_console(msg: ConsoleMessage) -> None:
            if msg.type == "error":
                page_log.console_errors.append(f"{msg.text} ({msg.location.get('url', '')})")

        page.on("console", on_console)
        page.on("pageerror", lambda exc: page_log.page_errors.append(str(exc)))
        page.on("websocket", page_log.on_websocket)
        if viewport:
            page.set_viewport_size(viewport)
        page.goto(url)
        return page

    def errors(self, page: Page) -> list[str]:
        return self._logs[page].all() if page in self._logs else []

    def messages(self, page: Page, type_: str | None = None, *,
                 sent: bool = False) -> list[dict[str, Any]]:
        """Signaling messages the page received (or `sent`) so far, optionally of one type.
        Playwright delivers them while the test calls into Playwright (not during
        time.sleep): poll with page calls or page.wait_for_timeout."""
        page_log = self._logs.get(page)
        if page_log is None:
            return []
        found = page_log.sent if sent else page_log.received
        return [m for m in list(found) if type_ is None or m.get("type") == type_]

    def process_ids(self) -> list[int]:
        """This Chromium's processes: the one started with our profile directory and its
        descendants (zygotes, renderers, the network service)."""
        return _process_tree(f"--user-data-dir={self.profile}")

    def freeze(self) -> list[int]:
        """SIGSTOP every process of this Chromium: its sockets stay open but nothing is sent
        or answered any more (a participant whose network went away). Returns the pids."""
        pids = self.process_ids()
        self.frozen = True
        for pid in pids:
            _signal(pid, signal.SIGSTOP)
        log.info("froze Chromium processes %s", pids)
        return pids

    def kill(self) -> None:
        """SIGKILL every process of this Chromium (then `close()` only tidies up)."""
        for pid in self.process_ids():
            _signal(pid, signal.SIGKILL)

    def close(self) -> None:
        if self.frozen:  # a stopped Chromium would never answer Playwright's close
            self.kill()
        try:
            self.context.close()
        except Exception:  # the browser may already be gone after a crash
            log.exception("closing Chromium failed")


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _process_tree(marker: str) -> list[int]:
    """The Chromium browser process whose argv holds `marker`, then its descendants."""
    parents: dict[int, int] = {}
    roots: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        parents[pid] = int(stat.rsplit(")", 1)[1].split()[1])
        if argv and argv[0].endswith(b"chromium") and marker.encode() in argv:
            roots.append(pid)
    tree = list(roots)
    for pid in tree:  # grows while we walk it: breadth first
        tree.extend(child for child, parent in parents.items()
                    if parent == pid and child not in tree)
    return tree


def join_meeting(page: Page, name: str, *, mic: bool = True, camera: bool = True) -> None:
    """On the pre-join screen: set the name and devices, press Join, wait for the meeting."""
    page.wait_for_selector("#join-button:not([disabled])")
    page.fill("#name-input", name)
    for button, wanted in (("#pre-mic", mic), ("#pre-cam", camera)):
        state = "true" if wanted else "false"
        if page.get_attribute(button, "aria-pressed") != state:
            page.click(button)
            page.wait_for_selector(f"{button}[aria-pressed='{state}']")
    page.click("#join-button")
    page.wait_for_selector("#meeting:not([hidden])")


_STATS_JS = """
async () => {
  const pc = window.switchboard && window.switchboard.pc;
  if (!pc) return null;
  const report = await pc.getStats();
  const out = {inbound: [], outbound: [], connectionState: pc.connectionState};
  report.forEach((s) => {
    if (s.type === 'inbound-rtp') {
      out.inbound.push({kind: s.kind, mid: s.mid ?? null, ssrc: s.ssrc,
        packetsReceived: s.packetsReceived ?? 0, bytesReceived: s.bytesReceived ?? 0,
        audioLevel: s.audioLevel ?? null, totalAudioEnergy: s.totalAudioEnergy ?? null,
        framesDecoded: s.framesDecoded ?? null, packetsLost: s.packetsLost ?? 0});
    } else if (s.type === 'outbound-rtp') {
      out.outbound.push({kind: s.kind, mid: s.mid ?? null, ssrc: s.ssrc,
        packetsSent: s.packetsSent ?? 0, bytesSent: s.bytesSent ?? 0,
        framesEncoded: s.framesEncoded ?? null});
    }
  });
  return out;
}
"""


def rtp_stats(page: Page) -> dict[str, Any] | None:
    """{inbound: [...], outbound: [...], connectionState} or None before the meeting starts.
    Each inbound entry: kind, mid, ssrc, packetsReceived, bytesReceived, audioLevel,
    totalAudioEnergy, framesDecoded, packetsLost."""
    result: dict[str, Any] | None = page.evaluate(_STATS_JS)
    return result


def remote_tracks(page: Page) -> dict[str, dict[str, Any]]:
    """mid -> {participant, kind, video_type} of the page's live remote sources."""
    result: dict[str, dict[str, Any]] = page.evaluate(
        """() => {
          const m = window.switchboard && window.switchboard.meeting.media;
          if (!m) return {};
          const out = {};
          for (const [mid, e] of m.remote) {
            out[mid] = {participant: e.participant, kind: e.kind, video_type: e.video_type};
          }
          return out;
        }"""
    )
    return result


_REMOTE_JS = """
async () => {
  const pc = window.switchboard && window.switchboard.pc;
  if (!pc || !pc.remoteDescription) return null;
  const report = await pc.getStats();
  const inbound = [];
  report.forEach((s) => {
    if (s.type !== 'inbound-rtp') return;
    inbound.push({kind: s.kind, mid: s.mid ?? null, ssrc: s.ssrc,
      packetsReceived: s.packetsReceived ?? 0, bytesReceived: s.bytesReceived ?? 0,
      audioLevel: s.audioLevel ?? null, totalAudioEnergy: s.totalAudioEnergy ?? null,
      framesDecoded: s.framesDecoded ?? null, frameWidth: s.frameWidth ?? null});
  });
  return {sdp: pc.remoteDescription.sdp, inbound, state: pc.connectionState};
}
"""


@dataclass(frozen=True)
class RemoteSource:
    """One receive m-line of the applied offer that is live (a=sendonly from the server)."""
    mid: str
    kind: str  # "audio" | "video"
    participant: str  # the sender: a=msid's stream id in the SDP
    tracks_participant: str | None  # the sender by the offer's `tracks` map
    video_type: str | None  # "camera" | "screen" from `tracks`, None for audio
    ssrcs: frozenset[int]
    packets: int  # inbound-rtp packetsReceived of the SDP's SSRC (0 before the first packet)
    audio_level: float
    audio_energy: float
    frames: int  # framesDecoded


def _sdp_sections(sdp: str) -> list[dict[str, Any]]:
    sections = []
    for text in sdp.replace("\r\n", "\n").split("\nm=")[1:]:
        lines = text.split("\n")
        attrs = [line[2:] for line in lines if line.startswith("a=")]
        mid = next((a[4:] for a in attrs if a.startswith("mid:")), None)
        msid = next((a[5:].split()[0] for a in attrs if a.startswith("msid:")), None)
        direction = next((a for a in attrs if a in
                          ("sendrecv", "sendonly", "recvonly", "inactive")), "sendrecv")
        ssrcs = {int(a[5:].split()[0]) for a in attrs if a.startswith("ssrc:")}
        port = lines[0].split()[1] if len(lines[0].split()) > 1 else "0"
        sections.append({"mid": mid, "kind": lines[0].split()[0], "msid": msid,
                         "direction": direction, "ssrcs": ssrcs, "port": port})
    return sections


def _sdp_version(sdp: str) -> int | None:
    for line in sdp.splitlines():
        if line.startswith("o="):
            parts = line.split()
            return int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else None
    return None


def remote_media(browser: Browser, page: Page) -> list[RemoteSource]:
    """The page's live remote sources: mids the server's applied offer sends (a=sendonly),
    each with its sender from a=msid, the `tracks` map of the offer with that revision (as
    Playwright saw it on the socket), and the inbound-rtp stats of the m-line's SSRC."""
    raw: dict[str, Any] | None = page.evaluate(_REMOTE_JS)
    if raw is None:
        return []
    version = _sdp_version(raw["sdp"])
    offers = browser.messages(page, "offer")
    offer = next((o for o in reversed(offers) if o.get("revision") == version),
                 offers[-1] if offers else {})
    tracks: dict[str, Any] = offer.get("tracks") or {}
    out = []
    for section in _sdp_sections(raw["sdp"]):
        if section["direction"] != "sendonly" or section["port"] == "0" or not section["mid"]:
            continue
        stats = [s for s in raw["inbound"] if s["ssrc"] in section["ssrcs"]]
        stat: dict[str, Any] = max(stats, key=lambda s: s["packetsReceived"], default={})
        info = tracks.get(section["mid"]) or {}
        out.append(RemoteSource(
            mid=section["mid"], kind=section["kind"], participant=str(section["msid"]),
            tracks_participant=info.get("participant"), video_type=info.get("video_type"),
            ssrcs=frozenset(section["ssrcs"]), packets=int(stat.get("packetsReceived") or 0),
            audio_level=float(stat.get("audioLevel") or 0.0),
            audio_energy=float(stat.get("totalAudioEnergy") or 0.0),
            frames=int(stat.get("framesDecoded") or 0),
        ))
    return out


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    log.info("screenshot %s", path)
    return path


_TIMING_JS = """
() => {
  const t = window.__joinTiming = {click: null, audio: null, frame: null};
  document.addEventListener('click', (e) => {
    if (t.click === null && e.target.closest && e.target.closest('#join-button')) {
      t.click = performance.now();
    }
  }, true);
  const started = performance.now();
  const timer = setInterval(async () => {
    const pc = window.switchboard && window.switchboard.pc;
    if (performance.now() - started > 60000) clearInterval(timer);
    if (!pc) return;
    const report = await pc.getStats();
    report.forEach((s) => {
      if (s.type !== 'inbound-rtp') return;
      const now = performance.now();
      if (s.kind === 'audio' && s.packetsReceived > 0 && t.audio === null) t.audio = now;
      if (s.kind === 'video' && s.framesDecoded > 0 && t.frame === null) t.frame = now;
    });
    if (t.audio !== null && t.frame !== null) clearInterval(timer);
  }, 20);
}
"""


@dataclass
class Member:
    """One browser that joined a room: its page and its participant id (from `joined`)."""
    browser: Browser
    page: Page
    name: str
    room: str
    id: str

    def messages(self, type_: str | None = None) -> list[dict[str, Any]]:
        return self.browser.messages(self.page, type_)

    def media(self) -> list[RemoteSource]:
        return remote_media(self.browser, self.page)

    def inbound_audio(self) -> dict[str, InboundAudio]:
        """What this member received from each participant recently (see `inbound_audio`)."""
        return inbound_audio(self.page)

    def join_timing(self) -> dict[str, float | None]:
        """Milliseconds from the click on Join to the first remote audio packet and the first
        decoded remote video frame (the page's getStats, polled every 20 ms); None if not
        seen (or the member joined without `measure`)."""
        t: dict[str, float | None] | None = self.page.evaluate("() => window.__joinTiming || null")
        if not t or t.get("click") is None:
            return {"audio_ms": None, "video_ms": None}
        click = float(t["click"] or 0.0)
        return {f"{k}_ms": None if t.get(k) is None else round(float(t[k] or 0.0) - click, 1)
                for k in ("audio", "frame")}


class Crowd:
    """Browsers (one Chromium each) that join rooms of the server at `url`; `close()` closes
    them all, frozen ones included."""

    def __init__(self, playwright: Playwright, workdir: Path, url: str) -> None:
        self.playwright = playwright
        self.workdir = workdir
        self.url = url
        self.browsers: list[Browser] = []

    def open(self, room: str, *, mobile: bool = False,
             audio_file: Path | None = None) -> tuple[Browser, Page]:
        browser = Browser(self.playwright, self.workdir / f"profile-{len(self.browsers)}",
                          mobile=mobile, audio_file=audio_file)  # fmt: skip
        self.browsers.append(browser)
        return browser, browser.open(f"{self.url}/{room}")

    def join(self, room: str, name: str, *, mic: bool = True, camera: bool = True,
             measure: bool = False, audio_file: Path | None = None) -> Member:
        """Open a Chromium (its fake microphone playing `audio_file` if given) and join."""
        browser, page = self.open(room, audio_file=audio_file)
        if measure:
            page.evaluate(_TIMING_JS)
        join_meeting(page, name, mic=mic, camera=camera)
        deadline = time.monotonic() + 10.0
        while not browser.messages(page, "joined"):
            if time.monotonic() > deadline:
                raise AssertionError(f"{name}: no `joined` within 10 s: "
                                     f"{browser.messages(page)[-5:]}")
            page.wait_for_timeout(50)
        joined = browser.messages(page, "joined")[0]
        return Member(browser, page, name, room, str(joined["self"]["id"]))

    def close(self) -> None:
        for browser in self.browsers:
            browser.close()
        self.browsers = []

    def leave(self, member: Member) -> None:
        """Close one member's Chromium: the page goes away without a `leave` message."""
        member.browser.close()
        if member.browser in self.browsers:
            self.browsers.remove(member.browser)


# -- what the page hears from each remote participant -----------------------------------------

PROBE_RATE = 16000
PROBE_FFT = 32768  # AnalyserNode's largest: 2.048 s at 16 kHz

# Every 100 ms each live remote audio source (meeting.media.remote) gets a source node ->
# AnalyserNode (-> a muted gain -> destination, so it is pulled) in one AudioContext at
# PROBE_RATE; gone sources are disconnected. read(): per participant, the last PROBE_FFT
# samples. (The page's <audio> elements keep playing the tracks, which Chromium needs.)
_PROBE_JS = """
([rate, fftSize]) => {
  if (window.__audioProbe) return true;
  const ctx = new AudioContext({sampleRate: rate});
  const sink = ctx.createGain();
  sink.gain.value = 0;
  sink.connect(ctx.destination);
  const nodes = new Map();  // mid -> {participant, track, source, analyser, since}
  const scan = () => {
    const media = window.switchboard && window.switchboard.meeting.media;
    const live = new Set();
    if (media) {
      for (const [mid, e] of media.remote) {
        if (e.kind !== 'audio' || !e.track || e.track.readyState !== 'live') continue;
        live.add(mid);
        const known = nodes.get(mid);
        if (known && known.track === e.track && known.participant === e.participant) continue;
        if (known) { known.source.disconnect(); known.analyser.disconnect(); }
        const source = ctx.createMediaStreamSource(new MediaStream([e.track]));
        const analyser = ctx.createAnalyser();
        analyser.fftSize = fftSize;
        analyser.smoothingTimeConstant = 0;
        source.connect(analyser);
        analyser.connect(sink);
        nodes.set(mid, {participant: e.participant, track: e.track, source, analyser,
                        since: performance.now()});
      }
    }
    for (const [mid, n] of nodes) {
      if (!live.has(mid)) { n.source.disconnect(); n.analyser.disconnect(); nodes.delete(mid); }
    }
    if (ctx.state === 'suspended') ctx.resume();
  };
  setInterval(scan, 100);
  scan();
  window.__audioProbe = {
    read() {
      const out = {};
      for (const [mid, n] of nodes) {
        const buf = new Float32Array(n.analyser.fftSize);
        n.analyser.getFloatTimeDomainData(buf);
        out[n.participant] = {mid, rate: ctx.sampleRate, state: ctx.state,
          age_ms: performance.now() - n.since,
          samples: Array.from(buf, (x) => Math.round(x * 32768))};
      }
      return out;
    },
  };
  return true;
}
"""


@dataclass(frozen=True)
class InboundAudio:
    """The last `samples.size / rate` seconds a page received from one participant."""
    participant: str
    mid: str
    rate: int
    age_s: float  # how long the probe has listened to this source
    samples: npt.NDArray[np.float64]  # in [-1, 1)

    def recent(self, seconds: float) -> npt.NDArray[np.float64]:
        """The newest `seconds` (all if it has not listened that long)."""
        keep = round(min(seconds, self.age_s) * self.rate)
        return self.samples[-keep:] if keep > 0 else self.samples[:0]


def install_audio_probe(page: Page) -> None:
    """Start listening to every remote audio source of the page (idempotent)."""
    page.evaluate(_PROBE_JS, [PROBE_RATE, PROBE_FFT])


def inbound_audio(page: Page) -> dict[str, InboundAudio]:
    """participant id -> what the page received from them in the last 2 s (install the
    probe first; a source it has listened to for less than that is padded with zeros at the
    start: use `recent()`)."""
    raw: dict[str, Any] | None = page.evaluate(
        "() => window.__audioProbe ? window.__audioProbe.read() : null")
    if raw is None:
        raise AssertionError("the audio probe is not installed in this page")
    out = {}
    for participant, entry in raw.items():
        if entry["state"] != "running":
            raise AssertionError(f"the probe's AudioContext is {entry['state']}, not running")
        samples = np.asarray(entry["samples"], dtype=np.float64) / 32768.0
        out[participant] = InboundAudio(participant, str(entry["mid"]), int(entry["rate"]),
                                        float(entry["age_ms"]) / 1000.0, samples)
    return out
