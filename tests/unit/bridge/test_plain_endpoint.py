"""Plain endpoints of the in-process bridge: allocate_plain + connect_local, no socket.

The Bridge runs on the test's event loop; plain endpoints bind nothing, so these tests open
no socket (Bridge.resources() says so at the end of each).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiortc.rtp import RtcpPacket, RtcpSenderInfo, RtcpSrPacket, RtpPacket
from fwd_helpers import audio

from bridge.api import (
    BridgeEvent,
    DominantSpeakerChanged,
    EndpointConnected,
    EndpointUpdate,
    MediaSource,
    ReceivePolicy,
    TransportDescription,
)
from bridge.forwarder import Forwarder, ForwarderSettings
from bridge.levels import SpeakerSettings
from bridge.plain import LocalLink, UnknownMedia
from bridge.service import Bridge, BridgeSettings, ForwarderLike, SendFn, UnknownEndpoint

CONF = "room-1"
ZERO = {"conferences": 0, "endpoints": 0, "ports": 0, "sockets": 0, "timers": 0, "tasks": 0}


@dataclass
class Peer:
    """The gateway's end of one plain endpoint: what came out of the bridge."""

    endpoint_id: str
    ssrc: int
    link: LocalLink | None = None
    rtp: list[bytes] = field(default_factory=list)
    rtcp: list[bytes] = field(default_factory=list)

    def seqs(self, ssrc: int) -> list[int]:
        packets = [RtpPacket.parse(d) for d in self.rtp]
        return [p.sequence_number for p in packets if p.ssrc == ssrc]


@pytest.fixture
async def bridge() -> AsyncIterator[Bridge]:
    b = Bridge(BridgeSettings())
    await b.start()
    try:
        yield b
    finally:
        await b.stop()


async def join(bridge: Bridge, endpoint_id: str, ssrc: int, *, group: str | None = None,
               receive: ReceivePolicy | None = "audio") -> Peer:
    alloc = await bridge.allocate_plain(CONF, endpoint_id)
    peer = Peer(endpoint_id, ssrc)
    peer.link = bridge.connect_local(alloc.media, peer.rtp.append, peer.rtcp.append)
    await bridge.update(CONF, endpoint_id, EndpointUpdate(
        sources=(MediaSource(endpoint_id, "audio", ssrc),), group=group,
        receive=receive))
    return peer


async def test_allocation_names_the_local_link_and_the_conference_codecs(
        bridge: Bridge) -> None:
    events: list[BridgeEvent] = []
    bridge.subscribe(events.append)
    alloc = await bridge.allocate_plain(CONF, "caller-1")
    assert alloc.media == "local:room-1/caller-1"
    assert (alloc.conference_id, alloc.endpoint_id) == (CONF, "caller-1")
    opus = [p for p in alloc.payload_types if p.name == "opus"]
    assert [(p.pt, p.clock_rate, p.channels) for p in opus] == [(111, 48000, 2)]
    levels = [h.id for h in alloc.header_extensions if h.uri.endswith("ssrc-audio-level")]
    assert levels == [1]
    assert events == []  # connected right after the allocation reached the caller
    await asyncio.sleep(0)
    assert events == [EndpointConnected(CONF, "caller-1")]
    stats = bridge.stats()
    assert (stats["endpoints"], stats["endpoints_plain"], stats["endpoints_connected"]) == (
        1, 1, 1)
    assert bridge.resources() == {**ZERO, "conferences": 1, "endpoints": 1, "timers": 1}


