"""The day aiortc's or aioice's internals change, this fails.

bridge/aiortc_adapter.py relies on private attributes and methods of aiortc 1.16.0 and aioice
0.13.0. Each test below names what the adapter uses and checks it exists with the expected
signature and behaves as the adapter assumes. Everything runs in memory except the last
tests, which bind a shared port on 127.0.0.1 (port 0) and send on loopback.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import os
import socket
import struct
from types import SimpleNamespace
from typing import Any

import pylibsrtp
import pytest
from aioice import Candidate, stun
from aioice.ice import CandidatePair, Connection, StunProtocol
from aiortc import RTCCertificate, RTCDtlsParameters, RTCIceGatherer, RTCIceTransport
from aiortc.rtcdtlstransport import RTCDtlsTransport

from bridge import aiortc_adapter as adapter
from bridge.aiortc_adapter import (
    EndpointTransport,
    TransportCounters,
    _BridgeDtlsTransport,
    _MediaProtocol,
)
from bridge.mediaport import TcpMediaPort, UdpMediaPort
from bridge.rtp import with_sequence
from native._egress import Egress
from native.srtp import srtp


def params(fn: Any) -> list[str]:
    return list(inspect.signature(fn).parameters)


def rtp(seq: int, ssrc: int = 0x1234) -> bytes:
    return struct.pack("!BBHII", 0x80, 111, seq, seq * 960, ssrc) + b"\x01" * 40


def rtcp_rr(ssrc: int = 0x1234) -> bytes:
    return struct.pack("!BBHI", 0x80, 201, 1, ssrc)  # RR without report blocks


def srtp_pair() -> tuple[pylibsrtp.Session, pylibsrtp.Session]:
    key = os.urandom(30)
    tx = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    rx = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))
    return tx, rx


def test_pinned_versions() -> None:
    assert importlib.metadata.version("aiortc") == "1.16.0"
    assert importlib.metadata.version("aioice") == "0.13.0"


# --- aioice: the ICE agent we hand our own socket to ---------------------------------------


def test_gatherer_without_servers_contacts_none() -> None:
    """RTCIceGatherer(iceServers=[]) builds an aioice Connection with no STUN/TURN server
    (its default, iceServers=None, is Google's STUN server); `_connection` is shared with
    RTCIceTransport, and `ice_controlling` decides its role."""
    gatherer = RTCIceGatherer(iceServers=[])
    connection = gatherer._connection
    assert isinstance(connection, Connection)
    assert connection.stun_server is None and connection.turn_server is None
    ice = RTCIceTransport(gatherer)
    assert ice._connection is connection
    connection.ice_controlling = True
    assert ice.role == "controlling"
    assert RTCIceGatherer.getDefaultIceServers()[0].urls.startswith("stun:stun.l.google.com")


async def test_connection_gathering_internals() -> None:
    """The adapter gathers by appending to `_protocols` and `_local_candidates` and setting
    `_local_candidates_start/_end`; connect() refuses to run until `_end` is set."""
    connection = Connection(ice_controlling=True)
    assert connection._protocols == [] and connection._local_candidates == []
    assert connection._local_candidates_start is False
    assert connection._local_candidates_end is False
    assert connection._nominated == {}
    connection.remote_username, connection.remote_password = "abcd", "a" * 22
    with pytest.raises(ConnectionError, match="gathering was not performed"):
        await connection.connect()
    candidate = Candidate(foundation="f", component=1, transport="udp", priority=1,
                          host="127.0.0.1", port=40000, type="host")
    connection._local_candidates.append(candidate)
    assert connection.local_candidates == [candidate]
    await connection.close()


async def test_connection_data_received_feeds_recv() -> None:
    """DTLS datagrams go to `Connection.data_received(data, component)`, which is what
    RTCDtlsTransport reads through `RTCIceTransport._recv` once a pair is nominated."""
    assert params(Connection.data_received) == ["self", "data", "component"]
    assert params(Connection.request_received) == ["self", "message", "addr", "protocol"]
    connection = Connection(ice_controlling=True)
    connection.data_received(b"\x16dtls", 1)
    connection._nominated[1] = SimpleNamespace()  # recv() only checks there is a pair
    assert await asyncio.wait_for(connection.recv(), 1.0) == b"\x16dtls"
    connection._nominated.clear()
    await connection.close()


def test_stun_protocol_and_pair_internals() -> None:
    """`_MediaProtocol` subclasses StunProtocol(receiver); send() writes to
    `_nominated[1].protocol.transport.sendto(data, pair.remote_addr)`."""
    assert params(StunProtocol.__init__) == ["self", "receiver"]
    assert params(StunProtocol.datagram_received) == ["self", "data", "addr"]
    assert {"local_candidate", "transport"} <= set(StunProtocol.__annotations__)
    assert params(CandidatePair.__init__) == ["self", "protocol", "remote_candidate"]
    remote = Candidate(foundation="r", component=1, transport="udp", priority=1,
                       host="127.0.0.1", port=5000, type="host")
    remote._network_host = "127.0.0.1"
    pair = CandidatePair(SimpleNamespace(), remote)
    assert pair.remote_addr == ("127.0.0.1", 5000)


def test_aioice_helpers() -> None:
    assert adapter.candidate_priority(1, "host") == (126 << 24) + (65535 << 8) + 255
    assert adapter.candidate_priority(1, "host", 0) == (126 << 24) + 255
    assert len(adapter.candidate_foundation("host", "udp", "127.0.0.1")) == 32
    tcp = Candidate(foundation="f", component=1, transport="tcp", priority=1,
                    host="127.0.0.1", port=4443, type="host", tcptype="passive")
    assert tcp.to_sdp().endswith("typ host tcptype passive")
    connection = Connection(ice_controlling=True)
    assert isinstance(connection.local_username, str) and len(connection.local_username) >= 4
    connection._local_username = "abcdefghijkl"  # what attach() sets: the property reads it
    assert connection.local_username == "abcdefghijkl"
    assert len(adapter.random_string(12)) == 12


# --- aiortc: the DTLS transport ------------------------------------------------------------


def test_dtls_transport_internals() -> None:
    assert params(RTCDtlsTransport._handle_rtp_data) == ["self", "data", "arrival_time_ms"]
    assert params(RTCDtlsTransport._handle_rtcp_data) == ["self", "data"]
    assert params(RTCDtlsTransport._set_role) == ["self", "role"]
    assert inspect.iscoroutinefunction(RTCDtlsTransport._handle_rtp_data)
    assert inspect.iscoroutinefunction(RTCDtlsTransport._handle_rtcp_data)
    ice = RTCIceTransport(RTCIceGatherer(iceServers=[]))
    dtls = RTCDtlsTransport(ice, [RTCCertificate.generateCertificate()])
    assert dtls._rx_srtp is None and dtls._tx_srtp is None
    assert dtls.state == "new"


class FakeIce:
    """Stands in for RTCIceTransport: RTCDtlsTransport only uses `_recv`, `_send`, `role`."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.peer: FakeIce | None = None

    async def _recv(self) -> bytes:
        data = await self.inbox.get()
        if data is None:
            raise ConnectionError
        return data

    async def _send(self, data: bytes) -> None:
        assert self.peer is not None
        self.peer.inbox.put_nowait(data)


async def test_dtls_handshake_srtp_keys_and_handler_overrides() -> None:
    """A DTLS-SRTP handshake in memory between the adapter's subclass (server) and a plain
    RTCDtlsTransport (client): `_rx_srtp` / `_tx_srtp` exist afterwards and match the peer's,
    and `_recv_next` hands decrypted bytes to the overridden `_handle_rtp_data` /
    `_handle_rtcp_data` (aiortc's parser and router never see them)."""
    got: list[tuple[str, bytes]] = []
    owner = SimpleNamespace(
        counters=TransportCounters(), time=lambda: 12.5,
        on_rtp=lambda data, now: got.append(("rtp", data)),
        on_rtcp=lambda data, now: got.append(("rtcp", data)),
    )
    server_ice, client_ice = FakeIce("controlling"), FakeIce("controlled")
    server_ice.peer, client_ice.peer = client_ice, server_ice
    server_cert, client_cert = (RTCCertificate.generateCertificate() for _ in range(2))
    server = _BridgeDtlsTransport(server_ice, server_cert, owner)  # type: ignore[arg-type]
    client = RTCDtlsTransport(client_ice, [client_cert])  # type: ignore[arg-type]
    server._set_role("server")
    client._set_role("client")
    await asyncio.wait_for(asyncio.gather(
        server.start(RTCDtlsParameters(fingerprints=client_cert.getFingerprints())),
        client.start(RTCDtlsParameters(fingerprints=server_cert.getFingerprints())),
    ), 10.0)
    assert server.state == client.state == "connected"
    assert isinstance(server._rx_srtp, pylibsrtp.Session)
    assert isinstance(server._tx_srtp, pylibsrtp.Session)
    # Server to client: the adapter protects with _tx_srtp; the browser unprotects.
    assert client._rx_srtp.unprotect(server._tx_srtp.protect(rtp(1))) == rtp(1)
    # Client to server through aiortc's own receive task.
    server_ice.inbox.put_nowait(client._tx_srtp.protect(rtp(7)))
    server_ice.inbox.put_nowait(client._tx_srtp.protect_rtcp(rtcp_rr()))
    for _ in range(100):
        if len(got) == 2:
            break
        await asyncio.sleep(0.01)
    assert got == [("rtp", rtp(7)), ("rtcp", rtcp_rr())]
    assert (owner.counters.rtp_received, owner.counters.rtcp_received) == (1, 1)
    await server.stop()
    await client.stop()


# --- the adapter's datagram demultiplexer --------------------------------------------------


class FakeDatagramTransport:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))


