"""HTTPS with a certificate from a real ACME server (pebble) over HTTP-01, on loopback.

Switchboard starts with http.acme_domains = ["switchboard.test"] and pebble as its directory;
pebble resolves every name to 127.0.0.1 (pebble-challtestsrv) and validates HTTP-01 on the port
of http.acme_http_listen. A client that trusts only pebble's root connects to http.listen by
name (server_hostname): the handshake verifies, so the certificate is pebble's, for that name.
pebble issues certificates valid for 30 s here: renewal (at two thirds of the lifetime) must
replace the served certificate within the minute, in the same process.
"""

from __future__ import annotations

import os
import socket
import ssl
import stat
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import ServerFactory
from peers import procs
from peers.certs import peer_serial
from peers.pebble import start_pebble

NAME = "switchboard.test"
VALIDITY = 30  # seconds: pebble's certificateValidityPeriod


def served(port: int, root_pem: bytes) -> tuple[int, float] | None:
    """(serial, seconds of validity left) of a certificate that verifies against pebble's
    root for NAME; None while the server still serves its stand-in (verification fails)."""
    context = ssl.create_default_context(cadata=root_pem.decode())
    try:
        with socket.create_connection((procs.LOOPBACK, port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname=NAME) as tls:
            der = tls.getpeercert(binary_form=True)
            info = tls.getpeercert()
    except ssl.SSLCertVerificationError:
        return None
    assert info is not None
    not_after = ssl.cert_time_to_seconds(str(info["notAfter"]))
    return peer_serial(der), not_after - time.time()


@pytest.mark.integration
def test_acme_certificate_obtained_served_and_renewed(switchboard_server: ServerFactory,
                                                      tmp_path: Path) -> None:  # fmt: skip
    acme_http_port = procs.free_port(kinds=("tcp",))
    pebble = start_pebble(tmp_path / "pebble", http_port=acme_http_port, validity=VALIDITY)
    try:
        bundle = tmp_path / "acme-ca.pem"
        bundle.write_bytes(pebble.ca_path.read_bytes())
        server = switchboard_server({"http": {
            "acme_domains": [NAME], "acme_directory": pebble.directory,
            "acme_email": "ops@switchboard.test", "acme_ca_bundle": str(bundle),
            "acme_http_listen": f"{procs.LOOPBACK}:{acme_http_port}",
        }})  # fmt: skip
        pid = server.pid
        first: list[tuple[int, float]] = []

        def issued() -> bool:
            got = served(server.http_port, pebble.root_pem)
            if got is not None:
                first.append(got)
            return got is not None

        assert procs.wait_until(issued, timeout=60, interval=0.5), (
            "no certificate from pebble within 60 s:\n" + server.log_tail(40))
        serial, left = first[0]
        assert 0 < left <= VALIDITY + 5

        # the account key and the certificate are in the data directory, private
        acme_dir = server.data_dir / "acme"
        for name in ("account.key", "cert.pem", "key.pem"):
            mode = stat.S_IMODE(os.stat(acme_dir / name).st_mode)
            assert mode == 0o600, f"{name}: mode {oct(mode)}"

        # the plain-HTTP listener redirects everything but the challenge to HTTPS
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
        req = urllib.request.Request(f"http://{procs.LOOPBACK}:{acme_http_port}/standup?a=1",
                                     headers={"Host": NAME})  # fmt: skip
        try:
            opener.open(req, timeout=5)
            raise AssertionError("expected a redirect")
        except urllib.error.HTTPError as err:
            assert err.code == 301
            assert err.headers["Location"] == f"https://{NAME}:{server.http_port}/standup?a=1"

        # the page over HTTPS, by name, verified against pebble's root
        context = ssl.create_default_context(cadata=pebble.root_pem.decode())
        with socket.create_connection((procs.LOOPBACK, server.http_port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname=NAME) as tls:
            tls.sendall(f"GET /standup HTTP/1.1\r\nHost: {NAME}\r\nConnection: close\r\n\r\n"
                        .encode())  # fmt: skip
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                head += chunk
        status, _, rest = head.partition(b"\r\n")
        assert b" 200 " in status
        assert b"strict-transport-security: max-age=" in rest.lower()

        # renewal: a new certificate (a new serial) within the lifetime, same process
        renewed: list[tuple[int, float]] = []

        def new_serial() -> bool:
            got = served(server.http_port, pebble.root_pem)
            if got is not None and got[0] != serial:
                renewed.append(got)
                return True
            return False

        assert procs.wait_until(new_serial, timeout=VALIDITY + 15, interval=0.5), (
            "the certificate was not renewed:\n" + server.log_tail(40))
        assert server.pid == pid and server.running()
        assert "acme: new certificate" in server.log_text()

        # its expiry in /metrics
        metrics = server.api("GET", "/metrics")
        assert metrics.status == 200
        assert "switchboard_tls_certificate_expiry_seconds" in metrics.text
    finally:
        pebble.stop()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


@pytest.mark.integration
def test_acme_server_unreachable_is_logged_and_the_server_keeps_running(
    switchboard_server: ServerFactory, tmp_path: Path
) -> None:
    dead = procs.free_port(kinds=("tcp",))  # nothing listens there
    server = switchboard_server({"http": {
        "acme_domains": [NAME], "acme_directory": f"https://{procs.LOOPBACK}:{dead}/dir",
        "acme_http_listen": f"{procs.LOOPBACK}:{procs.free_port(kinds=('tcp',))}",
    }})  # fmt: skip
    assert procs.wait_until(lambda: "getting a certificate" in server.log_text(), timeout=30)
    line = next(x for x in server.log_text().splitlines() if "getting a certificate" in x)
    # no certificate yet (a stand-in is served): that is an ERROR, with the retry announced
    assert " ERROR " in line and "attempt 1" in line and "retrying in 60 s" in line
    assert server.api("GET", "/api/health", auth=False).status == 200
