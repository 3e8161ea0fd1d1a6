"""The real server survives bad input (issue 2, section 5).

- every RFC 4475 torture message, over UDP and TCP: invalid requests get 400 (505 for the bad
  version) where a response can be formed, valid ones their normal answer, the rest nothing;
- thousands of random, mutated and truncated datagrams to the SIP port, hundreds of garbage
  TCP streams, oversized TCP messages (refused at once) and half-open connections (a partial
  body, a header block without end), closed within the partial-message timeout;
- thousands of garbage datagrams to the RTP and RTCP ports of a live call.

Afterwards the server still answers OPTIONS, the live call (two baresip phones) still carries
audio both ways, the log holds no traceback, and once the phones hang up every count returns
to its baseline.

Only 127.0.0.1 is addressed. The torture requests' top Via is pointed at the test's own socket
(the rest of each message is untouched), so no response goes to a port that is not ours, and
calls to unknown numbers are rejected (`dialplan.default_route = "reject"`), so no mutated
INVITE ever makes the server send media or requests to an address from the message.
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
import socket
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import REPO, SwitchboardServer
from peers import audio, procs
from peers.baresip import Baresip
from test_mixing_baresip import TONE_AMPLITUDE, participants, stats, wait_counts_zero

pytestmark = pytest.mark.integration

log = logging.getLogger(__name__)

TORTURE_DIR = REPO / "tests" / "fixtures" / "rfc4475"
NUMBER = "+15550101"  # routed straight to the room
ROOM = "standup"
REJECT_UNKNOWN = {"dialplan": {"default_route": "reject"}}
PARTIAL_TIMEOUT_S = 32.0  # gateway/sip_transport.py: 64*T1, not configurable
TXN_TIMEOUT_S = 32.0      # timers H and J (64*T1): the server transactions we leave open

# RFC 4475 answers over UDP; None: nothing may come back (a response was sent, or a request
# no response can be formed for).
EXPECT: dict[str, set[int] | None] = {
    # 3.1.1 valid messages
    "wsinv": {481}, "intmeth": {501}, "esc01": {404}, "escnull": {405}, "esc02": {501},
    "lwsdisp": {200}, "longreq": {404}, "dblreq": {405}, "semiuri": {200},
    "transports": {200}, "mpart01": {405}, "unreason": None, "noreason": None,
    # 3.1.2 invalid messages: 400 where a response can be formed
    "badinv01": {400}, "clerr": {400}, "ncl": {400}, "scalar02": {400}, "scalarlg": None,
    "quotbal": {400}, "ltgtruri": {400}, "lwsruri": {400}, "lwsstart": {400}, "trws": {400},
    "escruri": {400}, "regbadct": {400}, "badaspec": {400}, "baddn": {400},
    "badvers": {505}, "mismatch01": {400}, "mismatch02": {400}, "bigcode": None,
    "baddate": {404},
    # 3.2 transaction layer, 3.3 application layer, 3.4 RFC 2543
    "badbranch": {200}, "insuf": None, "unkscm": {416}, "novelsc": {416},
    "unksm2": {405}, "bext01": {420}, "invut": {415}, "regaut01": {405}, "multi01": {400},
    "mcl01": {400}, "bcast": None, "zeromf": {200, 483}, "cparam01": {405},
    "cparam02": {405}, "regescrt": {405}, "sdp01": {404, 406, 488}, "inv2543": {400, 404},
}  # fmt: skip
# Calls to unknown users get 404 (the reject route) after the body type is checked (invut:
# 415) and before Accept would matter (sdp01). zeromf: RFC 4475 wants an endpoint to answer
# as if Max-Forwards were positive (200); 483 is tolerated. inv2543 has no Contact: it cannot
# create a dialog (400), or is routed (404). unkscm/novelsc: 416 (RFC 3261 8.2.2.1).
# Over TCP: clerr is an incomplete message (no answer); ncl, mcl01 and inv2543 (no
# Content-Length) break the framing: the connection is closed. dblreq's REGISTER is complete
# before its broken INVITE, so it is still answered.
TCP_FRAMING_ERRORS = ("ncl", "mcl01", "inv2543")


# --- talking to the server -----------------------------------------------------------------


def _udp_exchange(port: int, data: bytes, timeout: float = 0.8) -> list[int]:
    """Send `data` (top Via pointed at a fresh socket): statuses until the first final."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((procs.LOOPBACK, 0))
        payload = rewrite_top_via(data, sock.getsockname()[1])
        assert payload != data or data.startswith(b"SIP/"), f"no Via rewritten: {data[:80]!r}"
        sock.sendto(payload, (procs.LOOPBACK, port))
        return _read_statuses(sock, timeout, datagram=True)