async def test_media_protocol_demultiplexes() -> None:
    got: list[tuple[str, bytes, float]] = []
    transport = EndpointTransport(
        RTCCertificate.generateCertificate(),
        on_rtp=lambda data, now: got.append(("rtp", data, now)),
        on_rtcp=lambda data, now: got.append(("rtcp", data, now)),
    )
    connection = transport._connection
    protocol = _MediaProtocol(connection, transport)
    protocol.local_candidate = Candidate(foundation="f", component=1, transport="udp",
                                         priority=1, host="127.0.0.1", port=40000,
                                         type="host")
    fake = FakeDatagramTransport()
    protocol.connection_made(fake)  # type: ignore[arg-type]
    addr = ("127.0.0.1", 5000)

    # STUN (first byte 0-3) still reaches aioice: a check without credentials gets a 400.
    request = stun.Message(message_method=stun.Method.BINDING,
                           message_class=stun.Class.REQUEST)
    protocol.datagram_received(bytes(request), addr)
    assert len(fake.sent) == 1
    response = stun.parse_message(fake.sent[0][0])
    assert response.message_class == stun.Class.ERROR
    assert response.attributes["ERROR-CODE"][0] == 400

    # DTLS (20-63) goes to Connection.data_received for RTCDtlsTransport.
    queued: list[tuple[bytes, int]] = []
    connection.data_received = lambda data, component: queued.append((data, component))
    protocol.datagram_received(b"\x16\xfe\xfd" + bytes(10), addr)
    assert queued == [(b"\x16\xfe\xfd" + bytes(10), 1)]

    # SRTP before the keys exist is dropped; with keys it is unprotected in place.
    tx, rx = srtp_pair()
    protocol.datagram_received(tx.protect(rtp(1)), addr)
    assert got == [] and transport.counters.dropped == 1
    transport._rx = srtp(rx)
    protocol.datagram_received(tx.protect(rtp(2)), addr)
    protocol.datagram_received(tx.protect_rtcp(rtcp_rr()), addr)
    protocol.datagram_received(b"\x80\x6f" + bytes(30), addr)  # fails authentication
    assert [(kind, data) for kind, data, _ in got] == [("rtp", rtp(2)), ("rtcp", rtcp_rr())]
    assert transport.counters.unprotect_errors == 1
    assert transport.counters.datagrams_received == 6
    assert 0 < got[0][2] <= got[1][2] <= transport.last_receive  # now, from the loop clock
    await transport.close()


