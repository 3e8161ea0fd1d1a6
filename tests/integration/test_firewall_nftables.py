"""deploy/nftables.conf, the firewall example: real nft loads it (twice: it replaces only its
own table) in a network namespace of the test's own (`unshare -n`, nothing on the host is
touched), and the rules nft reads back open every port of the shipped defaults: the web and
ACME, browser media's UDP port and ICE-TCP, SIP and phone RTP (from the trunks' set only),
and coturn's ports as deploy/coturn.conf sets them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from switchboard.config import Config
from switchboard.server_config import render

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "nftables.conf"


def _coturn(option: str) -> int:
    for line in (REPO / "deploy" / "coturn.conf").read_text().splitlines():
        name, eq, value = line.partition("=")
        if eq and name == option:
            return int(value)
    raise AssertionError(f"deploy/coturn.conf has no {option}")


def _loaded_rules() -> list[str]:
    nft, unshare = shutil.which("nft"), shutil.which("unshare")
    if nft is None or unshare is None:
        pytest.fail("nft (nftables) or unshare (util-linux) is missing: "
                    "scripts/install-peers.sh installs them", pytrace=False)
    checked = subprocess.run([unshare, "-n", "--", nft, "-c", "-f", str(RULES)],
                             capture_output=True, text=True, timeout=30)  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    loaded = subprocess.run(
        [unshare, "-n", "--", "sh", "-c", f'"{nft}" -f "{RULES}" && "{nft}" -f "{RULES}" && '
         f'"{nft}" list table inet switchboard'],
        capture_output=True, text=True, timeout=30)  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    return [line.strip() for line in loaded.stdout.splitlines()]


def test_the_firewall_example_loads_and_opens_every_default_port() -> None:
    rules = _loaded_rules()
    assert "type filter hook input priority filter; policy drop;" in rules
    assert "ct state established,related accept" in rules
    defaults = Config()
    [web] = [line.partition("=")[2].strip().strip('"') for line in
             render("meet.example.org", bind_ip="10.0.0.5").splitlines()
             if line.startswith("listen = ") and ":443" in line]  # fmt: skip
    web_port = int(web.rpartition(":")[2])
    acme_port = defaults.http.acme_http_host_port[1]
    assert f"tcp dport {{ {acme_port}, {web_port} }} accept" in rules
    assert f"udp dport {defaults.bridge.udp_port} accept" in rules
    assert f"tcp dport {defaults.bridge.tcp_port} accept" in rules
    [sip_port] = {a.port for a in defaults.sip.listen_addresses}
    low, high = defaults.media.port_range
    for family in ("ip saddr @sip_peers", "ip6 saddr @sip_peers6"):
        assert f"{family} udp dport {sip_port} accept" in rules
        assert f"{family} tcp dport {{ {sip_port}, {sip_port + 1} }} accept" in rules  # TLS
        assert f"{family} udp dport {low}-{high} accept" in rules
    turn, turns = _coturn("listening-port"), _coturn("tls-listening-port")
    assert f"udp dport {turn} accept" in rules
    assert f"tcp dport {{ {turn}, {turns} }} accept" in rules
    assert f"udp dport {_coturn('min-port')}-{_coturn('max-port')} accept" in rules
    # nothing else is opened to everyone (SSH aside, which the file says to adapt)
    opened = [line for line in rules if "dport" in line and "saddr" not in line]
    assert len(opened) == 7, opened
