"""RtpSession over real UDP sockets on 127.0.0.1 (the adapter only; the cores have no sockets)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest

from gateway.media.codecs import codec_by_name
from gateway.media.rtcp import RtcpSenderInfo, RtcpSrPacket, parse_compound
from gateway.media.rtp import RtpPacket
from gateway.rtp_session import PortAllocator, RtpSession

HOST = "127.0.0.1"
PCMU = codec_by_name("PCMU")


# --- helpers --------------------------------------------------------------------------


class Peer(asyncio.DatagramProtocol):
    """A bare UDP socket playing the phone."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, tuple[str, int]]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append((data, addr))

    def send(self, data: bytes, port: int, host: str = HOST) -> None:
        assert self.transport is not None
        self.transport.sendto(data, (host, port))

    @property
    def port(self) -> int:
        assert self.transport is not None
        port: int = self.transport.get_extra_info("sockname")[1]
        return port

    def rtp(self) -> list[RtpPacket]:
        out = []
        for data, _ in self.received:
            with contextlib.suppress(ValueError):
                if not 192 <= data[1] <= 223:
                    out.append(RtpPacket.parse(data))
        return out


async def make_peer(host: str = HOST, port: int = 0) -> Peer:
    """A UDP socket on ``host`` (any 127/8 address plays another machine)."""
    loop = asyncio.get_running_loop()
    _, peer = await loop.create_datagram_endpoint(Peer, local_addr=(host, port))
    return peer


