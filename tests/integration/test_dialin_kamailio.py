"""Kamailio stands in for a PBX in front of the server (issue 2, section 5):

- a call through it that carries `X-Room-Name` lands in the room with no PIN prompt, both
  when the PBX tags the call itself and when the caller's header is relayed;
- in-dialog requests routed through the proxy (Record-Route) work: the ACK and BYE of the
  call, a re-INVITE that puts the call on hold (a=sendonly answered a=recvonly), and the
  server's own BYE (after three wrong PINs) goes back along the route set.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from peers import procs
from peers.kamailio import Kamailio
from peers.rtp_receiver import RtpReceiver
from peers.scenarios_dialin import (
    hold_reinvite_scenario,
    plain_call_scenario,
    with_sdp_media_port,
)
from peers.sipp import Sipp, write_scenario, write_wrong_pin

pytestmark = pytest.mark.integration

ROOM = "standup"
PIN = "48213077"
IDLE_KEYS = ("calls", "legs", "ivr", "participants", "conferences", "rtp_ports_in_use")


def participants(server: Any, room: str = ROOM) -> list[dict[str, Any]]:
    resp = server.api("GET", f"/api/rooms/{room}/participants")
    assert resp.status == 200, resp.text
    result: list[dict[str, Any]] = resp.json()
    return result


def assert_idle(server: Any, timeout: float = 10.0) -> None:
    last: dict[str, int] = {}

    def idle() -> bool:
        nonlocal last
        resp = server.api("GET", "/api/stats")
        assert resp.status == 200, resp.text
        last = resp.json()
        return all(last.get(k) == 0 for k in IDLE_KEYS)

    if not procs.wait_until(idle, timeout, 0.2):
        pytest.fail(f"server not idle: { {k: last.get(k) for k in IDLE_KEYS} }")


def setup_room(server: Any) -> None:
    resp = server.api("POST", "/api/rooms", {"name": ROOM, "pin": PIN})
    assert resp.status == 201, resp.text


def call_ids(sipp_messages: Path) -> set[str]:
    return set(re.findall(r"^Call-ID: (\S+)", sipp_messages.read_text(), re.M))


def test_pbx_tagged_call_lands_in_room_without_prompt(switchboard_server: Any,
                                                      tmp_workdir: Path) -> None:
    """The proxy adds `X-Room-Name: standup` to a plain call to an unknown number (which
    would otherwise get the PIN prompt); ACK and BYE go through the proxy."""
    server = switchboard_server()
    setup_room(server)
    scenario = write_scenario(tmp_workdir / "pbx_call.xml",
                              plain_call_scenario(hold_ms=3000, caller="2001"))
    with Kamailio(tmp_workdir, trunk_uri=f"sip:{server.sip_address}",
                  room_name=ROOM) as kam:
        started = time.monotonic()
        sipp = Sipp(tmp_workdir, "pbx", scenario, remote=kam.address, service="7000",
                    timeout_s=30).start()
        if not procs.wait_until(lambda: participants(server), 10, 0.1):
            pytest.fail("the call through the PBX never reached the room")
        took = time.monotonic() - started
        joined = participants(server)
        res = sipp.wait()
        procs.wait_until(lambda: "relay BYE" in kam.log_text(), 5)
        kam_log = kam.log_text()
    assert res.ok, res.describe()  # 200 to INVITE and to BYE, both through the proxy
    # The 4.8 s welcome prompt would come first on the IVR path.
    assert took < 3.0, f"joining through the PBX took {took:.1f} s"
    assert len(joined) == 1 and joined[0]["kind"] == "phone", joined
    server_log = server.log_text()
    assert res.message_path is not None
    (call_id,) = call_ids(res.message_path)
    assert call_id in server_log
    assert "PIN IVR started" not in server_log
    assert f"relay INVITE to sip:7000@{server.sip_address}" in kam_log, kam_log[-3000:]
    assert re.search(r"relay BYE to sip:[^ ]*" + re.escape(server.sip_address), kam_log), \
        kam_log[-3000:]
    assert re.search(rf"call {re.escape(call_id)}: BYE from [^\n]*{kam.port}", server_log), \
        "the BYE reached the server from the proxy"
    procs.wait_until(lambda: participants(server) == [], 5)
    assert participants(server) == []
    assert_idle(server)


def test_reinvite_hold_through_proxy(switchboard_server: Any, tmp_workdir: Path) -> None:
    """The caller sets `X-Room-Name` itself (relayed by the proxy); after joining it puts
    the call on hold with a re-INVITE (a=sendonly) sent along the recorded route, and the
    server answers a=recvonly and stops sending RTP; the BYE follows the same route."""
    server = switchboard_server()
    setup_room(server)
    with RtpReceiver() as rx, \
            Kamailio(tmp_workdir, trunk_uri=f"sip:{server.sip_address}") as kam:
        xml = hold_reinvite_scenario(ROOM, before_ms=2000, after_ms=2000)
        scenario = write_scenario(tmp_workdir / "hold.xml",
                                  with_sdp_media_port(xml, rx.port, offers=2))
        sipp = Sipp(tmp_workdir, "hold", scenario, remote=kam.address, service="7001",
                    timeout_s=30, trace_logs=True).start()
        if not procs.wait_until(lambda: participants(server), 10, 0.1):
            pytest.fail("the call through the proxy never reached the room")
        joined = participants(server)
        if not procs.wait_until(lambda: ": 200 to INVITE 2" in server.log_text(), 10, 0.05):
            pytest.fail("the server never answered the re-INVITE")
        held_at = time.monotonic()
        res = sipp.wait()
        procs.wait_until(lambda: "relay BYE" in kam.log_text(), 5)
        kam_log = kam.log_text()
    assert res.ok, res.describe()
    # Before the hold the caller (alone in the room) got audio; once the server answered
    # a=recvonly it sent none (0.3 s grace for packets already under way, then 1.2 s).
    arrivals = [p.at for p in rx.packets]
    before = [t for t in arrivals if t < held_at]
    during = [t for t in arrivals if held_at + 0.3 < t < held_at + 1.5]
    assert len(before) >= 40, f"only {len(before)} RTP packets before the hold"
    assert during == [], f"{len(during)} RTP packets sent to a caller on hold"
    assert len(joined) == 1, joined
    assert sipp.logs_path is not None
    assert "re-INVITE answer: a=recvonly" in sipp.logs_path.read_text()
    assert res.message_path is not None
    messages = res.message_path.read_text()
    # sipp put the proxy's Record-Route into the Route of its in-dialog requests.
    assert re.search(rf"^Route: <sip:127\.0\.0\.1:{kam.port};lr", messages, re.M), \
        "in-dialog requests carried the proxy's Route"
    # Both INVITEs and the BYE went through kamailio to the server and were answered.
    relayed = re.findall(r"relay (INVITE|BYE) to (\S+)", kam_log)
    assert [m for m, _ in relayed] == ["INVITE", "INVITE", "BYE"], relayed
    assert all(server.sip_address in uri for _, uri in relayed), relayed
    replies = re.findall(r"reply (\d+) \S+ for (INVITE|BYE)", kam_log)
    assert replies.count(("200", "INVITE")) >= 2 and ("200", "BYE") in replies, replies
    assert "PIN IVR started" not in server.log_text()
    procs.wait_until(lambda: participants(server) == [], 5)
    assert participants(server) == []
    assert_idle(server)


def test_server_bye_follows_the_route_set(switchboard_server: Any, tmp_workdir: Path) -> None:
    """A call to an unknown number through the proxy gets the PIN prompt (the default
    route); after three wrong PINs the server hangs up, and its BYE goes to the proxy (the
    route set from Record-Route), which relays it to the caller."""
    server = switchboard_server()
    setup_room(server)
    scenario = write_wrong_pin(tmp_workdir, ("1111", "2222", "3333"), prompt_wait_ms=1500,
                               retry_wait_ms=1500, digit_gap_ms=300, bye_timeout_ms=20000,
                               caller="2002")
    with Kamailio(tmp_workdir, trunk_uri=f"sip:{server.sip_address}") as kam:
        sipp = Sipp(tmp_workdir, "wrong", scenario, remote=kam.address, service="7002",
                    timeout_s=45).start()
        res = sipp.wait()
        kam_log = kam.log_text()
    assert res.ok, res.describe()  # the server's BYE arrived and our 200 was accepted
    assert "PIN IVR started" in server.log_text()
    assert re.search(r"request BYE \S+ from 127\.0\.0\.1:" + str(server.sip_port), kam_log), \
        f"the server's BYE did not go through the proxy:\n{kam_log[-3000:]}"
    assert re.search(r"relay BYE to sip:[^ ]*127\.0\.0\.1:" + str(sipp.local_port), kam_log), \
        kam_log[-3000:]
    assert re.search(r"reply 200 \S+ for BYE from 127\.0\.0\.1:" + str(sipp.local_port),
                     kam_log), kam_log[-3000:]
    assert_idle(server)
