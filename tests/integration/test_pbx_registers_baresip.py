"""A PBX that registers to Switchboard (a trunk with register_in, issue 16): baresip plays
the PBX. Its REGISTER is challenged (401) and then bound; a call it sends is matched to the
trunk by that registration and lands in the room its number routes to; a dial-out through
the trunk goes to the registered contact, and baresip answers it; a wrong password is
challenged, refused (403) and never bound."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from peers import procs
from peers.baresip import Baresip

pytestmark = pytest.mark.integration

ROOM = "office"
NUMBER = "+15550100"
PBX_PASSWORD = "pbx-secret-42"


def phones(server: Any) -> list[dict[str, Any]]:
    resp = server.api("GET", f"/api/rooms/{ROOM}/participants")
    assert resp.status == 200, resp.text
    return [p for p in resp.json() if p["kind"] == "phone"]


def call_state(server: Any, call_id: str) -> dict[str, Any]:
    resp = server.api("GET", f"/api/calls/{call_id}")
    assert resp.status == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def test_a_pbx_registers_calls_in_and_is_called(switchboard_server: Any,
                                                tmp_workdir: Path) -> None:
    # baresip's digest (libre) gives up ("Function not implemented") when any challenge
    # is not MD5: this PBX is offered MD5 alone (SHA-256: tests/unit/.../test_registrar_in)
    server = switchboard_server({"dialplan": {"default_country": "1"},
                                 "sip": {"digest_algorithms": ["MD5"]}})
    assert server.api("POST", "/api/rooms", {"name": ROOM}).status == 201
    resp = server.api("POST", "/api/numbers", {"number": NUMBER, "route": "room", "room": ROOM})
    assert resp.status == 201, resp.text
    # before any trunk asks for it, a REGISTER is not accepted at all
    with Baresip(tmp_workdir, "early", user="office", registrar=server.sip_address,
                 auth_user="office", auth_pass=PBX_PASSWORD, timeout_s=60) as early:
        early.poll(1.0)
    assert "the PBX registered" not in server.log_text()
    resp = server.api("POST", "/api/trunks", {
        "name": "pbx", "address": "127.0.0.1", "username": "office",
        "password": PBX_PASSWORD, "register_in": True, "numbers": [NUMBER],
        "allowed_destinations": ["+1555"]})
    assert resp.status == 201, resp.text
    assert resp.json()["register_in"] is True and PBX_PASSWORD not in resp.text
    assert server.api("GET", "/api/trunks/pbx").json()["registration"]["state"] == "off"

    # a wrong password: challenged, refused, never bound
    with Baresip(tmp_workdir, "impostor", user="office", registrar=server.sip_address,
                 auth_user="office", auth_pass="wrong-password", timeout_s=60) as impostor:
        if not procs.wait_until(lambda: "trunk pbx: wrong digest credentials" in
                                server.log_text(), 10, 0.2):
            pytest.fail(f"no refusal:\n{server.log_tail(30)}")
        impostor.poll(0.5)
    assert "the PBX registered" not in server.log_text()

    with Baresip(tmp_workdir, "pbx", user="office", registrar=server.sip_address,
                 auth_user="office", auth_pass=PBX_PASSWORD, tone_hz=440.0,
                 timeout_s=120) as pbx:
        pbx.wait_registered(10)
        state = server.api("GET", "/api/trunks/pbx").json()["registration"]
        assert state["state"] == "registered" and "its PBX registered from" in state["detail"]
        assert re.search(r"trunk pbx: the PBX registered from udp:127\.0\.0\.1:\d+ for \d+ s",
                         server.log_text()), server.log_tail(30)
        # inbound: the PBX's call is the trunk's (by its registration) and goes to the room
        pbx.dial(f"sip:{NUMBER}@{server.sip_address}")
        pbx.wait_event("CALL_ESTABLISHED", 10)
        if not procs.wait_until(lambda: phones(server), 10, 0.2):
            pytest.fail(f"the caller never reached the room:\n{server.log_tail(40)}")
        assert re.search(r"over trunk pbx \(by registration\)", server.log_text())
        pbx.hangup()
        if not procs.wait_until(lambda: phones(server) == [], 10, 0.2):
            pytest.fail("the caller stayed in the room after hanging up")

        # dial-out through the trunk: to the registered contact, answered by the PBX
        resp = server.api("POST", f"/api/rooms/{ROOM}/dial",
                          {"number": "+15550199", "trunk": "pbx"})
        assert resp.status == 202, resp.text
        call_id = resp.json()["id"]
        if not procs.wait_until(lambda: call_state(server, call_id)["state"] in
                                ("connected", "ended"), 15, 0.2):
            pytest.fail(f"no answer:\n{server.log_tail(40)}")
        assert call_state(server, call_id)["state"] == "connected", server.log_tail(40)
        assert server.api("DELETE", f"/api/calls/{call_id}").status in (200, 202, 204)
        if not procs.wait_until(lambda: call_state(server, call_id)["state"] == "ended", 10,
                                0.2):
            pytest.fail("the dial-out did not end")
    assert PBX_PASSWORD not in server.log_text()