async def wait_for(predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


@pytest.fixture
def allocator() -> PortAllocator:
    return PortAllocator(41000, 41999)


@pytest.fixture
async def pair(allocator: PortAllocator) -> AsyncIterator[tuple[RtpSession, RtpSession]]:
    a = RtpSession("call-a", allocator, HOST, sip_host=HOST)
    b = RtpSession("call-b", allocator, HOST, sip_host=HOST)
    await a.open()
    await b.open()
    a.set_remote(HOST, b.local_port, PCMU, 101)
    b.set_remote(HOST, a.local_port, PCMU, 101)
    yield a, b
    a.close()
    b.close()


def tone(k: int) -> np.ndarray:
    n = np.arange(160 * k, 160 * (k + 1))
    return (6000 * np.sin(2 * np.pi * 300 * n / 8000)).astype(np.int16)


# --- two sessions ---------------------------------------------------------------------


async def test_two_sessions_exchange_audio(pair: tuple[RtpSession, RtpSession]) -> None:
    a, b = pair
    loop = asyncio.get_running_loop()
    assert a.local_port % 2 == 0 and a.local_port != b.local_port
    received: list[np.ndarray] = []
    for k in range(40):                                     # 800 ms of a tone, both ways
        a.send_payload(PCMU.encode(tone(k)))
        b.send_payload(PCMU.encode(tone(k)))
        await asyncio.sleep(0.02)
        frame = b.pull_frame(loop.time())
        if frame is not None:
            received.append(frame)
        a.pull_frame(loop.time())
    for _ in range(15):                                     # drain
        await asyncio.sleep(0.02)
        frame = b.pull_frame(loop.time())
        if frame is not None:
            received.append(frame)
    assert len(received) >= 35
    assert all(f.shape == (160,) and f.dtype == np.int16 for f in received)
    # what came out is the tone: its level, and its frequency (300 Hz)
    got = np.concatenate(received).astype(np.float64)
    sent_rms = np.sqrt(np.mean(tone(0).astype(np.float64) ** 2))
    assert abs(np.sqrt(np.mean(got[: 160 * 30] ** 2)) - sent_rms) < 0.1 * sent_rms
    spectrum = np.abs(np.fft.rfft(got[: 160 * 30]))
    assert abs(np.argmax(spectrum) * 8000 / (160 * 30) - 300) < 5
    # and, on loopback, in order and complete (when the scheduler keeps up)
    if b.stats()["jb_underruns"] == 0:
        sent = np.concatenate([tone(k) for k in range(30)]).astype(np.float64)
        assert np.sqrt(np.mean((got[: 160 * 30] - sent) ** 2)) < 0.05 * sent_rms
    assert b.counters.rx_packets == 40 and a.counters.tx_packets == 40
    assert a.counters.rx_packets == 40
    assert b.stats()["jb_played"] >= 35 and b.stats()["rx_lost"] == 0
    assert b.remote_addr == (HOST, a.local_port)


async def test_first_packet_has_marker_and_numbers_advance(allocator: PortAllocator) -> None:
    phone = await make_peer()
    s = RtpSession("call-m", allocator, HOST, sip_host=HOST)
    await s.open()
    try:
        s.set_remote(HOST, phone.port, PCMU, 101)
        for _ in range(3):
            s.send_payload(PCMU.silence())
        assert await wait_for(lambda: len(phone.rtp()) == 3)
        p = phone.rtp()
        assert [x.marker for x in p] == [True, False, False]
        assert [(x.sequence_number - p[0].sequence_number) & 0xFFFF for x in p] == [0, 1, 2]
        assert [(x.timestamp - p[0].timestamp) & 0xFFFFFFFF for x in p] == [0, 160, 320]
        assert len({x.ssrc for x in p}) == 1 and p[0].ssrc == s.ssrc
        assert p[0].payload_type == 0 and p[0].payload == PCMU.silence()
        assert phone.received[0][1] == (HOST, s.local_port)          # sent from our port
    finally:
        s.close()
        assert phone.transport is not None
        phone.transport.close()


async def test_dtmf_both_ways_once_per_digit(pair: tuple[RtpSession, RtpSession]) -> None:
    a, b = pair
    got: list[str] = []
    b.on_dtmf = got.append
    assert a.send_dtmf("5")
    assert a.send_dtmf("#", duration_ms=100)
    assert a.send_dtmf("9")
    assert await wait_for(lambda: len(got) == 3 and b.counters.rx_dtmf >= 27)
    await asyncio.sleep(0.1)
    assert got == ["5", "#", "9"]
    # 160 ms: 7 updates + 3 ends; 100 ms: 4 updates + 3 ends
    assert b.counters.rx_dtmf == a.counters.tx_dtmf == 10 + 7 + 10
    with pytest.raises(ValueError):
        a.send_dtmf("X")


async def test_audio_is_replaced_by_dtmf_and_marker_after(allocator: PortAllocator) -> None:
    phone = await make_peer()
    s = RtpSession("call-d", allocator, HOST, sip_host=HOST)
    await s.open()
    try:
        s.set_remote(HOST, phone.port, PCMU, 101)
        s.send_payload(PCMU.silence())
        s.send_dtmf("1", duration_ms=40)
        for _ in range(10):
            s.send_payload(PCMU.silence())          # dropped while the event goes out
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        s.send_payload(PCMU.silence())
        assert await wait_for(lambda: len(phone.rtp()) >= 1 + 4 + 1)
        packets = phone.rtp()
        kinds = [p.payload_type for p in packets]
        # audio, then the event alone (1 update + 3 ends), then audio again
        assert kinds[:5] == [0, 101, 101, 101, 101] and set(kinds[5:]) == {0}
        event_ts = packets[1].timestamp
        assert {p.timestamp for p in packets[1:5]} == {event_ts}
        assert packets[1].marker and not any(p.marker for p in packets[2:5])
        after = packets[5]
        assert after.marker and not any(p.marker for p in packets[6:])
        assert (after.timestamp - event_ts) & 0xFFFFFFFF >= 320
        seqs = [p.sequence_number for p in packets]
        assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(len(seqs))]
    finally:
        s.close()
        assert phone.transport is not None
        phone.transport.close()


# --- symmetric RTP --------------------------------------------------------------------


