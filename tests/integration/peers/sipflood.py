"""Scripted SIP floods from one loopback address, as an attacker's script sends them, and a
one-shot OPTIONS probe.

    python tests/integration/peers/sipflood.py --bind 127.0.0.2 --target 127.0.0.1:5060 \
        --kind invite --rate 100 --duration 10

`--bind` may list several addresses ("127.0.0.10,127.0.0.11"): the packets take turns.

`invite`: INVITEs with SDP, each a new call (new Call-ID, branch, From tag) to the same
number, never ACKed, never CANCELled (what pins a port pair for 32 s when answered);
`options`: OPTIONS, each a new transaction. Sent at `rate` a second for `duration` seconds
(both bounded), answers read and counted but never acted on. The last line printed is a JSON
summary: {"sent": N, "received": M, "statuses": {...}}.
"""

from __future__ import annotations

import argparse
import json
import secrets
import socket
import sys
import time

MAX_RATE = 20_000
MAX_DURATION = 120.0


def invite(bind: str, port: int, target: str, user: str = "1000") -> bytes:
    call_id, branch, tag = secrets.token_hex(8), secrets.token_hex(8), secrets.token_hex(4)
    sdp = (f"v=0\r\no=- 1 1 IN IP4 {bind}\r\ns=-\r\nc=IN IP4 {bind}\r\nt=0 0\r\n"
           f"m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n").encode()
    head = (f"INVITE sip:{user}@{target} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {bind}:{port};branch=z9hG4bK{branch};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:flood@{bind}>;tag={tag}\r\n"
            f"To: <sip:{user}@{target}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n"
            f"Contact: <sip:flood@{bind}:{port}>\r\nContent-Type: application/sdp\r\n"
            f"Content-Length: {len(sdp)}\r\n\r\n")
    return head.encode() + sdp


def options(bind: str, port: int, target: str, user: str = "ping") -> bytes:
    call_id, branch, tag = secrets.token_hex(8), secrets.token_hex(8), secrets.token_hex(4)
    return (f"OPTIONS sip:{user}@{target} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {bind}:{port};branch=z9hG4bK{branch};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:probe@{bind}>;tag={tag}\r\n"
            f"To: <sip:{user}@{target}>\r\nCall-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\n"
            f"Content-Length: 0\r\n\r\n").encode()


def probe_options(bind: str, target: str, timeout: float = 2.0) -> int | None:
    """Send one OPTIONS from `bind` (any free port) to `target` ("host:port"); the status
    of the answer, or None when nothing came within `timeout` seconds."""
    host, _, port = target.rpartition(":")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((bind, 0))
        sock.settimeout(timeout)
        local_port = sock.getsockname()[1]
        sock.sendto(options(bind, local_port, target), (host, int(port)))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65535)
            except TimeoutError:
                return None
            if data.startswith(b"SIP/2.0 "):
                return int(data[8:11])
    return None


def flood(binds: list[str], target: str, kind: str, rate: float,
          duration: float) -> dict[str, object]:
    rate = min(max(rate, 1.0), MAX_RATE)
    duration = min(max(duration, 0.1), MAX_DURATION)
    host, _, port = target.rpartition(":")
    dest = (host, int(port))
    build = invite if kind == "invite" else options
    statuses: dict[str, int] = {}
    sent = received = 0
    socks: list[tuple[socket.socket, str, int]] = []
    for bind in binds:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((bind, 0))
        sock.setblocking(False)
        socks.append((sock, bind, sock.getsockname()[1]))
    try:
        started = time.monotonic()
        end = started + duration
        while True:
            now = time.monotonic()
            if now >= end:
                break
            due = int((now - started) * rate) + 1
            while sent < due:
                sock, bind, local_port = socks[sent % len(socks)]
                try:
                    sock.sendto(build(bind, local_port, target), dest)
                except BlockingIOError:
                    break
                sent += 1
            for sock, _, _ in socks:
                while True:
                    try:
                        data = sock.recv(65535)
                    except (BlockingIOError, InterruptedError):
                        break
                    received += 1
                    if data.startswith(b"SIP/2.0 "):
                        code = data[8:11].decode(errors="replace")
                        statuses[code] = statuses.get(code, 0) + 1
            time.sleep(min(0.002, max(0.0, started + (sent / rate) - time.monotonic())))
    finally:
        for sock, _, _ in socks:
            sock.close()
    return {"sent": sent, "received": received, "statuses": statuses,
            "seconds": round(time.monotonic() - started, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bind", required=True,
                        help="loopback address(es) to send from, comma-separated")
    parser.add_argument("--target", required=True, help="HOST:PORT of the SIP server")
    parser.add_argument("--kind", choices=("invite", "options"), default="invite")
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args(argv)
    binds = [b.strip() for b in args.bind.split(",") if b.strip()]
    if not binds or not all(b.startswith("127.") for b in binds) \
            or not args.target.startswith("127."):
        parser.error("loopback only (127.0.0.0/8)")
    summary = flood(binds, args.target, args.kind, args.rate, args.duration)
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
