"""The bridge against real aiortc peers on 127.0.0.1 (no browser).

Each client is an aiortc RTCPeerConnection (RTCConfiguration(iceServers=[])) that answers
offers built here from the bridge's EndpointAllocation, the way docs/signaling.md describes
them: BUNDLE, rtcp-mux, m-lines a0 / v0 for the client's own audio and camera (recvonly
from the bridge), then one sendonly m-line per source of every other participant, with the
SSRCs the bridge's receive_sources() gives. Clients send a tone and a moving picture; the
test waits until every client decodes every other client's audio and video.

aioice skips 127.0.0.1 when it enumerates interfaces, so the *clients'* host addresses are
pinned to 127.0.0.1 with monkeypatch (the bridge has its own address setting).
"""

from __future__ import annotations

import asyncio
import dataclasses
import fractions
import logging
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import av
import numpy as np
import pytest
from aioice import stun
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from peers.webrtc import (
    ToneTrack,
    make_offer,
    parse_answer,
    wait_until,
)

from bridge.api import (
    BridgeEvent,
    DtlsFingerprint,
    EndpointAllocation,
    EndpointConnected,
    EndpointFailed,
    EndpointUpdate,
    IceCandidate,
    TransportDescription,
)
from bridge.service import Bridge, BridgeSettings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
log = logging.getLogger(__name__)

CONF = "room-1"
# Any free UDP and TCP port (the one shared port is 10000 in the configuration).
SHARED = {"address": "127.0.0.1", "udp_port": 0, "tcp_port": 0}
WAIT = 30.0  # seconds: every wait in this module is bounded by this


# --- SDP: the offer the focus would send, built from an allocation ---------------------------


# --- media: a tone and a moving picture -------------------------------------------------------


class MovingTrack(VideoStreamTrack):
    def __init__(self, shade: int) -> None:
        super().__init__()
        self.shade = shade
        self.count = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        self.count += 1
        image = np.full((120, 160, 3), self.shade, np.uint8)
        x = (self.count * 4) % 140
        image[40:80, x:x + 20] = 255
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = pts
        frame.time_base = fractions.Fraction(time_base.numerator, time_base.denominator)
        return frame


@dataclass
class Received:
    frames: int = 0
    loud_frames: int = 0  # audio frames with a clearly audible level


@dataclass
class Client:
    endpoint_id: str
    allocation: EndpointAllocation
    pc: RTCPeerConnection
    audio: MediaStreamTrack
    video: MediaStreamTrack
    conference: str = CONF
    revision: int = 0
    # (sender endpoint id, kind) -> what this client decoded from it
    received: dict[tuple[str, str], Received] = field(default_factory=dict)
    readers: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    async def negotiate(self, bridge: Bridge) -> None:
        """One offer/answer round: the offer from the bridge's view, the answer to the bridge."""
        self.revision += 1
        receive = await bridge.receive_sources(self.conference, self.endpoint_id)
        offer, tracks = make_offer(self.allocation, self.revision, receive)
        await self.pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        if self.audio not in [s.track for s in self.pc.getSenders()]:
            self.pc.addTrack(self.audio)
            self.pc.addTrack(self.video)
        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)
        transport, sources = parse_answer(self.pc.localDescription.sdp, self.endpoint_id)
        await bridge.update(self.conference, self.endpoint_id,
                            EndpointUpdate(transport=transport, sources=sources))
        for transceiver in self.pc.getTransceivers():
            mid = transceiver.mid
            if mid in tracks and mid not in self.readers:
                src = tracks[mid].source
                stats = self.received.setdefault((src.endpoint_id, src.kind), Received())
                self.readers[mid] = asyncio.create_task(
                    _read(transceiver.receiver.track, stats))


async def _read(track: MediaStreamTrack, stats: Received) -> None:
    try:
        while True:
            frame = await track.recv()
            stats.frames += 1
            if isinstance(frame, av.AudioFrame):
                samples = frame.to_ndarray().astype(np.float64)
                if np.sqrt(np.mean(samples ** 2)) > 1000:
                    stats.loud_frames += 1
    except MediaStreamError:
        return


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
async def bridge() -> AsyncIterator[Bridge]:
    b = Bridge(BridgeSettings(**SHARED, endpoint_timeout=10.0))
    await b.start()
    try:
        yield b
    finally:
        await b.stop()


async def _join(bridge: Bridge, endpoint_id: str, n: int, conference: str = CONF) -> Client:
    alloc = await bridge.allocate(conference, endpoint_id)
    # max-bundle: with aiortc's default (balanced), a first offer holding two m-lines of one
    # kind leaves the second on a transport of its own that never connects.
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[],
                                            bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    return Client(endpoint_id, alloc, pc, ToneTrack(300.0 + 200 * n), MovingTrack(40 * n),
                  conference)


