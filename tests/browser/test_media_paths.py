"""Browser media through the one port, NAT, and networks that block UDP (issue 15, section 2),
with real headless Chromium against the real `switchboard serve`.

- On loopback: four browsers in two rooms all use the bridge's one UDP port (the selected
  candidate pair of each, from getStats) and each hears the other of its room.
- In network namespaces (tests/browser/netlab.py): the browsers sit behind a NAT router
  (masquerade) and the server on another host; media flows both ways through the NAT. Then
  the router drops all UDP: media flows over ICE-TCP to `bridge.tcp_port`, or, with ICE-TCP
  off, through a real coturn over TCP with the short-lived credentials the server hands out.
  Each test asserts which candidate pair the browser selected.

Pages on http://10.99.1.1 are not a secure context; Chromium is told to treat that one
origin as secure (`--unsafely-treat-insecure-origin-as-secure`), which HTTPS gives a real
deployment.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_harness import Browser, Member, join_meeting, rtp_stats
from netlab import NAT_OUTSIDE, SERVER, NetLab, tools_missing
from real_server import SwitchboardProcess

log = logging.getLogger(__name__)

MEDIA_TIMEOUT = 40.0  # seconds: ICE over TCP or TURN, on a shared 2-core machine
TURN_SECRET = secrets.token_hex(16)

_PAIR_JS = """
async () => {
  const pc = window.switchboard && window.switchboard.pc;
  if (!pc) return null;
  const report = await pc.getStats();
  const byId = {};
  report.forEach((s) => { byId[s.id] = s; });
  let pair = null;
  report.forEach((s) => {
    if (s.type === 'transport' && s.selectedCandidatePairId) pair = byId[s.selectedCandidatePairId];
  });
  if (!pair || pair.state !== 'succeeded') return null;
  const l = byId[pair.localCandidateId], r = byId[pair.remoteCandidateId];
  return {
    local: {type: l.candidateType, protocol: l.protocol, address: l.address ?? null,
            port: l.port, relayProtocol: l.relayProtocol ?? null},
    remote: {type: r.candidateType, protocol: r.protocol, address: r.address ?? null,
             port: r.port},
  };
}
"""


def selected_pair(member: Member) -> dict[str, Any] | None:
    pair: dict[str, Any] | None = member.page.evaluate(_PAIR_JS)
    return pair


def _audio_in(member: Member) -> int:
    stats = rtp_stats(member.page) or {}
    return max((s["packetsReceived"] for s in stats.get("inbound", []) if s["kind"] == "audio"),
               default=0)  # fmt: skip


def _audio_out(member: Member) -> int:
    stats = rtp_stats(member.page) or {}
    return max((s["packetsSent"] for s in stats.get("outbound", []) if s["kind"] == "audio"),
               default=0)  # fmt: skip


def _until(members: list[Member], condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not all(condition(m) for m in members):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}: "
                                 f"{[(m.name, selected_pair(m), _audio_in(m)) for m in members]}")
        members[0].page.wait_for_timeout(200)


def _hear_each_other(members: list[Member]) -> None:
    """Each member receives audio (from the others of its room) and keeps receiving it."""
    _until(members, lambda m: _audio_in(m) > 50 and _audio_out(m) > 50, MEDIA_TIMEOUT,
           "audio both ways")
    before = {m.name: _audio_in(m) for m in members}
    members[0].page.wait_for_timeout(2000)
    for m in members:
        assert _audio_in(m) > before[m.name] + 25, f"{m.name}: audio stopped"


def _join(browser: Browser, url: str, room: str, name: str) -> Member:
    page = browser.open(f"{url}/{room}")
    join_meeting(page, name, camera=False)
    deadline = time.monotonic() + 15.0
    while not browser.messages(page, "joined"):
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}: no `joined` within 15 s")
        page.wait_for_timeout(50)
    joined = browser.messages(page, "joined")[0]
    return Member(browser, page, name, room, str(joined["self"]["id"]))


# -- the one port, on loopback ----------------------------------------------------------------


def test_four_browsers_in_two_rooms_share_the_one_port(playwright_instance: Any,
                                                       tmp_path: Path) -> None:  # fmt: skip
    server = SwitchboardProcess.start(tmp_path / "switchboard")
    udp_port = int(server.config_path.read_text().split("udp_port = ")[1].split()[0])
    browsers: list[Browser] = []
    try:
        members = []
        for i in range(4):
            browser = Browser(playwright_instance, tmp_path / f"profile-{i}")
            browsers.append(browser)
            members.append(_join(browser, server.url, f"room-{i % 2}", f"P{i}"))
        _until(members, selected_pair, MEDIA_TIMEOUT, "a selected candidate pair")
        for m in members:
            pair = selected_pair(m)
            assert pair is not None
            assert (pair["remote"]["protocol"], pair["remote"]["port"]) == ("udp", udp_port), pair
        _hear_each_other(members)
        stats = server.api("GET", "/api/stats")
        assert stats["media_port_endpoints"] == 4 and stats["media_port_latched"] >= 4
    finally:
        for browser in browsers:
            browser.close()
        assert server.stop(), server.log_tail()


# -- NAT and blocked UDP, in network namespaces -----------------------------------------------


@pytest.fixture
def lab() -> Iterator[NetLab]:
    missing = tools_missing()
    if missing:
        pytest.fail(f"missing {missing}: scripts/install-peers.sh installs nftables",
                    pytrace=False)
    netlab = NetLab(secrets.token_hex(3))
    try:
        netlab.up()
        yield netlab
    finally:
        netlab.down()


class Coturn:
    """A real coturn in the server's namespace, TURN over UDP and TCP on SERVER:3478, with
    the TURN REST API's shared secret."""

    def __init__(self, netns: str, workdir: Path) -> None:
        binary = shutil.which("turnserver")
        if binary is None:
            pytest.fail("turnserver is missing: scripts/install-peers.sh installs coturn",
                        pytrace=False)
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "turnserver.conf"
        config.write_text("\n".join([
            f"listening-ip={SERVER}", f"relay-ip={SERVER}", "listening-port=3478",
            "min-port=49152", "max-port=49252", "use-auth-secret",
            f"static-auth-secret={TURN_SECRET}", "realm=switchboard.test", "fingerprint",
            "no-cli", "no-tls", "no-dtls", f"allowed-peer-ip={SERVER}",
            f"pidfile={workdir / 'turnserver.pid'}", f"userdb={workdir / 'turndb'}",
            "log-file=stdout", "simple-log", "verbose", ""]))
        self.log_path = workdir / "turnserver.log"
        with self.log_path.open("wb") as out:
            self.popen = subprocess.Popen(
                ["timeout", "--kill-after=5", "600", "ip", "netns", "exec", netns, binary,
                 "-c", str(config)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)  # fmt: skip
        time.sleep(1.0)
        if self.popen.poll() is not None:
            pytest.fail(f"turnserver exited: {self.log_text()[-2000:]}", pytrace=False)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)


