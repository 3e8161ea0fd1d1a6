"""A smoke test of the meeting page against `switchboard serve`: two browsers meet, hear and
see each other, and find the room's dial-in number and PIN. (The full acceptance tests of
the browser-meetings issue live beside this one.)"""

from __future__ import annotations

import re
import time
from typing import Any

from browser_harness import join_meeting, rtp_stats, screenshot, wait_for
from playwright.sync_api import Page, expect

ROOM = "smoke-test"


def _inbound(page: Page, kind: str) -> list[dict[str, Any]]:
    stats = rtp_stats(page)
    return [s for s in (stats or {}).get("inbound", []) if s["kind"] == kind]


def test_two_browsers_meet_on_the_real_server(browser: Any, switchboard: Any) -> None:
    switchboard.api("POST", "/api/numbers", {
        "number": "+15550100", "route": "pin", "formattedNumber": "+1 555 0100",
        "countryCode": "US",
    })
    pages = []
    for name in ("Ada Lovelace", "Grace Hopper"):
        page = browser.open(f"{switchboard.url}/{ROOM}")
        join_meeting(page, name)
        pages.append(page)
    for page in pages:
        expect(page.locator("#grid .tile")).to_have_count(2)

        def heard(p: Page = page) -> bool:  # packets and a level above zero (the fake mic beeps)
            return any(s["packetsReceived"] > 0 and (s["audioLevel"] or 0) > 0
                       for s in _inbound(p, "audio"))

        def frames(p: Page = page) -> int:
            return sum(s["framesDecoded"] or 0 for s in _inbound(p, "video"))

        wait_for(heard, timeout=20, message="remote audio with a level")
        # Video: decoded frames keep rising.
        first = wait_for(frames, timeout=20, message="remote video frames")
        time.sleep(1.0)
        assert frames() > first
        expect(page.locator("#grid .tile:not(.self)")).not_to_have_class(re.compile("video-hidden"))
        expect(page.locator("#quality-button")).to_have_attribute("data-level", "good")

    pin = switchboard.api("GET", f"/api/rooms/{ROOM}")["pin"]
    pages[0].click("#topbar-info")
    expect(pages[0].locator("#dialin-numbers a")).to_have_text(["+1 555 0100"])
    expect(pages[0].locator("#dialin-pin")).to_have_text(
        " ".join(pin[i:i + 3] for i in range(0, len(pin), 3)))
    pages[0].click("#panel-close")
    screenshot(pages[0], "real-2-desktop")
    for page in pages:
        assert browser.errors(page) == []
