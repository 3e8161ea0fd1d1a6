"""The asyncio SIP transport with real sockets on 127.0.0.1 (ephemeral ports)."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.sip.peer import Peer
from gateway.sip_transport import SipTransport

LOCAL = "127.0.0.1"


def sip(body: bytes = b"hi", call_id: str = "c1") -> bytes:
    return (
        b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bK1\r\n"
        b"From: <sip:a@b>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: " + call_id.encode()
        + b"\r\nCSeq: 1 OPTIONS\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    )


class EchoNode:
    """Echoes every input back to its source; can also be told to send or to fire a timer."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, Peer, float]] = []
        self.out: list[tuple[bytes, Peer]] = []
        self.timer: float | None = None
        self.fired: list[float] = []
        self.on_timer: tuple[bytes, Peer] | None = None

    def receive_data(self, data: bytes, source: Peer, now: float) -> None:
        self.received.append((data, source, now))
        self.out.append((data, source))

    def handle_timer(self, now: float) -> None:
        if self.timer is not None and now >= self.timer:
            self.fired.append(now)
            self.timer = None
            if self.on_timer is not None:
                self.out.append(self.on_timer)

    def get_timer(self) -> float | None:
        return self.timer

    def datagrams_to_send(self) -> list[tuple[bytes, Peer]]:
        out, self.out = self.out, []
        return out


class Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.got.put_nowait(data)


async def started(node: EchoNode, *listen: tuple[str, str, int], **kw: Any) -> SipTransport:
    transport = SipTransport(node, list(listen), **kw)
    await transport.start()
    return transport


def port_of(transport: SipTransport, kind: str) -> int:
    return next(p.port for p in transport.local_addresses if p.transport == kind)


async def test_udp_echo_round_trip_and_timer() -> None:
    node = EchoNode()
    transport = await started(node, ("udp", LOCAL, 0))
    loop = asyncio.get_running_loop()
    udp, client = await loop.create_datagram_endpoint(Client, local_addr=(LOCAL, 0))
    try:
        port = port_of(transport, "udp")
        udp.sendto(b"hello", (LOCAL, port))
        assert await asyncio.wait_for(client.got.get(), 2.0) == b"hello"
        _data, source, _ = node.received[0]
        assert source == Peer("udp", LOCAL, udp.get_extra_info("sockname")[1])
        # the node's timer is armed after the next flush and fires; it may send
        armed = node.timer = loop.time() + 0.05
        node.on_timer = (b"tick", source)
        transport.flush()
        assert await asyncio.wait_for(client.got.get(), 2.0) == b"tick"
        assert len(node.fired) == 1 and node.fired[0] >= armed
    finally:
        udp.close()
        await transport.stop()


async def test_tcp_echo_of_framed_messages_and_keepalives() -> None:
    node = EchoNode()
    transport = await started(node, ("tcp", LOCAL, 0))
    reader, writer = await asyncio.open_connection(LOCAL, port_of(transport, "tcp"))
    try:
        one, two = sip(b"first", "c1"), sip(b"second", "c2")
        writer.write(b"\r\n\r\n" + one + two[:30])  # keep-alive, one message, half of another
        await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(len(one)), 2.0) == one
        writer.write(two[30:])
        assert await asyncio.wait_for(reader.readexactly(len(two)), 2.0) == two
        assert [d for d, _, _ in node.received] == [one, two]
        assert node.received[0][1].transport == "tcp"
        assert transport.connections == 1
    finally:
        writer.close()
        await transport.stop()


async def test_half_open_connection_is_closed() -> None:
    node = EchoNode()
    transport = await started(node, ("tcp", LOCAL, 0), partial_timeout=0.3)
    reader, writer = await asyncio.open_connection(LOCAL, port_of(transport, "tcp"))
    try:
        writer.write(sip()[:40])  # part of the headers, then silence
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 3.0) == b""  # closed by the server
        assert node.received == []
        assert transport.connections == 0
    finally:
        writer.close()
        await transport.stop()


async def test_idle_connection_is_closed_but_active_one_is_not_too_early() -> None:
    node = EchoNode()
    transport = await started(node, ("tcp", LOCAL, 0), idle_timeout=0.4)
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection(LOCAL, port_of(transport, "tcp"))
    try:
        start = loop.time()
        assert await asyncio.wait_for(reader.read(), 3.0) == b""
        assert loop.time() - start >= 0.35
    finally:
        writer.close()
        await transport.stop()


