"""Strict RTP: the source rules (sans-I/O, ``SourcePolicy``) and the session that applies
them over real UDP sockets, with other 127/8 addresses playing other machines."""

from __future__ import annotations

import asyncio

import pytest

from gateway.media.codecs import codec_by_name
from gateway.media.rtp import RtpPacket
from gateway.media.rtp_source import SourcePolicy, Verdict
from gateway.media.stats import RtcpStats
from gateway.rtp_session import PortAllocator, RtpSession
from tests.unit.gateway.test_rtp_session import make_peer, wait_for

PCMU = codec_by_name("PCMU")
PHONE = "127.0.0.1"        # the SIP source host
OTHER = "127.0.0.2"        # an attacker
SDP = "127.0.0.3"          # an address an SDP names (a victim, or the phone's media host)


# --- the rules, without sockets --------------------------------------------------------


def policy(**kw: object) -> SourcePolicy:
    p = SourcePolicy(PHONE, **kw)  # type: ignore[arg-type]
    p.set_sdp(SDP, 4000)
    return p


def test_only_the_sdp_host_and_the_sip_source_host_may_send() -> None:
    p = policy()
    assert p.allowed(PHONE) and p.allowed(SDP) and not p.allowed(OTHER)
    assert p.allowed("::ffff:127.0.0.1")                  # the same host, another spelling
    assert p.on_rtp((OTHER, 5000), 1, 1, 0.0) is Verdict.FOREIGN
    assert p.latched is None
    assert p.on_rtp((PHONE, 6000), 1, 1, 0.0) is Verdict.LATCHED      # NAT: port differs
    assert p.latched == (PHONE, 6000)
    # the attacker never gets in, however long the phone is quiet
    for k in range(20):
        assert p.on_rtp((OTHER, 5000), 9, k, 100.0 + k * 0.02) is Verdict.FOREIGN
    assert p.latched == (PHONE, 6000)


def test_a_trusted_peer_may_send_from_anywhere() -> None:
    p = policy(trusted=True)
    assert p.allowed(OTHER)
    assert p.on_rtp((OTHER, 5000), 1, 1, 0.0) is Verdict.LATCHED


def test_relatch_needs_quiet_and_n_in_sequence_packets_of_one_ssrc() -> None:
    p = policy(relatch_after=3.0, relatch_packets=5)
    assert p.on_rtp((PHONE, 6000), 1, 100, 0.0) is Verdict.LATCHED
    moved = (PHONE, 7000)
    # while the latched source is active: never, even 5 in sequence
    for k in range(5):
        assert p.on_rtp(moved, 2, k, 0.1 + k * 0.02) is Verdict.FOREIGN
    assert p.on_rtp((PHONE, 6000), 1, 101, 1.0) is Verdict.ACCEPT
    # quiet for 2.9 s: not yet
    assert p.on_rtp(moved, 2, 10, 3.9) is Verdict.FOREIGN
    # quiet long enough: four in sequence are not enough, a gap starts over
    t = 4.0
    for seq in (20, 21, 22, 23, 25):
        assert p.on_rtp(moved, 2, seq, t) is Verdict.FOREIGN
        t += 0.02
    for seq in (26, 27, 28):                              # 25 to 28: four
        assert p.on_rtp(moved, 2, seq, t) is Verdict.FOREIGN
    # another SSRC or another source in between starts over too
    assert p.on_rtp(moved, 3, 29, t) is Verdict.FOREIGN
    for seq in (30, 31, 32):
        assert p.on_rtp(moved, 3, seq, t) is Verdict.FOREIGN
    assert p.on_rtp((SDP, 4000), 3, 33, t) is Verdict.FOREIGN
    for seq in (33, 34, 35, 36):
        assert p.on_rtp(moved, 3, seq, t) is Verdict.FOREIGN
    # the old source speaking again starts over as well (and it is active again)
    assert p.on_rtp((PHONE, 6000), 1, 102, t) is Verdict.ACCEPT
    assert p.on_rtp(moved, 3, 37, t + 0.02) is Verdict.FOREIGN
    assert p.latched == (PHONE, 6000)
    # five in a row, sequence numbers wrapping, after the quiet: moved on the fifth
    t += 3.5
    verdicts = [p.on_rtp(moved, 4, seq & 0xFFFF, t + i * 0.02)
                for i, seq in enumerate(range(65534, 65539))]
    assert verdicts == [Verdict.FOREIGN] * 4 + [Verdict.RELATCHED]
    assert p.latched == moved and p.destination() == moved
    assert p.on_rtp(moved, 4, 3, t + 0.2) is Verdict.ACCEPT