def _tcp_exchange(port: int, data: bytes, timeout: float = 0.8) -> tuple[list[int], bool]:
    """Send `data` on a fresh TCP connection: (statuses read, whether the server closed)."""
    with socket.create_connection((procs.LOOPBACK, port), timeout=5) as sock:
        sock.sendall(data)
        statuses = _read_statuses(sock, timeout, datagram=False)
        return statuses, _closed_by_peer(sock, 0.05)


def _read_statuses(sock: socket.socket, timeout: float, *, datagram: bool) -> list[int]:
    statuses: list[int] = []
    buffer = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            chunk = sock.recv(70000)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        buffer = chunk if datagram else buffer + chunk
        found = [int(m) for m in re.findall(rb"(?m)^SIP/2\.0 (\d{3}) ", buffer)]
        statuses = statuses + found[:1] if datagram else found
        if any(s >= 200 for s in statuses):
            break
    return statuses


def _closed_by_peer(sock: socket.socket, wait: float) -> bool:
    """True once the server has closed (EOF or reset) the connection, within `wait` s."""
    deadline = time.monotonic() + wait
    try:
        while time.monotonic() < deadline:
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            if not sock.recv(65536):
                return True
    except TimeoutError:
        return False
    except OSError:
        return True
    return False


def _options(port: int, transport: str, branch: str) -> bytes:
    return (f"OPTIONS sip:127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/{transport.upper()} 127.0.0.1:{port};rport;branch=z9hG4bK{branch}\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag={branch[:8]}\r\n"
            f"To: <sip:127.0.0.1>\r\nCall-ID: probe-{branch}\r\nCSeq: 1 OPTIONS\r\n"
            f"Accept: application/sdp\r\nContent-Length: 0\r\n\r\n").encode()


def sip_options(port: int, transport: str = "udp", timeout: float = 5.0) -> int | None:
    """A raw OPTIONS to the server (over UDP sent again every 0.5 s): the final status."""
    branch = f"{random.getrandbits(64):016x}"
    if transport == "tcp":
        with socket.create_connection((procs.LOOPBACK, port), timeout=5) as conn:
            conn.sendall(_options(conn.getsockname()[1], "tcp", branch))
            statuses = _read_statuses(conn, timeout, datagram=False)
    else:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((procs.LOOPBACK, 0))
            data = _options(sock.getsockname()[1], "udp", branch)
            statuses = []
            deadline = time.monotonic() + timeout
            while not any(s >= 200 for s in statuses) and time.monotonic() < deadline:
                sock.sendto(data, (procs.LOOPBACK, port))
                statuses += _read_statuses(sock, 0.5, datagram=True)
    finals = [s for s in statuses if s >= 200]
    return finals[0] if finals else None


def _drain(sock: socket.socket) -> int:
    """Datagrams waiting on a non-blocking socket (ICMP errors are read and skipped)."""
    count = 0
    for _ in range(2000):
        try:
            sock.recv(70000)
        except BlockingIOError:
            break
        except ConnectionRefusedError:
            continue
        count += 1
    return count


def _send_quietly(conn: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):  # the server may close a garbage stream early
        conn.sendall(data)


# --- looking at the server -----------------------------------------------------------------


def _own_sockets(server: SwitchboardServer, table: str) -> list[tuple[int, str]]:
    """(local port, state) of the server process's sockets in /proc/net/`table`."""
    inodes = set()
    fd_dir = Path(f"/proc/{server.pid}/fd")
    for fd in fd_dir.iterdir():
        with contextlib.suppress(OSError):
            target = fd.readlink().as_posix()
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    out = []
    for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[9] in inodes:
            out.append((int(fields[1].split(":")[1], 16), fields[3]))
    return out