async def test_garbage_framing_closes_the_connection() -> None:
    node = EchoNode()
    transport = await started(node, ("tcp", LOCAL, 0))
    reader, writer = await asyncio.open_connection(LOCAL, port_of(transport, "tcp"))
    try:
        writer.write(b"OPTIONS sip:x SIP/2.0\r\nVia: x\r\n\r\n")  # no Content-Length
        assert await asyncio.wait_for(reader.read(), 2.0) == b""
        assert node.received == []
    finally:
        writer.close()
        await transport.stop()


async def test_connection_cap_refuses_extra_connections() -> None:
    node = EchoNode()
    transport = await started(node, ("tcp", LOCAL, 0), max_connections=1)
    port = port_of(transport, "tcp")
    r1, w1 = await asyncio.open_connection(LOCAL, port)
    w1.write(sip())
    await asyncio.wait_for(r1.readexactly(len(sip())), 2.0)
    r2, w2 = await asyncio.open_connection(LOCAL, port)
    try:
        assert await asyncio.wait_for(r2.read(), 2.0) == b""
        assert transport.connections == 1
    finally:
        w1.close()
        w2.close()
        await transport.stop()


async def test_connections_per_source_host_are_capped() -> None:
    node = EchoNode()
    transport = await started(node, ("tcp", LOCAL, 0), max_connections=10,
                              max_connections_per_source=2)
    port = port_of(transport, "tcp")
    first = [await asyncio.open_connection(LOCAL, port, local_addr=("127.0.0.5", 0))
             for _ in range(3)]
    other = await asyncio.open_connection(LOCAL, port, local_addr=("127.0.0.6", 0))
    try:
        assert await asyncio.wait_for(first[2][0].read(), 2.0) == b""  # the third: refused
        other[1].write(sip())  # another host still gets in
        assert await asyncio.wait_for(other[0].readexactly(len(sip())), 2.0) == sip()
        assert transport.connections == 3 and transport.refused == 1
        first[0][1].close()  # one of the two closes: that host may connect again
        await asyncio.sleep(0.1)
        again = await asyncio.open_connection(LOCAL, port, local_addr=("127.0.0.5", 0))
        again[1].write(sip())
        assert await asyncio.wait_for(again[0].readexactly(len(sip())), 2.0) == sip()
        again[1].close()
    finally:
        for _, writer in [*first, other]:
            writer.close()
        await transport.stop()


async def test_a_host_not_admitted_is_refused_at_accept() -> None:
    node = EchoNode()
    transport = await started(node, ("tcp", LOCAL, 0),
                              admit_host=lambda host, now: host != "127.0.0.5")
    port = port_of(transport, "tcp")
    blocked = await asyncio.open_connection(LOCAL, port, local_addr=("127.0.0.5", 0))
    other = await asyncio.open_connection(LOCAL, port, local_addr=("127.0.0.6", 0))
    try:
        assert await asyncio.wait_for(blocked[0].read(), 2.0) == b""
        other[1].write(sip())
        assert await asyncio.wait_for(other[0].readexactly(len(sip())), 2.0) == sip()
        assert transport.refused == 1 and transport.connections == 1
    finally:
        blocked[1].close()
        other[1].close()
        await transport.stop()


async def test_outgoing_tcp_connection_is_opened_and_reused_for_replies() -> None:
    node = EchoNode()
    transport = await started(node, ("udp", LOCAL, 0))
    accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def on_client(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await accepted.put((r, w))

    server = await asyncio.start_server(on_client, LOCAL, 0)
    server_port = server.sockets[0].getsockname()[1]
    dest = Peer("tcp", LOCAL, server_port)
    try:
        node.out.append((sip(b"out"), dest))
        transport.flush()
        reader, writer = await asyncio.wait_for(accepted.get(), 2.0)
        assert await asyncio.wait_for(reader.readexactly(len(sip(b"out"))), 2.0) == sip(b"out")
        writer.write(sip(b"reply"))  # the node echoes it over the same connection
        await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(len(sip(b"reply"))), 2.0) == sip(
            b"reply"
        )
        assert node.received[0][1] == dest
        assert transport.connections == 1
        await transport.stop()
        assert await asyncio.wait_for(reader.read(), 2.0) == b""  # stop() closed it
        assert transport.connections == 0
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
        await transport.stop()


async def test_failed_connect_drops_quietly() -> None:
    node = EchoNode()
    transport = await started(node, ("udp", LOCAL, 0))
    probe = await asyncio.start_server(lambda r, w: None, LOCAL, 0)
    closed_port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    try:
        node.out.append((sip(), Peer("tcp", LOCAL, closed_port)))
        transport.flush()
        for _ in range(100):
            if transport.connections == 0:
                break
            await asyncio.sleep(0.02)
        assert transport.connections == 0
    finally:
        await transport.stop()
