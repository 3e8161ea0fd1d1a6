"""pebble (Let's Encrypt's ACME test server) with pebble-challtestsrv as its DNS, on loopback.

Every name resolves to 127.0.0.1 (challtestsrv's -defaultIPv4); pebble validates HTTP-01 on
`http_port` (where the server under test listens with http.acme_http_listen). pebble's own
HTTPS listener gets a leaf from a test CA (`ca_path` trusts it); its issuing root, new on every
start, is fetched from the management port (`root_pem`). `start_pebble_in_netns` runs the
same pair inside a network namespace, for tests across test hosts.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from peers import procs
from peers.certs import LocalCA


@dataclass
class Pebble:
    directory: str  # the ACME directory URL
    ca_path: Path  # trusts pebble's own listener (http.acme_ca_bundle)
    root_pem: bytes  # pebble's issuing root: trusts the certificates it issues
    procs: list[procs.ManagedProcess]

    def stop(self) -> None:
        for p in self.procs:
            p.stop(term_timeout=5.0, kill_timeout=5.0)


def require(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.fail(f"{program} is missing: install the Debian package `pebble` "
                    f"(scripts/install-peers.sh)", pytrace=False)
    return path


def start_pebble(workdir: Path, *, http_port: int, validity: int = 3600) -> Pebble:
    pebble, challtestsrv = require("pebble"), require("pebble-challtestsrv")
    ca = LocalCA.create(workdir / "pebble-ca", "pebble listener test CA")
    cert, key = ca.issue(workdir / "pebble-listener", ["localhost", procs.LOOPBACK])
    acme_port = procs.free_port(kinds=("tcp",))
    mgmt_port = procs.free_port(kinds=("tcp",))
    dns_port = procs.free_port(kinds=("udp", "tcp"))
    dns_mgmt = procs.free_port(kinds=("tcp",))
    config = {"pebble": {
        "listenAddress": f"{procs.LOOPBACK}:{acme_port}",
        "managementListenAddress": f"{procs.LOOPBACK}:{mgmt_port}",
        "certificate": str(cert), "privateKey": str(key),
        "httpPort": http_port, "tlsPort": procs.free_port(kinds=("tcp",)),
        "ocspResponderURL": "", "externalAccountBindingRequired": False,
        "certificateValidityPeriod": validity,
    }}  # fmt: skip
    config_path = workdir / "pebble-config.json"
    config_path.write_text(json.dumps(config, indent=2))
    started = [procs.start_process(
        [challtestsrv, "-dns01", f"{procs.LOOPBACK}:{dns_port}", "-defaultIPv4",
         procs.LOOPBACK, "-defaultIPv6", "", "-http01", "", "-https01", "", "-tlsalpn01", "",
         "-management", f"{procs.LOOPBACK}:{dns_mgmt}"],
        name="pebble-challtestsrv", log_dir=workdir, timeout_s=600)]  # fmt: skip
    env = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0",
           "PATH": "/usr/bin:/bin"}  # fmt: skip
    started.append(procs.start_process(
        [pebble, "-config", str(config_path), "-dnsserver", f"{procs.LOOPBACK}:{dns_port}"],
        name="pebble", log_dir=workdir, timeout_s=600, env=env))  # fmt: skip
    result = Pebble(f"https://{procs.LOOPBACK}:{acme_port}/dir", ca.path, b"", started)
    context = ssl.create_default_context(cafile=str(ca.path))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                         urllib.request.HTTPSHandler(context=context))

    def fetch_root() -> bool:
        try:
            with opener.open(f"https://{procs.LOOPBACK}:{mgmt_port}/roots/0", timeout=2) as r:
                result.root_pem = r.read()
            with opener.open(result.directory, timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    if not procs.wait_until(fetch_root, timeout=20, interval=0.2):
        result.stop()
        pytest.fail("pebble did not come up within 20 s:\n"
                    + (workdir / "pebble.log").read_text()[-2000:], pytrace=False)
    return result


# Inside a network namespace (the test hosts of tests/browser/netlab.py), where the test
# process cannot connect: pebble listens on the host's own address, its DNS
# (pebble-challtestsrv) on that namespace's loopback and answers every name with
# `resolve_to`, and the root is fetched from inside the namespace.
_NS_GET = """
import ssl, sys, urllib.request
context = ssl.create_default_context(cafile=sys.argv[2])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                     urllib.request.HTTPSHandler(context=context))
with opener.open(sys.argv[1], timeout=2) as r:
    sys.stdout.buffer.write(r.read())
"""
NS_ACME_PORT = 14000
NS_MGMT_PORT = 15000


def _ns_get(netns: str, url: str, ca: Path) -> bytes | None:
    done = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", _NS_GET, url,
                           str(ca)], capture_output=True, timeout=15, check=False)  # fmt: skip
    return done.stdout if done.returncode == 0 else None


def start_pebble_in_netns(workdir: Path, *, netns: str, address: str, resolve_to: str,
                          http_port: int = 80, validity: int = 3600) -> Pebble:
    """pebble at https://ADDRESS:14000/dir in namespace `netns`, validating HTTP-01 on
    `resolve_to`:`http_port` for every name."""
    pebble, challtestsrv = require("pebble"), require("pebble-challtestsrv")
    ca = LocalCA.create(workdir / "pebble-ca", "pebble listener test CA")
    cert, key = ca.issue(workdir / "pebble-listener", [address, "localhost", procs.LOOPBACK])
    config = {"pebble": {
        "listenAddress": f"{address}:{NS_ACME_PORT}",
        "managementListenAddress": f"{procs.LOOPBACK}:{NS_MGMT_PORT}",
        "certificate": str(cert), "privateKey": str(key),
        "httpPort": http_port, "tlsPort": 5001,
        "ocspResponderURL": "", "externalAccountBindingRequired": False,
        "certificateValidityPeriod": validity,
    }}  # fmt: skip
    config_path = workdir / "pebble-config.json"
    config_path.write_text(json.dumps(config, indent=2))
    inside = ["ip", "netns", "exec", netns]
    started = [procs.start_process(
        [*inside, challtestsrv, "-dns01", f"{procs.LOOPBACK}:8053", "-defaultIPv4",
         resolve_to, "-defaultIPv6", "", "-http01", "", "-https01", "", "-tlsalpn01", "",
         "-management", f"{procs.LOOPBACK}:8055"],
        name="pebble-challtestsrv", log_dir=workdir, timeout_s=900)]  # fmt: skip
    env = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0",
           "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}  # fmt: skip
    started.append(procs.start_process(
        [*inside, pebble, "-config", str(config_path), "-dnsserver", f"{procs.LOOPBACK}:8053"],
        name="pebble", log_dir=workdir, timeout_s=900, env=env))  # fmt: skip
    result = Pebble(f"https://{address}:{NS_ACME_PORT}/dir", ca.path, b"", started)

    def fetch_root() -> bool:
        root = _ns_get(netns, f"https://{procs.LOOPBACK}:{NS_MGMT_PORT}/roots/0", ca.path)
        if not root or _ns_get(netns, result.directory, ca.path) is None:
            return False
        result.root_pem = root
        return True

    if not procs.wait_until(fetch_root, timeout=30, interval=0.5):
        result.stop()
        pytest.fail(f"pebble did not come up in {netns} within 30 s:\n"
                    + (workdir / "pebble.log").read_text()[-2000:], pytrace=False)
    return result
