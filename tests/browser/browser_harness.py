"""Driving Debian's Chromium with Playwright for the meeting-page tests.

- `Browser`: one Chromium (a persistent context in a fresh profile directory) with fake
  microphone and camera, loopback-only WebRTC and autoplay allowed; `open(url)` gives a page
  whose console errors and uncaught exceptions are recorded (`errors(page)`).
- `join_meeting(page, name)`: fill the pre-join screen and join.
- `rtp_stats(page)`: the page's inbound/outbound RTP figures from getStats().
- `screenshot(page, name)`: a PNG in tests/browser/artifacts/.
- `wait_for(fn)`: poll a condition with a bound on time.

Chromium must run inside a network namespace with only loopback (PEERS.md): the tests'
conftest fails the run otherwise.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from playwright.sync_api import BrowserContext, ConsoleMessage, Page, Playwright, ViewportSize

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

    def all(self) -> list[str]:
        return self.console_errors + self.page_errors


class Browser:
    """One Chromium process with its own profile. Close it (the fixture does)."""

    def __init__(self, playwright: Playwright, profile: Path, *, mobile: bool = False) -> None:
        options: dict[str, Any] = {"viewport": PHONE if mobile else DESKTOP}
        if mobile:
            options.update(is_mobile=True, has_touch=True, device_scale_factor=2)
        self.context: BrowserContext = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True,
            args=list(CHROMIUM_ARGS), **options,
        )
        self.context.set_default_timeout(DEFAULT_TIMEOUT_MS)
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
        if viewport:
            page.set_viewport_size(viewport)
        page.goto(url)
        return page

    def errors(self, page: Page) -> list[str]:
        return self._logs[page].all() if page in self._logs else []

    def close(self) -> None:
        try:
            self.context.close()
        except Exception:  # the browser may already be gone after a crash
            log.exception("closing Chromium failed")


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


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    log.info("screenshot %s", path)
    return path
