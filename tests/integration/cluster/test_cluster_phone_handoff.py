"""Phone calls that reach a node which does not host their room (issue 19): real baresip
phones, three real nodes on one Redis and one PostgreSQL.

A phone that dials node C with the PIN of a room node A hosts stays on C (its leg) and joins
A's conference: A's roster shows it, it hears A's phone and A's phone hears it; its '*6'
mutes it in A's roster (its keys are sent on). C's own roster of the room stays empty (no
second conference). Then kill -9 of A: the phone on C is placed again, lands in the room on
its new owner, and hears a phone that dials in there; the phone on A is lost (its leg died
with A). What each phone heard is its own recording (baresip's dump of the decoded audio).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, SwitchboardServer
from peers import audio
from peers.baresip import Baresip
from test_cluster_nodes import Nodes, cluster, nodes, wait_for

from gateway.handoff_token import sign

__all__ = ["nodes"]  # the fixture, imported

pytestmark = pytest.mark.integration

log = logging.getLogger(__name__)

ROOM = "handoff"
PIN = "5170342"
TONES = {"pa": 500.0, "pc": 700.0, "pb": 900.0}
CONTROL_HZ = 2500.0
WINDOW_S = 1.5


def _phone(workdir: Path, name: str) -> Baresip:
    source = audio.make_tone_wav(workdir / f"{name}.wav", TONES[name], 150.0, amplitude=0.25)
    return Baresip(workdir, name, source_wav=source, codecs=("PCMU/8000/1",), timeout_s=180)


@pytest.fixture
def phones(tmp_path: Path) -> Iterator[dict[str, Baresip]]:
    made: dict[str, Baresip] = {}
    workdir = tmp_path / "phones"
    workdir.mkdir()
    try:
        for name in TONES:
            made[name] = _phone(workdir, name).start()
        yield made
    finally:
        for phone in made.values():
            phone.quit()


def _dial(server: SwitchboardServer, phone: Baresip) -> None:
    phone.dial(server.sip_uri("1000"))
    phone.wait_event("CALL_ESTABLISHED", 15)
    phone.poll(1.0)  # the welcome prompt
    for key in PIN + "#":
        phone.sndcode(key)
        phone.poll(0.35)


def _keys(phone: Baresip, keys: str) -> None:
    for key in keys:
        phone.sndcode(key)
        phone.poll(0.35)


def _roster(server: SwitchboardServer) -> list[dict[str, Any]]:
    resp = server.api("GET", f"/api/rooms/{ROOM}/participants")
    assert resp.status == 200, resp.text
    body: list[dict[str, Any]] = resp.json()
    return body


def _ids(server: SwitchboardServer) -> set[str]:
    return {str(p["id"]) for p in _roster(server)}


def _new_one(server: SwitchboardServer, known: set[str]) -> str | None:
    """The id of the one participant of the room not in `known` (phones' names are masked
    alike), else None."""
    new = _ids(server) - known
    return next(iter(new)) if len(new) == 1 else None


def _power(phone: Baresip, freqs: Sequence[float]) -> dict[float, float]:
    samples, rate = phone.heard(WINDOW_S)
    return audio.band_energies(samples, rate, freqs)


def _hears(phone: Baresip, hz: float, nodes: Nodes, timeout: float = 12.0) -> None:
    """Within `timeout`, the phone's last WINDOW_S hold `hz` well above the noise floor."""
    deadline = time.monotonic() + timeout
    seen: dict[float, float] = {}
    while time.monotonic() < deadline:
        try:
            seen = _power(phone, [hz, CONTROL_HZ])
        except (OSError, ValueError, AssertionError):
            seen = {}
        if seen and seen[hz] > 1e-5 and seen[hz] > 20 * max(seen[CONTROL_HZ], 1e-12):
            return
        phone.poll(0.5)
    pytest.fail(f"{phone.name} does not hear {hz:g} Hz within {timeout:.0f} s: "
                f"{ {k: f'{v:.2e}' for k, v in seen.items()} }\n{nodes.logs()}", pytrace=False)