def server_tcp_connections(server: SwitchboardServer) -> list[str]:
    """States of the server's TCP connections on its SIP port (listening socket left out)."""
    names = {"01": "ESTABLISHED", "08": "CLOSE_WAIT", "09": "LAST_ACK", "04": "FIN_WAIT1"}
    return [names.get(state, state) for port, state in _own_sockets(server, "tcp")
            if port == server.sip_port and state != "0A"]


def server_rtp_ports(server: SwitchboardServer) -> list[int]:
    """The server's bound UDP ports in its RTP range: the live legs' RTP and RTCP."""
    return sorted(port for port, _ in _own_sockets(server, "udp")
                  if server.rtp_low <= port <= server.rtp_high)


def assert_no_tracebacks(server: SwitchboardServer) -> None:
    lines = server.log_text().splitlines()
    found = ["\n".join(lines[max(i - 1, 0):i + 20]) for i, line in enumerate(lines)
             if line.startswith("Traceback")]
    assert not found, (f"{len(found)} traceback(s) in {server.log_path}:\n"
                       + "\n---\n".join(found[:3]))


def _wait_transactions_zero(server: SwitchboardServer) -> dict[str, int]:
    """Server transactions we never ACKed live up to 64*T1: a bounded poll."""
    deadline = time.monotonic() + TXN_TIMEOUT_S + 15
    current = stats(server)
    while current["transactions"] != 0 and time.monotonic() < deadline:
        time.sleep(0.5)
        current = stats(server)
    assert current["transactions"] == 0, f"transactions still open: {current}"
    return current


# --- the live call -------------------------------------------------------------------------


def _start_live_call(server: SwitchboardServer, workdir: Path) -> tuple[Baresip, Baresip]:
    """alice (1000 Hz) and bob (400 Hz) in the room, through a number routed to it."""
    assert server.api("POST", "/api/rooms", {"name": ROOM}).status == 201
    resp = server.api("POST", "/api/numbers", {"number": NUMBER, "route": "room", "room": ROOM})
    assert resp.status == 201, resp.text
    phones = []
    for name, hz in (("alice", 1000.0), ("bob", 400.0)):
        wav = audio.make_tone_wav(workdir / f"{name}.wav", hz, 200.0, amplitude=TONE_AMPLITUDE)
        phones.append(Baresip(workdir, name, source_wav=wav, codecs=("PCMU/8000/1",),
                              timeout_s=180).start())
    for phone in phones:
        phone.dial(server.sip_uri(NUMBER))
        phone.wait_event("CALL_ESTABLISHED", 15)
    procs.wait_until(lambda: len(participants(server, ROOM)) == 2, 15, interval=0.1)
    assert len(participants(server, ROOM)) == 2, participants(server, ROOM)
    return phones[0], phones[1]


def _end_live_call(phones: tuple[Baresip, Baresip]) -> None:
    for phone in phones:
        phone.hangup()
    for phone in phones:
        phone.wait_event("CALL_CLOSED", 10)


def _share_with_tone(samples: np.ndarray, rate: int, freq: float) -> float:
    """Share of the 50 ms frames that are mostly the tone `freq` (1.0: heard all along)."""
    frames = audio.frames(samples, rate)
    good = sum(1 for f in frames
               if audio.rms(f) > 0.02 and audio.tone_ratio(f, rate, freq, min_rms=0.0) > 0.7)
    return good / max(len(frames), 1)


def _tail(path: Path, start_s: float, end_s: float) -> tuple[np.ndarray, int]:
    """A recording from `start_s` to `end_s` seconds before its end (its end is the hangup)."""
    samples, rate = audio.read_wav(path)
    a, b = samples.size - round(start_s * rate), samples.size - round(end_s * rate)
    assert a >= 0, f"{path}: only {samples.size / rate:.1f} s, wanted {start_s:.1f} s"
    return samples[a:b], rate


def _check_heard_each_other(phones: tuple[Baresip, Baresip], last_s: float = 2.0) -> None:
    """In the last `last_s` seconds before hangup each phone hears the other, not itself."""
    for phone, other_hz, own_hz in ((phones[0], 400.0, 1000.0), (phones[1], 1000.0, 400.0)):
        window, rate = _tail(phone.last_recording().dec, last_s + 0.4, 0.4)
        share = _share_with_tone(window, rate, other_hz)
        assert share > 0.9, (f"{phone.name} heard {other_hz:g} Hz in only {share:.0%} of its "
                             f"last {last_s:g} s: {audio.analyse(window, rate)}")
        assert audio.tone_ratio(window, rate, own_hz) < 0.05, f"{phone.name} hears itself"


