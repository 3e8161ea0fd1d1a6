"""native._egress (native/_egress.c) and native/srtp.py: libsrtp called from C on
pylibsrtp's own contexts, and the bridge's batched way out. Checked against pylibsrtp's
Python methods on twin sessions (same keys: SRTP is deterministic for a given key, SSRC,
sequence number and rollover counter) and against real sockets on loopback."""

from __future__ import annotations

import importlib.metadata
import os
import socket
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pylibsrtp
import pytest

from bridge.rtp import with_sequence
from native._egress import Egress, Sink, SrtpError
from native.srtp import srtp

PROFILES = (pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
            pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM)


def session(key: bytes, profile: int, inbound: bool) -> pylibsrtp.Session:
    kind = pylibsrtp.Policy.SSRC_ANY_INBOUND if inbound else pylibsrtp.Policy.SSRC_ANY_OUTBOUND
    return pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=kind, srtp_profile=profile))


def key_for(profile: int) -> bytes:
    return os.urandom(30 if profile == pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80 else 28)


def rtp(seq: int, ssrc: int = 0x1234, payload: bytes = b"\x55" * 80, ext: bool = False) -> bytes:
    if not ext:
        return struct.pack("!BBHII", 0x80, 111, seq, seq * 960, ssrc) + payload
    # audio level (id 1) and transport-cc (id 3), one-byte header extensions
    extension = struct.pack("!HH", 0xBEDE, 2) + bytes([0x10, 0x85, 0x31, 0x00, 0x07, 0, 0, 0])
    return struct.pack("!BBHII", 0x90, 111, seq, seq * 960, ssrc) + extension + payload


def receiver_report(ssrc: int = 0x99) -> bytes:
    return struct.pack("!BBHI", 0x80, 201, 1, ssrc)


def test_pylibsrtp_internals_we_read() -> None:
    assert importlib.metadata.version("pylibsrtp") == "1.0.0"
    s = pylibsrtp.Session()
    assert s._srtp[0] is not None


@pytest.mark.parametrize("profile", PROFILES)
def test_c_calls_match_pylibsrtp_both_ways(profile: int) -> None:
    key = key_for(profile)
    ours, twin = session(key, profile, False), session(key, profile, False)
    fast = srtp(ours)
    for seq in range(65530, 65536 + 20):  # across a rollover
        packet = rtp(seq & 0xFFFF, ext=seq % 2 == 0)
        assert fast.protect(packet) == twin.protect(packet)
    for i in range(5):
        assert fast.protect_rtcp(receiver_report(i)) == twin.protect_rtcp(receiver_report(i))
    # and back: the C unprotect reads what pylibsrtp protects
    tx, rx = session(key, profile, False), srtp(session(key, profile, True))
    for seq in range(10):
        assert rx.unprotect(tx.protect(rtp(seq))) == rtp(seq)
    assert rx.unprotect_rtcp(tx.protect_rtcp(receiver_report())) == receiver_report()


def test_refusals_raise_srtp_error_with_libsrtp_status() -> None:
    profile = PROFILES[0]
    key = key_for(profile)
    tx, rx = session(key, profile, False), srtp(session(key, profile, True))
    packet = tx.protect(rtp(7))
    assert rx.unprotect(packet) == rtp(7)
    with pytest.raises(SrtpError):
        rx.unprotect(packet)  # a replay
    tampered = bytearray(tx.protect(rtp(8)))
    tampered[20] ^= 1
    with pytest.raises(SrtpError):
        rx.unprotect(bytes(tampered))
    with pytest.raises(ValueError):
        srtp(session(key, profile, False)).protect(b"\x80" * 1400)
    with pytest.raises(TypeError):
        rx.unprotect("not bytes")  # type: ignore[arg-type]


@contextmanager
def receiving() -> Iterator[tuple[socket.socket, socket.socket]]:
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out.bind(("127.0.0.1", 0))
    out.setblocking(False)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(1.0)
    try:
        yield out, rx
    finally:
        out.close()
        rx.close()


def sink_with(egress: Egress, nominated: dict[int, Any], *, reselect: Callable[[], object]
              | None = None) -> Sink:
    holder: dict[str, Sink] = {}

    def default() -> None:
        pair = nominated.get(1)
        if pair is None:
            holder["sink"].set_pair(None)
        else:
            holder["sink"].set_pair(pair, pair.addr, pair.fd, pair.send)

    holder["sink"] = sink = Sink(egress, nominated, reselect or default)
    return sink


def test_forward_rewrites_protects_and_sends_at_once_without_a_loop() -> None:
    profile = PROFILES[0]
    key = key_for(profile)
    with receiving() as (out, rx):
        nominated: dict[int, Any] = {}
        egress = Egress()
        sink = sink_with(egress, nominated)
        assert sink.forward(rtp(5), 9, -1, 0) is False  # no keys yet
        sink.set_tx(srtp(session(key, profile, False)))
        assert sink.forward(rtp(5), 9, -1, 0) is False  # no pair yet
        assert sink.counters()["dropped"] == 2
        nominated[1] = SimpleNamespace(addr=rx.getsockname(), fd=out.fileno(), send=None)
        packet = rtp(5, ext=True)
        twcc_pos = 12 + 4 + 2 + 1  # after the level element's header and byte, then id/len
        assert sink.forward(packet, 9, twcc_pos, 0xABCD) is True
        assert sink.send(receiver_report()) is True
        plain = session(key, profile, True)
        assert plain.unprotect(rx.recv(2048)) == with_sequence(packet, 9, twcc_pos, 0xABCD)
        assert plain.unprotect_rtcp(rx.recv(2048)) == receiver_report()
        assert sink.fileno == out.fileno()
        assert sink.counters()["packets_sent"] == 2
        assert egress.stats()["sent"] == 2 and egress.pending == 0