def _stats(server: SwitchboardServer) -> dict[str, int]:
    resp = server.api("GET", "/api/stats")
    assert resp.status == 200, resp.text
    body: dict[str, int] = resp.json()
    return body


def test_a_phone_on_another_node_joins_the_owners_room_and_follows_it(
        nodes: Nodes, phones: dict[str, Baresip]) -> None:
    a, b, c = (nodes.start(n) for n in ("na", "nb", "nc"))
    made = a.api("POST", "/api/rooms", {"name": ROOM, "pin": PIN})
    assert made.status == 201, made.text
    wait_for("three live nodes", lambda: all(n["alive"] for n in cluster(c)["nodes"])
             and len(cluster(c)["nodes"]) == 3, 5, nodes)  # fmt: skip

    # A phone on A places the room there.
    _dial(a, phones["pa"])
    wait_for("pa in the room on na", lambda: len(_ids(a)) == 1, 10, nodes)
    pa = _ids(a)
    assert cluster(c)["rooms"] == {ROOM: "na"}

    # A phone dialling C is handed to A: one conference, C's own roster stays empty.
    _dial(c, phones["pc"])
    wait_for("pc in the room on na", lambda: _new_one(a, pa) is not None, 10, nodes)
    pc = _new_one(a, pa)
    assert _roster(c) == [], _roster(c)
    assert _stats(c)["handoff_calls"] == 1
    _hears(phones["pa"], TONES["pc"], nodes)
    _hears(phones["pc"], TONES["pa"], nodes)

    # Its keys act on A: *6 mutes it in A's roster, and again unmutes it.
    def muted() -> bool | None:
        entry = next((p for p in _roster(a) if p["id"] == pc), None)
        return None if entry is None else bool(entry.get("muted"))

    _keys(phones["pc"], "*6")
    wait_for("pc muted on na", lambda: muted() is True, 5, nodes)
    _keys(phones["pc"], "*6")
    wait_for("pc unmuted on na", lambda: muted() is False, 5, nodes)

    # kill -9 of A: the phone on C follows the room to its new owner.
    os.kill(a.pid, signal.SIGKILL)
    killed = time.monotonic()
    a.proc.wait(timeout=10)

    def new_owner() -> SwitchboardServer | None:
        owner = cluster(b)["rooms"].get(ROOM)
        return {"nb": b, "nc": c}.get(owner or "")

    wait_for("pc in the room on its new owner",
             lambda: (o := new_owner()) is not None and len(_ids(o)) == 1, 15, nodes)
    back = time.monotonic() - killed
    log.info("the phone on nc was back in the room %.1f s after kill -9 of its owner", back)
    owner = new_owner()
    assert owner is not None
    pc_again = _ids(owner)

    # A phone dialling B now meets it there (in the room on B, or handed to C).
    _dial(b, phones["pb"])
    wait_for("pb in the room", lambda: _new_one(owner, pc_again) is not None, 10, nodes)
    _hears(phones["pc"], TONES["pb"], nodes)
    _hears(phones["pb"], TONES["pc"], nodes)

    # Hung up, no leg or hand-off stays on either survivor. (C's BYE to the dead node waits
    # out its SIP transaction: that dialog is not counted here.)
    for name in ("pc", "pb"):
        phones[name].hangup()
    for server in (b, c):
        wait_for("no leg left", lambda s=server: all(
            _stats(s).get(k) == 0 for k in ("legs", "rtp_ports_in_use", "handoff_calls",
                                            "handoff_relays")), 10, nodes)


def _invite(port: int, sip_port: int, header: str) -> bytes:
    sdp = ("v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
           "m=audio 9 RTP/AVP 0\r\na=sendrecv\r\n")
    return (f"INVITE sip:handoff@127.0.0.1:{sip_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};rport;branch=z9hG4bKforged{port}\r\n"
            "Max-Forwards: 70\r\nFrom: \"Mallory\" <sip:666@127.0.0.1>;tag=f1\r\n"
            f"To: <sip:handoff@127.0.0.1>\r\nCall-ID: forged-{port}\r\nCSeq: 1 INVITE\r\n"
            f"Contact: <sip:666@127.0.0.1:{port}>\r\nX-Switchboard-Handoff: {header}\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}"
            ).encode()


