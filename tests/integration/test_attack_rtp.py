"""Attacks on phone media, run against the real server (issue 13, items 2, 3 and 5).

- RTP takeover ("RTP bleed"): a sprayer on 127.0.0.2 sends valid PCMU RTP of its own tone to
  every port of the server's RTP range, in a loop, while two genuine calls start from
  127.0.0.1 and while one of them pauses its RTP for longer than ``media.relatch_after``.
  Each caller keeps hearing the other's tone and never the sprayer's, the server counts the
  sprayed packets as dropped, and the sprayer receives nothing at all.
- Bad c= addresses: 1,000 calls whose SDP names host names that do not resolve, 127.0.0.999,
  an IPv6 address (the legs are IPv4) or garbage are refused, and afterwards no call, leg or
  RTP port is left in use and a genuine call still works; a re-INVITE with such an address
  is answered 488 and the call goes on.
- Reflection: an INVITE from 127.0.0.1 (not trusted) whose SDP names 127.0.0.3 gets no RTP
  or RTCP sent to 127.0.0.3 until 127.0.0.3 itself sends RTP; a trusted peer's SDP address
  is sent to at once.
- NAT still works: a caller whose SDP names an address nobody listens on, sending its media
  from the SIP source host, is heard and hears the room at its real address.

The genuine callers are a small raw-UDP SIP user agent in this file (INVITE, ACK, BYE,
re-INVITE) with RTP from threads, so each test chooses its source addresses and SDP exactly.
``sip.trusted_peers`` is ["192.0.2.1"] (no loopback address is trusted) unless a test is
about trust. Only 127.0.0.0/8 is addressed.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from conftest import UNSHED_SIP_LIMITS, deep_merge
from peers import audio, procs

pytestmark = pytest.mark.integration
log = logging.getLogger(__name__)

ROOM = "standup"
PIN = "48213077"
NUMBER = "+15550101"                                # routed straight to the room
NOT_TRUSTED = {"sip": {"trusted_peers": ["192.0.2.1"]}}
PHONE = "127.0.0.1"
SPRAYER = "127.0.0.2"
VICTIM = "127.0.0.3"
IDLE_KEYS = ("calls", "legs", "rtp_ports_in_use")
TONE_A, TONE_B, TONE_SPRAY = 440.0, 1000.0, 2500.0
EXTRA_CALLS = 8


# --- a raw SIP user agent over UDP ----------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: str

    @property
    def to_tag(self) -> str:
        m = re.search(r";\s*tag=([^;>\s]+)", self.headers.get("to", ""))
        return m.group(1) if m else ""

    @property
    def contact(self) -> str:
        m = re.search(r"<([^>]+)>", self.headers.get("contact", ""))
        return m.group(1) if m else ""

    @property
    def media_port(self) -> int:
        m = re.search(r"^m=audio (\d+)", self.body, re.M)
        assert m is not None, self.body
        return int(m.group(1))


def _parse(data: bytes) -> tuple[str, Response | None, str]:
    """(Call-ID, the response or None for a request, the first line)."""
    text = data.decode("utf-8", "replace")
    head, _, body = text.partition("\r\n\r\n")
    lines = head.split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        key = {"i": "call-id", "t": "to", "f": "from", "m": "contact", "v": "via"}.get(
            name.strip().lower(), name.strip().lower())
        headers.setdefault(key, value.strip())
    m = re.match(r"SIP/2\.0 (\d{3})", lines[0])
    response = Response(int(m.group(1)), headers, body) if m else None
    return headers.get("call-id", ""), response, lines[0]


@dataclass
class Call:
    call_id: str
    from_tag: str
    number: str
    cseq: int = 1
    to_tag: str = ""
    contact: str = ""
    final: Response | None = None
    invite_branch: str = ""
    invite_uri: str = ""
    responses: list[Response] = field(default_factory=list)


class SipPhone:
    """A SIP user agent on one UDP socket at ``host`` (many calls at once)."""

    def __init__(self, server: Any, host: str = PHONE) -> None:
        self.server = server
        self.host = host
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self.calls: dict[str, Call] = {}

    def close(self) -> None:
        self.sock.close()

    def _send(self, text: str) -> None:
        self.sock.sendto(text.encode(), (procs.LOOPBACK, self.server.sip_port))

    def _request(self, call: Call, method: str, uri: str, cseq: int, branch: str,
                 body: str = "") -> None:
        to_tag = f";tag={call.to_tag}" if call.to_tag else ""
        ctype = "Content-Type: application/sdp\r\n" if body else ""
        self._send(
            f"{method} {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {self.host}:{self.port};branch={branch};rport\r\n"
            f"Max-Forwards: 70\r\n"
            f"From: <sip:15557000@{self.host}>;tag={call.from_tag}\r\n"
            f"To: <sip:{call.number}@{self.server.sip_address}>{to_tag}\r\n"
            f"Call-ID: {call.call_id}\r\n"
            f"CSeq: {cseq} {method}\r\n"
            f"Contact: <sip:15557000@{self.host}:{self.port}>\r\n"
            f"{ctype}Content-Length: {len(body.encode())}\r\n\r\n{body}")

    def invite(self, sdp: str, number: str = NUMBER) -> Call:
        call = Call(f"{secrets.token_hex(8)}@{self.host}", secrets.token_hex(4), number)
        call.invite_branch = "z9hG4bK" + secrets.token_hex(8)
        call.invite_uri = f"sip:{number}@{self.server.sip_address}"
        self.calls[call.call_id] = call
        self._request(call, "INVITE", call.invite_uri, 1, call.invite_branch, sdp)
        return call

    def reinvite(self, call: Call, sdp: str) -> None:
        call.cseq += 1
        call.final = None
        call.invite_branch = "z9hG4bK" + secrets.token_hex(8)
        call.invite_uri = call.contact
        self._request(call, "INVITE", call.contact, call.cseq, call.invite_branch, sdp)

    def bye(self, call: Call) -> None:
        call.cseq += 1
        call.final = None
        self._request(call, "BYE", call.contact, call.cseq, "z9hG4bK" + secrets.token_hex(8))

    def pump(self, timeout: float = 0.05) -> None:
        """Read what came: record final responses, ACK final INVITE responses (2xx: a new
        transaction to the Contact; others: the INVITE's branch), answer requests 200."""
        self.sock.settimeout(timeout)
        while True:
            try:
                data = self.sock.recv(65535)
            except (TimeoutError, BlockingIOError):
                return
            except ConnectionRefusedError:
                continue
            self.sock.settimeout(0.001)
            call_id, response, _ = _parse(data)
            call = self.calls.get(call_id)
            if response is None:
                self._answer_request(data)
                continue
            if call is None or response.status < 200:
                continue
            cseq = response.headers.get("cseq", "")
            if call.final is None and cseq.startswith(f"{call.cseq} "):
                call.final = response
                call.responses.append(response)
            if cseq.endswith("INVITE"):
                if response.to_tag and not call.to_tag:
                    call.to_tag = response.to_tag
                if response.status < 300:
                    call.contact = response.contact or call.contact
                    self._request(call, "ACK", call.contact, int(cseq.split()[0]),
                                  "z9hG4bK" + secrets.token_hex(8))
                else:
                    to_tag = response.to_tag
                    saved, call.to_tag = call.to_tag, to_tag
                    self._request(call, "ACK", call.invite_uri, int(cseq.split()[0]),
                                  call.invite_branch)
                    call.to_tag = saved if saved else ""

    def _answer_request(self, data: bytes) -> None:
        head = data.decode("utf-8", "replace").split("\r\n\r\n", 1)[0]
        if head.startswith("ACK "):
            return
        keep = [line for line in head.split("\r\n")[1:]
                if line.lower().split(":", 1)[0] in ("via", "from", "to", "call-id", "cseq")]
        self._send("SIP/2.0 200 OK\r\n" + "\r\n".join(keep) + "\r\nContent-Length: 0\r\n\r\n")

    def wait_final(self, call: Call, timeout: float = 10.0) -> Response:
        deadline = time.monotonic() + timeout
        while call.final is None and time.monotonic() < deadline:
            self.pump()
        assert call.final is not None, f"no final response for {call.call_id}"
        return call.final


def sdp(host: str, port: int, *, addrtype: str = "IP4", session: int = 1) -> str:
    return (f"v=0\r\no=- {session} {session} IN IP4 {PHONE}\r\ns=-\r\n"
            f"c=IN {addrtype} {host}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
            f"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n"
            f"a=sendrecv\r\n")


# --- RTP from threads ------------------------------------------------------------------------


def rtp_packet(seq: int, ts: int, ssrc: int, payload: bytes, pt: int = 0) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


class RtpPhone:
    """The media of one genuine call: a socket at ``host`` sending a tone every 20 ms to the
    server's port (``paused`` stops it), and keeping every PCMU payload that comes back."""

    def __init__(self, host: str, tone_hz: float, amplitude: float = 0.3) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.005)
        self.port = self.sock.getsockname()[1]
        tone = audio.ulaw_encode(audio.tone(tone_hz, 1.0, amplitude=amplitude))
        self.tone = tone + tone
        self.remote: tuple[str, int] | None = None
        self.paused = threading.Event()
        self.received: list[tuple[float, bytes, tuple[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self, remote: tuple[str, int]) -> None:
        self.remote = remote
        self._thread.start()

    def _run(self) -> None:
        ssrc, seq, ts = secrets.randbits(32), secrets.randbits(16), secrets.randbits(32)
        next_at = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_at:
                next_at += 0.02
                offset = ts % 8000
                chunk = self.tone[offset:offset + 160]
                if not self.paused.is_set() and self.remote is not None:
                    with contextlib.suppress(OSError):
                        self.sock.sendto(rtp_packet(seq, ts, ssrc, chunk), self.remote)
                    seq += 1
                ts += 160
            with contextlib.suppress(TimeoutError, OSError):
                data, addr = self.sock.recvfrom(2048)
                self.received.append((time.monotonic(), data, addr))

    def heard(self, since: float, until: float | None = None) -> np.ndarray:
        chunks = [d[12:] for t, d, _ in self.received
                  if t >= since and (until is None or t < until) and len(d) > 12
                  and d[1] & 0x7F == 0]
        return audio.ulaw_decode(b"".join(chunks)) if chunks else np.zeros(0)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.sock.close()


class Sprayer:
    """Valid PCMU RTP of its own tone, in sequence per port, to every port of a range, in a
    loop, from ``host``; counts every datagram that comes back."""

    def __init__(self, host: str, ports: range, interval: float = 0.02) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setblocking(False)
        self.ports = ports
        self.interval = interval
        self.sent = 0
        self.received: list[tuple[bytes, tuple[str, int]]] = []
        self.payload = audio.ulaw_encode(audio.tone(TONE_SPRAY, 0.02, amplitude=0.8))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sprayer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._drain()
        self.sock.close()

    def _drain(self) -> None:
        while True:
            try:
                self.received.append(self.sock.recvfrom(65535))
            except ConnectionRefusedError:
                continue                  # ICMP for a port nobody listens on: not data
            except (BlockingIOError, OSError):
                return

    def _run(self) -> None:
        seq = 0
        deadline = time.monotonic() + 300
        while not self._stop.is_set() and time.monotonic() < deadline:
            for port in self.ports:
                with contextlib.suppress(OSError):
                    self.sock.sendto(rtp_packet(seq, seq * 160, 0x5EED0000 + port,
                                                self.payload), (procs.LOOPBACK, port))
                    self.sent += 1
            seq += 1
            self._drain()
            self._stop.wait(self.interval)


# --- the server -----------------------------------------------------------------------------


def stats(server: Any) -> dict[str, int]:
    resp = server.api("GET", "/api/stats")
    assert resp.status == 200, resp.text
    result: dict[str, int] = resp.json()
    return result


def create_room(server: Any) -> None:
    assert server.api("POST", "/api/rooms", {"name": ROOM, "pin": PIN}).status == 201
    resp = server.api("POST", "/api/numbers", {"number": NUMBER, "route": "room", "room": ROOM})
    assert resp.status in (200, 201), resp.text


def wait_idle(server: Any, timeout: float = 15.0) -> dict[str, int]:
    last: dict[str, int] = {}

    def idle() -> bool:
        nonlocal last
        last = stats(server)
        return all(last.get(k) == 0 for k in IDLE_KEYS)

    if not procs.wait_until(idle, timeout, 0.2):
        pytest.fail(f"not idle after {timeout:.0f} s: {({k: last.get(k) for k in IDLE_KEYS})}")
    return last


@contextlib.contextmanager
def genuine_call(server: Any, sip: SipPhone, tone_hz: float, host: str = PHONE,
                 amplitude: float = 0.3) -> Iterator[tuple[Call, RtpPhone]]:
    """A call to the room from ``sip`` with media at ``host`` sending a tone (amplitude 0:
    silence); hung up after."""
    media = RtpPhone(host, tone_hz, amplitude)
    call = sip.invite(sdp(host, media.port))
    answer = sip.wait_final(call)
    assert answer.status == 200, answer.status
    media.start((procs.LOOPBACK, answer.media_port))
    try:
        yield call, media
    finally:
        media.stop()
        sip.bye(call)
        with contextlib.suppress(AssertionError):
            sip.wait_final(call, 5)


def pump_for(phones: list[SipPhone], seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for p in phones:
            p.pump(0.02)


def band(samples: np.ndarray, freq: float) -> float:
    return audio.band_energy(samples, audio.RATE, freq) if samples.size else 0.0


# --- tests ----------------------------------------------------------------------------------


def test_rtp_spray_never_takes_over_a_call(switchboard_server: Any) -> None:
    server = switchboard_server(NOT_TRUSTED)
    create_room(server)
    before = stats(server)
    sip = SipPhone(server)
    ports = range(server.rtp_low, server.rtp_high + 1)
    try:
        with Sprayer(SPRAYER, ports) as sprayer:
            time.sleep(0.5)                         # spraying before the calls start
            with contextlib.ExitStack() as calls:
                _, a = calls.enter_context(genuine_call(server, sip, TONE_A))
                _, b = calls.enter_context(genuine_call(server, sip, TONE_B))
                for _ in range(EXTRA_CALLS):       # more new calls to take over (silent)
                    calls.enter_context(genuine_call(server, sip, TONE_A, amplitude=0.0))
                pump_for([sip], 3.0)
                t0 = time.monotonic()
                pump_for([sip], 2.0)
                heard_b, heard_a = b.heard(t0), a.heard(t0)
                # A pauses longer than media.relatch_after (3 s) while the spray goes on
                a.paused.set()
                t1 = time.monotonic()
                pump_for([sip], 4.5)
                pause_b = b.heard(t1 + 0.5)
                a.paused.clear()
                t2 = time.monotonic()
                pump_for([sip], 2.5)
                after_b = b.heard(t2 + 0.5)
                during = stats(server)
        assert sprayer.sent > 5000, sprayer.sent
        assert sprayer.received == [], (
            f"the sprayer received {len(sprayer.received)} datagrams from "
            f"{sorted({a for _, a in sprayer.received})[:5]}")
    finally:
        sip.close()
    log.info("B hears A: %s; A hears B: %s; B during the pause: %s; B after: %s",
             audio.analyse(heard_b, audio.RATE), audio.analyse(heard_a, audio.RATE),
             audio.analyse(pause_b, audio.RATE), audio.analyse(after_b, audio.RATE))
    assert audio.hears_tone(heard_b, audio.RATE, TONE_A), "B does not hear A"
    assert audio.hears_tone(heard_a, audio.RATE, TONE_B), "A does not hear B"
    for what, samples in (("B", heard_b), ("A", heard_a), ("B during A's pause", pause_b),
                          ("B after A's pause", after_b)):
        spray = band(samples, TONE_SPRAY)
        assert spray < 1e-5, f"{what} hears the sprayer ({spray:.2e})"
    assert audio.hears_tone(after_b, audio.RATE, TONE_A), "A's audio did not come back"
    assert during["rtp_rx_dropped"] - before["rtp_rx_dropped"] > 1000, during
    wait_idle(server)


BAD_HOSTS: list[tuple[str, str]] = [
    ("IP4", "pbx{n}.invalid"),                  # a host name that does not resolve
    ("IP4", "127.0.0.999"),
    ("IP6", "::1"),                             # IPv6 on an IPv4 leg
    ("IP4", "::1"),
    ("IP4", "!!garbage{n}"),
    ("IP4", "256.1.2.3"),
    ("IP4", "224.0.0.{m}"),                     # multicast
    ("IP4", "bad..name"),
]


def test_a_thousand_bad_c_addresses_leak_nothing(switchboard_server: Any) -> None:
    # 50 bad calls a second from each address would get it blocked as a scanner: this test
    # is about what each call leaves behind, so the shedding in front is loosened.
    server = switchboard_server(deep_merge(NOT_TRUSTED, {"sip": {"limits": UNSHED_SIP_LIMITS}}))
    create_room(server)
    sources = [SipPhone(server, f"127.0.1.{k}") for k in range(1, 21)]
    statuses: dict[str, dict[int, int]] = {}
    started = time.monotonic()
    try:
        kinds = [*BAD_HOSTS, ("IP4", ""), ("none", "")]   # empty c= address, no c= line
        pending: list[tuple[SipPhone, Call, str]] = []
        for n in range(1000):
            phone = sources[n % len(sources)]
            addrtype, template = kinds[n % len(kinds)]
            host = template.format(n=n, m=n % 250 + 1)
            body = sdp(host, 40000 + 2 * (n % 1000), addrtype=addrtype)
            if addrtype == "none":
                body = body.replace(f"c=IN IP4 {host}\r\n", "")
            elif not host:
                body = body.replace(f"c=IN {addrtype} \r\n", "c=IN IP4\r\n")
            pending.append((phone, phone.invite(body), template or addrtype))
            if n % 50 == 49:
                for p in sources:
                    p.pump(0.005)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(c.final is None for _, c, _ in pending):
            for p in sources:
                p.pump(0.01)
        for _, call, kind in pending:
            status = call.final.status if call.final else 0
            statuses.setdefault(kind, {}).setdefault(status, 0)
            statuses[kind][status] += 1
        pump_for(sources, 1.0)                    # ACKs out, retransmissions absorbed
    finally:
        for p in sources:
            p.close()
    log.info("1000 bad c= calls in %.1f s: %s", time.monotonic() - started, statuses)
    assert all(0 not in s for s in statuses.values()), f"unanswered calls: {statuses}"
    assert all(not any(200 <= code < 300 for code in s) for s in statuses.values()), statuses
    for kind, counts in statuses.items():
        assert counts.get(488, 0) > 0, f"{kind}: never 488 ({counts})"
    after = wait_idle(server)
    assert after["rtp_ports_in_use"] == 0 and after["legs"] == 0 and after["calls"] == 0
    # the pool is whole: a genuine call, and a PBX that writes a host name that resolves
    sip = SipPhone(server)
    try:
        for host in (PHONE, "localhost"):
            media = RtpPhone(PHONE, TONE_A)
            call = sip.invite(sdp(host, media.port))
            answer = sip.wait_final(call)
            assert answer.status == 200, (host, answer.status)
            sip.bye(call)
            assert sip.wait_final(call).status == 200
            media.stop()
    finally:
        sip.close()
    assert server.running() and "Traceback" not in server.log_text()
    wait_idle(server)


def test_reinvite_with_a_bad_address_is_refused_and_the_call_goes_on(
        switchboard_server: Any) -> None:
    server = switchboard_server(NOT_TRUSTED)
    create_room(server)
    sip = SipPhone(server)
    try:
        with genuine_call(server, sip, TONE_A) as (call, a), \
                genuine_call(server, sip, TONE_B) as (_, b):
            pump_for([sip], 1.5)
            for addrtype, host in (("IP4", "127.0.0.999"), ("IP6", "::1"),
                                   ("IP4", "pbx.invalid"), ("IP4", "x y")):
                sip.reinvite(call, sdp(host, a.port, addrtype=addrtype, session=2))
                assert sip.wait_final(call).status in (488, 400), host
            assert stats(server)["calls"] == 2
            # hold (c=0.0.0.0) is still accepted, and taking it back too, by a host name
            # that resolves (once, when the offer comes)
            sip.reinvite(call, sdp("0.0.0.0", a.port, session=3))
            assert sip.wait_final(call).status == 200
            sip.reinvite(call, sdp("localhost", a.port, session=4))
            assert sip.wait_final(call).status == 200
            t0 = time.monotonic()
            pump_for([sip], 2.0)
            assert audio.hears_tone(b.heard(t0), audio.RATE, TONE_A), "B no longer hears A"
            assert audio.hears_tone(a.heard(t0), audio.RATE, TONE_B), "A no longer hears B"
    finally:
        sip.close()
    wait_idle(server)


class Listener:
    """Sockets on VICTIM (RTP and RTCP ports) that count what reaches them."""

    def __init__(self) -> None:
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        port = procs.find_port_block(2, kinds=("udp",))
        self.rtp.bind((VICTIM, port))
        self.rtcp.bind((VICTIM, port + 1))
        self.port = port
        for s in (self.rtp, self.rtcp):
            s.setblocking(False)

    def drain(self) -> int:
        count = 0
        for s in (self.rtp, self.rtcp):
            while True:
                try:
                    s.recvfrom(65535)
                except ConnectionRefusedError:
                    continue
                except (BlockingIOError, OSError):
                    break
                count += 1
        return count

    def close(self) -> None:
        self.rtp.close()
        self.rtcp.close()


@pytest.mark.parametrize("trusted", [False, True], ids=["untrusted", "trusted"])
def test_no_media_to_an_sdp_address_that_has_not_spoken(switchboard_server: Any,
                                                        trusted: bool) -> None:
    server = switchboard_server({"sip": {"trusted_peers": ["127.0.0.1" if trusted
                                                           else "192.0.2.1"]}})
    create_room(server)
    sip = SipPhone(server)
    victim = Listener()
    other = RtpPhone(PHONE, TONE_B)                # someone in the room, so there is audio
    try:
        other_call = sip.invite(sdp(PHONE, other.port))
        other_answer = sip.wait_final(other_call)
        assert other_answer.status == 200
        other.start((procs.LOOPBACK, other_answer.media_port))
        call = sip.invite(sdp(VICTIM, victim.port))
        answer = sip.wait_final(call)
        assert answer.status == 200
        pump_for([sip], 3.0)                       # audio and RTCP reports would be due
        before = victim.drain()
        if trusted:
            assert before > 50, f"a trusted peer's SDP address got only {before} datagrams"
        else:
            assert before == 0, f"{before} datagrams reflected to {VICTIM}"
            # once the address has sent valid RTP it is the phone's: media flows there
            victim.rtp.sendto(rtp_packet(1, 160, 0x1234, bytes([0xFF]) * 160),
                              (procs.LOOPBACK, answer.media_port))
            pump_for([sip], 1.0)
            assert victim.drain() > 20, "no media after the address sent RTP"
        for c in (call, other_call):
            sip.bye(c)
            assert sip.wait_final(c).status == 200
    finally:
        other.stop()
        victim.close()
        sip.close()
    wait_idle(server)


def test_a_caller_behind_nat_is_still_heard_and_answered(switchboard_server: Any) -> None:
    """Strict RTP must not break NAT: the SDP names a private address (here 127.0.0.4, where
    nothing listens) and the media comes from the SIP source host on another port."""
    server = switchboard_server(NOT_TRUSTED)
    create_room(server)
    sip = SipPhone(server)
    natted = RtpPhone(PHONE, TONE_A)
    try:
        with genuine_call(server, sip, TONE_B) as (_, b):
            call = sip.invite(sdp("127.0.0.4", 4000))
            answer = sip.wait_final(call)
            assert answer.status == 200
            natted.start((procs.LOOPBACK, answer.media_port))
            pump_for([sip], 1.5)
            t0 = time.monotonic()
            pump_for([sip], 2.0)
            assert audio.hears_tone(b.heard(t0), audio.RATE, TONE_A), "the NAT caller is not heard"
            assert audio.hears_tone(natted.heard(t0), audio.RATE, TONE_B), (
                "the NAT caller hears nothing at its real address")
            sip.bye(call)
            assert sip.wait_final(call).status == 200
    finally:
        natted.stop()
        sip.close()
    wait_idle(server)