async def _leave(bridge: Bridge, client: Client) -> None:
    for task in client.readers.values():
        task.cancel()
    await client.pc.close()
    await asyncio.gather(*client.readers.values(), return_exceptions=True)
    await bridge.expire(client.conference, client.endpoint_id)


def _everyone_hears_everyone(clients: list[Client]) -> bool:
    for receiver in clients:
        for sender in clients:
            if sender is receiver:
                continue
            audio = receiver.received.get((sender.endpoint_id, "audio"))
            video = receiver.received.get((sender.endpoint_id, "video"))
            if audio is None or video is None:
                return False
            if audio.loud_frames < 25 or video.frames < 10:
                return False
    return True


@pytest.mark.parametrize("count", [2, 3])
async def test_clients_exchange_audio_and_video(
    bridge: Bridge, loopback_clients: None, count: int
) -> None:
    fds_before = _open_fds()
    tasks_before = len(asyncio.all_tasks())
    events: list[BridgeEvent] = []
    unsubscribe = bridge.subscribe(events.append)

    clients = [await _join(bridge, f"ep{i}", i) for i in range(count)]
    assert bridge.stats()["endpoints"] == count
    for alloc in (c.allocation for c in clients):
        host, tcp = alloc.transport.candidates
        assert (host.host, host.type, host.port) == ("127.0.0.1", "host", bridge.udp_port)
        assert (tcp.protocol, tcp.port, tcp.tcptype) == ("tcp", bridge.tcp_port, "passive")
        assert alloc.transport.setup == "actpass" and not alloc.transport.ice_lite
        assert [p.pt for p in alloc.payload_types] == [111, 96, 97, 102, 103]
        assert [h.id for h in alloc.header_extensions] == [1, 3, 4]

    # Join one after another, as the focus does: the newcomer's offer carries everyone
    # else's sources, and everyone else gets a new offer with the newcomer's.
    for i, client in enumerate(clients):
        await client.negotiate(bridge)
        for earlier in clients[:i]:
            await earlier.negotiate(bridge)

    await wait_until(lambda: sum(isinstance(e, EndpointConnected) for e in events) == count,
                      "every endpoint connected")
    await wait_until(lambda: _everyone_hears_everyone(clients), "media between all clients")
    stats = bridge.stats()
    log.info("bridge stats: %s", stats)
    assert stats["endpoints_connected"] == count
    assert stats["packets_sent"] > 0 and stats["unprotect_errors"] == 0
    assert not [e for e in events if isinstance(e, EndpointFailed)]

    for client in clients:
        await _leave(bridge, client)
    unsubscribe()
    assert bridge.stats()["endpoints"] == 0 and bridge.stats()["conferences"] == 0
    assert bridge.resources() == {"conferences": 0, "endpoints": 0, "ports": 0, "sockets": 0,
                                  "timers": 0, "tasks": 0}
    await wait_until(lambda: len(asyncio.all_tasks()) <= tasks_before, "tasks to end", 10.0)
    await wait_until(lambda: _open_fds() <= fds_before, "sockets to close", 10.0)


async def test_silent_endpoint_times_out_and_is_expired(loopback_clients: None) -> None:
    """A client that vanishes without a word (no DTLS close) is failed after the timeout."""
    b = Bridge(BridgeSettings(**SHARED, endpoint_timeout=2.0))
    await b.start()
    events: list[BridgeEvent] = []
    b.subscribe(events.append)
    try:
        a, c = await _join(b, "ep0", 0), await _join(b, "ep1", 1)
        await a.negotiate(b)
        await c.negotiate(b)
        await a.negotiate(b)
        await wait_until(lambda: b.stats()["endpoints_connected"] == 2, "both connected")
        # Vanish: stop c's ICE agent without DTLS close_notify, like a lost network.
        for transceiver in c.pc.getTransceivers():
            await transceiver.receiver.transport.transport.stop()
        await wait_until(lambda: any(isinstance(e, EndpointFailed) for e in events),
                          "the silent endpoint to fail", 10.0)
        failed = [e for e in events if isinstance(e, EndpointFailed)]
        assert [(e.endpoint_id, e.reason) for e in failed] == [("ep1", "no packets for 2 s")]
        await wait_until(lambda: b.stats()["endpoints"] == 1, "the bridge to expire it", 5.0)
        await b.expire(CONF, "ep1")  # the focus's expire after the event: a no-op now
        await _leave(b, a)
        await _leave(b, c)
        assert b.resources()["sockets"] == 0 and b.resources()["endpoints"] == 0
    finally:
        await b.stop()