def test_where_we_send_before_and_after_a_latch() -> None:
    # the SDP names another host than the SIP source: nothing until it has sent RTP
    p = policy()
    assert p.destination() is None and p.rtcp_destination() is None
    assert p.on_rtp((SDP, 4000), 1, 1, 0.0) is Verdict.LATCHED
    assert p.destination() == (SDP, 4000) and p.rtcp_destination() == (SDP, 4001)
    # the SDP host is the SIP source host: at once
    same = SourcePolicy(PHONE)
    same.set_sdp(PHONE, 4000, 4005)
    assert same.destination() == (PHONE, 4000) and same.rtcp_destination() == (PHONE, 4005)
    # a trusted peer: at once, wherever the SDP points
    assert policy(trusted=True).destination() == (SDP, 4000)
    # hold (c=0.0.0.0): never there, trusted or not
    held = SourcePolicy(PHONE, trusted=True)
    held.set_sdp("0.0.0.0", 4000)
    assert held.destination() is None and held.rtcp_destination() is None


def test_a_new_sdp_address_drops_the_latch_and_the_same_one_keeps_it() -> None:
    p = SourcePolicy(PHONE)
    p.set_sdp(PHONE, 4000)
    assert p.on_rtp((PHONE, 6000), 1, 1, 0.0) is Verdict.LATCHED
    assert not p.set_sdp(PHONE, 4000)                     # a session refresh
    assert p.destination() == (PHONE, 6000)
    assert p.set_sdp(SDP, 4100)                           # moved by a re-INVITE
    assert p.latched is None and p.destination() is None


def test_rtcp_from_a_proven_host_only() -> None:
    p = policy(relatch_after=3.0)
    assert not p.on_rtcp((OTHER, 5001), 0.0)              # not allowed at all
    assert not p.on_rtcp((SDP, 4001), 0.0)                # allowed host, but no RTP from it yet
    assert p.on_rtp((SDP, 4000), 1, 1, 0.0) is Verdict.LATCHED
    assert p.on_rtcp((SDP, 4001), 0.1)
    assert p.rtcp_destination() == (SDP, 4001)
    assert not p.on_rtcp((PHONE, 5001), 1.0)              # the RTCP source is active
    assert p.on_rtcp((PHONE, 5001), 4.2)                  # quiet 4.1 s: may move
    assert p.rtcp_destination() == (PHONE, 5001)


# --- the session over sockets -------------------------------------------------------------


@pytest.fixture
def allocator() -> PortAllocator:
    return PortAllocator(43000, 43999)


def rtp(seq: int, ssrc: int = 77, pt: int = 0, payload: bytes | None = None) -> bytes:
    return RtpPacket(pt, seq, 160 * seq, ssrc,
                     payload=PCMU.silence() if payload is None else payload).serialize()


async def test_foreign_packets_are_dropped_before_jitter_buffer_and_dtmf(
        allocator: PortAllocator) -> None:
    phone = await make_peer(PHONE)
    sprayer = await make_peer(OTHER)
    s = RtpSession("call-spray", allocator, PHONE, sip_host=PHONE)
    digits: list[str] = []
    s.on_dtmf = digits.append
    await s.open()
    try:
        s.set_remote(PHONE, phone.port, PCMU, 101)
        loud = PCMU.encode(PCMU.decode(b"\x80" * 160))      # a loud payload
        for seq in range(50):
            sprayer.send(rtp(seq, 99, payload=loud), s.local_port, PHONE)
            sprayer.send(RtpPacket(101, 1000 + seq, 5000, 99, marker=True,
                                   payload=bytes([5, 10, 0, 160])).serialize(),
                         s.local_port, PHONE)
        assert await wait_for(lambda: s.counters.rx_foreign == 100)
        assert s.counters.rx_packets == 0 and s.counters.rx_dtmf == 0 and digits == []
        assert s.stats().get("jb_received", 0) == 0
        # the phone latches and is heard; the sprayer goes on being dropped
        for seq in range(10):
            phone.send(rtp(seq), s.local_port)
            sprayer.send(rtp(seq, 99, payload=loud), s.local_port, PHONE)
        assert await wait_for(lambda: s.counters.rx_packets == 10)
        assert s.remote_addr == (PHONE, phone.port)
        for _ in range(5):
            s.send_payload(PCMU.silence())
        assert await wait_for(lambda: len(phone.received) >= 5)
        await asyncio.sleep(0.05)
        assert sprayer.received == []
        assert s.counters.rx_foreign == 110
    finally:
        s.close()
        for p in (phone, sprayer):
            assert p.transport is not None
            p.transport.close()


