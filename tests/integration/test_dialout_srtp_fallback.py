"""SRTP "optional" on dial-out against a phone without SRTP (issue 16): the carrier is
kamailio over TLS, so the INVITE offers RTP/SAVP with SDES keys; the phone (baresip without
the srtp module) refuses that offer, and Switchboard calls again once with plain RTP/AVP:
the same call id and participant, answered, audio both ways, hung up cleanly."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from peers import audio, procs
from peers.baresip import Baresip
from peers.kamailio_carrier import KamailioCarrier

pytestmark = pytest.mark.integration

ROOM = "standup"
NUMBER = "+15550100"
CALLEE = "+15550199"
SB_PASSWORD = "sb-trunk-secret-8"
CALLEE_HZ, DIALIN_HZ = 1000.0, 400.0


def api_json(server: Any, method: str, path: str, body: object = None) -> Any:
    resp = server.api(method, path, body)
    assert resp.status < 300, resp.text
    return resp.json()


def phones(server: Any) -> list[dict[str, Any]]:
    return [p for p in api_json(server, "GET", f"/api/rooms/{ROOM}/participants")
            if p["kind"] == "phone"]


def hears(phone: Baresip, hz: float) -> bool:
    samples, rate = phone.heard(2.0)
    return audio.hears_tone(samples, rate, hz, min_ratio=0.5, min_active_s=1.0)


def test_a_plain_phone_is_called_again_without_srtp(switchboard_server: Any,
                                                     tmp_workdir: Path) -> None:
    from test_sip_tls import LOOP, self_signed

    cert, key = self_signed(tmp_workdir)
    both = tmp_workdir / "phone.pem"
    both.write_bytes(cert.read_bytes() + key.read_bytes())
    tls_port, udp_port = procs.free_port(kinds=("tcp",)), procs.free_port(kinds=("udp",))
    server = switchboard_server({
        "sip": {"listen": [f"udp:{LOOP}:{udp_port}", f"tls:{LOOP}:{tls_port}"],
                "tls_cert": str(cert), "tls_key": str(key), "tls_ca": str(cert)},
        "dialplan": {"default_country": "1"}})
    assert server.api("POST", "/api/rooms", {"name": ROOM}).status == 201
    with KamailioCarrier(tmp_workdir, subscribers={"sb": SB_PASSWORD, "callee": "callee-pw"},
                         number=NUMBER, trunk_user="sb", tls=(cert, key)) as kam:
        api_json(server, "POST", "/api/trunks", {
            "name": "carrier", "address": kam.tls_address, "transport": "tls",
            "username": "sb", "password": SB_PASSWORD, "register": True, "expires": 60,
            "numbers": [NUMBER], "media_encryption": "optional",
            "allowed_destinations": ["+1555"]})
        if not procs.wait_until(lambda: api_json(server, "GET", "/api/trunks/carrier")
                                ["registration"]["state"] == "registered", 15, 0.2):
            pytest.fail(f"the trunk never registered over TLS:\n{server.log_tail(30)}")
        source = audio.make_tone_wav(tmp_workdir / "callee.wav", CALLEE_HZ, 150.0,
                                     amplitude=0.25)
        dialin_src = audio.make_tone_wav(tmp_workdir / "dialin.wav", DIALIN_HZ, 150.0,
                                         amplitude=0.25)
        with Baresip(tmp_workdir, "plain", user=CALLEE, registrar=kam.tls_address,
                     outbound=f"sip:{kam.tls_address};transport=tls", auth_user="callee",
                     auth_pass="callee-pw", source_wav=source, codecs=("PCMU/8000/1",),
                     extra_config=(f"sip_certificate {both}", f"sip_cafile {cert}"),
                     timeout_s=120) as callee, \
                Baresip(tmp_workdir, "dialin", source_wav=dialin_src,
                        codecs=("PCMU/8000/1",), timeout_s=120) as dialin:
            callee.wait_registered(10)
            assert server.api("POST", "/api/numbers", {"number": "+15550111", "route": "room",
                                                       "room": ROOM}).status == 201
            dialin.dial(f"sip:+15550111@{LOOP}:{udp_port}")
            dialin.wait_event("CALL_ESTABLISHED", 10)
            body = api_json(server, "POST", f"/api/rooms/{ROOM}/dial", {"number": CALLEE})
            call: dict[str, Any] = {}

            def connected() -> bool:
                nonlocal call
                call = api_json(server, "GET", f"/api/calls/{body['id']}")
                return call["state"] in ("connected", "ended")

            if not procs.wait_until(connected, 15, 0.2):
                pytest.fail(f"no answer: {call}\n{server.log_tail(40)}")
            assert call["state"] == "connected", (call, server.log_tail(40))
            assert call["srtp_fallback"] is True, call
            assert call["participant_id"] == body["participant_id"]
            log = server.log_text()
            assert re.search(r"(488|415) to our offer, sending the fallback offer", log), \
                server.log_tail(40)
            assert f"dial-out {body['id']}: SRTP" not in log
            callee.wait_event("CALL_ESTABLISHED", 5)
            callee.poll(3.0)
            assert hears(callee, DIALIN_HZ), audio.analyse(*callee.heard(2.0))
            assert hears(dialin, CALLEE_HZ), audio.analyse(*dialin.heard(2.0))
            callee.hangup()
            if not procs.wait_until(lambda: api_json(server, "GET", f"/api/calls/{body['id']}")
                                    ["state"] == "ended", 10, 0.2):
                pytest.fail("the call did not end")
            dialin.hangup()
            if not procs.wait_until(lambda: phones(server) == [], 10, 0.2):
                pytest.fail(f"phones left behind: {phones(server)}")
    assert SB_PASSWORD not in server.log_text()
