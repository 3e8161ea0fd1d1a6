"""TURN over TLS (issue 15, section 2) with real headless Chromium behind a NAT that drops all
UDP, a real coturn on the server's host run from the shipped deploy/coturn.conf (only the
secret, addresses and certificate paths substituted: a broken shipped file fails here), and
`switchboard serve` with ICE-TCP off (bridge.tcp_port = 0) handing out
`turns:SERVER:5349?transport=tcp` with short-lived REST credentials. The only way left for
media is TLS to coturn: the test asserts that each browser's selected pair has a relay
candidate allocated over TLS (relayProtocol "tls"), and that the two browsers hear each
other.

Chromium checks the TURN server's certificate like any other (its name or IP address, a
trusted issuer): coturn's leaf comes from a test CA, for the address 10.99.1.1, and that CA is
in the NSS database of the HOME Chromium runs with (NetLab.trust_ca). Without it Chromium
opens the TLS connection to coturn, refuses the certificate and hangs up before any request:
no allocation, no candidate pair (seen while writing this test).
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_harness import Browser, Member
from netlab import SERVER, NetLab, tools_missing
from real_server import SwitchboardProcess
from test_media_paths import Coturn, _hear_each_other, _join, _until, selected_pair

_INTEGRATION = Path(__file__).resolve().parents[1] / "integration"
if str(_INTEGRATION) not in sys.path:  # the test CA lives with the integration peers
    sys.path.insert(0, str(_INTEGRATION))

from peers.certs import LocalCA  # noqa: E402

TURN_SECRET = secrets.token_hex(16)
TLS_PORT = 5349
MEDIA_TIMEOUT = 45.0


@pytest.fixture
def lab() -> Iterator[NetLab]:
    missing = tools_missing()
    if missing:
        pytest.fail(f"missing {missing}: scripts/install-peers.sh installs them", pytrace=False)
    netlab = NetLab(secrets.token_hex(3))
    try:
        netlab.up()
        yield netlab
    finally:
        netlab.down()


SHIPPED_COTURN = Path(__file__).resolve().parents[2] / "deploy" / "coturn.conf"


def shipped_coturn_config(workdir: Path, cert: Path, key: Path) -> str:
    """deploy/coturn.conf as shipped, with only what must differ here substituted: the
    secret, the listening (and relay) address, the bridge's address among the allowed
    peers, the certificate paths; then this run's own pid file and user database (and
    verbose logging, which the assertions read). Every substituted option must be in the
    shipped file exactly once, so a file that loses or renames one fails here."""
    values = {
        "static-auth-secret": TURN_SECRET, "listening-ip": SERVER, "relay-ip": SERVER,
        "allowed-peer-ip": SERVER, "cert": str(cert), "pkey": str(key),
        "tls-listening-port": str(TLS_PORT),
    }  # fmt: skip
    seen: dict[str, int] = dict.fromkeys(values, 0)
    lines = []
    for line in SHIPPED_COTURN.read_text().splitlines():
        name, eq, _ = line.partition("=")
        if eq and not line.startswith("#") and name in values:
            line = f"{name}={values[name]}"
            seen[name] += 1
        lines.append(line)
    assert all(n == 1 for n in seen.values()), f"deploy/coturn.conf: {seen}"
    assert "use-auth-secret" in lines, "deploy/coturn.conf: no use-auth-secret"
    lines += [f"pidfile={workdir / 'turnserver.pid'}", f"userdb={workdir / 'turndb'}",
              "verbose", ""]  # fmt: skip
    return "\n".join(lines)


class CoturnTLS(Coturn):
    """A real coturn in the server's namespace, run from the shipped deploy/coturn.conf
    (TURN over UDP and TCP on SERVER:3478, over TLS on SERVER:5349 with the given
    certificate, the TURN REST API's shared secret). Browsers are given only the TLS URL."""

    def __init__(self, netns: str, workdir: Path, cert: Path, key: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "turnserver.conf"
        config.write_text(shipped_coturn_config(workdir, cert, key))
        self.log_path = workdir / "turnserver.log"
        binary = "/usr/bin/turnserver"
        if not Path(binary).is_file():
            pytest.fail("turnserver is missing: scripts/install-peers.sh installs coturn",
                        pytrace=False)
        with self.log_path.open("wb") as out:
            self.popen = subprocess.Popen(
                ["timeout", "--kill-after=5", "600", "ip", "netns", "exec", netns, binary,
                 "-c", str(config)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 10.0
        while f"{SERVER}:{TLS_PORT}" not in self.log_text():
            if self.popen.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"turnserver has no TLS listener: {self.log_text()[-2000:]}",
                            pytrace=False)
            time.sleep(0.2)


def test_udp_blocked_media_flows_through_turn_over_tls(
        playwright_instance: Any, tmp_path: Path, lab: NetLab) -> None:  # fmt: skip
    lab.block_udp()
    ca = LocalCA.create(tmp_path / "ca", "TURN test CA")
    cert, key = ca.issue(tmp_path / "turn-tls", [SERVER])
    coturn = CoturnTLS(lab.server, tmp_path / "coturn", cert, key)
    home = tmp_path / "home"
    NetLab.trust_ca(home, ca.path, "turn-ca")
    wrapper = lab.chromium_wrapper(tmp_path / "bin", home=home)
    members: list[Member] = []
    server: SwitchboardProcess | None = None
    try:
        server = SwitchboardProcess.start(tmp_path / "switchboard", {"bridge": {
            "tcp_port": 0, "turn_servers": [f"turns:{SERVER}:{TLS_PORT}?transport=tcp"],
            "turn_secret": TURN_SECRET, "turn_ttl": 600}}, netns=lab.server, host=SERVER)
        for i in range(2):
            browser = Browser(playwright_instance, tmp_path / f"profile-{i}", executable=wrapper,
                              extra_args=[f"--unsafely-treat-insecure-origin-as-secure="
                                          f"{server.url}"])  # fmt: skip
            try:
                members.append(_join(browser, server.url, "tlsroom", f"T{i}"))
            except BaseException:
                browser.close()
                raise
        for m in members:
            [turn] = m.messages("joined")[0]["ice_servers"]
            assert turn["urls"] in ([f"turns:{SERVER}:{TLS_PORT}?transport=tcp"],
                                    f"turns:{SERVER}:{TLS_PORT}?transport=tcp"), turn
            assert turn["username"].endswith(f":{m.id}")
        _until(members, selected_pair, MEDIA_TIMEOUT, "a selected candidate pair")
        for m in members:
            pair = selected_pair(m)
            assert pair is not None
            assert (pair["local"]["type"], pair["local"]["relayProtocol"]) == (
                "relay", "tls"), pair
        _hear_each_other(members)
        # coturn's side: each browser's allocation, in a TLS session with its credentials
        logged = coturn.log_text().splitlines()
        for m in members:
            [turn] = m.messages("joined")[0]["ice_servers"]
            user = turn["username"]
            assert any(f"username=<{user}>" in line and "method=TLS" in line
                       for line in logged), f"no TLS session for {user}"  # fmt: skip
            assert any(f"user <{user}>: incoming packet ALLOCATE processed, success" in line
                       for line in logged), f"no allocation for {user}"  # fmt: skip
    finally:
        for m in members:
            m.browser.close()
        try:
            if server is not None:
                assert server.stop(), server.log_tail()
        finally:
            coturn.stop()
    assert TURN_SECRET not in server.log_path.read_text(errors="replace")