async def test_attach_joins_the_shared_ports_and_announces() -> None:
    """Host candidates on the bridge's shared UDP and TCP ports (nothing bound per
    endpoint), announced under another address, registered by ufrag in both ports'
    demultiplexers and detached by close()."""
    udp = await UdpMediaPort.open("127.0.0.1", 0)
    tcp = await TcpMediaPort.open("127.0.0.1", 0)
    transport = EndpointTransport(RTCCertificate.generateCertificate(),
                                  on_rtp=lambda d, n: None, on_rtcp=lambda d, n: None)
    try:
        transport.attach(udp, tcp, announce="203.0.113.7")
        ufrag = transport.local_description().ice_ufrag
        assert len(ufrag) == 12 and ufrag == transport._connection.local_username
        assert udp.demux.taken(ufrag) and tcp.demux.taken(ufrag)
        assert transport.local_port == udp.local_addr[1]
        assert transport.open_sockets() == 2 and len(udp.demux) == len(tcp.demux) == 1
        local_udp, local_tcp = transport._connection.local_candidates
        assert (local_udp.host, local_udp.port, local_udp.transport) == (
            "127.0.0.1", udp.local_addr[1], "udp")
        assert (local_tcp.port, local_tcp.transport, local_tcp.tcptype) == (
            tcp.local_addr[1], "tcp", "passive")
        assert local_tcp.priority < local_udp.priority
        description = transport.local_description()
        announced_udp, announced_tcp = description.candidates
        assert (announced_udp.host, announced_udp.port, announced_udp.protocol) == (
            "203.0.113.7", udp.local_addr[1], "udp")
        assert (announced_tcp.host, announced_tcp.protocol, announced_tcp.tcptype) == (
            "203.0.113.7", "tcp", "passive")
        assert description.setup == "actpass" and not description.ice_lite
        assert [f.algorithm for f in description.fingerprints] == ["sha-256"]
        assert len(description.ice_pwd) >= 22
        await transport.close()
        assert transport.open_sockets() == 0 and len(udp.demux) == len(tcp.demux) == 0
        assert udp.socket() is not None  # the shared socket stays open
    finally:
        udp.close()
        await tcp.close()