def _lab_meeting(playwright_instance: Any, tmp_path: Path, lab: NetLab,
                 bridge: dict[str, Any]) -> tuple[SwitchboardProcess, list[Member]]:  # fmt: skip
    """The server in the lab's server namespace and two browsers behind its NAT, joined to
    one room. The caller closes the browsers (member.browser) and stops the server."""
    server = SwitchboardProcess.start(tmp_path / "switchboard", {"bridge": bridge},
                                      netns=lab.server, host=SERVER)  # fmt: skip
    wrapper = lab.chromium_wrapper(tmp_path / "bin")
    origin = server.url
    members: list[Member] = []
    try:
        for i in range(2):
            browser = Browser(playwright_instance, tmp_path / f"profile-{i}", executable=wrapper,
                              extra_args=[f"--unsafely-treat-insecure-origin-as-secure={origin}"])
            members.append(_join(browser, origin, "natroom", f"N{i}"))
    except BaseException:
        for m in members:
            m.browser.close()
        server.stop()
        raise
    return server, members


def _close(server: SwitchboardProcess, members: list[Member]) -> None:
    for m in members:
        m.browser.close()
    assert server.stop(), server.log_tail()


def test_browsers_behind_nat_get_media_both_ways(playwright_instance: Any, tmp_path: Path,
                                                 lab: NetLab) -> None:  # fmt: skip
    server, members = _lab_meeting(playwright_instance, tmp_path, lab, {"tcp_port": 0})
    try:
        _until(members, selected_pair, MEDIA_TIMEOUT, "a selected candidate pair")
        udp_port = int(server.config_path.read_text().split("udp_port = ")[1].split()[0])
        for m in members:
            pair = selected_pair(m)
            assert pair is not None
            assert (pair["remote"]["address"], pair["remote"]["port"],
                    pair["remote"]["protocol"]) == (SERVER, udp_port, "udp"), pair
        _hear_each_other(members)
        stats = server.api("GET", "/api/stats")
        assert stats["media_port_latched"] >= 2
        # the bridge's pairs go to the NAT's outside address, not the browsers' own
        connected = [line for line in server.log_path.read_text(errors="replace").splitlines()
                     if "connected via" in line]  # fmt: skip
        assert len(connected) >= 2 and all(NAT_OUTSIDE in line for line in connected), connected
    finally:
        _close(server, members)


def test_udp_blocked_media_flows_over_ice_tcp(playwright_instance: Any, tmp_path: Path,
                                              lab: NetLab) -> None:  # fmt: skip
    lab.block_udp()
    server, members = _lab_meeting(playwright_instance, tmp_path, lab, {})
    try:
        tcp_port = int(server.config_path.read_text().split("tcp_port = ")[1].split()[0])
        _until(members, selected_pair, MEDIA_TIMEOUT, "a selected candidate pair")
        for m in members:
            pair = selected_pair(m)
            assert pair is not None
            assert (pair["local"]["protocol"], pair["remote"]["protocol"],
                    pair["remote"]["port"]) == ("tcp", "tcp", tcp_port), pair
        _hear_each_other(members)
        stats = server.api("GET", "/api/stats")
        assert stats["media_tcp_connections"] >= 2 and stats["media_tcp_latched"] >= 2
    finally:
        _close(server, members)


def test_udp_blocked_media_flows_through_turn(playwright_instance: Any, tmp_path: Path,
                                              lab: NetLab) -> None:  # fmt: skip
    lab.block_udp()
    coturn = Coturn(lab.server, tmp_path / "coturn")
    try:
        server, members = _lab_meeting(playwright_instance, tmp_path, lab, {
            "tcp_port": 0, "turn_servers": [f"turn:{SERVER}:3478?transport=tcp"],
            "turn_secret": TURN_SECRET, "turn_ttl": 600})
        try:
            for m in members:
                [turn] = m.messages("joined")[0]["ice_servers"]
                assert turn["username"].endswith(f":{m.id}")
            _until(members, selected_pair, MEDIA_TIMEOUT, "a selected candidate pair")
            for m in members:
                pair = selected_pair(m)
                assert pair is not None
                assert (pair["local"]["type"], pair["local"]["relayProtocol"]) == (
                    "relay", "tcp"), pair
            _hear_each_other(members)
        finally:
            _close(server, members)
    finally:
        coturn.stop()
    assert TURN_SECRET not in server.log_path.read_text(errors="replace")
