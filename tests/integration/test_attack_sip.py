"""SIP denial of service, run as attackers run it (issue 13, item 4), against a real server.

`sip.trusted_peers` is 127.0.0.1 alone: the genuine callers (sipp) come from there, the
attackers from other loopback addresses (127.0.0.2 ...), which Linux routes to lo too.

- an INVITE flood from one address, never ACKed: genuine calls from another still all
  succeed, and the RTP ports all come back afterwards;
- an OPTIONS flood of thousands a second: the server's memory stays bounded and OPTIONS
  from another address are answered throughout;
- sipvicious `svwar` scanning extensions: blocked after a burst (no answer at all), it
  finds at most a handful;
- hundreds of TCP connections from one address: a genuine TCP call from another gets in.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from peers import procs
from peers.sipflood import probe_options
from peers.sipp import Sipp

pytestmark = pytest.mark.integration

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
FLOODER = Path(__file__).resolve().parent / "peers" / "sipflood.py"
ROOM = "attacked"
TRUSTED = {"sip": {"trusted_peers": ["127.0.0.1"]}}


def stats(server: Any) -> dict[str, int]:
    resp = server.api("GET", "/api/stats")
    assert resp.status == 200, resp.text
    result: dict[str, int] = resp.json()
    return result


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def start_flood(workdir: Path, server: Any, bind: str, kind: str, rate: float,
                duration: float) -> procs.ManagedProcess:
    argv = [sys.executable, str(FLOODER), "--bind", bind, "--target", server.sip_address,
            "--kind", kind, "--rate", str(rate), "--duration", str(duration)]
    return procs.start_process(argv, name=f"flood-{kind}-{bind}", log_dir=workdir,
                               timeout_s=duration + 20)


def flood_summary(proc: procs.ManagedProcess, timeout: float) -> dict[str, Any]:
    proc.wait(timeout=timeout)
    lines = [ln for ln in proc.log_text().splitlines() if ln.startswith("{")]
    assert lines, proc.log_tail(20)
    summary: dict[str, Any] = json.loads(lines[-1])
    return summary


def genuine_calls(workdir: Path, server: Any, name: str, calls: int, rate: float,
                  transport: str = "u1") -> Sipp:
    return Sipp(workdir, name, SCENARIOS / "room_direct.xml", remote=server.sip_address,
                service="1000", keys={"room": ROOM}, calls=calls, rate=rate, hold_ms=1000,
                transport=transport, timeout_s=45, trace_msg=False).start()


def create_room(server: Any) -> None:
    resp = server.api("POST", "/api/rooms", {"name": ROOM})
    assert resp.status in (200, 201), resp.text


def test_unacked_invite_flood_leaves_genuine_calls_alone(switchboard_server: Any,
                                                         tmp_workdir: Path) -> None:
    server = switchboard_server(TRUSTED)
    create_room(server)
    flood = start_flood(tmp_workdir, server, "127.0.0.2", "invite", rate=150, duration=10)
    time.sleep(1.0)  # the flood is on before the genuine calls start
    sipp = genuine_calls(tmp_workdir, server, "genuine", calls=24, rate=3)
    res = sipp.wait()
    summary = flood_summary(flood, timeout=30)
    assert res.successful == 24 and res.failed == 0, res.describe()
    assert summary["sent"] >= 1200, summary
    st = stats(server)
    # The flood was cut down before parsing (rate), refused (calls in setup) and blocked.
    dropped = st["sip_dropped_rate"] + st["sip_dropped_invite_rate"] + st["sip_dropped_blocked"]
    assert dropped > 1000, {k: v for k, v in st.items() if k.startswith("sip_")}
    # The calls it got through were refused (486 from the PIN throttle past 5 calls in PIN
    # entry, or 503 past 10 calls in setup), which blocked it as a scanner.
    assert st["calls_rejected"] >= 1 and st["sip_sources_blocked_total"] == 1, st
    # Of its 1,500 INVITEs, a few dozen were parsed at all; the rest cost a token bucket each.
    assert st["calls_total"] - 24 <= 30, st
    # Every port pair comes back: unACKed calls end (no ACK in 32 s), genuine ones hung up.
    assert procs.wait_until(lambda: stats(server)["rtp_ports_in_use"] == 0, 40, 0.5), \
        stats(server)
    assert "SIP source 127.0.0.2 blocked" in server.log_text()


def test_unacked_calls_give_their_ports_back_when_the_pool_runs_short(
        switchboard_server: Any, tmp_workdir: Path) -> None:
    # Six addresses, each within its own limits (10 calls in setup), want 60 of the 50
    # port pairs, answered and never ACKed, then stop. A genuine call after that ends those
    # older than reclaim_after instead of getting 503 for 32 s.
    # 10 calls from each address in PIN entry, all with one caller number: the PIN throttle's
    # defaults (5 an address, 10 a number) would hold them back before the ports run short.
    server = switchboard_server({**TRUSTED, "ivr": {"throttle": {
        "max_concurrent_per_source": 10, "max_failures": 100}}})
    create_room(server)
    attackers = ",".join(f"127.0.0.{n}" for n in range(10, 16))
    flood = start_flood(tmp_workdir, server, attackers, "invite", rate=120, duration=2.5)
    assert procs.wait_until(
        lambda: stats(server)["rtp_ports_in_use"] >= 50, 6, 0.2), stats(server)
    summary = flood_summary(flood, timeout=30)
    assert stats(server)["rtp_ports_in_use"] >= 45  # still pinned after the flood
    sipp = genuine_calls(tmp_workdir, server, "genuine", calls=10, rate=2)
    res = sipp.wait()
    st = stats(server)
    assert res.successful == 10 and res.failed == 0, res.describe()
    assert st["sip_calls_reclaimed"] >= 5, (st, summary)  # enough to leave 10% free
    assert procs.wait_until(lambda: stats(server)["rtp_ports_in_use"] == 0, 40, 0.5), \
        stats(server)


def test_options_flood_memory_bounded_and_others_answered(switchboard_server: Any,
                                                          tmp_workdir: Path) -> None:
    server = switchboard_server(TRUSTED)
    assert probe_options("127.0.0.4", server.sip_address) == 200
    rss_before = rss_kib(server.pid)
    flood = start_flood(tmp_workdir, server, "127.0.0.3", "options", rate=5000, duration=12)
    time.sleep(1.0)
    probes: list[int | None] = []
    started = time.monotonic()
    while time.monotonic() - started < 9.0:
        probes.append(probe_options("127.0.0.4", server.sip_address, timeout=2.0))
        time.sleep(0.3)
    rss_during = rss_kib(server.pid)
    summary = flood_summary(flood, timeout=30)
    st = stats(server)
    assert summary["sent"] >= 25_000, summary
    assert probes and all(p == 200 for p in probes), probes
    assert st["sip_dropped_rate"] >= summary["sent"] * 0.8, (st, summary)
    growth_mb = (max(rss_during, rss_kib(server.pid)) - rss_before) / 1024
    assert growth_mb < 100, f"RSS grew {growth_mb:.0f} MB under the flood"
    assert st["transactions"] < 2000, st


def _svwar_env(tmp: Path) -> dict[str, str]:
    home = tmp / "svhome"
    home.mkdir(exist_ok=True)
    return dict(os.environ, HOME=str(home))


def test_svwar_is_blocked_after_a_burst(switchboard_server: Any, tmp_workdir: Path,
                                       peers_installed: dict[str, str]) -> None:
    # svwar 0.3 parses -b but never binds to it (TakeASip is not given bindingip): it sends
    # from 127.0.0.1 whatever is asked. So here 127.0.0.1 is the untrusted scanner, and
    # nobody is trusted.
    server = switchboard_server({"sip": {"trusted_peers": ["127.0.0.200"]}})
    scanner = "127.0.0.1"
    port = procs.free_port(kinds=("udp",))
    svwar = peers_installed["svwar"]  # (the fixture fails loudly when it is missing)
    argv = [svwar, "-x", scanner, "-P", str(port), "-m", "INVITE", "-e", "100-400",
            "--force", "--maximumtime", "8", f"udp://{server.sip_address}"]
    proc = procs.start_process(argv, name="svwar", log_dir=tmp_workdir, timeout_s=45,
                               env=_svwar_env(tmp_workdir), cwd=tmp_workdir)
    proc.wait(timeout=55)
    out = proc.log_text()
    found = set(re.findall(r"extension '(\d+)'", out))
    found |= set(re.findall(r"^\|\s*(\d+)\s*\|", out, re.M))
    st = stats(server)
    assert st["sip_sources_blocked_total"] == 1 and st["sip_blocked_sources"] == 1, st
    assert len(found) <= 12, out[-3000:]  # a handful at most, of the 301 it tried
    # Blocked: silence, whatever it sends; another address is still answered.
    assert probe_options(scanner, server.sip_address, timeout=1.0) is None
    assert probe_options("127.0.0.7", server.sip_address) == 200
    assert st["sip_dropped_blocked"] > 0, st
    assert f"SIP source {scanner} blocked" in server.log_text()


def test_many_tcp_connections_from_one_address(switchboard_server: Any,
                                               tmp_workdir: Path) -> None:
    server = switchboard_server(TRUSTED)
    create_room(server)
    host, port = server.sip_address.rsplit(":", 1)
    sockets: list[socket.socket] = []
    try:
        for _ in range(200):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.5", 0))
            sock.settimeout(2.0)
            sock.connect((host, int(port)))
            sockets.append(sock)
        assert procs.wait_until(lambda: stats(server)["sip_tcp_refused"] >= 160, 10, 0.2), \
            stats(server)
        alive = _still_open(sockets)
        assert alive <= 32, f"{alive} connections from one address kept"
        sipp = genuine_calls(tmp_workdir, server, "tcp-genuine", calls=3, rate=1,
                             transport="t1")
        res = sipp.wait()
        assert res.successful == 3 and res.failed == 0, res.describe()
    finally:
        for sock in sockets:
            sock.close()


def _still_open(sockets: list[socket.socket]) -> int:
    """Connections the server kept: a refused one was reset (recv gives b"" or an error)."""
    alive = 0
    for sock in sockets:
        sock.setblocking(False)
        try:
            if sock.recv(1):
                alive += 1
        except BlockingIOError:
            alive += 1  # nothing to read, not closed: kept
        except OSError:
            pass
    return alive
