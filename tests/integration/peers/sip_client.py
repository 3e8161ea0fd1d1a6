"""A tiny SIP UAC over UDP for trunk tests: one INVITE (with an SDP offer) from a chosen
loopback address, answering a 407 with MD5 digest (written here independently of the
server's code, RFC 2617/7616 with qop=auth), ACK for every final response, BYE after a 2xx.
Every wait is bounded."""

from __future__ import annotations

import hashlib
import re
import socket
import time
import uuid
from dataclasses import dataclass, field

from . import procs

SDP = ("v=0\r\no=- 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
       "m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")


@dataclass
class Response:
    status: int
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: str = ""

    def header(self, name: str) -> list[str]:
        return self.headers.get(name.lower(), [])


def _parse(data: bytes) -> Response:
    text = data.decode("utf-8", "replace")
    head = text.split("\r\n\r\n", 1)[0].split("\r\n")
    status = int(head[0].split()[1])
    headers: dict[str, list[str]] = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return Response(status, headers, text.split("\r\n\r\n", 1)[1] if "\r\n\r\n" in text else "")


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def md5_answer(challenge: str, user: str, password: str, uri: str, method: str = "INVITE") -> str:
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
    realm, nonce = params["realm"], params["nonce"]
    cnonce, nc = uuid.uuid4().hex[:16], "00000001"
    ha1, ha2 = _md5(f"{user}:{realm}:{password}"), _md5(f"{method}:{uri}")
    response = _md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
    return (f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
            f'algorithm=MD5, qop=auth, nc={nc}, cnonce="{cnonce}", response="{response}"')


class SipClient:
    """Calls from `host` (any 127/8 address) to `server` ("127.0.0.1:PORT")."""

    def __init__(self, host: str, server: str) -> None:
        self.host = host
        self.server_host, port = server.rsplit(":", 1)
        self.server_port = int(port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self.media_port = procs.free_port(kinds=("udp",))
        self.responses: list[Response] = []  # the final responses of the last call()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> SipClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, text: str) -> None:
        self.sock.sendto(text.encode(), (self.server_host, self.server_port))

    def _final(self, call_id: str, cseq: str, timeout: float) -> Response | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                data, _ = self.sock.recvfrom(65536)
            except TimeoutError:
                return None
            if not data.startswith(b"SIP/2.0 "):
                continue  # a request (a BYE from the server): not expected here
            response = _parse(data)
            if response.header("call-id") != [call_id] or response.header("cseq") != [cseq]:
                continue
            if response.status >= 200:
                return response
        return None

    def call(self, user: str, *, auth_user: str | None = None, password: str | None = None,
             caller: str = "2001", hold: float = 0.5, timeout: float = 10.0,
             answer_challenge: bool = True, sdp: str | None = None) -> list[int]:
        """INVITE sip:user@server; the statuses of the final responses, in order (a 407 is
        answered once when a password is given). A 2xx is ACKed, held, and ended by BYE.
        `sdp`: the offer ({host} and {port} filled in), else PCMU over RTP/AVP."""
        self.responses = []
        call_id = uuid.uuid4().hex
        tag = uuid.uuid4().hex[:8]
        uri = f"sip:{user}@{self.server_host}:{self.server_port}"
        auth: str | None = None
        statuses: list[int] = []
        for cseq in (1, 2):
            branch = "z9hG4bK" + uuid.uuid4().hex[:16]
            body = (sdp or SDP).format(host=self.host, port=self.media_port)
            lines = [f"INVITE {uri} SIP/2.0",
                     f"Via: SIP/2.0/UDP {self.host}:{self.port};branch={branch};rport",
                     f"From: <sip:{caller}@{self.host}>;tag={tag}", f"To: <{uri}>",
                     f"Call-ID: {call_id}", f"CSeq: {cseq} INVITE",
                     f"Contact: <sip:{caller}@{self.host}:{self.port}>", "Max-Forwards: 70"]
            if auth:
                lines.append(f"Proxy-Authorization: {auth}")
            lines += ["Content-Type: application/sdp", f"Content-Length: {len(body)}"]
            self._send("\r\n".join(lines) + "\r\n\r\n" + body)
            response = self._final(call_id, f"{cseq} INVITE", timeout)
            if response is None:
                statuses.append(408)
                return statuses
            statuses.append(response.status)
            self.responses.append(response)
            to = response.header("to")[0]
            ack = [f"ACK {uri} SIP/2.0",
                   f"Via: SIP/2.0/UDP {self.host}:{self.port};branch="
                   + (branch if response.status >= 300 else "z9hG4bK" + uuid.uuid4().hex[:16]),
                   f"From: <sip:{caller}@{self.host}>;tag={tag}", f"To: {to}",
                   f"Call-ID: {call_id}", f"CSeq: {cseq} ACK", "Max-Forwards: 70",
                   "Content-Length: 0"]
            self._send("\r\n".join(ack) + "\r\n\r\n")
            if 200 <= response.status < 300:
                time.sleep(hold)
                bye = [f"BYE {uri} SIP/2.0",
                       f"Via: SIP/2.0/UDP {self.host}:{self.port};branch=z9hG4bK"
                       + uuid.uuid4().hex[:16],
                       f"From: <sip:{caller}@{self.host}>;tag={tag}", f"To: {to}",
                       f"Call-ID: {call_id}", f"CSeq: {cseq + 1} BYE", "Max-Forwards: 70",
                       "Content-Length: 0"]
                self._send("\r\n".join(bye) + "\r\n\r\n")
                self._final(call_id, f"{cseq + 1} BYE", timeout)
                return statuses
            challenges = response.header("proxy-authenticate")
            if response.status != 407 or password is None or not answer_challenge:
                return statuses
            md5 = [c for c in challenges if "MD5" in c]
            if not md5:
                return statuses
            auth = md5_answer(md5[0], auth_user or caller, password, uri)
        return statuses
