"""Switchboard behind a real nginx with deploy/nginx-switchboard.conf (TLS at nginx, the
WebSocket upgrade, X-Forwarded-*), on loopback.

nginx listens on 127.0.0.2 with a certificate for switchboard.test and passes requests to
Switchboard on 127.0.0.1 (so the proxy's address, as Switchboard sees it, is 127.0.0.1).
Clients connect from 127.0.0.5 and 127.0.0.6. The client address Switchboard uses is seen
through the conference mapper's per-address limit (two lookups a minute): with nginx in
http.trusted_proxies each client has its own allowance; without, nginx's address is the
client and one client's lookups use up the other's. The WebSocket's Origin check needs the
scheme nginx reports (X-Forwarded-Proto: https): trusted, the page's socket opens and answers
a ping; untrusted, the same browser's socket is refused (403), since the server cannot tell
that the page came over HTTPS.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import ssl
from pathlib import Path

import aiohttp
import pytest
from conftest import REPO, ServerFactory
from peers import procs
from peers.certs import LocalCA

NAME = "switchboard.test"
PROXY = "127.0.0.2"
CLIENTS = ("127.0.0.5", "127.0.0.6")


def nginx_config(workdir: Path, upstream_port: int, https_port: int, http_port: int,
                 cert: Path, key: Path) -> Path:  # fmt: skip
    """The deploy example, with this test's ports, names and files, inside a top-level
    config of its own (pid file, logs and temp files under `workdir`)."""
    site = (REPO / "deploy" / "nginx-switchboard.conf").read_text()
    site = re.sub(r"^\s*listen \[::\]:\d+.*$", "", site, flags=re.MULTILINE)
    site = site.replace("listen 443 ssl http2;", f"listen {PROXY}:{https_port} ssl;")
    site = site.replace("listen 80;", f"listen {PROXY}:{http_port};")
    site = site.replace("server 127.0.0.1:8080;", f"server 127.0.0.1:{upstream_port};")
    site = site.replace("meet.example.org", NAME)
    site = site.replace(f"/etc/letsencrypt/live/{NAME}/fullchain.pem", str(cert))
    site = site.replace(f"/etc/letsencrypt/live/{NAME}/privkey.pem", str(key))
    site = site.replace("/var/www/letsencrypt", str(workdir / "www"))
    site = site.replace("/var/log/nginx/switchboard.access.log", str(workdir / "access.log"))
    assert str(cert) in site and f"{PROXY}:{https_port}" in site
    temp = workdir / "temp"
    temp.mkdir(mode=0o777)
    temp.chmod(0o777)
    conf = workdir / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
pid {workdir}/nginx.pid;
error_log stderr info;
events {{ worker_connections 256; }}
http {{
    access_log {workdir}/other-access.log;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    {site}
}}
""")
    return conf


def https_get(port: int, ca: Path, path: str, source: str, extra: str = "",
              tls: bool = True) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    """GET through nginx by name from `source` (over TLS, or plain HTTP to the port-80
    server), `extra` header lines added: (status, lower-case headers, body)."""
    context = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection((PROXY, port), timeout=10,
                                  source_address=(source, 0)) as raw, \
            (context.wrap_socket(raw, server_hostname=NAME) if tls else raw) as conn:  # fmt: skip
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: {NAME}:{port}\r\n{extra}"
                     f"X-Forwarded-For: 203.0.113.66\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while len(data) < 1_000_000:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


async def websocket_ping(port: int, ca: Path, source: str) -> str:
    """Open /ws through nginx as the meeting page would (Origin: the page's), send a ping;
    "pong" or "refused NNN"."""
    context = ssl.create_default_context(cafile=str(ca))
    connector = aiohttp.TCPConnector(local_addr=(source, 0), ssl=context)
    origin = f"https://{NAME}:{port}"
    async with aiohttp.ClientSession(connector=connector) as session:
        try:
            async with session.ws_connect(
                f"wss://{PROXY}:{port}/ws", server_hostname=NAME,
                headers={"Host": f"{NAME}:{port}", "Origin": origin},
                timeout=aiohttp.ClientWSTimeout(ws_close=10),
            ) as ws:  # fmt: skip
                await ws.send_str(json.dumps({"type": "ping", "id": "p1"}))
                msg = await asyncio.wait_for(ws.receive(), timeout=10)
                data = json.loads(msg.data)
                return str(data["type"]) if data.get("id") == "p1" else repr(data)
        except aiohttp.WSServerHandshakeError as exc:
            return f"refused {exc.status}"


