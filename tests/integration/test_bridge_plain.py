"""A plain endpoint (the gateway's side) and a real aiortc peer in one conference.

The aiortc client is built as in test_bridge_aiortc.py: it answers an offer made here from
the bridge's EndpointAllocation (BUNDLE, rtcp-mux; "a0" for its own audio, then one sendonly
m-line per source it receives). The plain endpoint gets no ICE, DTLS or SRTP: its packets
go through Bridge.connect_local. Both send a tone; the test waits until the client decodes
the plain endpoint's tone and the plain endpoint's on_rtp has the client's Opus (decoded
here to check it is the tone), with the RFC 6464 audio level in extension 1.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import struct
from collections.abc import AsyncIterator

import av
import numpy as np
import pytest
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.codecs.opus import OpusDecoder, OpusEncoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtpPacket
from peers.webrtc import (
    ToneTrack,
    make_offer,
    parse_answer,
    wait_until,
)

from bridge.api import (
    BridgeEvent,
    EndpointConnected,
    EndpointFailed,
    EndpointUpdate,
    MediaSource,
)
from bridge.levels import audio_level
from bridge.service import Bridge, BridgeSettings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]
log = logging.getLogger(__name__)

CONF = "room-plain"
WAIT = 30.0  # seconds: every wait in this module is bounded by this
PLAIN_SSRC = 0x5EED0001
LOUD_RMS = 1000.0


# --- the browser-like client ------------------------------------------------------------------


def rms(frame: av.AudioFrame) -> float:
    samples = frame.to_ndarray().astype(np.float64)
    return float(np.sqrt(np.mean(samples ** 2)))


async def count_loud(track: MediaStreamTrack, counts: dict[str, int]) -> None:
    try:
        while True:
            frame = await track.recv()
            counts["frames"] += 1
            if isinstance(frame, av.AudioFrame) and rms(frame) > LOUD_RMS:
                counts["loud"] += 1
    except MediaStreamError:
        return


# --- the plain side: Opus RTP with the audio level, as the gateway sends it -------------------


def opus_tone(frames: int) -> list[bytes]:
    """20 ms Opus payloads of a 700 Hz tone (48 kHz stereo, aiortc's encoder)."""
    encoder = OpusEncoder()
    payloads: list[bytes] = []
    for k in range(frames + 5):
        t = (np.arange(960) + 960 * k) / 48000
        tone = (9000 * np.sin(2 * np.pi * 700.0 * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(np.repeat(tone, 2).reshape(1, -1), format="s16",
                                           layout="stereo")
        frame.sample_rate = 48000
        frame.pts = 960 * k
        frame.time_base = fractions.Fraction(1, 48000)
        payloads += encoder.encode(frame)[0]
    assert len(payloads) >= frames
    return payloads[:frames]


def plain_rtp(seq: int, payload: bytes, level: int = 20) -> bytes:
    """Opus RTP (pt 111) with the one-byte RFC 8285 header extension 1: RFC 6464 level."""
    header = struct.pack("!BBHII", 0x90, 111, seq & 0xFFFF, (960 * seq) & 0xFFFFFFFF,
                         PLAIN_SSRC)
    return header + struct.pack("!HH", 0xBEDE, 1) + bytes((0x10, 0x80 | level, 0, 0)) + payload


@pytest.fixture
async def bridge() -> AsyncIterator[Bridge]:
    b = Bridge(BridgeSettings(address="127.0.0.1", udp_port=0, tcp_port=None,
                              endpoint_timeout=10.0))
    await b.start()
    try:
        yield b
    finally:
        await b.stop()


async def test_plain_endpoint_and_aiortc_peer_hear_each_other(
        bridge: Bridge, loopback_clients: None) -> None:
    events: list[BridgeEvent] = []
    bridge.subscribe(events.append)

    # the gateway's side: a plain endpoint and its local link
    plain = await bridge.allocate_plain(CONF, "caller")
    got_rtp: list[bytes] = []
    got_rtcp: list[bytes] = []
    link = bridge.connect_local(plain.media, got_rtp.append, got_rtcp.append)
    await bridge.update(CONF, "caller", EndpointUpdate(
        sources=(MediaSource("caller", "audio", PLAIN_SSRC),), receive="audio"))

    # the browser's side
    alloc = await bridge.allocate(CONF, "browser")
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[],
                                            bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    counts = {"frames": 0, "loud": 0}
    reader: asyncio.Task[None] | None = None
    sender: asyncio.Task[None] | None = None
    try:
        receive = await bridge.receive_sources(CONF, "browser")
        assert [rs.ssrc for rs in receive] == [PLAIN_SSRC]
        offer, tracks = make_offer(alloc, 1, receive)
        await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        pc.addTrack(ToneTrack(500.0))
        await pc.setLocalDescription(await pc.createAnswer())
        transport, (source,) = parse_answer(pc.localDescription.sdp, "browser")
        await bridge.update(CONF, "browser", EndpointUpdate(transport=transport,
                                                            sources=(source,)))
        (r1,) = [t for t in pc.getTransceivers() if t.mid in tracks]
        reader = asyncio.create_task(count_loud(r1.receiver.track, counts))

        async def send_tone() -> None:  # 20 ms pacing, at most WAIT seconds
            payloads = opus_tone(50)
            for seq in range(int(WAIT / 0.02)):
                link.send_rtp(plain_rtp(seq, payloads[seq % len(payloads)]))
                await asyncio.sleep(0.02)

        sender = asyncio.create_task(send_tone())
        await wait_until(lambda: {e.endpoint_id for e in events
                                   if isinstance(e, EndpointConnected)} == {"caller", "browser"},
                          "both endpoints connected")
        await wait_until(lambda: counts["loud"] >= 25, "the plain endpoint's tone decoded "
                          "by the aiortc peer")
        await wait_until(lambda: len(got_rtp) >= 50, "the peer's audio at the plain endpoint")

        packets = [RtpPacket.parse(d) for d in got_rtp]
        assert {p.ssrc for p in packets} == {source.ssrc}
        assert {p.payload_type for p in packets} == {111}
        levels = [audio_level(d, 1) for d in got_rtp]
        assert all(level is not None for level in levels)
        decoder = OpusDecoder()
        loud = sum(isinstance(frame, av.AudioFrame) and rms(frame) > LOUD_RMS
                   for p in packets[-25:]
                   for frame in decoder.decode(JitterFrame(p.payload, p.timestamp)))
        assert loud >= 20
        assert not [e for e in events if isinstance(e, EndpointFailed)]
        stats = bridge.stats()
        log.info("bridge stats: %s", stats)
        assert stats["endpoints"] == 2 and stats["endpoints_plain"] == 1
        assert stats["endpoints_connected"] == 2 and stats["unprotect_errors"] == 0
        assert stats["plain_rtp_sent"] >= 50 and stats["plain_rtp_received"] >= 25
    finally:
        for task in (sender, reader):
            if task is not None:
                task.cancel()
        await pc.close()
        await asyncio.gather(*(t for t in (sender, reader) if t is not None),
                             return_exceptions=True)
    await bridge.expire(CONF, "browser")
    await bridge.expire(CONF, "caller")
    assert link.closed
    assert bridge.resources() == {"conferences": 0, "endpoints": 0, "ports": 0, "sockets": 0,
                                  "timers": 0, "tasks": 0}
