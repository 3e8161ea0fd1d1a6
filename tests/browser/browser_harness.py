"""Driving Debian's Chromium with Playwright for the meeting-page tests.

- `Browser`: one Chromium (a persistent context in a fresh profile directory) with fake
  microphone and camera, loopback-only WebRTC and autoplay allowed; `open(url)` gives a page
  whose console errors and uncaught exceptions are recorded (`errors(page)`). With
  `audio_file=WAV` the fake microphone plays that file (looped) instead of its beep.
- `join_meeting(page, name)`: fill the pre-join screen and join.
- `screenshot(page, name)`: a PNG in tests/browser/artifacts/.
- `wait_for(fn)`: poll a condition with a bound on time.
- `Browser.messages(page, type)`: the signaling messages the page received over /ws, as
  Chromium saw them on the wire (recorded by Playwright, not by the page's code).
- `Crowd` / `Member`: browsers joined to rooms of a server, each with its participant id.
- `Browser.freeze()` / `Browser.kill()`: SIGSTOP / SIGKILL this Chromium's own processes (found
  by its profile directory), to make a participant vanish without a word.

What the page sends and receives (`rtp_stats`, `remote_tracks`, `remote_media`,
`RemoteSource`, `install_audio_probe`, `inbound_audio`, `InboundAudio`) is read out of the page
by `page_media.py` and re-exported here.

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
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from playwright.sync_api import (
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    ViewportSize,
    WebSocket,
)

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # the tests import this directory's modules top-level
    sys.path.insert(0, _HERE)

from page_media import (  # noqa: E402
    PROBE_FFT,
    PROBE_RATE,
    InboundAudio,
    RemoteSource,
    inbound_audio,
    install_audio_probe,
    remote_media,
    remote_tracks,
    rtp_stats,
)

__all__ = [
    "ARTIFACTS",
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "DEFAULT_TIMEOUT_MS",
    "DESKTOP",
    "PHONE",
    "PROBE_FFT",
    "PROBE_RATE",
    "Browser",
    "Crowd",
    "InboundAudio",
    "Member",
    "PageLog",
    "RemoteSource",
    "inbound_audio",
    "install_audio_probe",
    "join_meeting",
    "loopback_up",
    "network_interfaces",
    "remote_media",
    "remote_tracks",
    "rtp_stats",
    "screenshot",
    "wait_for",
]

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
                 audio_file: Path | None = None, extra_args: Sequence[str] = (),
                 executable: Path | None = None) -> None:
        """`executable`: what to launch instead of Chromium itself (a wrapper that runs it
        in another network namespace, tests/browser/netlab.py)."""
        options: dict[str, Any] = {"viewport": PHONE if mobile else DESKTOP}
        if mobile:
            options.update(is_mobile=True, has_touch=True, device_scale_factor=2)
        args = [*CHROMIUM_ARGS, *extra_args]
        if audio_file is not None:
            # A 16-bit PCM WAV, played in a loop as the fake microphone.
            if not audio_file.is_file():
                raise FileNotFoundError(f"fake microphone file {audio_file} is missing")
            args.append(f"--use-file-for-fake-audio-capture={audio_file}")
        self.audio_file = audio_file
        self.context: BrowserContext = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(executable or CHROMIUM), headless=True,
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
