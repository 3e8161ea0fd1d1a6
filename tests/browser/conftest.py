"""Fixtures for the browser tests (headless Chromium driven by Playwright).

Run them apart from the other tests, inside a network namespace with only loopback:

    unshare -n bash -c 'ip link set lo up; .venv/bin/pytest tests/browser -q'

- `browser_environment` (session, autouse): FAILS the run (never skips) when the process
  can reach any interface but `lo`, when `lo` is down, when /usr/bin/chromium is missing, or
  when Playwright is not installed.
- `browser` / `phone_browser`: a fresh Chromium (desktop 1280x800, or a touch phone 390x844)
  per test, closed afterwards.
- `open_page(browser, url)`: a page whose console errors are recorded; `page_errors(page)`.
- `fake_server`: the scripted signaling server of fake_signaling.py serving the real pages.
- `switchboard`: the real server (`switchboard serve`), for the acceptance tests.
- `module_switchboard`: one real server for a whole test module, with the module's
  `SWITCHBOARD_CONFIG` (tables of extra config) if it has one; after the module it must be
  at rest (no endpoint, browser, participant or conference left, no more asyncio tasks than
  at the start) and its log free of ERROR lines and tracebacks, or the module ends with an
  error.
- `crowd`: a `browser_harness.Crowd` on `module_switchboard`; after the test its browsers
  are closed and the server must come back to rest within 15 s.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

log = logging.getLogger(__name__)


@pytest.fixture(scope="session", autouse=True)
def browser_environment() -> None:
    from browser_harness import CHROMIUM, loopback_up, network_interfaces

    interfaces = network_interfaces()
    if interfaces != ["lo"]:
        pytest.fail(
            f"browser tests must run in a network namespace with only loopback, found "
            f"interfaces {interfaces}. Run: unshare -n bash -c 'ip link set lo up; "
            f".venv/bin/pytest tests/browser -q'",
            pytrace=False,
        )
    if not loopback_up():
        pytest.fail("the loopback interface is down: run `ip link set lo up` in the namespace "
                    "first", pytrace=False)
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"{CHROMIUM} is missing: install the Debian package `chromium` "
            f"(apt-get install -y --no-install-recommends chromium)",
            pytrace=False,
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail("Python playwright is missing: pip install -e '.[dev]'", pytrace=False)


@pytest.fixture(scope="session")
def playwright_instance() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture
def browser(playwright_instance: Any, tmp_path: Path) -> Iterator[Any]:
    from browser_harness import Browser

    b = Browser(playwright_instance, tmp_path / "profile")
    yield b
    b.close()


@pytest.fixture
def phone_browser(playwright_instance: Any, tmp_path: Path) -> Iterator[Any]:
    from browser_harness import Browser

    b = Browser(playwright_instance, tmp_path / "phone-profile", mobile=True)
    yield b
    b.close()


@pytest.fixture
def fake_server() -> Iterator[Any]:
    from fake_signaling import FakeSignalingServer

    server = FakeSignalingServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def switchboard(tmp_path: Path) -> Iterator[Any]:
    """`switchboard serve` on loopback ports (real_server.SwitchboardProcess), stopped after
    the test; its log tail is printed when it does not stop cleanly."""
    from real_server import SwitchboardProcess

    server = SwitchboardProcess.start(tmp_path / "switchboard")
    yield server
    if not server.stop():
        pytest.fail(f"switchboard did not stop on SIGTERM:\n{server.log_tail()}", pytrace=False)


# Figures of /api/stats that must come back to 0 when nobody is connected.
REST_ZERO = ("endpoints", "browsers", "participants", "conferences", "bridge_conferences",
             "meeting_rooms")

_REST_TASKS: dict[str, int] = {}  # server url -> asyncio tasks when it had just started


def _unrest(server: Any, baseline_tasks: int) -> dict[str, int]:
    """The figures that are not at rest (empty when the server is at rest)."""
    stats = server.api("GET", "/api/stats")
    out = {k: stats.get(k, -1) for k in REST_ZERO if stats.get(k, -1) != 0}
    if stats.get("tasks", 0) > baseline_tasks:
        out["tasks"] = stats["tasks"]
    return out


def wait_at_rest(server: Any, baseline_tasks: int, timeout: float) -> None:
    """pytest.fail unless the server comes to rest within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    left = _unrest(server, baseline_tasks)
    while left and time.monotonic() < deadline:
        time.sleep(0.25)
        left = _unrest(server, baseline_tasks)
    if left:
        pytest.fail(f"the server is not at rest {timeout:.0f} s after everyone left: {left} "
                    f"(tasks at start: {baseline_tasks})\n{server.log_tail(40)}",
                    pytrace=False)


@pytest.fixture(scope="module")
def module_switchboard(request: pytest.FixtureRequest,
                       tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from real_server import SwitchboardProcess

    extra = getattr(request.module, "SWITCHBOARD_CONFIG", None)
    server = SwitchboardProcess.start(tmp_path_factory.mktemp("switchboard"), extra)
    try:
        _REST_TASKS[server.url] = int(server.api("GET", "/api/stats").get("tasks", 0))
        yield server
        wait_at_rest(server, _REST_TASKS[server.url], 20.0)
        logged = server.log_path.read_text(errors="replace").splitlines()
        bad = [line for line in logged if " ERROR " in line or " CRITICAL " in line
               or line.startswith("Traceback")]  # fmt: skip
        if bad:
            pytest.fail("the server logged errors:\n" + "\n".join(bad[:20]), pytrace=False)
    finally:
        if not server.stop():
            pytest.fail(f"switchboard did not stop on SIGTERM:\n{server.log_tail()}",
                        pytrace=False)


@pytest.fixture
def crowd(playwright_instance: Any, tmp_path: Path, module_switchboard: Any) -> Iterator[Any]:
    from browser_harness import Crowd

    people = Crowd(playwright_instance, tmp_path, module_switchboard.url)
    try:
        yield people
    finally:
        people.close()
    wait_at_rest(module_switchboard, _REST_TASKS[module_switchboard.url], 15.0)