async def test_unanswered_endpoints_fail_and_leave_the_port() -> None:
    """Endpoints of two conferences on the one port; nobody answers: both fail, the port
    forgets them, and the socket stays open for the next."""
    b = Bridge(BridgeSettings(**SHARED, endpoint_timeout=1.0))
    await b.start()
    events: list[BridgeEvent] = []
    b.subscribe(events.append)
    try:
        allocs = [await b.allocate(CONF, "x"), await b.allocate("other", "y")]
        assert {a.transport.candidates[0].port for a in allocs} == {b.udp_port}
        assert b.resources()["ports"] == 4  # two endpoints on the UDP and the TCP port
        await wait_until(lambda: len(events) == 2, "both to fail", 5.0)
        assert {(e.endpoint_id, getattr(e, "reason", "")) for e in events} == {
            ("x", "not connected within 1 s"), ("y", "not connected within 1 s")}
        await wait_until(lambda: b.resources()["ports"] == 0, "ports released", 5.0)
        assert b.resources()["sockets"] == 0 and b.stats()["conferences"] == 0
        assert b.udp is not None and b.udp.socket() is not None
    finally:
        await b.stop()
    assert b.udp is None and b.tcp is None


async def test_expire_while_connecting_leaves_nothing() -> None:
    """The browser's answer arrived but nobody answers ICE: expire mid-connection cancels
    the connection task and closes the socket."""
    b = Bridge(BridgeSettings(**SHARED))
    await b.start()
    tasks_before = len(asyncio.all_tasks())
    try:
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # never replies
        silent.bind(("127.0.0.1", 0))
        silent.settimeout(5.0)
        port = silent.getsockname()[1]
        alloc = await b.allocate(CONF, "x")
        remote = TransportDescription(
            ice_ufrag="abcd", ice_pwd="p" * 22,
            fingerprints=alloc.transport.fingerprints, setup="active",
            candidates=(IceCandidate("1", 1, "udp", 2130706431, "127.0.0.1", port, "host"),))
        await b.update(CONF, "x", EndpointUpdate(transport=remote))
        await asyncio.sleep(0.3)
        assert b.resources()["tasks"] == 1  # the connection task
        assert len(silent.recv(2048)) > 20  # our connectivity check reached the candidate
        await b.expire(CONF, "x")
        assert b.resources() == {"conferences": 0, "endpoints": 0, "ports": 0, "sockets": 0,
                                 "timers": 0, "tasks": 0}
        await wait_until(lambda: len(asyncio.all_tasks()) <= tasks_before, "tasks to end", 5.0)
        silent.close()
    finally:
        await b.stop()


async def test_wrong_dtls_fingerprint_fails_the_endpoint(loopback_clients: None) -> None:
    """The answer's fingerprint does not match the client's certificate: ICE connects,
    the DTLS handshake is refused, and the endpoint fails (and is expired by the bridge)."""
    b = Bridge(BridgeSettings(**SHARED))
    await b.start()
    events: list[BridgeEvent] = []
    b.subscribe(events.append)
    client = await _join(b, "ep0", 0)
    try:
        offer, _ = make_offer(client.allocation, 1, ())
        await client.pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        await client.pc.setLocalDescription(await client.pc.createAnswer())
        transport, _ = parse_answer(client.pc.localDescription.sdp, "ep0")
        forged = DtlsFingerprint("sha-256", ":".join(["AB"] * 32))
        await b.update(CONF, "ep0", EndpointUpdate(
            transport=dataclasses.replace(transport, fingerprints=(forged,))))
        await wait_until(lambda: bool(events), "a bridge event", 10.0)
        assert events == [EndpointFailed(CONF, "ep0", "DTLS failed")]
        await wait_until(lambda: b.resources()["sockets"] == 0, "the socket to close", 5.0)
        assert b.stats()["endpoints_failed"] == 1 and b.stats()["conferences"] == 0
    finally:
        await client.pc.close()
        await b.stop()


def _room_hears_itself(clients: list[Client]) -> bool:
    rooms: dict[str, list[Client]] = {}
    for client in clients:
        rooms.setdefault(client.conference, []).append(client)
    return all(_everyone_hears_everyone(members) for members in rooms.values())


def _stun_check(ufrag: str, password: str) -> bytes:
    message = stun.Message(message_method=stun.Method.BINDING,
                           message_class=stun.Class.REQUEST)  # fmt: skip
    message.attributes["USERNAME"] = ufrag
    message.attributes["PRIORITY"] = 1
    message.attributes["ICE-CONTROLLED"] = 1
    message.add_message_integrity(password.encode())
    message.add_fingerprint()
    return bytes(message)


