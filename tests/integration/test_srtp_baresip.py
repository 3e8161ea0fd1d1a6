"""SDES-SRTP on phone legs with a real softphone (issue 16, section 3): baresip with
`mediaenc=srtp-mand` (it accepts nothing but SRTP) calls Switchboard over SIP/TLS, its
number routing it to a room; the call is answered with SRTP and tones go both ways between
it and a plain-RTP phone in the same room, so both legs decrypt and encrypt for real. The
same phone over plain UDP gets no SRTP (its offer is refused: keys never cross in clear).

Dial-out with SRTP runs the same way: a trunk with transport tls and media_encryption
required, pointing at the baresip phone (listening on TLS with the test's certificate).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from peers import audio, procs
from peers.baresip import Baresip
from test_sip_tls import LOOP, self_signed

pytestmark = pytest.mark.integration

ROOM = "secure"
NUMBER = "+15550100"
SRTP_HZ, PLAIN_HZ = 1000.0, 400.0


def participants(server: Any) -> list[dict[str, Any]]:
    resp = server.api("GET", f"/api/rooms/{ROOM}/participants")
    assert resp.status == 200, resp.text
    result: list[dict[str, Any]] = resp.json()
    return result


def hears(phone: Baresip, hz: float) -> bool:
    samples, rate = phone.heard(2.0)
    return audio.hears_tone(samples, rate, hz, min_ratio=0.5, min_active_s=1.0)


def test_srtp_call_over_tls_with_tones_both_ways(switchboard_server: Any,
                                                 tmp_workdir: Path) -> None:
    cert, key = self_signed(tmp_workdir)
    tls_port = procs.free_port(kinds=("tcp",))
    udp_port = procs.free_port(kinds=("udp",))
    server = switchboard_server({"sip": {
        "listen": [f"udp:{LOOP}:{udp_port}", f"tls:{LOOP}:{tls_port}"],
        "tls_cert": str(cert), "tls_key": str(key), "tls_ca": str(cert),
        "tls_keylog": str(tmp_workdir / "keylog.txt")}})
    assert server.api("POST", "/api/rooms", {"name": ROOM}).status == 201
    assert server.api("POST", "/api/numbers", {"number": NUMBER, "route": "room",
                                               "room": ROOM}).status == 201
    srtp_src = audio.make_tone_wav(tmp_workdir / "srtp.wav", SRTP_HZ, 150.0, amplitude=0.25)
    plain_src = audio.make_tone_wav(tmp_workdir / "plain.wav", PLAIN_HZ, 150.0,
                                    amplitude=0.25)
    with Baresip(tmp_workdir, "secure", source_wav=srtp_src, codecs=("PCMU/8000/1",),
                 modules=("srtp.so",), account_params="mediaenc=srtp-mand",
                 extra_config=(f"sip_cafile {cert}",), timeout_s=120) as secure, \
            Baresip(tmp_workdir, "plain", source_wav=plain_src, codecs=("PCMU/8000/1",),
                    timeout_s=120) as plain:
        plain.dial(f"sip:{NUMBER}@{LOOP}:{udp_port}")
        plain.wait_event("CALL_ESTABLISHED", 10)
        secure.dial(f"sip:{NUMBER}@{LOOP}:{tls_port};transport=tls")
        secure.wait_event("CALL_ESTABLISHED", 10)
        if not procs.wait_until(lambda: len(participants(server)) == 2, 10, 0.1):
            pytest.fail(f"both phones never joined:\n{server.log_tail(40)}")
        assert "SRTP (AES_CM_128_HMAC_SHA1_80)" in server.log_text(), server.log_tail(40)
        secure.poll(3.0)
        assert hears(secure, PLAIN_HZ), audio.analyse(*secure.heard(2.0))
        assert hears(plain, SRTP_HZ), audio.analyse(*plain.heard(2.0))
        stats = server.api("GET", "/api/stats").json()
        assert stats["rtp_rx_dropped"] == 0, stats  # every SRTP packet authenticated
        secure.hangup()
        plain.hangup()
        # the same srtp-mand phone over plain UDP: its SAVP offer is refused
        secure.dial(f"sip:{NUMBER}@{LOOP}:{udp_port}")
        secure.wait_event("CALL_CLOSED", 10)
    assert "SDES-SRTP needs TLS signalling" in server.log_text()
    assert (tmp_workdir / "keylog.txt").stat().st_size > 0  # sip.tls_keylog
    if not procs.wait_until(lambda: server.api("GET", "/api/stats").json()["calls"] == 0,
                            10, 0.2):
        pytest.fail("calls left behind")


def test_dial_out_over_tls_with_srtp_required(switchboard_server: Any,
                                              tmp_workdir: Path) -> None:
    cert, key = self_signed(tmp_workdir)
    both = tmp_workdir / "phone.pem"
    both.write_bytes(cert.read_bytes() + key.read_bytes())
    tls_port = procs.free_port(kinds=("tcp",))
    udp_port = procs.free_port(kinds=("udp",))
    server = switchboard_server({"sip": {
        "listen": [f"udp:{LOOP}:{udp_port}", f"tls:{LOOP}:{tls_port}"],
        "tls_cert": str(cert), "tls_key": str(key), "tls_ca": str(cert)},
        "dialplan": {"default_country": "1"}})
    assert server.api("POST", "/api/rooms", {"name": ROOM}).status == 201
    assert server.api("POST", "/api/numbers", {"number": NUMBER, "route": "room",
                                               "room": ROOM}).status == 201
    srtp_src = audio.make_tone_wav(tmp_workdir / "srtp.wav", SRTP_HZ, 150.0, amplitude=0.25)
    plain_src = audio.make_tone_wav(tmp_workdir / "plain.wav", PLAIN_HZ, 150.0,
                                    amplitude=0.25)
    with Baresip(tmp_workdir, "callee", user="+15550199", source_wav=srtp_src,
                 codecs=("PCMU/8000/1",), modules=("srtp.so",),
                 account_params="mediaenc=srtp-mand",
                 extra_config=(f"sip_certificate {both}", f"sip_cafile {cert}"),
                 timeout_s=120) as callee, \
            Baresip(tmp_workdir, "plain", source_wav=plain_src, codecs=("PCMU/8000/1",),
                    timeout_s=120) as plain:
        resp = server.api("POST", "/api/trunks", {
            "name": "phone", "address": f"{LOOP}:{callee.sip_port + 1}", "transport": "tls",
            "numbers": [NUMBER], "media_encryption": "required",
            "allowed_destinations": ["+1555"]})
        assert resp.status == 201, resp.text
        plain.dial(f"sip:{NUMBER}@{LOOP}:{udp_port}")
        plain.wait_event("CALL_ESTABLISHED", 10)
        resp = server.api("POST", f"/api/rooms/{ROOM}/dial", {"number": "+15550199"})
        assert resp.status == 202, resp.text
        call_id = resp.json()["id"]
        callee.wait_event("CALL_ESTABLISHED", 10)
        if not procs.wait_until(lambda: server.api("GET", f"/api/calls/{call_id}").json()
                                ["state"] == "connected", 10, 0.1):
            pytest.fail(f"never connected:\n{server.log_tail(40)}")
        assert f"dial-out {call_id}: SRTP (AES_CM_128_HMAC_SHA1_80)" in server.log_text()
        callee.poll(3.0)
        assert hears(callee, PLAIN_HZ), audio.analyse(*callee.heard(2.0))
        assert hears(plain, SRTP_HZ), audio.analyse(*plain.heard(2.0))
        assert server.api("DELETE", f"/api/calls/{call_id}").status == 204
        callee.wait_event("CALL_CLOSED", 10)
        plain.hangup()
    if not procs.wait_until(lambda: server.api("GET", "/api/stats").json()["calls"] == 0,
                            10, 0.2):
        pytest.fail("calls left behind")