async def test_symmetric_rtp_latches_to_the_real_source(allocator: PortAllocator) -> None:
    phone = await make_peer()
    decoy = await make_peer()                       # what the SDP said (behind NAT: wrong)
    s = RtpSession("call-nat", allocator, HOST, sip_host=HOST, relatch_after=0.3)
    await s.open()
    try:
        s.set_remote(HOST, decoy.port, PCMU, 101)
        s.send_payload(PCMU.silence())              # before latching: to the SDP address
        assert await wait_for(lambda: len(decoy.received) == 1)
        for k in range(3):
            phone.send(RtpPacket(0, k, 160 * k, 77, payload=PCMU.silence()).serialize(),
                       s.local_port)
        assert await wait_for(lambda: s.counters.rx_packets == 3)
        assert s.remote_addr == (HOST, phone.port)
        for _ in range(3):
            s.send_payload(PCMU.silence())
        assert await wait_for(lambda: len(phone.received) == 3)
        assert len(decoy.received) == 1

        # another source while the latched one is active: dropped
        intruder = await make_peer()
        intruder.send(RtpPacket(0, 9, 9, 78, payload=PCMU.silence()).serialize(), s.local_port)
        assert await wait_for(lambda: s.counters.rx_foreign == 1)
        assert s.remote_addr == (HOST, phone.port)

        # NAT rebinding: the phone's old port goes quiet, a new one sends 5 packets in
        # sequence: latched again on the fifth (the first four are dropped)
        await asyncio.sleep(0.4)
        moved = await make_peer()
        for k in range(5):
            moved.send(RtpPacket(0, 3 + k, 480 + 160 * k, 77, payload=PCMU.silence())
                       .serialize(), s.local_port)
        assert await wait_for(lambda: s.remote_addr == (HOST, moved.port))
        assert s.counters.relatches == 1
        assert s.counters.rx_foreign == 1 + 4 and s.counters.rx_packets == 3 + 1
        s.send_payload(PCMU.silence())
        assert await wait_for(lambda: len(moved.received) == 1)
        for p in (intruder, moved):
            assert p.transport is not None
            p.transport.close()
    finally:
        s.close()
        for p in (phone, decoy):
            assert p.transport is not None
            p.transport.close()


async def test_garbage_is_dropped_and_counted(allocator: PortAllocator) -> None:
    phone = await make_peer()
    s = RtpSession("call-g", allocator, HOST, sip_host=HOST)
    await s.open()
    try:
        s.set_remote(HOST, phone.port, PCMU, 101)
        bad = [b"hello", bytes(11), b"\x00" * 40, b"\x40" + bytes(20),
               bytes.fromhex("a0000000000000000000000000ff"),       # padding beyond packet
               bytes.fromhex("b0000000000000000000000000000000")]   # ext + padding nonsense
        for data in bad:
            phone.send(data, s.local_port)
            phone.send(data, s.local_port + 1)
        phone.send(RtpPacket(34, 1, 1, 1, payload=b"x").serialize(), s.local_port)   # H.263
        assert await wait_for(lambda: s.counters.rx_unexpected_pt == 1)
        await asyncio.sleep(0.05)
        assert s.counters.rx_garbage == len(bad)
        assert s.counters.rtcp_garbage == len(bad)
        assert s.counters.rx_packets == 0 and s.counters.internal_errors == 0
        assert s.remote_addr == (HOST, phone.port)   # garbage does not latch
    finally:
        s.close()
        assert phone.transport is not None
        phone.transport.close()


# --- RTCP, timeout, hold, close -------------------------------------------------------


async def test_rtcp_reports_sent_and_received(allocator: PortAllocator) -> None:
    phone = await make_peer()
    phone_rtcp = await make_peer()
    s = RtpSession("call-r", allocator, HOST, sip_host=HOST, rtcp_interval=0.2, check_interval=0.05)
    await s.open()
    try:
        s.set_remote(HOST, phone.port, PCMU, 101, rtcp_port=phone_rtcp.port)
        for k in range(10):
            phone.send(RtpPacket(0, k, 160 * k, 0xABC, payload=PCMU.silence()).serialize(),
                       s.local_port)
            s.send_payload(PCMU.silence())
        sr = RtcpSrPacket(0xABC, RtcpSenderInfo(0x1234_5678_9ABC_DEF0, 1600, 10, 1600))
        phone_rtcp.send(sr.serialize(), s.local_port + 1)
        assert await wait_for(lambda: s.counters.rtcp_rx == 1)
        await asyncio.sleep(0.05)
        assert await wait_for(lambda: len(phone_rtcp.received) >= 1)
        packets = parse_compound(phone_rtcp.received[-1][0])
        first = packets[0]
        assert isinstance(first, RtcpSrPacket) and first.ssrc == s.ssrc
        assert first.sender_info.packet_count == 10
        block = first.reports[0]
        assert block.ssrc == 0xABC and block.packets_lost == 0
        assert block.lsr == 0x5678_9ABC
    finally:
        s.close()
    # close sends a BYE
    assert await wait_for(lambda: any(len(parse_compound(d)) == 3 for d, _ in phone_rtcp.received))
    for p in (phone, phone_rtcp):
        assert p.transport is not None
        p.transport.close()