async def test_two_plain_endpoints_hear_each_other_with_rewritten_sequence_numbers(
        bridge: Bridge) -> None:
    a = await join(bridge, "a", 1111, group="gw-1")
    b = await join(bridge, "b", 2222, group="gw-2")
    assert a.link is not None and b.link is not None
    for seq in range(1, 4):
        a.link.send_rtp(audio(1111, seq))
        b.link.send_rtp(audio(2222, 500 + seq))
    assert b.seqs(1111) == [1, 2, 3] and a.seqs(2222) == [501, 502, 503]
    assert RtpPacket.parse(b.rtp[0]).payload == RtpPacket.parse(audio(1111, 1)).payload
    # b stops receiving for a while; when it resumes, a's numbers continue where they were
    await bridge.update(CONF, "b", EndpointUpdate(receive="none"))
    for seq in range(4, 9):
        a.link.send_rtp(audio(1111, seq))
    await bridge.update(CONF, "b", EndpointUpdate(receive="audio"))
    for seq in range(9, 12):
        a.link.send_rtp(audio(1111, seq))
    assert b.seqs(1111) == [1, 2, 3, 4, 5, 6]
    # RTCP goes back through on_rtcp (RFC 5761 packet types), RTP through on_rtp
    sr = RtcpSrPacket(ssrc=1111, sender_info=RtcpSenderInfo(1 << 40, 960, 11, 400))
    a.link.send_rtcp(bytes(sr))
    (forwarded,) = [p for d in b.rtcp for p in RtcpPacket.parse(d)]
    assert isinstance(forwarded, RtcpSrPacket) and forwarded.ssrc == 1111
    assert all(192 <= d[1] <= 223 for d in b.rtcp)
    assert not any(192 <= d[1] <= 223 for d in b.rtp)
    stats = bridge.stats()
    assert stats["plain_rtp_received"] == 14 and stats["plain_rtcp_received"] == 1
    assert stats["plain_rtp_sent"] == 9 and stats["plain_rtcp_sent"] == 1
    assert stats["forwarder_packets_out"] == 9 and stats["plain_links"] == 2


async def test_same_group_hears_nothing(bridge: Bridge) -> None:
    a = await join(bridge, "a", 1111, group="gw")
    b = await join(bridge, "b", 2222, group="gw")
    assert a.link is not None and b.link is not None
    for seq in range(1, 4):
        a.link.send_rtp(audio(1111, seq))
        b.link.send_rtp(audio(2222, seq))
    assert a.rtp == [] and b.rtp == []
    assert await bridge.receive_sources(CONF, "a") == ()
    assert bridge.stats()["forwarder_packets_in"] == 6


async def test_receive_sources_and_updates_work_on_plain_endpoints(bridge: Bridge) -> None:
    await join(bridge, "caller", 1111, group="gw", receive="none")
    await join(bridge, "mixer", 2222, group="gw", receive="audio")
    await join(bridge, "other", 3333)
    assert [rs.ssrc for rs in await bridge.receive_sources(CONF, "mixer")] == [3333]
    assert await bridge.receive_sources(CONF, "caller") == ()
    assert sorted(rs.ssrc for rs in await bridge.receive_sources(CONF, "other")) == [
        1111, 2222]
    # a transport means nothing to a plain endpoint: ignored, the endpoint stays
    await bridge.update(CONF, "caller", EndpointUpdate(transport=TransportDescription(
        "u", "p" * 22, (), "active")))
    assert bridge.stats()["endpoints_plain"] == 3
    with pytest.raises(UnknownEndpoint):
        await bridge.update(CONF, "nobody", EndpointUpdate(receive="none"))


async def test_a_plain_endpoint_starts_receiving_audio_only(bridge: Bridge) -> None:
    await join(bridge, "a", 1111, receive=None)
    await bridge.allocate_plain(CONF, "b")
    await bridge.update(CONF, "b", EndpointUpdate(sources=(
        MediaSource("b", "audio", 2222), MediaSource("b", "video", 3333,
                                                      video_type="camera"))))
    assert [rs.ssrc for rs in await bridge.receive_sources(CONF, "a")] == [2222]


async def test_expire_drops_the_link_and_leaves_nothing(bridge: Bridge) -> None:
    a = await join(bridge, "a", 1111)
    b = await join(bridge, "b", 2222)
    assert a.link is not None and b.link is not None
    a.link.send_rtp(audio(1111, 1))
    assert len(b.rtp) == 1
    await bridge.expire(CONF, "b")
    assert b.link.closed
    b.link.send_rtp(audio(2222, 1))  # silently dropped
    b.link.send_rtcp(b"\x80\xc9\x00\x01\x00\x00\x08\xae")
    a.link.send_rtp(audio(1111, 2))  # nobody to send it to
    assert len(b.rtp) == 1 and a.rtp == []
    assert bridge.stats()["plain_dropped"] == 2
    with pytest.raises(UnknownMedia):
        bridge.connect_local("local:room-1/b", b.rtp.append, b.rtcp.append)
    await bridge.expire(CONF, "a")
    await bridge.expire(CONF, "a")  # again: nothing happens
    stats = bridge.stats()
    gauges = ("conferences", "endpoints", "endpoints_plain", "endpoints_connected",
              "plain_links")
    assert {k: stats[k] for k in gauges} == dict.fromkeys(gauges, 0)
    assert stats["forwarder_packets_in"] == 2  # running counts survive the conference
    assert bridge.resources() == ZERO