def test_with_sequence_is_the_rewrite_and_checks_its_input() -> None:
    packet = rtp(1, ext=True)
    out = with_sequence(packet, 0x0102, 19, 0x0304)
    assert out[2:4] == b"\x01\x02" and out[19:21] == b"\x03\x04"
    assert out[:2] + out[4:19] + out[21:] == packet[:2] + packet[4:19] + packet[21:]
    assert with_sequence(packet, 7, -1, 99)[2:4] == b"\x00\x07"
    with pytest.raises(ValueError):
        with_sequence(packet, 1, len(packet) - 1, 0)
    with pytest.raises(ValueError):
        with_sequence(b"\x80", 1, -1, 0)


def test_a_loop_turn_goes_out_in_one_flush_in_order() -> None:
    profile = PROFILES[1]
    key = key_for(profile)
    scheduled: list[Callable[[], int]] = []
    with receiving() as (out, rx):
        egress = Egress(scheduled.append)
        nominated: dict[int, Any] = {1: SimpleNamespace(addr=rx.getsockname(), fd=out.fileno(),
                                                         send=None)}
        sink = sink_with(egress, nominated)
        sink.set_tx(srtp(session(key, profile, False)))
        plain = session(key, profile, True)

        def received() -> list[bytes]:
            got = []
            rx.settimeout(0.2)
            with pytest.raises(TimeoutError):
                while True:
                    got.append(plain.unprotect(rx.recv(2048)))
            return got

        for seq in range(100):
            assert sink.forward(rtp(seq), seq, -1, 0)
        assert len(scheduled) == 1 and egress.pending == 100
        assert scheduled.pop()() == 100
        assert received() == [rtp(seq) for seq in range(100)]
        assert egress.stats()["flushes"] == 1 and egress.stats()["max_batch"] == 100
        # past the buffer's capacity a flush is forced at once (the receiver's socket
        # buffer keeps only some of them: the order is what is checked)
        for seq in range(100, 3100):
            assert sink.forward(rtp(seq), seq, -1, 0)
        assert 0 < egress.pending < 3000
        for flush in scheduled:
            flush()
        stats = egress.stats()
        assert stats["sent"] + stats["dropped"] == 3100 and egress.pending == 0
        seqs = [struct.unpack_from("!H", p, 2)[0] for p in received()]
        assert seqs and seqs == sorted(seqs)


def test_a_sink_closed_before_the_flush_sends_nothing() -> None:
    profile = PROFILES[0]
    scheduled: list[Callable[[], int]] = []
    with receiving() as (out, rx):
        egress = Egress(scheduled.append)
        nominated = {1: SimpleNamespace(addr=rx.getsockname(), fd=out.fileno(), send=None)}
        sink = sink_with(egress, nominated)
        sink.set_tx(srtp(session(key_for(profile), profile, False)))
        assert sink.send(rtp(1)) and sink.send(rtp(2))
        sink.close()
        assert sink.closed and sink.send(rtp(3)) is False
        scheduled[0]()
        assert egress.stats()["skipped"] == 2 and egress.stats()["sent"] == 0
        rx.settimeout(0.05)
        with pytest.raises(TimeoutError):
            rx.recv(2048)


def test_a_new_pair_is_picked_up_and_a_pair_without_socket_sends_through_python() -> None:
    """aioice replaces the nominated pair (or clears it: consent expired): the sink asks its
    owner to reselect; a pair on another transport (ICE-TCP, TURN) gets protected bytes."""
    profile = PROFILES[0]
    key = key_for(profile)
    calls: list[str] = []
    with receiving() as (out, rx):
        nominated: dict[int, Any] = {}
        egress = Egress()
        holder: list[Sink] = []

        def reselect() -> None:
            calls.append("reselect")
            pair = nominated.get(1)
            if pair is None:
                holder[0].set_pair(None)
            else:
                holder[0].set_pair(pair, pair.addr, pair.fd, pair.send)

        sink = Sink(egress, nominated, reselect)
        holder.append(sink)
        sink.set_tx(srtp(session(key, profile, False)))
        sent: list[tuple[bytes, tuple[str, int]]] = []
        nominated[1] = SimpleNamespace(addr=("127.0.0.1", 9), fd=-1,
                                       send=lambda d, a: sent.append((d, a)))
        assert sink.send(rtp(1)) and len(sent) == 1 and sent[0][1] == ("127.0.0.1", 9)
        assert sink.send(rtp(2)) and calls == ["reselect"]  # same pair: no new reselect
        nominated[1] = SimpleNamespace(addr=rx.getsockname(), fd=out.fileno(), send=None)
        assert sink.send(rtp(3)) and calls == ["reselect"] * 2
        plain = session(key, profile, True)
        assert [plain.unprotect(d) for d, _ in sent] == [rtp(1), rtp(2)]
        assert plain.unprotect(rx.recv(2048)) == rtp(3)
        del nominated[1]
        assert sink.send(rtp(4)) is False and sink.fileno == -1
        assert sink.counters()["dropped"] == 1


def test_a_failing_reselect_raises_and_bad_input_is_refused() -> None:
    def broken() -> None:
        raise RuntimeError("boom")

    sink = Sink(Egress(), {1: object()}, broken)
    sink.set_tx(srtp(session(key_for(PROFILES[0]), PROFILES[0], False)))
    with pytest.raises(RuntimeError):
        sink.send(rtp(1))
    with pytest.raises(TypeError):
        sink.forward(rtp(1), 1, -1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        sink.set_tx("keys")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        sink.set_pair(object(), ("127.0.0.1", 9), -1, None)
    with pytest.raises(ValueError):
        sink.set_pair(object(), ("not-an-address", 9), 3, None)
