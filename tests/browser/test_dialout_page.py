""""Call a phone" on the meeting page, in headless Chromium against the real server
(issue 16, section 2): a moderator (a token with the moderator claim) dials a number from
the participants pane; the phone (baresip, as the far end of a trunk) rings, and the page
shows the callee at once with "Ringing…"; it answers and is an ordinary phone participant;
it hangs up and leaves. A second call is cancelled from the page while it rings, and the
phone sees the call end. A guest sees no such control; a number outside the trunk's
allowed destinations is refused with its reason. A phone called from the page and the
browser hear each other (tones both ways).
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Any

import jwt
from browser_harness import join_meeting
from playwright.sync_api import Page, expect

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "tests" / "integration") not in sys.path:
    sys.path.insert(0, str(REPO / "tests" / "integration"))

from peers.baresip import Baresip  # noqa: E402

SECRET = "browser-dialout-secret-0123456789abcdef"
SWITCHBOARD_CONFIG = {"auth": {"jwt_secret": SECRET}, "dialplan": {"default_country": "1"}}
ROOM = "dialout-room"
CALLEE = "+15550199"


def token(room: str, moderator: bool = True) -> str:
    claims: dict[str, Any] = {"room": room, "exp": int(time.time()) + 600,
                              "context": {"user": {"name": "Host", "moderator": moderator}}}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def people_panel(page: Page) -> None:
    if page.locator("#panel-people").is_hidden():
        page.click("#btn-people")
    expect(page.locator("#panel-people")).to_be_visible()


def test_a_moderator_calls_a_phone_from_the_page(browser: Any, module_switchboard: Any,
                                                 tmp_path: Path) -> None:
    server = module_switchboard
    server.api("POST", "/api/rooms", {"name": ROOM})
    with Baresip(tmp_path, "callee", user=CALLEE, answermode="manual", tone_hz=700.0,
                 codecs=("PCMU/8000/1",), timeout_s=120) as phone:
        server.api("POST", "/api/trunks", {
            "name": "pbx", "address": f"127.0.0.1:{phone.sip_port}", "transport": "udp",
            "numbers": ["+15550100"], "allowed_destinations": ["+1555"]})
        host = browser.open(f"{server.url}/{ROOM}?jwt={token(ROOM)}")
        join_meeting(host, "Host", camera=False)
        people_panel(host)
        form = host.locator("#dialout-form")
        expect(form).to_be_visible(timeout=5_000)
        expect(host.locator("#dialout-country")).to_contain_text("+1")

        # refused: outside the trunk's allowed destinations; nothing rings
        host.fill("#dialout-number", "+441632960000")
        host.click("#dialout-call")
        expect(host.locator(".toast").filter(has_text="allowed_destinations")).to_be_visible()

        # 1. ringing, answered, in the meeting, hung up by the phone
        host.fill("#dialout-number", "555 0199")  # national: +1 by default
        host.click("#dialout-call")
        phone.wait_event("CALL_INCOMING", 10)
        callee = host.locator("#people-list li.person").filter(has_text="Phone").filter(
            has_not_text="You")
        expect(callee).to_have_count(1, timeout=5_000)
        expect(callee.locator(".dialout-state")).to_have_text("Ringing… Cancel")
        assert CALLEE not in callee.inner_text()  # masked
        phone.accept()
        phone.wait_event("CALL_ESTABLISHED", 10)
        expect(callee.locator(".dialout-state")).to_have_count(0, timeout=5_000)
        expect(callee).to_have_count(1)
        phone.hangup()
        expect(callee).to_have_count(0, timeout=10_000)

        # 2. cancelled from the page while it rings
        mark = time.monotonic()
        host.fill("#dialout-number", CALLEE)
        host.click("#dialout-call")
        phone.wait_event("CALL_INCOMING", 10, predicate=lambda e: e.at > mark)
        expect(callee.locator(".dialout-cancel")).to_be_visible(timeout=5_000)
        callee.locator(".dialout-cancel").click()
        phone.wait_event("CALL_CLOSED", 10, predicate=lambda e: e.at > mark)
        expect(callee.locator(".dialout-state")).to_have_text("Cancelled", timeout=5_000)
        expect(callee).to_have_count(0, timeout=15_000)  # gone after a few seconds

        # 3. a moderator removing the ringing callee from the meeting cancels its call
        mark = time.monotonic()
        host.fill("#dialout-number", CALLEE)
        host.click("#dialout-call")
        phone.wait_event("CALL_INCOMING", 10, predicate=lambda e: e.at > mark)
        expect(callee.locator(".dialout-state")).to_contain_text("Ringing", timeout=5_000)
        callee.get_by_role("button", name=re.compile(r"^Remove .* from the meeting$")).click()
        host.get_by_role("dialog").get_by_role("button", name="Remove", exact=True).click()
        phone.wait_event("CALL_CLOSED", 10, predicate=lambda e: e.at > mark)
        expect(callee).to_have_count(0, timeout=10_000)

        # a guest sees no "Call a phone"
        guest = browser.open(f"{server.url}/{ROOM}")
        join_meeting(guest, "Guest", camera=False)
        people_panel(guest)
        expect(guest.locator("#dialout-form")).to_be_hidden()
        for page in (host, guest):
            page.close()


def test_the_called_phone_and_the_browser_hear_each_other(crowd: Any, module_switchboard: Any,
                                                          tmp_path: Path) -> None:
    """The moderator dials from the page; the phone answers at once (auto-answer); its
    tone reaches the browser (the page's WebAudio probe on the phone's source) and the
    browser's fake microphone reaches the phone (its recording)."""
    import phone_harness as ph
    from browser_harness import install_audio_probe

    server = module_switchboard
    room, phone_hz, mic_hz = "dialout-tones", 700.0, 500
    server.api("POST", "/api/rooms", {"name": room})
    with Baresip(tmp_path, "tones", user="+16660198", tone_hz=phone_hz,
                 codecs=("PCMU/8000/1",), timeout_s=120) as phone:
        server.api("POST", "/api/trunks", {
            "name": "pbx2", "address": f"127.0.0.1:{phone.sip_port}", "transport": "udp",
            "allowed_destinations": ["+1666"]})
        member = crowd.join(f"{room}?jwt={token(room)}", "Host", camera=False,
                            audio_file=ph.fake_mic_wav(tmp_path / "mic.wav", mic_hz))
        install_audio_probe(member.page)
        people_panel(member.page)
        member.page.fill("#dialout-number", "+16660198")
        member.page.click("#dialout-call")
        phone.wait_event("CALL_ESTABLISHED", 10)
        phones = [p for p in server.api("GET", f"/api/rooms/{room}/participants")
                  if p["kind"] == "phone"]
        assert len(phones) == 1 and phones[0]["state"] == "in-meeting", phones
        samples, rate = ph.inbound_from(member, phones[0]["id"], 2.0, timeout=15.0)
        power = ph.bands(samples, rate, [phone_hz, 2500.0])
        assert power[phone_hz] > 1e-5 and power[phone_hz] > 20 * power[2500.0], \
            ph.describe(samples, rate, [phone_hz])
        time.sleep(2.0)
        heard, prate = phone.heard(2.0)
        got = ph.bands(heard, prate, [float(mic_hz), 2500.0])
        assert got[float(mic_hz)] > 1e-5 and got[float(mic_hz)] > 20 * got[2500.0], \
            ph.describe(heard, prate, [float(mic_hz)])
        phone.hangup()
        phone.wait_event("CALL_CLOSED", 10)
