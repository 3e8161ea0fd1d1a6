"""Dial-out through a real carrier (issue 16, sections 2 and 4), over UDP:

kamailio is the carrier (digest on every INVITE: 407 answered with the trunk's
credentials); Switchboard registers to it; a baresip phone registered at kamailio under
the number +15550199 is dialled from a room through the API; it answers (auto-answer) and
gets the DTMF string; tones go both ways between it and a second phone that dialled in;
hang-up from either side ends the call cleanly (nothing left in the gateway, GET
/api/calls/{id} says ended); a phone that does not answer is cancelled while ringing (DELETE)
or by the ringing timeout; a number outside the trunk's allowed_destinations is refused by
the API and never reaches the carrier.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from peers import audio, procs
from peers.baresip import Baresip
from peers.kamailio_carrier import KamailioCarrier

pytestmark = pytest.mark.integration

ROOM = "standup"
NUMBER = "+15550100"  # the trunk's number: dial-in, and the caller ID of dial-outs
CALLEE = "+15550199"
SILENT = "+15550198"  # registered, never answers
SB_PASSWORD = "sb-trunk-secret-7"
CALLEE_HZ, DIALIN_HZ = 1000.0, 400.0


def participants(server: Any) -> list[dict[str, Any]]:
    resp = server.api("GET", f"/api/rooms/{ROOM}/participants")
    assert resp.status == 200, resp.text
    result: list[dict[str, Any]] = resp.json()
    return result


def call_state(server: Any, call_id: str) -> dict[str, Any]:
    resp = server.api("GET", f"/api/calls/{call_id}")
    assert resp.status == 200, resp.text
    result: dict[str, Any] = resp.json()
    return result


def wait_call(server: Any, call_id: str, state: str, timeout: float) -> dict[str, Any]:
    last: dict[str, Any] = {}

    def reached() -> bool:
        nonlocal last
        last = call_state(server, call_id)
        return last["state"] == state

    if not procs.wait_until(reached, timeout, 0.1):
        pytest.fail(f"call {call_id} never {state} in {timeout:.0f} s: {last}\n"
                    f"{server.log_tail(40)}")
    return last


def stats(server: Any) -> dict[str, int]:
    result: dict[str, int] = server.api("GET", "/api/stats").json()
    return result


def dial(server: Any, number: str, **extra: Any) -> dict[str, str]:
    resp = server.api("POST", f"/api/rooms/{ROOM}/dial", {"number": number, **extra})
    assert resp.status == 202, resp.text
    body: dict[str, str] = resp.json()
    return body


def cli(server: Any, *args: str) -> str:
    """`python -m switchboard ARGS --config ...` against the running server; its output."""
    result = subprocess.run(
        [sys.executable, "-m", "switchboard", *args, "--config", str(server.config_path)],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


def hears(phone: Baresip, hz: float) -> bool:
    samples, rate = phone.heard(2.0)
    return audio.hears_tone(samples, rate, hz, min_ratio=0.5, min_active_s=1.0)


def test_dial_out_through_the_carrier(switchboard_server: Any, tmp_workdir: Path) -> None:
    server = switchboard_server({"dialplan": {"default_country": "1"}})
    assert server.api("POST", "/api/rooms", {"name": ROOM}).status == 201
    assert server.api("POST", "/api/numbers", {"number": NUMBER, "route": "room",
                                               "room": ROOM}).status == 201
    with KamailioCarrier(tmp_workdir, subscribers={"sb": SB_PASSWORD, "callee": "callee-pw",
                                                   "silent": "silent-pw"},
                         number=NUMBER, trunk_user="sb") as kam:
        resp = server.api("POST", "/api/trunks", {
            "name": "carrier", "address": kam.address, "transport": "udp", "username": "sb",
            "password": SB_PASSWORD, "register": True, "expires": 60, "numbers": [NUMBER],
            "media_encryption": "off", "allowed_destinations": ["+1555"]})
        assert resp.status == 201, resp.text
        if not procs.wait_until(lambda: server.api("GET", "/api/trunks/carrier").json()
                                ["registration"]["state"] == "registered", 15, 0.2):
            pytest.fail(f"the trunk never registered:\n{server.log_tail(30)}")

        # the toll-fraud guard: refused by the API, nothing reaches the carrier
        resp = server.api("POST", f"/api/rooms/{ROOM}/dial",
                          {"number": "+88213000000", "trunk": "carrier"})
        assert resp.status == 403 and "allowed_destinations" in resp.json()["error"], resp.text
        resp = server.api("POST", f"/api/rooms/{ROOM}/dial", {"number": "+4420794600"})
        assert resp.status == 403, resp.text
        assert "+88213" not in kam.log_text() and "+4420" not in kam.log_text()

        source = audio.make_tone_wav(tmp_workdir / "callee.wav", CALLEE_HZ, 150.0,
                                     amplitude=0.25)
        dialin_src = audio.make_tone_wav(tmp_workdir / "dialin.wav", DIALIN_HZ, 150.0,
                                         amplitude=0.25)
        with Baresip(tmp_workdir, "callee", user=CALLEE, registrar=kam.address,
                     auth_user="callee", auth_pass="callee-pw", source_wav=source,
                     codecs=("PCMU/8000/1",), timeout_s=150) as callee, \
                Baresip(tmp_workdir, "silent", user=SILENT, registrar=kam.address,
                        auth_user="silent", auth_pass="silent-pw", answermode="manual",
                        codecs=("PCMU/8000/1",), timeout_s=150) as silent, \
                Baresip(tmp_workdir, "dialin", source_wav=dialin_src,
                        codecs=("PCMU/8000/1",), timeout_s=150) as dialin:
            callee.wait_registered(10)
            silent.wait_registered(10)
            dialin.dial(server.sip_uri(NUMBER))  # straight to the room by its number
            dialin.wait_event("CALL_ESTABLISHED", 10)
            if not procs.wait_until(lambda: len(participants(server)) == 1, 10, 0.1):
                pytest.fail(f"the dial-in phone never joined:\n{server.log_tail(30)}")

            # 1. dialled, answered, DTMF, tones both ways; the callee hangs up
            body = dial(server, "5550199", trunk="carrier", dtmf="1,#")  # national form
            pid = body["participant_id"]
            roster = {p["id"]: p for p in participants(server)}
            assert roster[pid]["kind"] == "phone", roster
            assert roster[pid]["state"] in ("calling", "ringing", "in-meeting"), roster
            assert CALLEE not in roster[pid]["name"]  # masked as for dial-in callers
            connected = wait_call(server, body["id"], "connected", 15)
            assert connected["participant_state"] == "in-meeting", connected
            callee.wait_event("CALL_ESTABLISHED", 5)
            roster = {p["id"]: p for p in participants(server)}
            assert roster[pid]["state"] == "in-meeting", roster
            log = server.log_text()
            assert re.search(rf"dial-out {body['id']}: dialing -> ringing", log), \
                server.log_tail(40)
            assert "407, answering the challenge" in log
            assert SB_PASSWORD not in log
            callee.poll(3.5)
            assert callee.received_dtmf() == "1#", callee.events
            assert hears(callee, DIALIN_HZ), audio.analyse(*callee.heard(2.0))
            assert hears(dialin, CALLEE_HZ), audio.analyse(*dialin.heard(2.0))
            # caller ID: one of the trunk's numbers
            assert re.search(r"From: <sip:\+15550100@", callee.log_tail(400)) or \
                NUMBER in kam.log_text(), "caller ID not the trunk's number"
            callee.hangup()
            ended = wait_call(server, body["id"], "ended", 10)
            assert ended["reason"] == "bye", ended
            if not procs.wait_until(lambda: len(participants(server)) == 1, 10, 0.1):
                pytest.fail(f"the callee stayed in the room: {participants(server)}")
            assert stats(server)["dialout_calls"] == 0

            # 2. again, with the command line, and the room's side hangs up (calls hangup,
            # the API's DELETE)
            mark = time.monotonic()
            out = cli(server, "dial", ROOM, CALLEE, "--trunk", "carrier", "--wait")
            body = {"id": json.loads(out)["id"]}
            assert json.loads(out)["state"] == "connected", out
            callee.wait_event("CALL_ESTABLISHED", 5, predicate=lambda e: e.at > mark)
            cli(server, "calls", "hangup", body["id"])
            callee.wait_event("CALL_CLOSED", 5, predicate=lambda e: e.at > mark)
            ended = wait_call(server, body["id"], "ended", 5)
            assert ended["participant_state"] == "ended", ended

            # 3. a phone that does not answer: cancelled while ringing (no trunk named:
            # the only one that fits is used)
            body = dial(server, SILENT)
            silent.wait_event("CALL_INCOMING", 10)
            wait_call(server, body["id"], "ringing", 5)
            roster = {p["id"]: p for p in participants(server)}
            assert roster[body["participant_id"]]["state"] == "ringing", roster
            assert server.api("DELETE", f"/api/calls/{body['id']}").status == 204
            silent.wait_event("CALL_CLOSED", 5)
            ended = wait_call(server, body["id"], "ended", 5)
            assert ended["participant_state"] == "cancelled", ended
            roster = {p["id"]: p for p in participants(server)}
            assert roster.get(body["participant_id"], {}).get("state") in (None, "cancelled")

            # 4. the ringing timeout: "no answer", shown in the roster, then gone
            body = dial(server, SILENT, ringing_timeout=5)
            ended = wait_call(server, body["id"], "ended", 12)
            assert (ended["participant_state"], ended["reason"]) == ("no-answer", "no answer")
            roster = {p["id"]: p for p in participants(server)}
            assert roster[body["participant_id"]]["state"] == "no-answer", roster
            if not procs.wait_until(lambda: len(participants(server)) == 1, 15, 0.2):
                pytest.fail(f"the unanswered callee stayed: {participants(server)}")

            dialin.hangup()
        if not procs.wait_until(lambda: stats(server)["calls"] == 0 and
                                stats(server)["rtp_ports_in_use"] == 0, 10, 0.2):
            pytest.fail(f"calls left behind: {stats(server)}")
    assert SB_PASSWORD not in server.log_text()


CRYPTO = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n"
SAVP_OFFER = ("v=0\r\no=- 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
              "m=audio {port} RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\n" + CRYPTO)
AVP_CRYPTO_OFFER = SAVP_OFFER.replace("RTP/SAVP", "RTP/AVP")


def test_srtp_keys_over_plain_udp_are_not_accepted(switchboard_server: Any) -> None:
    """An offer with a=crypto over UDP: RTP/SAVP is refused (488), and an RTP/AVP offer
    carrying a key is answered with plain RTP, no a=crypto; a trunk that requires SRTP
    refuses even that (488)."""
    from peers.sip_client import SipClient

    server = switchboard_server()
    assert server.api("POST", "/api/rooms", {"name": ROOM}).status == 201
    assert server.api("POST", "/api/numbers", {"number": NUMBER, "route": "room",
                                               "room": ROOM}).status == 201
    with SipClient("127.0.0.5", server.sip_address) as client:
        assert client.call(NUMBER, sdp=SAVP_OFFER) == [488]
        assert client.call(NUMBER, sdp=AVP_CRYPTO_OFFER) == [200]
        answer = client.responses[-1].body
        assert "m=audio" in answer and "RTP/AVP" in answer, answer
        assert "a=crypto" not in answer and "RTP/SAVP" not in answer, answer
    assert "SDES-SRTP needs TLS signalling" in server.log_text()
    resp = server.api("POST", "/api/trunks", {"name": "strict", "address": "127.0.0.6",
                                              "allowed_addresses": ["127.0.0.6/32"],
                                              "media_encryption": "required"})
    assert resp.status == 201, resp.text
    with SipClient("127.0.0.6", server.sip_address) as strict:
        assert strict.call(NUMBER, sdp=AVP_CRYPTO_OFFER) == [488]
        assert strict.call(NUMBER) == [488]
    # a required trunk over UDP cannot be dialled: keys would cross in clear
    resp = server.api("POST", "/api/trunks", {"name": "out", "address": "127.0.0.7",
                                              "media_encryption": "required",
                                              "allowed_destinations": ["+"]})
    assert resp.status == 201, resp.text
    resp = server.api("POST", f"/api/rooms/{ROOM}/dial", {"number": "+15550199",
                                                          "trunk": "out"})
    assert resp.status == 400 and "tls" in resp.json()["error"], resp.text


def test_dial_out_over_tls_with_srtp_through_the_carrier(switchboard_server: Any,
                                                         tmp_workdir: Path) -> None:
    """The carrier over SIP/TLS (kamailio-tls-modules): Switchboard registers to it over
    TLS; the phone (baresip, mediaenc=srtp-mand: nothing but SRTP) is registered at it over
    TLS too; the dial-out INVITE goes over TLS with SDES keys, the call is SRTP end to end,
    and tones go both ways with a plain dial-in phone; the phone hangs up. Then the phone
    calls the trunk's number at the carrier, which sends the call over TLS to Switchboard's
    registration, and it is in the room, with SRTP again."""
    from peers.tls_carrier import LOOP, TlsCarrierSetup, trunk_body, wait_registered

    tls = TlsCarrierSetup(tmp_workdir)
    server = switchboard_server({"sip": tls.switchboard_config(),
                                 "dialplan": {"default_country": "1"}})
    udp_port = tls.udp_port
    assert server.api("POST", "/api/rooms", {"name": ROOM}).status == 201
    assert server.api("POST", "/api/numbers", {"number": NUMBER, "route": "room",
                                               "room": ROOM}).status == 201
    with tls.carrier(NUMBER, {"callee": "callee-pw"}) as kam:
        # optional: SRTP is offered over TLS (and the phone takes nothing else); the plain
        # dial-in phone, on 127.0.0.1 as the carrier is, matches this trunk too and must
        # still get in (required is tests/integration/test_srtp_baresip.py's)
        resp = server.api("POST", "/api/trunks", trunk_body(kam, [NUMBER]))
        assert resp.status == 201, resp.text
        if not wait_registered(lambda: server.api("GET", "/api/trunks/carrier").json()
                               ["registration"]["state"]):
            pytest.fail(f"the trunk never registered over TLS:\n{server.log_tail(30)}\n"
                        f"{kam.log_tail(30)}")
        assert re.search(r"request REGISTER \S+ from 127\.0\.0\.1:\d+", kam.log_text())
        source = audio.make_tone_wav(tmp_workdir / "callee.wav", CALLEE_HZ, 150.0,
                                     amplitude=0.25)
        dialin_src = audio.make_tone_wav(tmp_workdir / "dialin.wav", DIALIN_HZ, 150.0,
                                         amplitude=0.25)
        with tls.srtp_phone(kam, "callee", user=CALLEE, auth_user="callee",
                            auth_pass="callee-pw", source_wav=source,
                            codecs=("PCMU/8000/1",), timeout_s=150) as callee, \
                Baresip(tmp_workdir, "dialin", source_wav=dialin_src,
                        codecs=("PCMU/8000/1",), timeout_s=150) as dialin:
            callee.wait_registered(10)
            dialin.dial(f"sip:{NUMBER}@{LOOP}:{udp_port}")
            dialin.wait_event("CALL_ESTABLISHED", 10)
            body = dial(server, CALLEE)
            connected = wait_call(server, body["id"], "connected", 15)
            assert connected["participant_state"] == "in-meeting", connected
            callee.wait_event("CALL_ESTABLISHED", 5)
            log = server.log_text()
            assert f"dial-out {body['id']}: SRTP (AES_CM_128_HMAC_SHA1_80)" in log, \
                server.log_tail(40)
            assert "407, answering the challenge" in log
            callee.poll(3.0)
            assert hears(callee, DIALIN_HZ), audio.analyse(*callee.heard(2.0))
            assert hears(dialin, CALLEE_HZ), audio.analyse(*dialin.heard(2.0))
            callee.hangup()
            ended = wait_call(server, body["id"], "ended", 10)
            assert ended["participant_state"] == "ended", ended
            if not procs.wait_until(lambda: len(participants(server)) == 1, 10, 0.1):
                pytest.fail(f"the callee stayed: {participants(server)}")

            # inbound through the same trunk: the phone calls the trunk's number at the
            # carrier, which sends it over TLS to Switchboard's registration: SRTP again
            mark = time.monotonic()
            callee.dial(f"sip:{NUMBER}@{kam.tls_address}")
            callee.wait_event("CALL_ESTABLISHED", 10, predicate=lambda e: e.at > mark)
            if not procs.wait_until(lambda: len(participants(server)) == 2, 10, 0.1):
                pytest.fail(f"the inbound call never reached the room:\n{server.log_tail(40)}")
            log = server.log_text()
            assert re.search(r"over trunk carrier \(by registration\)", log), server.log_tail(30)
            assert log.count("SRTP (AES_CM_128_HMAC_SHA1_80)") >= 2, server.log_tail(30)
            callee.poll(3.0)
            assert hears(dialin, CALLEE_HZ), audio.analyse(*dialin.heard(2.0))
            callee.hangup()
            dialin.hangup()
        if not procs.wait_until(lambda: stats(server)["calls"] == 0 and
                                stats(server)["rtp_ports_in_use"] == 0, 10, 0.2):
            pytest.fail(f"calls left behind: {stats(server)}")
    assert SB_PASSWORD not in server.log_text()


def test_a_room_rings_ten_calls_at_most(switchboard_server: Any) -> None:
    """A trunk that never answers (nothing listens at its address): ten calls of a room
    may ring at once, the eleventh is 429; cancelling them releases every port."""
    server = switchboard_server({"dialplan": {"default_country": "1"}})
    assert server.api("POST", "/api/rooms", {"name": ROOM}).status == 201
    dead = procs.free_port(kinds=("udp",))
    resp = server.api("POST", "/api/trunks", {"name": "dead", "address": f"127.0.0.1:{dead}",
                                              "allowed_destinations": ["+1555"]})
    assert resp.status == 201, resp.text
    ids = [dial(server, f"+155501{n:02d}")["id"] for n in range(10)]
    resp = server.api("POST", f"/api/rooms/{ROOM}/dial", {"number": "+15550111"})
    assert resp.status == 429, resp.text
    assert len([p for p in participants(server) if p.get("state") == "calling"]) == 10
    for call_id in ids:
        assert server.api("DELETE", f"/api/calls/{call_id}").status == 204
        assert call_state(server, call_id)["participant_state"] == "cancelled"
    if not procs.wait_until(lambda: stats(server)["rtp_ports_in_use"] == 0
                            and stats(server)["dialout_calls"] == 0, 10, 0.2):
        pytest.fail(f"ports left behind: {stats(server)}")
    assert dial(server, "+15550111")["id"]  # room for more again