# --- tests ---------------------------------------------------------------------------------


def test_rfc4475_torture_messages(switchboard_server: Any) -> None:
    server = switchboard_server(REJECT_UNKNOWN)
    files = sorted(TORTURE_DIR.glob("*.dat"))
    assert {f.stem for f in files} == set(EXPECT), "the fixture set changed"
    baseline = stats(server)
    udp, tcp = {}, {}
    for path in files:
        udp[path.stem] = _udp_exchange(server.sip_port, path.read_bytes())
        tcp[path.stem] = _tcp_exchange(server.sip_port, path.read_bytes())
        assert server.running(), f"the server died on {path.name}"
    log.info("RFC 4475 over UDP: %s; over TCP: %s", udp, tcp)
    wrong = []
    for name, expected in EXPECT.items():
        for transport, got in (("UDP", udp[name]), ("TCP", tcp[name][0])):
            if expected is None or (transport == "TCP" and name in TCP_FRAMING_ERRORS):
                if got and (expected is None or got != [400]):
                    wrong.append(f"{name}: expected no response over {transport}, got {got}")
            elif transport == "TCP" and name == "clerr":
                if got:
                    wrong.append(f"clerr over TCP: answered {got} before its body came")
            elif next((s for s in got if s >= 200), None) not in expected:
                wrong.append(f"{name}: expected {sorted(expected)} over {transport}, got {got}")
    wrong += [f"{name} over TCP: the connection was left open after a framing error"
              for name in TCP_FRAMING_ERRORS if not tcp[name][1]]
    assert not wrong, "\n".join(wrong)
    assert sip_options(server.sip_port) == 200
    assert sip_options(server.sip_port, transport="tcp") == 200
    final = _wait_transactions_zero(server)
    assert (final["calls"], final["legs"]) == (0, 0), final
    assert final["tasks"] <= baseline["tasks"], (baseline, final)
    assert "answering 400 to an unparseable request" in server.log_text()
    assert_no_tracebacks(server)


def test_sip_port_survives_garbage_udp_and_tcp(switchboard_server: Any,
                                               tmp_workdir: Path) -> None:
    server = switchboard_server(REJECT_UNKNOWN)
    baseline = stats(server)
    inputs = SipInputs(seed=4475, torture=sorted(TORTURE_DIR.glob("*.dat")))
    phones = _start_live_call(server, tmp_workdir)
    try:
        # Half-open connections first: they must be gone within the partial-message timeout.
        half_open = {}
        for name, data in inputs.half_open.items():
            half_open[name] = socket.create_connection((procs.LOOPBACK, server.sip_port), 5)
            half_open[name].sendall(data)
        opened = time.monotonic()
        oversized = []
        for data in inputs.oversized:
            oversized.append(socket.create_connection((procs.LOOPBACK, server.sip_port), 5))
            _send_quietly(oversized[-1], data)
        # Thousands of datagrams, 30 every 40 ms.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((procs.LOOPBACK, 0))
            sock.setblocking(False)
            datagrams = [inputs.datagram(sock.getsockname()[1]) for _ in range(3000)]
            answered = 0
            for start in range(0, len(datagrams), 30):
                for data in datagrams[start:start + 30]:
                    sock.sendto(data, (procs.LOOPBACK, server.sip_port))
                answered += _drain(sock)
                time.sleep(0.04)
            assert server.running(), "the server died during the datagram spray"
        # A few hundred garbage TCP streams, closed, reset, or read from.
        tcp_answers = 0
        for data, how in inputs.tcp_streams(count=300):
            with socket.create_connection((procs.LOOPBACK, server.sip_port), 5) as conn:
                _send_quietly(conn, data)
                if how == "reset":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                elif how == "read":
                    tcp_answers += len(_read_statuses(conn, 0.2, datagram=False))
            time.sleep(0.01)
        assert server.running(), "the server died during the TCP streams"
        log.info("sip spray: %d datagrams, %d answers; %d TCP answers", len(datagrams),
                 answered, tcp_answers)
        assert answered > 100, f"only {answered} answers to {len(datagrams)} datagrams"
        for sock in oversized:
            assert _closed_by_peer(sock, 5.0), "an oversized TCP message was not refused"
            sock.close()
        assert sip_options(server.sip_port) == 200
        assert sip_options(server.sip_port, transport="tcp") == 200
        for name, sock in half_open.items():
            left = opened + PARTIAL_TIMEOUT_S + 10 - time.monotonic()
            assert _closed_by_peer(sock, max(left, 0.1)), (
                f"half-open connection '{name}' still open {time.monotonic() - opened:.0f} s "
                f"after its last byte (server: {server_tcp_connections(server)})")
            sock.close()
        phones[0].poll(1.0)
        _end_live_call(phones)
    finally:
        for phone in phones:
            phone.quit()
    _check_heard_each_other(phones)
    assert procs.wait_until(lambda: not server_tcp_connections(server), 10), (
        f"server TCP connections left: {server_tcp_connections(server)}")
    wait_counts_zero(server)
    final = _wait_transactions_zero(server)
    assert final["tasks"] <= baseline["tasks"], (baseline, final)
    text = server.log_text()
    assert "answering 400 to an unparseable request" in text
    assert "framing error" in text and "incomplete message" in text
    assert_no_tracebacks(server)


