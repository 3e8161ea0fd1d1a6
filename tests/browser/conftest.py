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
"""

from __future__ import annotations

import logging
import os
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
