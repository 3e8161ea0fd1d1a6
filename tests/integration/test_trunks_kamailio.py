"""Trunks against real peers (issue 16, section 1):

- kamailio as the carrier (digest against a SQLite subscriber table): Switchboard registers
  to it (401, then 423 for a too short expiry), refreshes before the expiry, and registers
  again after kamailio restarts, the state saying what happened in between; baresip,
  registered at kamailio, calls the trunk's number and lands in the room it routes to,
  through Switchboard's registration; deleting the trunk un-REGISTERs.
- `switchboard trunks add|list|remove` against the running server: the new trunk registers
  at once, the list shows its state, removing it un-REGISTERs; with the server stopped the
  list comes from the store, its state unknown.
- Refusals with sip.require_trunk: a call from outside a trunk's networks gets 403; a wrong
  password gets 407 then 403, and repeated wrong passwords block the source (403 with no
  challenge, even with the right password), while the genuine peer elsewhere still gets in.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from peers import procs
from peers.baresip import Baresip
from peers.kamailio_carrier import KamailioCarrier
from peers.sip_client import SipClient

pytestmark = pytest.mark.integration

ROOM = "standup"
NUMBER = "+15550100"
SB_PASSWORD = "sb-trunk-secret-7"


def registration(server: Any, name: str = "carrier") -> dict[str, str]:
    resp = server.api("GET", f"/api/trunks/{name}")
    assert resp.status == 200, resp.text
    assert "password" not in resp.json() and SB_PASSWORD not in resp.text
    state: dict[str, str] = resp.json()["registration"]
    return state


def wait_state(server: Any, state: str, timeout: float, contains: str = "") -> dict[str, str]:
    last: dict[str, str] = {}

    def reached() -> bool:
        nonlocal last
        last = registration(server)
        return last["state"] == state and contains in last["detail"]

    if not procs.wait_until(reached, timeout, 0.2):
        pytest.fail(f"registration never {state!r} ({contains!r}) in {timeout:.0f} s: {last}\n"
                    f"{server.log_tail(40)}")
    return last


def phones(server: Any) -> list[dict[str, Any]]:
    resp = server.api("GET", f"/api/rooms/{ROOM}/participants")
    assert resp.status == 200, resp.text
    return [p for p in resp.json() if p["kind"] == "phone"]


def setup_room(server: Any) -> None:
    assert server.api("POST", "/api/rooms", {"name": ROOM}).status == 201
    resp = server.api("POST", "/api/numbers", {"number": NUMBER, "route": "room", "room": ROOM})
    assert resp.status == 201, resp.text


def test_carrier_registration_inbound_call_and_restart(switchboard_server: Any,
                                                       tmp_workdir: Path) -> None:
    server = switchboard_server({"dialplan": {"default_country": "1"}})
    setup_room(server)
    with KamailioCarrier(tmp_workdir, subscribers={"sb": SB_PASSWORD, "bob": "bob-pw-1"},
                         number=NUMBER, trunk_user="sb", min_expires=20) as kam:
        resp = server.api("POST", "/api/trunks", {
            "name": "carrier", "address": kam.address, "transport": "udp", "username": "sb",
            "password": SB_PASSWORD, "register": True, "expires": 10, "numbers": [NUMBER],
            "auth": False, "media_encryption": "off", "allowed_destinations": ["+1555"]})
        assert resp.status == 201, resp.text
        assert SB_PASSWORD not in resp.text
        first = wait_state(server, "registered", 15)
        # 423 for 10 s: asked again for kamailio's Min-Expires, 20 s
        assert ": 20 s, refresh in" in first["detail"], first
        log = server.log_text()
        assert "trunk carrier: 423, asking for 20 s" in log
        assert SB_PASSWORD not in log
        # refreshed before the 20 s run out (50-90%: 10 to 18 s)
        if not procs.wait_until(
                lambda: server.log_text().count("trunk carrier: registered (") >= 2, 25, 0.2):
            pytest.fail(f"no refresh within 25 s:\n{server.log_tail(30)}")
        registers = re.findall(r"request REGISTER \S+ from 127\.0\.0\.1:" + str(server.sip_port)
                               + r" expires (\d+)", kam.log_text())
        assert registers[:1] == ["10"] and "20" in registers, registers

        # baresip at the carrier dials the trunk's number: kamailio sends it to the
        # Contact Switchboard registered, and the number routes the call to the room
        with Baresip(tmp_workdir, "bob", registrar=kam.address, auth_user="bob",
                     auth_pass="bob-pw-1", tone_hz=440.0, timeout_s=120) as bob:
            bob.wait_registered(10)
            bob.dial(f"sip:{NUMBER}@{kam.address}")
            bob.wait_event("CALL_ESTABLISHED", 10)
            if not procs.wait_until(lambda: phones(server), 10, 0.2):
                pytest.fail(f"the caller never reached the room:\n{server.log_tail(40)}")
            assert re.search(r"over trunk carrier \(by registration\)", server.log_text())
            assert "number belongs to trunk user sb" in kam.log_text() or \
                f"number {NUMBER} belongs" in kam.log_text()
            bob.hangup()
            if not procs.wait_until(lambda: phones(server) == [], 10, 0.2):
                pytest.fail("the caller stayed in the room after hanging up")

        # the carrier restarts: the refresh goes unanswered, the state says so, and once
        # kamailio is back (having forgotten everything) the trunk registers again
        kam.stop()
        wait_state(server, "failed", 60, contains="408")
        kam.start()
        again = wait_state(server, "registered", 30)
        assert "before:" in again["detail"] and "408" in again["detail"], again

        # deleting the trunk un-REGISTERs (Expires: 0)
        assert server.api("DELETE", "/api/trunks/carrier").status == 204
        if not procs.wait_until(lambda: re.search(
                r"request REGISTER \S+ from 127\.0\.0\.1:\d+ expires 0", kam.log_text()), 5):
            pytest.fail(f"no un-REGISTER:\n{kam.log_tail(20)}")
    assert SB_PASSWORD not in server.log_text()


def test_shutdown_unregisters(switchboard_server: Any, tmp_workdir: Path) -> None:
    """Stopping the server (SIGTERM) sends REGISTER with Expires: 0 for a registered trunk."""
    server = switchboard_server()
    with KamailioCarrier(tmp_workdir, subscribers={"sb": SB_PASSWORD}, number=NUMBER,
                         trunk_user="sb", min_expires=20) as kam:
        resp = server.api("POST", "/api/trunks", {
            "name": "carrier", "address": kam.address, "username": "sb",
            "password": SB_PASSWORD, "register": True, "expires": 60})
        assert resp.status == 201, resp.text
        wait_state(server, "registered", 15)
        assert server.proc.stop() == 0 or not server.running()
        if not procs.wait_until(lambda: re.search(
                r"request REGISTER \S+ from 127\.0\.0\.1:\d+ expires 0", kam.log_text()), 5):
            pytest.fail(f"no un-REGISTER at shutdown:\n{kam.log_tail(20)}")
        assert re.search(r"registered sb expires 0", kam.log_text()), kam.log_tail(20)


def test_require_trunk_refuses_outsiders_and_throttles_wrong_passwords(
        switchboard_server: Any) -> None:
    server = switchboard_server({"sip": {"require_trunk": True},
                                 "ivr": {"throttle": {"max_failures": 3}}})
    setup_room(server)
    resp = server.api("POST", "/api/trunks", {
        "name": "pbx", "address": "127.0.0.3", "transport": "udp",
        "allowed_addresses": ["127.0.0.3/32"]})
    assert resp.status == 201, resp.text
    with SipClient("127.0.0.9", server.sip_address) as outsider:
        assert outsider.call(NUMBER) == [403]
    with SipClient("127.0.0.3", server.sip_address) as pbx:
        assert pbx.call(NUMBER) == [200]
    assert "from 127.0.0.9 matches no trunk: refused" in server.log_text()

    resp = server.api("POST", "/api/trunks", {
        "name": "peer", "address": "127.0.0.20", "transport": "udp", "username": "peer",
        "password": "right-password", "auth": True})
    assert resp.status == 201, resp.text
    with SipClient("127.0.0.7", server.sip_address) as guesser:
        # a wrong password: challenged (407, SHA-256 and MD5), then refused (403)
        for n in range(3):
            assert guesser.call(NUMBER, auth_user="peer", password=f"guess-{n}",
                                caller=f"30{n}") == [407, 403]
        # blocked now: refused at once, with no challenge, even with the right password
        assert guesser.call(NUMBER, auth_user="peer", password="right-password",
                            caller="399") == [403]
    with SipClient("127.0.0.8", server.sip_address) as genuine:
        assert genuine.call(NUMBER, auth_user="peer", password="right-password") == [407, 200]
    log = server.log_text()
    assert "wrong digest credentials from 127.0.0.7" in log
    assert "right-password" not in log and "guess-0" not in log
    stats = server.api("GET", "/api/stats").json()
    assert stats["trunk_auth_failures"] == 3, stats


def trunks_cli(server: Any, *args: str, check: bool = True) -> tuple[Any, str]:
    """`python -m switchboard trunks ARGS --config ...`: (its JSON output, its stderr)."""
    import json
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "switchboard", "trunks", *args, "--config",
         str(server.config_path)], capture_output=True, text=True, timeout=60, check=False)
    if check:
        assert result.returncode == 0, (args, result.stdout, result.stderr)
    out = json.loads(result.stdout) if result.stdout.strip() else None
    return out, result.stderr


def test_trunks_command_goes_through_the_running_server(switchboard_server: Any,
                                                         tmp_workdir: Path) -> None:
    """`switchboard trunks add` while the server runs: the trunk registers at once (no
    restart); `trunks list` shows its registration state from the server; `trunks remove`
    un-REGISTERs it (Expires: 0 at kamailio). With the server stopped, `list` falls back
    to the store and says the state is unknown."""
    server = switchboard_server()
    secret = tmp_workdir / "trunk-password"
    secret.write_text(SB_PASSWORD + "\n")
    with KamailioCarrier(tmp_workdir, subscribers={"sb": SB_PASSWORD}, number=NUMBER,
                         trunk_user="sb", min_expires=20) as kam:
        added, _ = trunks_cli(server, "add", "carrier", "--address", kam.address,
                              "--username", "sb", "--password-file", str(secret),
                              "--register", "--expires", "60", "--number", NUMBER)
        assert added["name"] == "carrier" and "registration" in added, added
        assert SB_PASSWORD not in str(added)
        listed: list[dict[str, Any]] = []

        def registered() -> bool:
            nonlocal listed
            listed, _ = trunks_cli(server, "list")
            return [t["registration"]["state"] for t in listed] == ["registered"]

        if not procs.wait_until(registered, 15, 0.5):
            pytest.fail(f"`trunks list` never said registered: {listed}\n"
                        f"{server.log_tail(30)}\n{kam.log_tail(20)}")
        assert re.search(r"registered sb expires 60", kam.log_text()), kam.log_tail(20)
        assert registration(server)["state"] == "registered"  # the API agrees

        removed, _ = trunks_cli(server, "remove", "carrier")
        assert removed is None
        if not procs.wait_until(lambda: re.search(
                r"request REGISTER \S+ from 127\.0\.0\.1:\d+ expires 0", kam.log_text()), 5):
            pytest.fail(f"no un-REGISTER after `trunks remove`:\n{kam.log_tail(20)}")
        assert re.search(r"registered sb expires 0", kam.log_text()), kam.log_tail(20)
        assert server.api("GET", "/api/trunks").json() == []
        _, err = trunks_cli(server, "remove", "carrier", check=False)
        assert "404" in err, err  # the server said so: no fallback to the store

        # the server stopped: the store, state unknown
        trunks_cli(server, "add", "pbx", "--address", "127.0.0.9")
        assert server.proc.stop() == 0 or not server.running()
        listed, err = trunks_cli(server, "list")
        assert [t["name"] for t in listed] == ["pbx"], listed
        assert listed[0]["registration"] == {"state": "unknown",
                                             "detail": "state unknown (server not reachable)"}
        assert "server not reachable" in err
    assert SB_PASSWORD not in server.log_text()