async def test_two_rooms_share_the_one_port_and_strangers_are_dropped(
    loopback_clients: None,
) -> None:
    """Two conferences with two clients each, all on the bridge's one UDP port: each client
    hears the other of its room (and nobody from the other room). Meanwhile an attacker on
    127.0.0.2 sends SRTP-like packets, STUN checks with a guessed ufrag, and a check with a
    real endpoint's ufrag but a wrong password: all are dropped and counted, none reaches an
    endpoint, and the rooms keep their media."""
    b = Bridge(BridgeSettings(**SHARED, endpoint_timeout=10.0))
    await b.start()
    events: list[BridgeEvent] = []
    b.subscribe(events.append)
    attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    attacker.bind(("127.0.0.2", 0))
    attacker.setblocking(False)  # the bridge runs in this event loop: never block it
    clients: list[Client] = []
    try:
        clients = [await _join(b, f"ep{i}", i, conference=f"room-{i % 2}") for i in range(4)]
        for i, client in enumerate(clients):
            await client.negotiate(b)
            for earlier in clients[:i]:
                if earlier.conference == client.conference:
                    await earlier.negotiate(b)
        await wait_until(lambda: b.stats()["endpoints_connected"] == 4, "all connected")
        await wait_until(lambda: _room_hears_itself(clients), "media in both rooms")
        for client in clients:
            assert not [key for key in client.received
                        if not any(c.endpoint_id == key[0] and c.conference == client.conference
                                   for c in clients)]  # fmt: skip
        before = b.stats()
        assert before["media_port_endpoints"] == 4 and before["media_port_latched"] >= 4
        victim = clients[0].allocation.transport
        target = ("127.0.0.1", b.udp_port)
        for seq in range(20):
            attacker.sendto(b"\x80\x6f" + seq.to_bytes(2, "big") + bytes(60), target)
            attacker.sendto(b"\x16\xfe\xfd" + bytes(40), target)
        for _ in range(5):
            attacker.sendto(_stun_check("guess:attacker", "p" * 22), target)
        attacker.sendto(_stun_check(f"{victim.ice_ufrag}:attacker", "x" * 22), target)
        # aioice answers the wrong password with 401 and latches nothing
        reply = stun.parse_message(await asyncio.wait_for(
            asyncio.get_running_loop().sock_recv(attacker, 2048), 5.0))
        assert reply.message_class == stun.Class.ERROR
        assert reply.attributes["ERROR-CODE"][0] == 401
        for seq in range(5):
            attacker.sendto(b"\x80\x6f" + seq.to_bytes(2, "big") + bytes(60), target)
        await asyncio.sleep(0.5)
        after = b.stats()
        assert after["media_port_unknown_address"] - before["media_port_unknown_address"] == 45
        assert after["media_port_unknown_credentials"] \
            - before["media_port_unknown_credentials"] == 5
        assert after["media_port_latched"] == before["media_port_latched"]
        assert after["unprotect_errors"] == 0  # nothing of the attacker's reached SRTP
        received = [c.received[(o.endpoint_id, "audio")].loud_frames
                    for c in clients for o in clients
                    if o is not c and o.conference == c.conference]  # fmt: skip
        await asyncio.sleep(1.0)
        later = [c.received[(o.endpoint_id, "audio")].loud_frames
                 for c in clients for o in clients
                 if o is not c and o.conference == c.conference]  # fmt: skip
        assert all(n > m for n, m in zip(later, received, strict=True))
        assert not [e for e in events if isinstance(e, EndpointFailed)]
    finally:
        attacker.close()
        for client in clients:
            await _leave(b, client)
        await b.stop()


async def test_ice_tcp_connections_without_a_valid_first_check_are_closed() -> None:
    """ICE-TCP port: a connection whose first RFC 4571 frame is not a STUN check with a
    known ufrag is closed at once and counted; nothing reaches an endpoint."""
    b = Bridge(BridgeSettings(**SHARED))
    await b.start()
    try:
        await b.allocate(CONF, "x")
        for frame in (b"\x16\xfe\xfd" + bytes(40), _stun_check("guess:attacker", "p" * 22),
                      b"\x80\x6f" + bytes(60)):
            reader, writer = await asyncio.open_connection("127.0.0.1", b.tcp_port,
                                                           local_addr=("127.0.0.2", 0))
            writer.write(len(frame).to_bytes(2, "big") + frame)
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 5.0) == b""  # closed, no answer
            writer.close()
        stats = b.stats()
        assert stats["media_tcp_unknown_address"] == 2
        assert stats["media_tcp_unknown_credentials"] == 1
        assert stats["endpoints"] == 1 and stats["datagrams_received"] == 0
    finally:
        await b.stop()