def test_a_forged_hand_off_is_refused(nodes: Nodes) -> None:
    """An INVITE that claims to come from another node, signed with a guessed key (or
    unsigned, or stale), is answered 403 and joins nothing."""
    node = nodes.start("nx")
    assert node.api("POST", "/api/rooms", {"name": ROOM, "pin": PIN}).status == 201
    key_guess = b"0" * 64
    now = time.time()
    headers = [sign(key_guess, "ny", ROOM, "x", now, host=True, password=True),
               "v1;node=ny;room=handoff;ts=0;host=1;pw=1;sig=00",
               "v1;node=ny;room=handoff", "x" * 600]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5.0)
        for header in headers:
            port = sock.getsockname()[1]
            sock.sendto(_invite(port, node.sip_port, header), ("127.0.0.1", node.sip_port))
            status = b""
            while not status or status.startswith(b"SIP/2.0 1"):
                status = sock.recv(65535).split(b"\r\n", 1)[0]
            assert status.startswith(b"SIP/2.0 403"), (header[:40], status)
    assert _roster(node) == []
    assert _stats(node)["legs"] == 0


def test_a_forced_drain_takes_the_callers_along(nodes: Nodes,
                                                 phones: dict[str, Baresip]) -> None:
    """Forced drain of the room's node: its own caller is handed to the new owner, the one
    handed to it from the other node joins there directly; they hear each other again."""
    x, y = nodes.start("nx"), nodes.start("ny")
    assert x.api("POST", "/api/rooms", {"name": ROOM, "pin": PIN}).status == 201
    wait_for("two live nodes", lambda: len([n for n in cluster(y)["nodes"] if n["alive"]])
             == 2, 5, nodes)  # fmt: skip
    _dial(x, phones["pa"])
    wait_for("pa in the room on nx", lambda: len(_ids(x)) == 1, 10, nodes)
    _dial(y, phones["pc"])
    wait_for("pc in the room on nx", lambda: len(_ids(x)) == 2, 10, nodes)
    _hears(phones["pa"], TONES["pc"], nodes)
    resp = y.api("POST", "/api/cluster/nodes/nx/drain", {"force": True})
    assert resp.status == 200, resp.text
    wait_for("the room on ny with both callers", lambda: cluster(y)["rooms"].get(ROOM) == "ny"
             and len(_ids(y)) == 2, 15, nodes)  # fmt: skip
    assert _roster(x) == []
    _hears(phones["pa"], TONES["pc"], nodes)
    _hears(phones["pc"], TONES["pa"], nodes)
    assert _stats(x)["handoff_calls"] == 1 and _stats(y)["handoff_calls"] == 0


def test_dial_out_for_a_room_on_another_node_is_placed_there(
        nodes: Nodes, phones: dict[str, Baresip]) -> None:
    """The REST API of a node that does not host the room sends a dial-out to the host (307,
    the same path); `switchboard dial` follows it and shows the host's answer."""
    x, y = nodes.start("nx"), nodes.start("ny")
    assert x.api("POST", "/api/rooms", {"name": ROOM, "pin": PIN}).status == 201
    _dial(x, phones["pa"])
    wait_for("pa in the room on nx", lambda: len(_ids(x)) == 1, 10, nodes)
    path = f"/api/rooms/{ROOM}/dial"
    sent = y.api("POST", path, {"number": "+15550100"})
    assert sent.status == 307, sent.text
    assert sent.headers["Location"] == x.base_url + path
    assert sent.json()["location"] == x.base_url + path
    direct = x.api("POST", path, {"number": "+15550100"})  # no trunk here: the host refuses
    assert direct.status != 307
    out = subprocess.run([sys.executable, "-m", "switchboard", "dial", ROOM, "+15550100",
                          "--config", str(y.config_path)], capture_output=True, text=True,
                         timeout=60, cwd=REPO, check=False)  # fmt: skip
    assert out.returncode == 1, out
    assert json.loads(out.stdout) == direct.json(), (out.stdout, direct.text)
    assert f"HTTP {direct.status}" in out.stderr
