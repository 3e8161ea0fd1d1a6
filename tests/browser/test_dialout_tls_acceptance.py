"""Issue 16's acceptance test, end to end in headless Chromium: a moderator on the meeting
page uses "Call a phone"; Switchboard sends the call over its TLS trunk to the carrier
(kamailio with TLS and digest, the trunk registered to it over TLS), which relays it over
TLS to a baresip phone with `mediaenc=srtp-mand` (SDES-SRTP or nothing). The roster shows
the callee ringing, then in the meeting once the phone answers; the phone's tone reaches
the browser and the browser's microphone reaches the phone (so SRTP is decrypted and
encrypted for real both ways); the moderator removes the phone from the page, the phone
sees the call end, the roster and the API forget it, and the server comes back to rest.

The carrier setup is tests/integration/peers/tls_carrier.py's, shared with
tests/integration/test_dialout_kamailio.py.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Any

import jwt
from browser_harness import Crowd
from conftest import wait_at_rest
from playwright.sync_api import Page, expect
from real_server import SwitchboardProcess
from staples_harness import hears

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "tests" / "integration") not in sys.path:
    sys.path.insert(0, str(REPO / "tests" / "integration"))

from peers import procs  # noqa: E402
from peers.tls_carrier import TRUNK_PASSWORD, TlsCarrierSetup, trunk_body  # noqa: E402

SECRET = "browser-dialout-tls-secret-0123456789abcdef"
ROOM = "carrier-room"
NUMBER = "+15550100"  # the trunk's number (caller ID)
CALLEE = "+15550199"  # the phone's number at the carrier
PHONE_HZ, MIC_HZ = 700.0, 500


def token(room: str) -> str:
    claims: dict[str, Any] = {"room": room, "exp": int(time.time()) + 600,
                              "context": {"user": {"name": "Host", "moderator": True}}}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def people_panel(page: Page) -> None:
    if page.locator("#panel-people").is_hidden():
        page.click("#btn-people")
    expect(page.locator("#panel-people")).to_be_visible()


def phones(server: SwitchboardProcess) -> list[dict[str, Any]]:
    return [p for p in server.api("GET", f"/api/rooms/{ROOM}/participants")
            if p["kind"] == "phone"]


def test_call_a_phone_through_the_tls_carrier(playwright_instance: Any, tmp_path: Path) -> None:
    import phone_harness as ph
    from browser_harness import install_audio_probe

    tls = TlsCarrierSetup(tmp_path)
    server = SwitchboardProcess.start(tmp_path / "switchboard", {
        "sip": tls.switchboard_config(), "auth": {"jwt_secret": SECRET},
        "dialplan": {"default_country": "1"}})
    crowd = Crowd(playwright_instance, tmp_path, server.url)
    try:
        rest_tasks = int(server.api("GET", "/api/stats").get("tasks", 0))
        server.api("POST", "/api/rooms", {"name": ROOM})
        with tls.carrier(NUMBER, {"callee": "callee-pw"}) as kam:
            server.api("POST", "/api/trunks", trunk_body(kam, [NUMBER]))
            if not procs.wait_until(lambda: server.api("GET", "/api/trunks/carrier")
                                    ["registration"]["state"] == "registered", 15, 0.2):
                raise AssertionError(f"the trunk never registered over TLS:\n"
                                     f"{server.log_tail(30)}\n{kam.log_tail(30)}")
            with tls.srtp_phone(kam, "callee", user=CALLEE, auth_user="callee",
                                auth_pass="callee-pw", answermode="manual", tone_hz=PHONE_HZ,
                                codecs=("PCMU/8000/1",), timeout_s=150) as phone:
                phone.wait_registered(10)
                member = crowd.join(f"{ROOM}?jwt={token(ROOM)}", "Host", camera=False,
                                    audio_file=ph.fake_mic_wav(tmp_path / "mic.wav", MIC_HZ))
                page = member.page
                install_audio_probe(page)
                people_panel(page)
                expect(page.locator("#dialout-form")).to_be_visible(timeout=5_000)

                # "Call a phone": ringing in the roster at once, over TLS to the carrier
                page.fill("#dialout-number", "555 0199")  # national: +1 by default
                page.click("#dialout-call")
                phone.wait_event("CALL_INCOMING", 15)
                callee = page.locator("#people-list li.person").filter(
                    has_text="Phone").filter(has_not_text="You")
                expect(callee).to_have_count(1, timeout=5_000)
                expect(callee.locator(".dialout-state")).to_have_text("Ringing… Cancel",
                                                                      timeout=5_000)
                assert CALLEE not in callee.inner_text()  # masked as for dial-in
                (ringing,) = phones(server)
                assert ringing["state"] == "ringing", ringing
                calls = page.evaluate("[...window.switchboard.dialout.calls.values()]")
                assert len(calls) == 1, calls
                call_id = calls[0]

                # the phone answers: an ordinary participant, SRTP end to end
                phone.accept()
                phone.wait_event("CALL_ESTABLISHED", 10)
                expect(callee.locator(".dialout-state")).to_have_count(0, timeout=5_000)
                expect(callee).to_have_count(1)
                (answered,) = phones(server)
                assert answered["state"] == "in-meeting", answered
                assert server.api("GET", f"/api/calls/{call_id}")["state"] == "connected"
                log = server.log_path.read_text(errors="replace")
                assert f"dial-out {call_id}: SRTP (AES_CM_128_HMAC_SHA1_80)" in log, \
                    server.log_tail(40)
                assert "407, answering the challenge" in log  # the carrier's digest

                # tones both ways: the phone's in the browser, the browser's at the phone
                hears(member, answered["id"], PHONE_HZ, 20.0)
                got: dict[float, float] = {}

                def phone_hears_mic() -> bool:
                    nonlocal got
                    samples, rate = phone.heard(2.0)
                    got = ph.bands(samples, rate, [float(MIC_HZ), 2500.0])
                    return got[float(MIC_HZ)] > 1e-5 and got[float(MIC_HZ)] > 20 * got[2500.0]

                if not procs.wait_until(phone_hears_mic, 15, 0.5):
                    raise AssertionError(f"the phone never heard the browser's {MIC_HZ} Hz: "
                                         f"{got}")

                # the moderator removes the phone: BYE reaches it, the roster updates
                mark = time.monotonic()
                callee.get_by_role("button",
                                   name=re.compile(r"^Remove .* from the meeting$")).click()
                page.get_by_role("dialog").get_by_role("button", name="Remove",
                                                       exact=True).click()
                phone.wait_event("CALL_CLOSED", 15, predicate=lambda e: e.at > mark)
                expect(callee).to_have_count(0, timeout=10_000)
                if not procs.wait_until(lambda: not phones(server), 10, 0.2):
                    raise AssertionError(f"the phone stayed in the room: {phones(server)}")
                assert server.api("GET", f"/api/calls/{call_id}")["state"] == "ended"
        crowd.close()
        wait_at_rest(server, rest_tasks, 20.0)
        stats = server.api("GET", "/api/stats")
        assert stats["calls"] == 0 and stats["dialout_calls"] == 0, stats
        assert stats["rtp_ports_in_use"] == 0, stats
        text = server.log_path.read_text(errors="replace")
        assert TRUNK_PASSWORD not in text
        bad = [line for line in text.splitlines() if " ERROR " in line
               or " CRITICAL " in line or line.startswith("Traceback")]  # fmt: skip
        assert not bad, "\n".join(bad[:20])
    finally:
        crowd.close()
        assert server.stop(), f"switchboard did not stop on SIGTERM:\n{server.log_tail()}"
