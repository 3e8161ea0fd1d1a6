"""The TURN credentials the server hands to browsers (focus/turn.py), checked by a real
coturn with `use-auth-secret` (PEERS.md, "coturn"): an allocation over UDP and over TCP
succeeds with them; a credential made with another secret, or one that has expired, is
refused. Everything on 127.0.0.1."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aioice.turn import create_turn_endpoint
from peers import procs

from focus.turn import IceServers, rest_credentials

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

SECRET = "a-long-shared-secret-for-the-test-only"


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[int]:
    binary = shutil.which("turnserver")
    if binary is None:
        pytest.fail("turnserver is missing: scripts/install-peers.sh installs coturn")
    port = procs.free_port(kinds=("udp", "tcp"))
    relay = procs.find_port_block(20, kinds=("udp",))
    config = tmp_path / "turnserver.conf"
    config.write_text("\n".join([
        f"listening-ip={procs.LOOPBACK}", f"relay-ip={procs.LOOPBACK}",
        f"listening-port={port}", f"min-port={relay}", f"max-port={relay + 19}",
        "use-auth-secret", f"static-auth-secret={SECRET}", "realm=switchboard.test",
        "fingerprint", "no-cli", "no-tls", "no-dtls", "allow-loopback-peers",
        f"pidfile={tmp_path / 'turnserver.pid'}", f"userdb={tmp_path / 'turndb'}",
        "log-file=stdout", "simple-log", ""]))
    proc = procs.start_process([binary, "-c", str(config)], name="turnserver",
                               log_dir=tmp_path, timeout_s=60)  # fmt: skip
    try:
        deadline = time.monotonic() + 10.0
        while procs.port_is_free(port, ("tcp",)):
            if time.monotonic() > deadline or not proc.running():
                pytest.fail(f"turnserver did not listen: {proc.log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        yield port
    finally:
        proc.stop()


async def _allocate(port: int, username: str, password: str, transport: str) -> tuple[str, int]:
    turn, _ = await asyncio.wait_for(create_turn_endpoint(
        asyncio.DatagramProtocol, server_addr=(procs.LOOPBACK, port), username=username,
        password=password, transport=transport), 10.0)  # fmt: skip
    try:
        relayed: tuple[str, int] = turn.get_extra_info("sockname")
        return relayed
    finally:
        turn.close()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_coturn_accepts_the_handed_out_credentials(coturn: int, transport: str) -> None:
    ice = IceServers(turn_urls=(f"turn:{procs.LOOPBACK}:{coturn}?transport={transport}",),
                     secret=SECRET, ttl=600)  # fmt: skip
    [server] = ice.for_participant("browser-abc123", time.time())
    relayed = await _allocate(coturn, str(server["username"]), str(server["credential"]),
                              transport)  # fmt: skip
    assert relayed[0] == procs.LOOPBACK and relayed[1] > 0


async def test_coturn_refuses_another_secret_and_an_expired_credential(coturn: int) -> None:
    forged = rest_credentials("not-the-secret", "browser-x", time.time(), 600)
    with pytest.raises(Exception, match=r"STUN transaction failed \(40[13]"):
        await _allocate(coturn, *forged, "udp")
    expired = rest_credentials(SECRET, "browser-x", time.time() - 7200, 600)
    with pytest.raises(Exception, match=r"STUN transaction failed \(40[13]"):
        await _allocate(coturn, *expired, "udp")
