"""SIP over TLS (sip.listen "tls:HOST:PORT"): a client that trusts our certificate gets
answers over TLS with Via and Contact saying TLS; a call set up over TLS is answered and
hung up; a plain TCP client on the TLS port gets nothing; a server certificate the client
does not trust is refused by the client (the check is real)."""

from __future__ import annotations

import socket
import ssl
import uuid
from pathlib import Path
from typing import Any

import pytest
from peers import procs
from peers.tls_carrier import self_signed

LOOP = procs.LOOPBACK


def request(method: str, port: int, local: tuple[str, int], *, call_id: str, cseq: int,
            tag: str = "", to_tag: str = "", body: str = "", room: str = "") -> bytes:
    host, lport = local
    lines = [f"{method} sip:service@{LOOP}:{port};transport=tls SIP/2.0",
             f"Via: SIP/2.0/TLS {host}:{lport};branch=z9hG4bK{uuid.uuid4().hex[:12]}",
             "Max-Forwards: 70", f"From: <sip:alice@{host}>;tag={tag or 'a1'}",
             f"To: <sip:service@{LOOP}>" + (f";tag={to_tag}" if to_tag else ""),
             f"Call-ID: {call_id}", f"CSeq: {cseq} {method}",
             f"Contact: <sip:alice@{host}:{lport};transport=tls>"]
    if room:
        lines.append(f"X-Room-Name: {room}")
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def read_response(conn: ssl.SSLSocket, timeout: float = 5.0) -> str:
    conn.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, "connection closed"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.decode().split("\r\n"):
        if line.lower().startswith(("content-length:", "l:")):
            length = int(line.split(":", 1)[1])
    while len(rest) < length:
        rest += conn.recv(65536)
    return head.decode() + "\r\n\r\n" + rest[:length].decode()


def final(conn: ssl.SSLSocket) -> str:
    for _ in range(10):
        text = read_response(conn)
        if not text.startswith("SIP/2.0 1"):
            return text
    raise AssertionError("no final response")


@pytest.fixture
def tls_server(switchboard_server: Any, tmp_path: Path) -> tuple[Any, int, Path]:
    cert, key = self_signed(tmp_path)
    tls_port = procs.free_port(kinds=("tcp",))
    server = switchboard_server({"sip": {
        "listen": [f"udp:{LOOP}:{procs.free_port(kinds=('udp',))}", f"tls:{LOOP}:{tls_port}"],
        "tls_cert": str(cert), "tls_key": str(key)}})
    return server, tls_port, cert


def stats(server: Any) -> dict[str, Any]:
    result: dict[str, Any] = server.api("GET", "/api/stats").json()
    return result


def connect(port: int, cafile: Path) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(cafile))
    raw = socket.create_connection((LOOP, port), timeout=5)
    return context.wrap_socket(raw, server_hostname=LOOP)


def test_options_and_a_call_over_tls(tls_server: tuple[Any, int, Path]) -> None:
    server, port, cert = tls_server
    assert server.api("POST", "/api/rooms", {"name": "tls-room"}).status == 201
    with connect(port, cert) as conn:
        assert conn.version() in ("TLSv1.2", "TLSv1.3")
        local = conn.getsockname()[:2]
        conn.sendall(request("OPTIONS", port, local, call_id="opt-1", cseq=1))
        answer = read_response(conn)
        assert answer.startswith("SIP/2.0 200") and "SIP/2.0/TLS" in answer
        rtp = procs.free_port(kinds=("udp",))
        sdp = (f"v=0\r\no=- 1 1 IN IP4 {LOOP}\r\ns=-\r\nc=IN IP4 {LOOP}\r\nt=0 0\r\n"
               f"m=audio {rtp} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n")
        conn.sendall(request("INVITE", port, local, call_id="call-tls", cseq=1, body=sdp,
                             room="tls-room"))
        ok = final(conn)
        assert ok.startswith("SIP/2.0 200"), ok.split("\r\n")[0]
        headers = ok.split("\r\n")
        contact = next(h for h in headers if h.lower().startswith(("contact:", "m:")))
        assert "transport=tls" in contact.lower()
        to_tag = next(line for line in ok.split("\r\n") if line.lower().startswith(("to:", "t:"))
                      ).split("tag=")[1].split(";")[0].strip()
        conn.sendall(request("ACK", port, local, call_id="call-tls", cseq=1, to_tag=to_tag))
        assert procs.wait_until(lambda: stats(server).get("calls", 0) >= 1, 5, 0.1)
        conn.sendall(request("BYE", port, local, call_id="call-tls", cseq=2, to_tag=to_tag))
        assert final(conn).startswith("SIP/2.0 200")
    assert procs.wait_until(lambda: stats(server).get("calls", 0) == 0, 10, 0.2)


def test_plain_tcp_on_the_tls_port_gets_no_sip_answer(tls_server: tuple[Any, int, Path]) -> None:
    _, port, _ = tls_server
    with socket.create_connection((LOOP, port), timeout=5) as raw:
        raw.sendall(request("OPTIONS", port, raw.getsockname()[:2], call_id="plain", cseq=1))
        raw.settimeout(3)
        try:
            data = raw.recv(4096)
        except (TimeoutError, ConnectionResetError):
            data = b""
        assert b"SIP/2.0" not in data


def test_a_client_that_does_not_trust_the_certificate_refuses_it(
        tls_server: tuple[Any, int, Path], tmp_path: Path) -> None:
    _, port, _ = tls_server
    (tmp_path / "other").mkdir()
    other, _ = self_signed(tmp_path / "other")
    with pytest.raises(ssl.SSLCertVerificationError):
        connect(port, other)