def test_live_call_survives_rtp_garbage(switchboard_server: Any, tmp_workdir: Path) -> None:
    server = switchboard_server({**REJECT_UNKNOWN, "log": {"level": "debug"}})
    baseline = stats(server)
    phones = _start_live_call(server, tmp_workdir)
    try:
        live_ports = server_rtp_ports(server)
        assert len(live_ports) == 4, f"two legs' RTP and RTCP ports, got {live_ports}"
        phones[0].poll(2.0)
        late_before = stats(server)["mix_ticks_late"]
        spray_start = time.monotonic()
        sent, leaked = _spray_rtp(server, live_ports, count=4000)
        spray_end = time.monotonic()
        assert server.running(), "the server died during the RTP spray"
        assert sip_options(server.sip_port) == 200
        during = stats(server)
        assert (during["calls"], during["legs"]) == (2, 2), during
        assert len(participants(server, ROOM)) == 2
        phones[0].poll(3.0)
        hangup = time.monotonic()
        _end_live_call(phones)
    finally:
        for phone in phones:
            phone.quit()
    log.info("rtp spray: %d datagrams in %.1f s; late mix ticks %d -> %d", sent,
             spray_end - spray_start, late_before, during["mix_ticks_late"])
    for phone, other_hz in ((phones[1], 1000.0), (phones[0], 400.0)):  # during the spray
        window, rate = _tail(phone.last_recording().dec, hangup - spray_start - 0.3,
                             hangup - spray_end + 0.3)
        share = _share_with_tone(window, rate, other_hz)
        assert share > 0.85, (f"{phone.name} heard {other_hz:g} Hz in only {share:.0%} of the "
                              f"spray: {audio.analyse(window, rate)}")
    _check_heard_each_other(phones)  # and after it
    final = wait_counts_zero(server)
    assert final["tasks"] <= baseline["tasks"], (baseline, final)
    counters = re.findall(r"RTP session closed \(SessionCounters\((.*?)\)\)", server.log_text())
    assert len(counters) == 2, "both legs' counters are logged (at debug) when they close"
    legs = [{k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", c)} for c in counters]
    dropped = sum(leg[k] for leg in legs
                  for k in ("rx_garbage", "rx_unexpected_pt", "rx_foreign", "rtcp_garbage"))
    assert dropped > 0.6 * sent, f"the spray did not reach the legs: {counters}"
    for leg in legs:
        assert leg["rx_foreign"] > 0 and leg["relatches"] == 0, f"a leg was hijacked: {leg}"
        assert leg["internal_errors"] == 0, f"a leg failed on garbage: {leg}"
    assert leaked == 0, f"the server sent {leaked} datagrams to the spraying stranger"
    assert_no_tracebacks(server)


def _spray_rtp(server: SwitchboardServer, live_ports: list[int],
               count: int) -> tuple[int, int]:
    """`count` garbage datagrams, 80 % to the live legs' ports, the rest anywhere in the RTP
    range, 40 every 60 ms: (sent, datagrams the server sent back to the sprayer)."""
    rng = random.Random(3550)
    every = list(range(server.rtp_low, server.rtp_high + 1))
    sent = leaked = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((procs.LOOPBACK, 0))
        sock.setblocking(False)
        while sent < count:
            for _ in range(min(40, count - sent)):
                port = rng.choice(live_ports) if rng.random() < 0.8 else rng.choice(every)
                with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
                    sock.sendto(rtp_garbage(rng), (procs.LOOPBACK, port))
                sent += 1
            leaked += _drain(sock)
            time.sleep(0.06)
        time.sleep(0.5)
        leaked += _drain(sock)
    return sent, leaked


# --- bad input -----------------------------------------------------------------------------

_LWS = rb"(?:[ \t]|\r?\n[ \t])"
_VIA_RE = re.compile(  # the top Via's sent-by, across folded lines and odd spacing
    rb"^((?:via|v)[ \t]*:" + _LWS + rb"*SIP" + _LWS + rb"*/" + _LWS + rb"*[0-9.]+" + _LWS
    + rb"*/" + _LWS + rb"*[A-Za-z]+" + _LWS + rb"+)(\[[^\]\r\n]*\]|[^;,:\s]+)(:[0-9]+)?",
    re.I | re.M)


def rewrite_top_via(data: bytes, port: int) -> bytes:
    """Point a request's top Via at 127.0.0.1:`port` (a response is left alone); every other
    byte stays as it was."""
    if data.startswith(b"SIP/"):
        return data
    end = data.find(b"\r\n\r\n")
    head, rest = (data, b"") if end < 0 else (data[:end], data[end:])
    return _VIA_RE.sub(lambda m: m.group(1) + b"127.0.0.1:%d" % port, head, count=1) + rest


_SDP = ("v=0\r\no=fuzz 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio 9 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n")
_TEMPLATE = ("{method} sip:1000@127.0.0.1 SIP/2.0\r\n"
             "Via: SIP/2.0/{tp} 127.0.0.1:{port};rport;branch=z9hG4bK{branch}\r\n"
             "Max-Forwards: 70\r\nFrom: \"Fuzz\" <sip:fuzz@127.0.0.1:{port}>;tag={tag}\r\n"
             "To: <sip:1000@127.0.0.1>{to_tag}\r\nCall-ID: fuzz-{call_id}\r\nCSeq: 1 {method}\r\n"
             "Contact: <sip:fuzz@127.0.0.1:{port}>\r\n{extra}Content-Length: {length}\r\n\r\n"
             "{body}")
_REQUESTS = [("INVITE", "Content-Type: application/sdp\r\n", _SDP, ""),
             ("OPTIONS", "Accept: application/sdp\r\n", "", ""),
             ("BYE", "", "", ";tag=abc"), ("ACK", "", "", ";tag=abc"), ("CANCEL", "", "", ""),
             ("REGISTER", "Expires: 60\r\n", "", ""),
             ("INFO", "Content-Type: application/dtmf-relay\r\n", "Signal=5\r\nDuration=160\r\n",
              ";tag=abc"),
             ("MESSAGE", "Content-Type: text/plain\r\n", "hello", ""),
             ("SUBSCRIBE", "Event: presence\r\n", "", "")]
_RESPONSE = ("SIP/2.0 {status}\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{branch}\r\n"
             "From: <sip:a@127.0.0.1>;tag={tag}\r\nTo: <sip:b@127.0.0.1>;tag=x\r\n"
             "Call-ID: fuzz-{call_id}\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n")
_ODD_LENGTHS = [b"-1", b"99999999999", b"abc", b"", b"1e3", b" 5", b"4294967296", b"0",
                b"65536", b"12, 14"]
_EMPTYISH = [b"", b"\r\n", b"\r\n\r\n", b" ", b"\x00", b"\x00" * 4, b"SIP/2.0", b"INVITE",
             b"\n\n\n", b"\xff" * 3]
_START_LINES = [b"INVITE sip:1000@127.0.0.1 SIP/3.0", b"INVITE  SIP/2.0", b"SIP/2.0 999999 X",
                b"GET / HTTP/1.1", b"\x16\x03\x01", b"OPTIONS <sip:x> SIP/2.0",
                b"A" * 300 + b" sip:x SIP/2.0"]


def _options_with_body(length: int, body: bytes) -> bytes:
    return (b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKpb\r\n"
            b"Max-Forwards: 70\r\nFrom: <sip:p@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\n"
            b"Call-ID: partial-%d\r\nCSeq: 1 OPTIONS\r\nContent-Type: application/sdp\r\n"
            b"Content-Length: %d\r\n\r\n" % (length, length) + body)


class SipInputs:
    """Seeded bad SIP input: datagrams, TCP streams, half-open and oversized TCP messages.
    Seeds: our own requests and responses, and the torture requests (top Via pointed back at
    us; inv2543, whose Record-Route carries a maddr, is left out)."""

    def __init__(self, seed: int, torture: list[Path]) -> None:
        self.rng = random.Random(seed)
        self.torture = [d for d in (p.read_bytes() for p in torture)
                        if not d.startswith(b"SIP/") and b"maddr" not in d]
        self.half_open = {
            "partial body": _options_with_body(5000, b"v=0\r\no=partial"),
            "header block without end": _options_with_body(0, b"")[:150],
            "one byte": b"O",
        }
        self.oversized = [  # each refused at once (framing error), not after a timeout
            b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nX-Filler: " + b"a" * 70000 + b"\r\n",
            _options_with_body(10_000_000, b"x" * 100),
            _options_with_body(0, b"").replace(b"Content-Length: 0\r\n", b""),
        ]

    def seed_message(self, port: int, transport: str = "UDP") -> bytes:
        rng = self.rng
        fields = {"port": port, "branch": f"{rng.getrandbits(48):012x}",
                  "tag": f"{rng.getrandbits(32):08x}", "call_id": f"{rng.getrandbits(64):016x}"}
        pick = rng.random()
        if pick < 0.15:
            return rewrite_top_via(rng.choice(self.torture), port)
        method, extra, body, to_tag = rng.choice(_REQUESTS)
        if pick < 0.25:
            status = rng.choice(["200 OK", "180 Ringing", "487 Request Terminated"])
            return _RESPONSE.format(status=status, method=method, **fields).encode()
        return _TEMPLATE.format(method=method, tp=transport, extra=extra, body=body,
                                to_tag=to_tag, length=len(body.encode()), **fields).encode()

    def mutate(self, data: bytes) -> bytes:
        rng = self.rng
        buf = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            n = len(buf)
            kind, i = rng.randrange(12), (rng.randrange(n) if n else 0)
            lines = bytes(buf).split(b"\r\n")
            if kind == 0 and n:      # flip bytes
                for _ in range(rng.randint(1, 8)):
                    buf[rng.randrange(n)] = rng.randrange(256)
            elif kind == 1:          # delete a span
                del buf[i:i + rng.randint(1, 40)]
            elif kind == 2:          # duplicate a span
                buf[i:i] = buf[i:i + rng.randint(1, 200)]
            elif kind == 3:          # insert random bytes
                buf[i:i] = rng.randbytes(rng.randint(1, 30))
            elif kind == 4:          # truncate
                del buf[i:]
            elif kind == 5:          # an odd Content-Length
                buf = bytearray(re.sub(rb"(?i)(content-length|\nl) *: *[^\r\n]*",
                                       lambda m: m.group(1) + b": " + rng.choice(_ODD_LENGTHS),
                                       bytes(buf), count=1))
            elif kind == 6:          # bare LF or bare CR line ends
                buf = bytearray(bytes(buf).replace(b"\r\n", rng.choice([b"\n", b"\r"])))
            elif kind == 7:          # one header line hundreds of times
                k = rng.randrange(len(lines))
                lines[k:k] = [lines[k]] * rng.randint(2, 300)
                buf = bytearray(b"\r\n".join(lines))
            elif kind == 8:          # a header line beyond any limit
                buf[i:i] = b"\r\nX-Long: " + b"z" * rng.choice([100, 8200, 20000]) + b"\r\n"
            elif kind == 9:          # NUL, UTF-8 and broken UTF-8
                buf[i:i] = rng.choice([b"\x00", b"\x00\x00\r\n", "é中".encode(), b"\xc3"])
            elif kind == 10:         # a strange start line
                buf = bytearray(b"\r\n".join([rng.choice(_START_LINES), *lines[1:]]))
            else:                    # swap two lines
                a, b = rng.randrange(len(lines)), rng.randrange(len(lines))
                lines[a], lines[b] = lines[b], lines[a]
                buf = bytearray(b"\r\n".join(lines))
        return bytes(buf[:65507])

    def datagram(self, port: int) -> bytes:
        rng = self.rng
        pick = rng.random()
        if pick < 0.45:
            return self.mutate(self.seed_message(port))
        if pick < 0.65:
            seed = self.seed_message(port)
            return seed[:rng.randrange(len(seed))]
        if pick < 0.85:
            return rng.randbytes(rng.randint(1, 1500))
        if pick < 0.90:
            return rng.choice(_EMPTYISH)
        if pick < 0.95:
            return self.seed_message(port)
        if pick < 0.953:  # the largest UDP datagram: noise, or an OPTIONS with a huge header
            options = _options(port, "udp", f"{rng.getrandbits(48):012x}")[:-4]
            return rng.choice([rng.randbytes(65507),
                               (options + b"\r\nX-Pad: " + b"p" * 65000)[:65503] + b"\r\n\r\n"])
        return rtp_garbage(rng)  # RTP, RTCP or STUN at the SIP port

    def tcp_streams(self, count: int) -> list[tuple[bytes, str]]:
        """(bytes, how to finish: "close", "reset" or "read")."""
        rng = self.rng
        out = []
        for _ in range(count):
            pick = rng.random()
            if pick < 0.3:
                data = self.mutate(self.seed_message(9, "TCP"))
            elif pick < 0.5:
                data = rng.randbytes(rng.randint(1, 4000))
            elif pick < 0.6:
                data = b"\r\n" * rng.randint(1, 50)  # keep-alives only
            elif pick < 0.8:  # a good message, then garbage
                data = self.seed_message(9, "TCP") + rng.randbytes(rng.randint(1, 500))
            else:             # pipelined messages, the last one cut
                msgs = b"".join(self.seed_message(9, "TCP") for _ in range(rng.randint(2, 5)))
                data = msgs[:rng.randrange(len(msgs))]
            out.append((data, rng.choice(["close", "reset", "read"])))
        return out


def rtp_garbage(rng: random.Random) -> bytes:
    """One bad, foreign or odd RTP/RTCP/STUN datagram."""
    def header(first: int, pt: int) -> bytes:
        return struct.pack("!BBHII", first, pt, rng.randrange(65536), rng.getrandbits(32),
                           rng.getrandbits(32))

    kind = rng.randrange(14)
    if kind == 0:
        return rng.randbytes(rng.randint(1, 400))
    if kind == 1:   # a header cut short
        return b"\x80" + rng.randbytes(rng.randint(0, 10))
    if kind == 2:   # well-formed PCMU from a source the leg is not latched to
        return header(0x80, rng.choice([0, 0x80])) + rng.randbytes(160)
    if kind == 3:   # a foreign DTMF event
        return header(0x80, 101) + bytes([rng.randrange(16), 0x8A, 0, 160])
    if kind == 4:   # claims 15 CSRCs, carries fewer
        return header(0x8F, 0) + rng.randbytes(rng.randint(0, 50))
    if kind == 5:   # an extension header with an absurd length
        return header(0x90, 0) + b"\xbe\xde\xff\xff" + rng.randbytes(8)
    if kind == 6:   # padding longer than the packet
        return header(0xA0, 0) + rng.randbytes(20) + b"\xff"
    if kind == 7:   # any payload type
        return header(0x80, rng.randrange(256)) + rng.randbytes(80)
    if kind == 8:   # RTCP-looking, lengths that lie
        return struct.pack("!BBH", 0x80 | rng.randrange(32), rng.randrange(192, 224),
                           rng.randrange(65536)) + rng.randbytes(rng.randint(0, 120))
    if kind == 9:   # a sender report cut short
        return struct.pack("!BBH", 0x81, 200, 6) + rng.randbytes(rng.randint(0, 20))
    if kind == 10:  # RTP versions 0, 1 and 3
        return bytes([rng.choice([0x00, 0x40, 0xC0]) | rng.randrange(64)]) + rng.randbytes(171)
    if kind == 11:
        return rng.randbytes(rng.choice([1400, 4000, 65000]))
    if kind == 12:  # a STUN binding request
        return struct.pack("!HHI", 1, 0, 0x2112A442) + rng.randbytes(12)
    return b""
