"""Test hosts in network namespaces (PEERS.md, "Test hosts in network namespaces"): a server,
a NAT router and a client behind it, joined by veth pairs, with addresses that exist only
inside these namespaces and go away with them.

    client 10.99.2.2 --- 10.99.2.1 [nat, masquerade] 10.99.1.2 --- 10.99.1.1 server
                                   [nat] 10.99.3.1 --- 10.99.3.2 extra host (add_host)

`NetLab.up()` builds it, `down()` deletes the namespaces (their veths and addresses with
them) and their /etc/netns folders; `block_udp()` drops every forwarded UDP packet at the
router (a network that blocks UDP). `chromium_wrapper()` writes a launcher that runs
Chromium inside the client namespace, for `Browser(executable=...)`: Playwright talks to it
over pipes, so the test process stays in its own loopback-only namespace; with `home=` it
runs with that HOME, whose NSS database (`trust_ca`) holds the test CAs Chromium trusts.
`add_host()` adds a third host (an ACME server, say) on its own link from the router, not
behind the NAT: the server reaches it and it reaches the server by their own addresses.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
from pathlib import Path

from browser_harness import CHROMIUM

log = logging.getLogger(__name__)

SERVER = "10.99.1.1"
NAT_OUTSIDE = "10.99.1.2"
NAT_INSIDE = "10.99.2.1"
CLIENT = "10.99.2.2"
ROUTER_EXTRA = "10.99.3.1"
EXTRA = "10.99.3.2"


def _run(*argv: str, stdin: str | None = None) -> None:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30,
                          check=False)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}")


def tools_missing() -> list[str]:
    return [tool for tool in ("ip", "nft", "certutil") if shutil.which(tool) is None]


class NetLab:
    def __init__(self, tag: str) -> None:
        self.server = f"sbs-{tag}"
        self.nat = f"sbn-{tag}"
        self.client = f"sbc-{tag}"
        self.extra = f"sbx-{tag}"
        self._made: list[str] = []

    @property
    def namespaces(self) -> tuple[str, str, str]:
        return self.server, self.nat, self.client

    def up(self) -> None:
        for ns in self.namespaces:
            _run("ip", "netns", "add", ns)
            self._made.append(ns)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            folder = Path("/etc/netns") / ns
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        _run("ip", "link", "add", "s-eth0", "netns", self.server, "type", "veth",
             "peer", "name", "n-out", "netns", self.nat)
        _run("ip", "link", "add", "c-eth0", "netns", self.client, "type", "veth",
             "peer", "name", "n-in", "netns", self.nat)
        for ns, dev, addr in ((self.server, "s-eth0", SERVER), (self.nat, "n-out", NAT_OUTSIDE),
                              (self.nat, "n-in", NAT_INSIDE), (self.client, "c-eth0", CLIENT)):
            _run("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            _run("ip", "-n", ns, "link", "set", dev, "up")
        _run("ip", "-n", self.client, "route", "add", "default", "via", NAT_INSIDE)
        _run("ip", "netns", "exec", self.nat, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        _run("ip", "netns", "exec", self.nat, "nft", "-f", "-", stdin=(
            "table ip sbnat {\n"
            "  chain postrouting {\n"
            "    type nat hook postrouting priority srcnat; oifname \"n-out\" masquerade;\n"
            "  }\n"
            "}\n"))
        log.info("netlab: %s behind %s reaches %s", self.client, self.nat, self.server)

    def add_host(self) -> str:
        """A host `self.extra` at EXTRA on a link of its own from the router (10.99.3.0/24,
        not masqueraded towards it), routed to and from the server. Call after `up()`;
        `down()` deletes it with the rest. Returns its namespace."""
        ns = self.extra
        _run("ip", "netns", "add", ns)
        self._made.append(ns)
        _run("ip", "-n", ns, "link", "set", "lo", "up")
        folder = Path("/etc/netns") / ns
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        _run("ip", "link", "add", "x-eth0", "netns", ns, "type", "veth",
             "peer", "name", "n-x", "netns", self.nat)
        for owner, dev, addr in ((ns, "x-eth0", EXTRA), (self.nat, "n-x", ROUTER_EXTRA)):
            _run("ip", "-n", owner, "addr", "add", f"{addr}/24", "dev", dev)
            _run("ip", "-n", owner, "link", "set", dev, "up")
        _run("ip", "-n", ns, "route", "add", "default", "via", ROUTER_EXTRA)
        _run("ip", "-n", self.server, "route", "add", "10.99.3.0/24", "via", NAT_OUTSIDE)
        log.info("netlab: %s at %s, routed via %s", ns, EXTRA, self.nat)
        return ns

    def run_in(self, ns: str, *argv: str, timeout: float = 30.0) -> str:
        """Run a command inside namespace `ns`; its stdout (raises on a non-zero exit)."""
        done = subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True,
                              text=True, timeout=timeout, check=False)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} in {ns}: exit {done.returncode}: "
                               f"{done.stderr.strip()[-500:]}")
        return done.stdout

    def block_udp(self) -> None:
        """Drop every UDP packet the router forwards, both ways."""
        _run("ip", "netns", "exec", self.nat, "nft", "-f", "-", stdin=(
            "table inet sbfilter {\n"
            "  chain forward {\n"
            "    type filter hook forward priority 0; meta l4proto udp drop;\n"
            "  }\n"
            "}\n"))

    def chromium_wrapper(self, folder: Path, *, home: Path | None = None) -> Path:
        """A launcher running Chromium in the client namespace; with `home`, under that HOME
        (Chromium reads the NSS database of $HOME/.pki/nssdb: see `trust_ca`)."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "chromium-in-client"
        env = f"env HOME={home} " if home is not None else ""
        path.write_text(f"#!/bin/sh\nexec {env}ip netns exec {self.client} {CHROMIUM} \"$@\"\n")
        path.chmod(0o755)
        return path

    @staticmethod
    def trust_ca(home: Path, ca_pem: Path, nickname: str) -> None:
        """Make `ca_pem` a trusted root for server certificates in the NSS database under
        `home` (PEERS.md, "Chromium trusting a test CA"): a Chromium run with HOME=home then
        accepts certificates it issued, with no flag about certificate errors."""
        certutil = shutil.which("certutil")
        if certutil is None:
            raise RuntimeError("certutil is missing: install libnss3-tools")
        db = home / ".pki" / "nssdb"
        if not (db / "cert9.db").exists():
            db.mkdir(parents=True, exist_ok=True)
            _run(certutil, "-d", f"sql:{db}", "-N", "--empty-password")
        _run(certutil, "-d", f"sql:{db}", "-A", "-t", "C,,", "-n", nickname, "-i", str(ca_pem))

    def down(self) -> None:
        for ns in reversed(self._made):
            done = subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30,
                                  check=False)  # fmt: skip
            if done.returncode != 0:
                log.warning("netlab: deleting %s: %s", ns, done.stderr.decode().strip())
            shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)
        self._made = []
        with contextlib.suppress(OSError):  # only when empty: another test's are kept
            Path("/etc/netns").rmdir()
