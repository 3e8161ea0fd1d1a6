"""The tick's send batch: native/sendbatch.py (sans-I/O, a fake send) and the C helper
native._fastsend over real loopback sockets (IPv4 and IPv6), and RtpSession queueing."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pytest

from gateway.media.codecs import codec_by_name
from gateway.media.rtp import RtpPacket
from gateway.mixer import ConferenceMixer, EncodeFn, Pcm
from gateway.rtp_session import PortAllocator, RtpSession
from native._fastsend import send_batch
from native.sendbatch import SendBatch

Items = list[tuple[int, bytes, tuple[str, int]]]


@dataclass
class FakeSender:
    fileno: int
    closed: bool = False


class RecordingSend:
    def __init__(self, take: int | None = None, fail: int = 0) -> None:
        self.calls: list[Items] = []
        self.take = take  # how many the kernel takes; the rest dropped (EAGAIN)
        self.fail = fail

    def __call__(self, items: Items) -> tuple[int, int, int]:
        self.calls.append(list(items))
        sent = len(items) if self.take is None else min(self.take, len(items))
        return sent - self.fail, len(items) - sent, self.fail


# --- SendBatch, sans-I/O --------------------------------------------------------------


def test_flush_sends_everything_in_order_in_one_call() -> None:
    send = RecordingSend()
    batch = SendBatch(send)
    senders = [FakeSender(10 + i) for i in range(5)]
    for i, s in enumerate(senders):
        batch.add(s, bytes([i]), ("127.0.0.1", 5000 + i))
    assert len(batch) == 5
    assert batch.flush() == 5
    assert len(send.calls) == 1
    assert send.calls[0] == [(10 + i, bytes([i]), ("127.0.0.1", 5000 + i)) for i in range(5)]
    assert len(batch) == 0 and batch.flush() == 0 and len(send.calls) == 1
    assert batch.stats()["sent"] == 5 and batch.stats()["max_batch"] == 5


def test_a_sender_closed_before_the_flush_is_skipped() -> None:
    send = RecordingSend()
    batch = SendBatch(send)
    a, b, c = FakeSender(3), FakeSender(4), FakeSender(5)
    for s in (a, b, c):
        batch.add(s, b"x", ("127.0.0.1", 9))
    b.closed = True  # a BYE between two slices of the tick; fd 4 may be reused meanwhile
    batch.flush()
    assert [fd for fd, _, _ in send.calls[0]] == [3, 5]
    assert batch.stats()["skipped"] == 1


def test_partial_send_drops_and_counts_the_rest() -> None:
    batch = SendBatch(RecordingSend(take=2, fail=1))
    for i in range(6):
        batch.add(FakeSender(i), b"x", ("127.0.0.1", 9))
    assert batch.flush() == 1
    stats = batch.stats()
    assert (stats["sent"], stats["dropped"], stats["failed"]) == (1, 4, 1)


def test_a_send_that_raises_counts_failed_and_keeps_going() -> None:
    def broken(items: Items) -> tuple[int, int, int]:
        raise ValueError("not a numeric IP address")

    batch = SendBatch(broken)
    batch.add(FakeSender(1), b"x", ("example", 9))
    assert batch.flush() == 0
    assert batch.stats()["failed"] == 1 and len(batch) == 0


# --- the mixer's tick fills the batch in a stable order --------------------------------


@dataclass
class BatchedLeg:
    """A phone leg that queues its packets into a batch, as RtpSession does."""

    leg_id: str
    batch: SendBatch
    fileno: int
    closed: bool = False
    codec_name: str = "PCMU"
    voice: Pcm | None = None
    sent: list[bytes] = field(default_factory=list)

    def pull_frame(self, now: float) -> Pcm | None:
        return self.voice

    def send_payload(self, payload: bytes) -> None:
        self.batch.add(self, payload, ("127.0.0.1", 20000 + self.fileno))


def _encoder(codec: str) -> EncodeFn:
    return lambda pcm: pcm.tobytes()[:4]


def test_a_sliced_tick_sends_one_batch_in_the_same_order_every_tick() -> None:
    send = RecordingSend()
    batch = SendBatch(send)
    mixer = ConferenceMixer(_encoder)
    legs = [BatchedLeg(f"leg{i}", batch, 100 + i, voice=np.full(160, i, np.int16))
            for i in range(12)]
    for i, leg in enumerate(legs):
        mixer.add_leg(f"room{i // 3}", leg)
    for k in range(3):
        mixer.begin_tick(k * 0.02)
        slices = 0
        while mixer.run_slice(3):  # one room per slice: the loop would run in between
            slices += 1
            assert send.calls[k:] == []  # nothing leaves before the tick is mixed
        assert slices == 3
        batch.flush()
    assert len(send.calls) == 3
    orders = [[fd for fd, _, _ in call] for call in send.calls]
    assert orders[0] == [100 + i for i in range(12)]
    assert orders[0] == orders[1] == orders[2]


def test_a_leg_closed_mid_tick_sends_nothing() -> None:
    send = RecordingSend()
    batch = SendBatch(send)
    mixer = ConferenceMixer(_encoder)
    legs = [BatchedLeg(f"leg{i}", batch, 100 + i) for i in range(6)]
    for i, leg in enumerate(legs):
        mixer.add_leg(f"room{i // 3}", leg)
    mixer.begin_tick(0.0)
    assert mixer.run_slice(3)          # room0 mixed, its packets queued
    legs[1].closed = True              # its call ends (BYE) between the slices
    mixer.remove_leg("leg4")           # and one in room1 leaves before its room is mixed
    assert not mixer.run_slice(3)
    batch.flush()
    assert [fd for fd, _, _ in send.calls[0]] == [100, 102, 103, 105]


# --- the C helper over real sockets ---------------------------------------------------


@pytest.fixture
def udp() -> Iterator[list[socket.socket]]:
    made: list[socket.socket] = []
    yield made
    for s in made:
        s.close()


def _sock(made: list[socket.socket], family: int, host: str) -> socket.socket:
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((host, 0))
    s.setblocking(False)
    made.append(s)
    return s


def _recv_all(s: socket.socket, want: int) -> list[bytes]:
    s.settimeout(1.0)
    got = []
    try:
        while len(got) < want:
            got.append(s.recv(2048))
    except TimeoutError:
        pass
    return got


def test_c_send_batch_round_trip_ipv4_many_sockets_and_runs(udp: list[socket.socket]) -> None:
    rx = _sock(udp, socket.AF_INET, "127.0.0.1")
    dest = rx.getsockname()
    tx = [_sock(udp, socket.AF_INET, "127.0.0.1") for _ in range(3)]
    # a run of 100 on one socket (sendmmsg in chunks), then one each on the others
    items = [(tx[0].fileno(), b"a%03d" % i, dest) for i in range(100)]
    items += [(tx[1].fileno(), b"b", dest), (tx[2].fileno(), b"c", dest)]
    assert send_batch(items) == (102, 0, 0)
    got = _recv_all(rx, 102)
    assert got[:100] == [b"a%03d" % i for i in range(100)]
    assert sorted(got[100:]) == [b"b", b"c"]


def test_c_send_batch_ipv6(udp: list[socket.socket]) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        rx = _sock(udp, socket.AF_INET6, "::1")
    except OSError:
        pytest.skip("no ::1 here")
    tx = _sock(udp, socket.AF_INET6, "::1")
    host, port = rx.getsockname()[:2]
    assert send_batch([(tx.fileno(), b"six", (host, port)), (tx.fileno(), b"6", (host, port))]) \
        == (2, 0, 0)
    assert _recv_all(rx, 2) == [b"six", b"6"]


def test_c_send_batch_counts_failures_and_rejects_bad_input(udp: list[socket.socket]) -> None:
    rx = _sock(udp, socket.AF_INET, "127.0.0.1")
    tx = _sock(udp, socket.AF_INET, "127.0.0.1")
    dest = rx.getsockname()
    r, w = os.pipe()
    os.close(r)
    os.close(w)  # a closed descriptor: EBADF, counted, and the next socket still sends
    assert send_batch([(w, b"x", dest), (tx.fileno(), b"ok", dest)]) == (1, 0, 1)
    assert _recv_all(rx, 1) == [b"ok"]
    with pytest.raises(ValueError):
        send_batch([(tx.fileno(), b"x", ("localhost", 9))])
    with pytest.raises(TypeError):
        send_batch([(tx.fileno(), "text", dest)])
    assert send_batch([]) == (0, 0, 0)


def test_c_send_batch_never_blocks_on_a_full_socket(udp: list[socket.socket]) -> None:
    rx = _sock(udp, socket.AF_INET, "127.0.0.1")
    tx = _sock(udp, socket.AF_INET, "127.0.0.1")
    tx.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1024)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    big = bytes(1400)
    items = [(tx.fileno(), big, rx.getsockname())] * 2000
    sent, dropped, failed = send_batch(items)  # returns at once, whatever the kernel takes
    assert sent + dropped + failed == 2000
    assert sent >= 1
    # (loopback may take them all: there the receiver drops, not the sender)


# --- RtpSession queues into the batch -------------------------------------------------


async def test_rtp_session_queues_its_packets_in_the_batch() -> None:
    loop = asyncio.get_running_loop()
    got: list[bytes] = []

    class Rx(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            got.append(data)

    rx, _ = await loop.create_datagram_endpoint(Rx, local_addr=("127.0.0.1", 0))
    batch = SendBatch()
    session = RtpSession("call-x", PortAllocator(42000, 42999), "127.0.0.1",
                         sip_host="127.0.0.1")
    session.batch = batch
    await session.open()
    try:
        pcmu = codec_by_name("PCMU")
        session.set_remote("127.0.0.1", rx.get_extra_info("sockname")[1], pcmu, 101)
        for _ in range(3):
            session.send_payload(bytes(160))
        assert len(batch) == 3 and got == []   # nothing leaves before the flush
        assert batch.flush() == 3
        for _ in range(100):
            if len(got) == 3:
                break
            await asyncio.sleep(0.01)
        seqs = [RtpPacket.parse(d).sequence_number for d in got]
        assert len(got) == 3 and seqs == [(seqs[0] + i) & 0xFFFF for i in range(3)]
        assert session.counters.tx_packets == 3
    finally:
        session.close()
        rx.close()
    session.send_payload(bytes(160))  # closed: nothing queued
    assert len(batch) == 0


async def test_skipped_frames_move_the_rtp_clock_on_not_the_sequence() -> None:
    """The media clock skipped two ticks: the next packet's timestamp is three frames on
    (a gap the phone conceals), its sequence number one on (nothing was lost), marked."""
    batch = SendBatch(send=lambda items: (len(items), 0, 0))
    session = RtpSession("call-skip", PortAllocator(42000, 42999), "127.0.0.1",
                         sip_host="127.0.0.1")
    session.batch = batch
    await session.open()
    try:
        session.set_remote("127.0.0.1", 9, codec_by_name("PCMU"), 101)
        session.send_payload(bytes(160))
        session.send_payload(bytes(160))
        session.skip_frames(2)
        session.send_payload(bytes(160))
        packets = [RtpPacket.parse(data) for _, data, _ in batch._pending]
        ts = [p.timestamp for p in packets]
        seq = [p.sequence_number for p in packets]
        assert ts[1] - ts[0] == 160 and (ts[2] - ts[1]) & 0xFFFFFFFF == 3 * 160
        assert seq[2] == (seq[1] + 1) & 0xFFFF
        assert [p.marker for p in packets] == [True, False, True]
    finally:
        session.close()