async def test_send_without_an_ice_pair_drops_instead_of_raising() -> None:
    """ICE consent expired (aioice cleared its nominated pair) or never connected: every
    send is a counted drop, never an exception into the forwarder's fan-out."""
    transport = EndpointTransport(RTCCertificate.generateCertificate(),
                                  on_rtp=lambda d, n: None, on_rtcp=lambda d, n: None)
    tx, _rx = srtp_pair()
    transport.sink.set_tx(srtp(tx))
    assert transport.send(rtp(1)) is False
    assert transport.send(rtp(2)) is False
    assert transport.totals().dropped == 2
    await transport.close()


async def test_sends_of_one_loop_turn_go_out_in_one_batch() -> None:
    """With the bridge's Egress, send() queues the protected packet and the egress sends
    at the next loop turn from the pair's own socket (a relayed pair, whose protocol is
    not our socket's, still sends at once through its transport). The forwarder's way in,
    `sink.forward`, rewrites the sequence numbers into the queued copy."""
    loop = asyncio.get_running_loop()
    rx_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx_sock.bind(("127.0.0.1", 0))
    rx_sock.setblocking(False)
    egress = Egress(loop.call_soon)
    transport = EndpointTransport(RTCCertificate.generateCertificate(),
                                  on_rtp=lambda d, n: None, on_rtcp=lambda d, n: None,
                                  egress=egress)
    udp = await UdpMediaPort.open("127.0.0.1", 0)
    transport.attach(udp)
    try:
        protocol = transport._connection._protocols[0]
        assert isinstance(protocol, _MediaProtocol)
        pair = SimpleNamespace(protocol=protocol, remote_addr=rx_sock.getsockname())
        transport._nominated[1] = pair  # type: ignore[assignment]
        tx, rx = srtp_pair()
        transport.sink.set_tx(srtp(tx))
        assert all(transport.send(rtp(seq)) for seq in range(2))
        assert transport.sink.forward(rtp(2), 77, -1, 0)
        assert egress.pending == 3 and transport.sink.fileno >= 0
        assert not transport.sink.closed
        with pytest.raises(BlockingIOError):
            rx_sock.recv(2048)  # nothing left before the loop's turn ends
        await asyncio.sleep(0)
        await asyncio.sleep(0.01)
        got = [rx.unprotect(rx_sock.recv(2048)) for _ in range(3)]
        assert got == [rtp(0), rtp(1), with_sequence(rtp(2), 77, -1, 0)]
        assert egress.stats()["sent"] == 3 and egress.stats()["flushes"] == 1
        assert transport.totals().packets_sent == 3
        # a pair through another protocol (TURN): straight through its transport
        fake = FakeDatagramTransport()
        relayed = SimpleNamespace(protocol=SimpleNamespace(transport=fake),
                                  remote_addr=("127.0.0.1", 9))
        transport._nominated[1] = relayed  # type: ignore[assignment]
        assert transport.send(rtp(4)) and len(fake.sent) == 1 and egress.pending == 0
        assert rx.unprotect(fake.sent[0][0]) == rtp(4)
    finally:
        await transport.close()
        rx_sock.close()
        udp.close()
    assert transport.sink.closed
