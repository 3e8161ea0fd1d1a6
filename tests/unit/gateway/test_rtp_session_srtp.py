"""RtpSession with SDES-SRTP over real UDP sockets on 127.0.0.1: two legs with crossed keys
exchange audio and DTMF; what goes on the wire is not the plain packet; a plain packet, a
packet under another key and a replayed one are dropped as garbage before the jitter
buffer, and RTCP is protected both ways."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest
from test_rtp_session import HOST, PCMU, make_peer, tone, wait_for

from gateway.media.rtp import HEADER
from gateway.media.sdes import new_crypto, srtp_sessions
from gateway.rtp_session import PortAllocator, RtpSession

SUITE = "AES_CM_128_HMAC_SHA1_80"


@pytest.fixture
def allocator() -> PortAllocator:
    return PortAllocator(42000, 42999)


@pytest.fixture
async def pair(allocator: PortAllocator) -> AsyncIterator[tuple[RtpSession, RtpSession]]:
    a = RtpSession("srtp-a", allocator, HOST, sip_host=HOST, rtcp_interval=0.2,
                   check_interval=0.05)
    b = RtpSession("srtp-b", allocator, HOST, sip_host=HOST, rtcp_interval=0.2,
                   check_interval=0.05)
    await a.open()
    await b.open()
    a.set_remote(HOST, b.local_port, PCMU, 101)
    b.set_remote(HOST, a.local_port, PCMU, 101)
    key_a, key_b = new_crypto(1, SUITE), new_crypto(1, SUITE)
    a.set_srtp(*srtp_sessions(key_a, key_b))
    b.set_srtp(*srtp_sessions(key_b, key_a))
    yield a, b
    a.close()
    b.close()


async def test_audio_dtmf_and_rtcp_both_ways(pair: tuple[RtpSession, RtpSession]) -> None:
    a, b = pair
    loop = asyncio.get_running_loop()
    digits: list[str] = []
    b.on_dtmf = digits.append
    heard: list[np.ndarray] = []
    for k in range(30):
        a.send_payload(PCMU.encode(tone(k)))
        b.send_payload(PCMU.encode(tone(k)))
        await asyncio.sleep(0.02)
        frame = b.pull_frame(loop.time())
        if frame is not None:
            heard.append(frame)
        a.pull_frame(loop.time())
    assert b.counters.rx_packets == 30 and a.counters.rx_packets == 30
    assert b.counters.rx_garbage == 0
    got = np.concatenate(heard).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(got))
    assert abs(np.argmax(spectrum) * 8000 / got.size - 300) < 10  # the tone, decrypted
    assert a.send_dtmf("5")
    assert await wait_for(lambda: digits == ["5"], 2.0)
    assert await wait_for(lambda: a.counters.rtcp_rx > 0 and b.counters.rtcp_rx > 0, 2.0)
    assert a.counters.rtcp_garbage == b.counters.rtcp_garbage == 0


async def test_the_wire_carries_no_plain_rtp(allocator: PortAllocator) -> None:
    phone = await make_peer()
    s = RtpSession("srtp-wire", allocator, HOST, sip_host=HOST)
    await s.open()
    try:
        s.set_remote(HOST, phone.port, PCMU, 101)
        ours, theirs = new_crypto(1, SUITE), new_crypto(1, SUITE)
        s.set_srtp(*srtp_sessions(ours, theirs))
        payload = PCMU.encode(tone(0))
        s.send_payload(payload)
        assert await wait_for(lambda: bool(phone.received))
        data, _ = phone.received[0]
        assert len(data) == 12 + len(payload) + 10  # the 80-bit tag
        assert payload not in data
        _, rx = srtp_sessions(theirs, ours)  # the phone's view: unprotect with our key
        assert rx.unprotect(data)[12:] == payload
    finally:
        s.close()
        assert phone.transport is not None
        phone.transport.close()


async def test_plain_foreign_and_replayed_packets_are_dropped(allocator: PortAllocator) -> None:
    phone = await make_peer()
    s = RtpSession("srtp-drop", allocator, HOST, sip_host=HOST)
    await s.open()
    try:
        s.set_remote(HOST, phone.port, PCMU, 101)
        ours, theirs = new_crypto(1, SUITE), new_crypto(1, SUITE)
        s.set_srtp(*srtp_sessions(ours, theirs))
        phone_tx, _ = srtp_sessions(theirs, ours)
        other_tx, _ = srtp_sessions(new_crypto(1, SUITE), ours)
        payload = PCMU.encode(tone(0))
        plain = HEADER.pack(0x80, 0, 1, 160, 0x1234) + payload
        phone.send(plain, s.local_port)                         # plain RTP
        phone.send(other_tx.protect(HEADER.pack(0x80, 0, 2, 320, 0x1234) + payload),
                   s.local_port)                                # another key
        good = phone_tx.protect(HEADER.pack(0x80, 0, 3, 480, 0x1234) + payload)
        phone.send(good, s.local_port)
        phone.send(good, s.local_port)                          # replayed
        assert await wait_for(lambda: s.counters.rx_packets + s.counters.rx_garbage >= 4)
        assert s.counters.rx_packets == 1
        assert s.counters.rx_garbage == 3
    finally:
        s.close()
        assert phone.transport is not None
        phone.transport.close()