async def test_unknown_media_is_a_lookup_error(bridge: Bridge) -> None:
    await bridge.allocate_plain(CONF, "a")
    for media in ("local:room-1/zz", "local:other/a", "udp:127.0.0.1:4000", ""):
        with pytest.raises(LookupError, match="no plain endpoint"):
            bridge.connect_local(media, print, print)


async def test_closed_link_and_relink(bridge: Bridge) -> None:
    a = await join(bridge, "a", 1111)
    b = await join(bridge, "b", 2222)
    assert a.link is not None and b.link is not None
    b.link.close()
    a.link.send_rtp(audio(1111, 1))
    assert b.rtp == [] and bridge.stats()["plain_undelivered"] == 1
    again: list[bytes] = []
    link = bridge.connect_local("local:room-1/b", again.append, again.append)
    old = a.link
    a.link = bridge.connect_local("local:room-1/a", a.rtp.append, a.rtcp.append)
    assert old.closed and not a.link.closed
    old.send_rtp(audio(1111, 2))  # the replaced link is closed: dropped
    a.link.send_rtp(audio(1111, 3))
    assert [RtpPacket.parse(d).sequence_number for d in again] == [3]  # 1 undelivered
    assert bridge.stats()["plain_dropped"] == 1
    link.close()
    link.close()


async def test_a_failing_callback_does_not_stop_the_fan_out(bridge: Bridge) -> None:
    a = await join(bridge, "a", 1111)
    await join(bridge, "b", 2222)
    c = await join(bridge, "c", 3333)
    assert a.link is not None

    def broken(data: bytes) -> None:
        raise RuntimeError("bug in the gateway")

    bridge.connect_local("local:room-1/b", broken, broken)
    a.link.send_rtp(audio(1111, 1))
    assert len(c.rtp) == 1 and bridge.stats()["plain_callback_errors"] == 1


async def test_last_endpoint_gone_removes_the_conference(bridge: Bridge) -> None:
    await bridge.allocate_plain(CONF, "a")
    await bridge.allocate_plain("room-2", "a")
    await bridge.allocate_plain(CONF, "a")  # again: the old one is expired first
    assert bridge.stats()["conferences"] == 2 and bridge.stats()["endpoints"] == 2
    await bridge.expire(CONF, "a")
    assert bridge.stats()["conferences"] == 1
    await bridge.stop()
    assert bridge.resources() == ZERO


def fast_speakers(conference_id: str, settings: BridgeSettings, send: SendFn) -> ForwarderLike:
    """The conference's forwarder with a dominant speaker decision every 20 ms."""
    return Forwarder(conference_id, ForwarderSettings(
        dominant_speaker_interval=0.02, speaker=SpeakerSettings(switch_after=0.05)), send)


async def test_a_loud_plain_endpoint_becomes_dominant_speaker() -> None:
    bridge = Bridge(BridgeSettings(), forwarder_factory=fast_speakers)
    events: list[BridgeEvent] = []
    bridge.subscribe(events.append)
    try:
        quiet = await join(bridge, "browser-like", 1111)
        loud = await join(bridge, "caller-7", 2222, group="gw", receive="none")
        assert quiet.link is not None and loud.link is not None
        for seq in range(1, 26):  # 0.5 s of 20 ms packets, in real time
            quiet.link.send_rtp(audio(1111, seq, level=110))
            loud.link.send_rtp(audio(2222, seq, level=12))  # -12 dBov: talking
            await asyncio.sleep(0.02)
            if any(isinstance(e, DominantSpeakerChanged) for e in events):
                break
        speakers = [e for e in events if isinstance(e, DominantSpeakerChanged)]
        assert speakers and speakers[0].endpoint_id == "caller-7"
        assert speakers[0].conference_id == CONF
        assert len(quiet.rtp) > 0 and loud.rtp == []  # and its audio reached the other
    finally:
        await bridge.stop()
    assert bridge.resources() == ZERO
