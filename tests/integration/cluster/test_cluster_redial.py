"""Dial-out callees of a room whose node dies are called again (issue 19, section 2): kamailio
is the carrier, a baresip phone registered there is dialled from a room on node X with
`"redial": true` and answers; kill -9 of X; node Y takes the room over and calls the number
again through the same trunk, and the callee is in the room's roster on Y again. A callee
dialled without `redial` is not called again."""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

from peers import audio
from peers.baresip import Baresip
from peers.kamailio_carrier import KamailioCarrier
from test_cluster_nodes import Nodes, cluster, nodes, wait_for

__all__ = ["nodes"]  # the fixture, imported

ROOM = "redial"
PIN = "8391027"
NUMBER = "+15550100"
CALLEE, OTHER = "+15550199", "+15550197"
SB_PASSWORD = "sb-trunk-secret-9"

log = logging.getLogger(__name__)


def _roster(server: object) -> list[dict[str, object]]:
    resp = server.api("GET", f"/api/rooms/{ROOM}/participants")  # type: ignore[attr-defined]
    assert resp.status == 200, resp.text
    body: list[dict[str, object]] = resp.json()
    return body


def test_a_callee_that_asked_for_it_is_called_again_by_the_next_node(
        nodes: Nodes, tmp_path: Path) -> None:
    x = nodes.start("nx")
    assert x.api("POST", "/api/rooms", {"name": ROOM, "pin": PIN}).status == 201
    with KamailioCarrier(tmp_path, subscribers={"sb": SB_PASSWORD, "callee": "callee-pw",
                                                "other": "other-pw"},
                         number=NUMBER, trunk_user="sb") as kam:
        resp = x.api("POST", "/api/trunks", {
            "name": "carrier", "address": kam.address, "transport": "udp", "username": "sb",
            "password": SB_PASSWORD, "register": False, "numbers": [NUMBER],
            "media_encryption": "off", "allowed_destinations": ["+1555"]})
        assert resp.status == 201, resp.text
        y = nodes.start("ny")  # (it reads the trunk from the shared store)
        wait_for("two live nodes", lambda: len([n for n in cluster(y)["nodes"]
                                                if n["alive"]]) == 2, 5, nodes)  # fmt: skip
        tone = audio.make_tone_wav(tmp_path / "callee.wav", 1000.0, 150.0, amplitude=0.25)
        with Baresip(tmp_path, "callee", user=CALLEE, registrar=kam.address,
                     auth_user="callee", auth_pass="callee-pw", source_wav=tone,
                     codecs=("PCMU/8000/1",), timeout_s=150) as callee, \
                Baresip(tmp_path, "other", user=OTHER, registrar=kam.address,
                        auth_user="other", auth_pass="other-pw", source_wav=tone,
                        codecs=("PCMU/8000/1",), timeout_s=150) as other:
            callee.wait_registered(10)
            other.wait_registered(10)
            calls = []
            for number, redial in ((CALLEE, True), (OTHER, False)):
                resp = x.api("POST", f"/api/rooms/{ROOM}/dial",
                             {"number": number, "trunk": "carrier", "redial": redial})
                assert resp.status == 202, resp.text
                calls.append(resp.json()["id"])
            for call_id in calls:
                wait_for("the callee connected", lambda c=call_id: x.api(
                    "GET", f"/api/calls/{c}").json()["state"] == "connected", 15, nodes)
            # (claimed at x's next heartbeat: the callees are its participants)
            wait_for("the room on nx", lambda: cluster(y)["rooms"] == {ROOM: "nx"}, 5, nodes)
            os.kill(x.pid, signal.SIGKILL)
            killed = time.monotonic()
            x.proc.wait(timeout=10)
            # Y takes the room over and calls CALLEE again (not OTHER)
            wait_for("the callee called again, in the room on ny", lambda: any(
                p.get("kind") == "phone" and p.get("state") == "in-meeting"
                for p in _roster(y)), 20, nodes)  # fmt: skip
            again = time.monotonic() - killed
            assert cluster(y)["rooms"] == {ROOM: "ny"}
            phones = [p for p in _roster(y) if p.get("kind") == "phone"]
            assert len(phones) == 1, phones  # OTHER did not ask for it
            calls_on_y = y.api("GET", "/api/stats").json()["dialout_calls"]
            assert calls_on_y == 1, calls_on_y
            log.info("the callee was called again and in the room %.1f s after kill -9", again)