def mapper(port: int, ca: Path, source: str) -> int:
    return https_get(port, ca, "/api/conference-mapper?conference=standup@x", source)[0]


@pytest.mark.integration
@pytest.mark.parametrize("trusted", [True, False], ids=["trusted", "untrusted"])
def test_behind_nginx(switchboard_server: ServerFactory, tmp_path: Path,
                      trusted: bool) -> None:  # fmt: skip
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if nginx is None:
        pytest.fail("nginx is missing: install the Debian package `nginx` "
                    "(scripts/install-peers.sh)", pytrace=False)
    server = switchboard_server({
        "http": {"trusted_proxies": ["127.0.0.1/32"] if trusted else [],
                 "mapper_lookups_per_minute": 2},
    })  # fmt: skip
    assert server.api("POST", "/api/rooms", {"name": "standup"}).status == 201
    ca = LocalCA.create(tmp_path / "ca")
    cert, key = ca.issue(tmp_path / "tls", [NAME])
    https_port = procs.free_port(kinds=("tcp",))
    http_port = procs.free_port(kinds=("tcp",))
    conf = nginx_config(tmp_path, server.http_port, https_port, http_port, cert, key)
    proc = procs.start_process([nginx, "-p", str(tmp_path), "-c", str(conf), "-e", "stderr",
                                "-g", "daemon off;"], name="nginx", log_dir=tmp_path,
                               timeout_s=300)  # fmt: skip
    try:
        def up() -> bool:
            try:
                return https_get(https_port, ca.path, "/", CLIENTS[0])[0] == 200
            except OSError:
                return False

        assert procs.wait_until(up, timeout=15, interval=0.2), proc.log_tail(30)

        # the meeting page through nginx, with the security headers; HSTS only when the
        # server can trust nginx's word that the request came over HTTPS
        status, headers, body = https_get(https_port, ca.path, "/standup", CLIENTS[0])
        assert status == 200 and b"/static/js/room.js" in body
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert ("strict-transport-security" in headers) == trusted

        # the WebSocket (upgrade through nginx, Origin check on the forwarded scheme)
        answer = asyncio.run(websocket_ping(https_port, ca.path, CLIENTS[0]))
        assert answer == ("pong" if trusted else "refused 403")

        # the client address: client A spends its two lookups, then client B asks
        assert [mapper(https_port, ca.path, CLIENTS[0]) for _ in range(3)] == [200, 200, 429]
        assert mapper(https_port, ca.path, CLIENTS[1]) == (200 if trusted else 429)
        # the refusal names the client nginx saw, never the X-Forwarded-For a client sent
        refused = [x for x in server.log_text().splitlines() if "lookups from" in x]
        assert refused and ((CLIENTS[0] in refused[0]) == trusted)
        assert "203.0.113.66" not in server.log_text()

        # a token in the page's address (and in a Referer, and through the port-80
        # redirect, which keeps it in the Location only) is in no access log line
        token = "eyJhbGciOiJIUzI1NiJ9.eyJyb29tIjoic3RhbmR1cCJ9.c2VjcmV0LXNpZ25hdHVyZQ"
        status, _, body = https_get(https_port, ca.path, f"/standup?jwt={token}", CLIENTS[0])
        assert status == 200 and b"/static/js/room.js" in body
        referer = f"Referer: https://{NAME}:{https_port}/standup?jwt={token}\r\n"
        assert https_get(https_port, ca.path, "/static/js/room.js", CLIENTS[0],
                         extra=referer)[0] == 200  # fmt: skip
        status, headers, _ = https_get(http_port, ca.path, f"/standup?jwt={token}",
                                       CLIENTS[1], tls=False)  # fmt: skip
        assert status == 301 and headers["location"].endswith(f"/standup?jwt={token}")
        access = tmp_path / "access.log"

        def logged() -> bool:
            lines = access.read_text().splitlines() if access.exists() else []
            return sum(" /standup " in x for x in lines) >= 2 and any(
                " /static/js/room.js " in x for x in lines)

        assert procs.wait_until(logged, timeout=10, interval=0.1), access.read_text()
        for log in tmp_path.glob("*access.log"):
            text = log.read_text()
            assert token not in text and "jwt" not in text, (log.name, text)
    finally:
        proc.stop(term_timeout=5.0)
