"""pebble (Let's Encrypt's ACME test server) with pebble-challtestsrv as its DNS, on loopback.

Every name resolves to 127.0.0.1 (challtestsrv's -defaultIPv4); pebble validates HTTP-01 on
`http_port` (where the server under test listens with http.acme_http_listen). pebble's own
HTTPS listener gets a leaf from a test CA (`ca_path` trusts it); its issuing root, new on every
start, is fetched from the management port (`root_pem`).
"""

from __future__ import annotations

import json
import shutil
import ssl
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
