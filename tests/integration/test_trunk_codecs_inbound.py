"""A trunk's codecs on its inbound calls (issue 16): a call that matched a trunk limited to
one codec is answered with that codec only, whatever else it offers, and refused (488) when
it does not offer it; a caller that matches no trunk still gets our first choice."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from peers import procs
from peers.baresip import Baresip
from peers.sip_client import SipClient

pytestmark = pytest.mark.integration

ROOM = "codecs"
NUMBER = "+15550140"
OFFER_ALL = ("v=0\r\no=- 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
             "m=audio {port} RTP/AVP 9 0 8 101\r\na=rtpmap:9 G722/8000\r\n"
             "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
             "a=rtpmap:101 telephone-event/8000\r\n")


def audio_line(body: str) -> str:
    match = re.search(r"^m=audio .*$", body, re.M)
    assert match, body
    return match.group().strip()


def phones(server: Any) -> list[dict[str, Any]]:
    resp = server.api("GET", f"/api/rooms/{ROOM}/participants")
    assert resp.status == 200, resp.text
    return [p for p in resp.json() if p["kind"] == "phone"]


def test_a_trunk_limited_to_pcma_answers_pcma_only(switchboard_server: Any,
                                                   tmp_workdir: Path) -> None:
    server = switchboard_server({"dialplan": {"default_country": "1"}})
    assert server.api("POST", "/api/rooms", {"name": ROOM}).status == 201
    resp = server.api("POST", "/api/numbers", {"number": NUMBER, "route": "room", "room": ROOM})
    assert resp.status == 201, resp.text
    for name, source in (("pbx", "127.0.0.5"), ("phones", "127.0.0.1")):
        resp = server.api("POST", "/api/trunks", {
            "name": name, "address": source, "transport": "udp", "codecs": ["PCMA"],
            "allowed_addresses": [f"{source}/32"]})
        assert resp.status == 201, resp.text

    with SipClient("127.0.0.5", server.sip_address) as pbx:
        # G.722, PCMU and PCMA offered: the trunk's PCMA is the answer, nothing else
        assert pbx.call(NUMBER, sdp=OFFER_ALL) == [200]
        assert audio_line(pbx.responses[0].body).endswith("RTP/AVP 8 101")
        # PCMU alone: nothing in common with the trunk
        assert pbx.call(NUMBER) == [488]
    with SipClient("127.0.0.6", server.sip_address) as outsider:  # no trunk: every codec
        assert outsider.call(NUMBER, sdp=OFFER_ALL) == [200]
        assert audio_line(outsider.responses[0].body).split()[3] == "9"  # G.722 first
    assert re.search(r"over trunk pbx \(by address\)", server.log_text()), server.log_tail(30)

    # a real phone behind the trunk offering PCMU then PCMA talks PCMA
    with Baresip(tmp_workdir, "alice", tone_hz=440.0, timeout_s=60) as alice:
        alice.dial(f"sip:{NUMBER}@{server.sip_address}")
        alice.wait_event("CALL_ESTABLISHED", 10)
        if not procs.wait_until(lambda: phones(server), 10, 0.2):
            pytest.fail(f"the caller never reached the room:\n{server.log_tail(40)}")
        assert re.search(r"over trunk phones \(by address\)", server.log_text())
        media = re.findall(r"remote media 127\.0\.0\.1:\d+ (.*) dtmf=", server.log_text())
        assert media and "PCMA" in media[-1] and "PCMU" not in media[-1], media
        alice.hangup()
        if not procs.wait_until(lambda: phones(server) == [], 10, 0.2):
            pytest.fail("the caller stayed in the room after hanging up")
