"""HTTPS from the operator's certificate files (http.tls_cert/tls_key): served by name, and a
renewed pair written over the files is served to new connections without a restart, found by
the periodic check or at once on SIGHUP."""

from __future__ import annotations

import os
import signal
import socket
import ssl
from pathlib import Path

import pytest
from conftest import ServerFactory
from peers import procs
from peers.certs import LocalCA, peer_serial

NAME = "switchboard.test"


def fetch(port: int, ca: Path, path: str = "/") -> tuple[int, bytes]:
    """(serial of the certificate, response head) of a GET by name, verified against `ca`."""
    context = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection((procs.LOOPBACK, port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=NAME) as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        serial = peer_serial(tls.getpeercert(binary_form=True))
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {NAME}\r\nConnection: close\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            chunk = tls.recv(4096)
            if not chunk:
                break
            head += chunk
    return serial, head.partition(b"\r\n\r\n")[0]


def served_serial(port: int, ca: Path) -> int:
    return fetch(port, ca)[0]


@pytest.mark.integration
@pytest.mark.parametrize("how", ["periodic", "sighup"])
def test_own_certificate_served_and_reloaded(switchboard_server: ServerFactory,
                                             tmp_path: Path, how: str) -> None:  # fmt: skip
    ca = LocalCA.create(tmp_path / "ca")
    cert, key = ca.issue(tmp_path / "tls", [NAME], serial=1001)
    interval = 1.0 if how == "periodic" else 3600.0
    server = switchboard_server({"http": {"tls_cert": str(cert), "tls_key": str(key),
                                          "tls_reload_interval": interval}})  # fmt: skip
    serial, head = fetch(server.http_port, ca.path, "/standup")
    assert serial == 1001
    assert head.startswith(b"HTTP/1.1 200")
    lower = head.lower()
    assert b"strict-transport-security: max-age=31536000" in lower
    assert b"content-security-policy: default-src 'self'" in lower
    assert b"x-frame-options: deny" in lower

    # plain HTTP on the HTTPS port gets no page
    with socket.create_connection((procs.LOOPBACK, server.http_port), timeout=5) as raw:
        raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        raw.settimeout(5)
        try:
            answer = raw.recv(4096)
        except (ConnectionResetError, TimeoutError):
            answer = b""
    assert b"<html" not in answer.lower()

    pid = server.pid
    ca.issue(tmp_path / "tls", [NAME], serial=1002)  # the renewal, over the same files
    if how == "sighup":
        os.kill(pid, signal.SIGHUP)
    assert procs.wait_until(lambda: served_serial(server.http_port, ca.path) == 1002,
                            timeout=10, interval=0.3), server.log_tail(30)  # fmt: skip
    assert server.pid == pid and server.running()
    assert "tls: reloaded" in server.log_text()