async def test_nothing_is_sent_to_an_sdp_address_that_has_not_spoken(
        allocator: PortAllocator) -> None:
    victim = await make_peer(SDP)
    s = RtpSession("call-reflect", allocator, PHONE, sip_host=PHONE, rtcp_interval=0.1,
                   check_interval=0.05)
    await s.open()
    try:
        s.set_remote(SDP, victim.port, PCMU, 101)
        assert s.remote_addr is None
        for _ in range(10):
            s.send_payload(PCMU.silence())
        assert s.send_dtmf("1", 60)
        await asyncio.sleep(0.4)                          # RTCP reports were due too
        assert victim.received == []
        assert s.counters.tx_packets == 0 and s.counters.rtcp_tx == 0
        # once it has sent valid RTP it is the phone's media address: media flows
        victim.send(rtp(1), s.local_port, PHONE)
        assert await wait_for(lambda: s.remote_addr == (SDP, victim.port))
        s.send_payload(PCMU.silence())
        assert await wait_for(lambda: len(victim.rtp()) >= 1)
    finally:
        s.close()
        assert victim.transport is not None
        victim.transport.close()


async def test_a_trusted_peer_is_sent_to_at_once_and_heard_from_anywhere(
        allocator: PortAllocator) -> None:
    media_server = await make_peer(SDP)
    other_media = await make_peer(OTHER)
    s = RtpSession("call-pbx", allocator, PHONE, sip_host=PHONE, trusted=True)
    await s.open()
    try:
        s.set_remote(SDP, media_server.port, PCMU, 101)
        s.send_payload(PCMU.silence())
        assert await wait_for(lambda: len(media_server.received) == 1)
        other_media.send(rtp(1), s.local_port, PHONE)
        assert await wait_for(lambda: s.counters.rx_packets == 1)
        assert s.remote_addr == (OTHER, other_media.port)
    finally:
        s.close()
        for p in (media_server, other_media):
            assert p.transport is not None
            p.transport.close()


@pytest.mark.parametrize("host", ["127.0.0.999", "::1", "pbx.invalid"])
async def test_close_releases_the_port_even_when_sending_the_bye_fails(
        allocator: PortAllocator, host: str) -> None:
    """The shape of the old leak: an address the socket cannot send to made close() raise
    before the port was released. (The service refuses such addresses now; the session
    must not leak even so.)"""
    s = RtpSession("call-bad", allocator, PHONE, sip_host=host, trusted=True,
                   check_interval=0.05, rtcp_interval=0.05)
    await s.open()
    s.set_remote(host, 4000, PCMU, 101)
    s.send_payload(PCMU.silence())
    await asyncio.sleep(0.15)                              # housekeeping tried RTCP too
    s.close()
    assert s.closed and allocator.in_use == 0


async def test_close_releases_the_port_when_the_bye_raises(
        allocator: PortAllocator, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> bytes:
        raise RuntimeError("injected")

    s = RtpSession("call-boom", allocator, PHONE, sip_host=PHONE)
    await s.open()
    port = s.local_port
    s.set_remote(PHONE, 4000, PCMU, 101)

    class FailingStats(RtcpStats):  # (RtcpStats is a C type: its methods are not patched)
        build_report = boom  # type: ignore[assignment]

    monkeypatch.setattr(s, "_stats", FailingStats(s.ssrc, 8000, "boom@test"))
    s.close()
    assert s.closed and allocator.in_use == 0
    await asyncio.sleep(0.01)
    loop = asyncio.get_running_loop()                     # the sockets are closed too
    t, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                               local_addr=(PHONE, port))
    t.close()


async def test_closed_while_opening_releases_the_port(allocator: PortAllocator) -> None:
    """A call cancelled while its sockets open: close() comes first, open() must not keep
    the port it was binding."""
    s = RtpSession("call-cancel", allocator, PHONE, sip_host=PHONE)
    opening = asyncio.ensure_future(s.open())
    await asyncio.sleep(0)                                 # open() is inside its awaits
    s.close()
    with pytest.raises(OSError):
        await opening
    assert allocator.in_use == 0