async def test_media_timeout_fires_once(allocator: PortAllocator) -> None:
    s = RtpSession("call-t", allocator, HOST, sip_host=HOST, media_timeout=0.3, check_interval=0.05)
    fired: list[float] = []
    s.on_timeout = lambda: fired.append(asyncio.get_running_loop().time())
    await s.open()
    try:
        start = asyncio.get_running_loop().time()
        s.set_remote(HOST, 9, PCMU, None)                   # nobody there
        assert await wait_for(lambda: len(fired) == 1, timeout=2.0)
        assert 0.25 <= fired[0] - start <= 1.0
        await asyncio.sleep(0.3)
        assert len(fired) == 1
    finally:
        s.close()


async def test_no_timeout_while_remote_does_not_send(allocator: PortAllocator) -> None:
    s = RtpSession("call-h", allocator, HOST, sip_host=HOST, media_timeout=0.2, check_interval=0.05)
    fired: list[int] = []
    s.on_timeout = lambda: fired.append(1)
    await s.open()
    try:
        s.set_remote(HOST, 9, PCMU, None)
        s.set_remote_direction("inactive")
        await asyncio.sleep(0.4)
        assert fired == []
    finally:
        s.close()


async def test_hold_stops_sending_and_resume_marks(allocator: PortAllocator) -> None:
    phone = await make_peer()
    s = RtpSession("call-hold", allocator, HOST, sip_host=HOST)
    await s.open()
    try:
        s.set_remote(HOST, phone.port, PCMU, 101)
        s.send_payload(PCMU.silence())
        s.set_remote_direction("sendonly")                  # the phone holds us
        assert not s.sending
        for _ in range(5):
            s.send_payload(PCMU.silence())
        assert s.send_dtmf("1")
        await asyncio.sleep(0.3)
        assert len(phone.rtp()) == 1
        s.set_remote_direction("sendrecv")
        s.send_payload(PCMU.silence())
        assert await wait_for(lambda: len(phone.rtp()) == 2)
        first, resumed = phone.rtp()
        assert resumed.marker
        assert (resumed.timestamp - first.timestamp) & 0xFFFFFFFF > 5 * 160
        with pytest.raises(ValueError):
            s.set_remote_direction("sideways")
    finally:
        s.close()
        assert phone.transport is not None
        phone.transport.close()


async def test_close_releases_port_and_is_idempotent(allocator: PortAllocator) -> None:
    s = RtpSession("call-c", allocator, HOST, sip_host=HOST)
    await s.open()
    port = s.local_port
    assert allocator.in_use == 1
    s.close()
    s.close()
    assert s.closed and allocator.in_use == 0
    s.send_payload(PCMU.silence())                          # harmless after close
    assert s.pull_frame(0.0) is None
    await asyncio.sleep(0.01)
    # the port can be bound again
    loop = asyncio.get_running_loop()
    t, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                               local_addr=(HOST, port))
    t.close()


def _free_udp(port: int) -> bool:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.bind((HOST, port))
        return True
    except OSError:
        return False
    finally:
        probe.close()


async def test_open_skips_ports_taken_by_others() -> None:
    loop = asyncio.get_running_loop()
    # a busy pair next to a free pair; other tests' ephemeral sockets may sit next to ours,
    # so look again (bounded) until the neighbouring pair is free
    for _ in range(50):
        blocker, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                         local_addr=(HOST, 0))
        busy = blocker.get_extra_info("sockname")[1]
        low = busy - (busy & 1)
        if low + 3 <= 65535 and _free_udp(low + 2) and _free_udp(low + 3):
            break
        blocker.close()
    else:
        pytest.fail("no free port pair next to an ephemeral port in 50 tries")
    # the busy pair and low + 2; a refused port is held back (quarantine), not drawn again
    alloc = PortAllocator(low, low + 3, quarantine=1)
    s = RtpSession("call-busy", alloc, HOST, sip_host=HOST)
    try:
        await s.open()
        assert s.local_port == low + 2
    finally:
        s.close()
        blocker.close()
