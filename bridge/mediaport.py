"""One UDP port (and one TCP port) for every browser endpoint's media.

All endpoints share one UDP socket (`bridge.udp_port`, 10000 by default) and, when
configured, one TCP listener (`bridge.tcp_port`, ICE-TCP: passive candidates, RFC 6544 with
RFC 4571 framing). `Demux` decides which endpoint a datagram (or a TCP frame) belongs to.
It is sans-I/O: bytes and an address in, an endpoint's sink (or None) out (`now` comes
with what endpoints send, for the age of their STUN transactions). The rules
a packet meets, in order:

1. From an address latched to an endpoint and not a STUN request: that endpoint. This is
   the media path (DTLS, SRTP, SRTCP, STUN responses and indications): one dict lookup.
2. A STUN request (RFC 8489: first byte 0-3, the magic cookie): the endpoint whose local ICE
   ufrag is the first half of its USERNAME ("ours:theirs", RFC 8445 section 7.2.2). aioice
   then checks MESSAGE-INTEGRITY with that endpoint's password. No USERNAME, or a ufrag no
   endpoint has: dropped and counted (`unknown_credentials`).
3. A STUN response or error: the endpoint that sent the request with that transaction id
   (remembered when it went out, for TRANSACTION_TTL seconds); none: dropped, counted.
4. Anything else from an address no endpoint has latched: dropped, counted
   (`unknown_address`).

An address is latched when the endpoint answers a STUN request from it with a success
response (`observe_sent`): aioice sends that only after the request's USERNAME and
MESSAGE-INTEGRITY checked out, so a latched address has completed an ICE check with that
endpoint's credentials. A newer latch of the same address moves it to the newer endpoint (a
browser that rejoins from the same port); an endpoint keeps at most MAX_LATCHED addresses
(the oldest goes). Detaching an endpoint forgets its ufrag and its addresses, and answers
to its transactions are dropped from then on.

`UdpMediaPort` and `TcpMediaPort` are the asyncio adapters: they own the socket, feed the
demultiplexer and send. `PortLink` is what aioice's protocol object gets as its
`transport`: `sendto()` goes out of the shared socket (or the TCP connection of that
address), and `close()` detaches the endpoint instead of closing the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

log = logging.getLogger(__name__)

Addr = tuple[str, int]
STUN_MAGIC = b"\x21\x12\xa4\x42"
STUN_USERNAME = 0x0006
TRANSACTION_TTL = 40.0  # seconds: aioice's longest transaction (7 retransmissions) is ~40 s
MAX_TRANSACTIONS = 65536
MAX_LATCHED = 8  # addresses per endpoint (host, reflexive, relayed, an older one)
UDP_BUFFER = 4 * 1024 * 1024  # socket buffers of the shared port (every browser's media)
TCP_MAX_BUFFER = 256 * 1024  # bytes queued on one ICE-TCP connection before it is dropped
TCP_MAX_CONNECTIONS = 4096
TCP_FIRST_FRAME_TIMEOUT = 10.0  # seconds for a new TCP connection to send a good STUN check


class Sink(Protocol):
    """An endpoint's receiving side (aioice's protocol object, bridge/aiortc_adapter.py)."""

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None: ...


@dataclass(slots=True)
class DemuxCounters:
    routed: int = 0
    unknown_address: int = 0  # not STUN, from an address no endpoint has latched
    unknown_credentials: int = 0  # a STUN request without USERNAME or with an unknown ufrag
    unknown_transaction: int = 0  # a STUN response to no request of ours
    malformed: int = 0  # STUN whose attributes run past the end
    latched: int = 0
    relatched: int = 0  # an address latched by one endpoint moved to another


def stun_type(data: bytes) -> int:
    """The STUN message type, or -1 when `data` is not STUN (RFC 8489 section 5)."""
    if len(data) < 20 or data[0] > 3 or data[4:8] != STUN_MAGIC:
        return -1
    return (data[0] << 8) | data[1]


def is_request(message_type: int) -> bool:
    return message_type >= 0 and message_type & 0x0110 == 0


def is_response(message_type: int) -> bool:
    """Success (class 0b10) or error (0b11) response."""
    return message_type >= 0 and message_type & 0x0100 != 0


def stun_username(data: bytes) -> str | None:
    """The USERNAME attribute of a STUN message; None if absent; ValueError if the
    attributes are malformed or the name is not UTF-8."""
    end = min(len(data), 20 + struct.unpack_from("!H", data, 2)[0])
    offset = 20
    while offset + 4 <= end:
        kind, length = struct.unpack_from("!HH", data, offset)
        offset += 4
        if offset + length > end:
            raise ValueError("STUN attribute runs past the message")
        if kind == STUN_USERNAME:
            return data[offset:offset + length].decode("utf-8")
        offset += (length + 3) & ~3
    return None


class Demux:
    """Which endpoint a packet on the shared port belongs to (see the module docstring)."""

    def __init__(self) -> None:
        self.counters = DemuxCounters()
        self._by_ufrag: dict[str, Sink] = {}
        self._ufrags: dict[Sink, str] = {}
        self._by_addr: dict[Addr, Sink] = {}
        self._addrs: dict[Sink, list[Addr]] = {}
        self._transactions: dict[bytes, tuple[Sink, float]] = {}  # oldest first

    def __len__(self) -> int:
        return len(self._addrs)

    def taken(self, ufrag: str) -> bool:
        return ufrag in self._by_ufrag

    def attach(self, ufrag: str, sink: Sink) -> None:
        if ufrag in self._by_ufrag:
            raise ValueError("ICE ufrag already in use on this port")
        if sink in self._addrs:
            raise ValueError("endpoint already attached to this port")
        self._by_ufrag[ufrag] = sink
        self._ufrags[sink] = ufrag
        self._addrs[sink] = []

    def detach(self, sink: Sink) -> None:
        """Forget the endpoint; its STUN transactions age out (answers to them are dropped
        as unknown from now on)."""
        ufrag = self._ufrags.pop(sink, None)
        if ufrag is not None and self._by_ufrag.get(ufrag) is sink:
            del self._by_ufrag[ufrag]
        for addr in self._addrs.pop(sink, []):
            if self._by_addr.get(addr) is sink:
                del self._by_addr[addr]

    def latched(self, sink: Sink) -> tuple[Addr, ...]:
        return tuple(self._addrs.get(sink, ()))

    def route(self, data: bytes, addr: Addr) -> Sink | None:
        """The endpoint `data` from `addr` belongs to; None: dropped (and counted)."""
        sink = self._by_addr.get(addr)
        if sink is not None and data and data[0] > 3:  # the media path: not STUN
            self.counters.routed += 1
            return sink
        kind = stun_type(data)
        if is_request(kind):
            try:
                username = stun_username(data)
            except (ValueError, UnicodeDecodeError, struct.error):
                self.counters.malformed += 1
                return None
            sink = self._by_ufrag.get(username.partition(":")[0]) if username else None
            if sink is None:
                self.counters.unknown_credentials += 1
                return None
        elif is_response(kind):
            entry = self._transactions.get(data[8:20])  # kept: retransmissions' answers
            if entry is None or entry[0] not in self._addrs:
                self.counters.unknown_transaction += 1
                return None
            sink = entry[0]
        elif sink is None:  # an indication, or not STUN at all
            self.counters.unknown_address += 1
            return None
        self.counters.routed += 1
        return sink

    def observe_sent(self, sink: Sink, data: bytes, addr: Addr, now: float) -> None:
        """What an endpoint sends: its STUN requests' transaction ids (so the responses find
        it) and its success responses (the address passed an ICE check: latch it)."""
        if not data or data[0] > 3:
            return
        kind = stun_type(data)
        if is_request(kind):
            self._remember(data[8:20], sink, now)
        elif kind == 0x0101:  # Binding success response
            self._latch(addr, sink)

    def _remember(self, txid: bytes, sink: Sink, now: float) -> None:
        transactions = self._transactions
        transactions.pop(txid, None)  # a retransmission goes to the end
        transactions[txid] = (sink, now)
        while transactions:
            oldest = next(iter(transactions))
            if len(transactions) <= MAX_TRANSACTIONS and \
                    now - transactions[oldest][1] < TRANSACTION_TTL:  # fmt: skip
                break
            del transactions[oldest]

    def _latch(self, addr: Addr, sink: Sink) -> None:
        addrs = self._addrs.get(sink)
        if addrs is None:  # detached meanwhile
            return
        previous = self._by_addr.get(addr)
        if previous is sink:
            return
        if previous is not None:
            self.counters.relatched += 1
            others = self._addrs.get(previous)
            if others is not None and addr in others:
                others.remove(addr)
        self._by_addr[addr] = sink
        addrs.append(addr)
        self.counters.latched += 1
        if len(addrs) > MAX_LATCHED:
            oldest = addrs.pop(0)
            if self._by_addr.get(oldest) is sink:
                del self._by_addr[oldest]


class MediaPort(Protocol):
    """What a PortLink sends through (UdpMediaPort or TcpMediaPort)."""

    demux: Demux
    transport_name: str  # "udp" | "tcp"

    def sendto(self, data: bytes, addr: Addr) -> None: ...
    def socket(self) -> socket.socket | None: ...


class PortLink:
    """One endpoint's view of a shared port, in the shape of an asyncio DatagramTransport
    (what aioice's StunProtocol uses: sendto, close, get_extra_info)."""

    def __init__(self, port: MediaPort, sink: Any, ufrag: str,
                 clock: Callable[[], float]) -> None:
        self.port = port
        self.sink = sink
        self._clock = clock
        self._closed = False
        port.demux.attach(ufrag, sink)

    def sendto(self, data: bytes, addr: Addr) -> None:
        if self._closed:
            return
        if data and data[0] < 4:
            self.port.demux.observe_sent(self.sink, data, addr, self._clock())
        self.port.sendto(data, addr)

    def close(self) -> None:
        """Detach (the socket stays: it is every endpoint's); aioice awaits connection_lost."""
        if self._closed:
            return
        self._closed = True
        self.port.demux.detach(self.sink)
        asyncio.get_running_loop().call_soon(self.sink.connection_lost, None)

    def is_closing(self) -> bool:
        return self._closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":
            return self.port.socket()
        if name == "sockname":
            sock = self.port.socket()
            return sock.getsockname() if sock is not None else default
        return default


class UdpMediaPort(asyncio.DatagramProtocol):
    """The shared UDP socket: every datagram goes through the Demux to one endpoint."""

    transport_name = "udp"

    def __init__(self) -> None:
        self.demux = Demux()
        self._transport: asyncio.DatagramTransport | None = None
        self._sock: socket.socket | None = None
        self.send_errors = 0

    @classmethod
    async def open(cls, address: str, port: int) -> UdpMediaPort:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_datagram_endpoint(cls, local_addr=(address, port))
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, option, UDP_BUFFER)
            self._sock = sock

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        demux = self.demux
        # The media path first (Demux.route's rule 1, inlined: once per packet): an IPv4
        # address arrives as (host, port), the key the demultiplexer latched.
        sink = demux._by_addr.get(addr)
        if sink is not None and data and data[0] > 3:
            demux.counters.routed += 1
            sink.datagram_received(data, addr)
            return
        addr = (addr[0], addr[1])
        sink = demux.route(data, addr)
        if sink is not None:
            sink.datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.send_errors += 1  # ICMP port unreachable from a browser that went away

    def sendto(self, data: bytes, addr: Addr) -> None:
        if self._transport is not None:
            self._transport.sendto(data, addr)

    def socket(self) -> socket.socket | None:
        return self._sock

    @property
    def local_addr(self) -> Addr:
        if self._sock is None:
            return ("", 0)
        host, port = self._sock.getsockname()[:2]
        return host, port

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None


class _TcpConnection(asyncio.Protocol):
    """One ICE-TCP connection: RFC 4571 frames (a 16-bit length, then the packet)."""

    def __init__(self, port: TcpMediaPort) -> None:
        self.port = port
        self.buffer = bytearray()
        self.addr: Addr = ("", 0)
        self.transport: asyncio.Transport | None = None
        self.accepted = False
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = cast(asyncio.Transport, transport)
        self.transport = stream
        peer = stream.get_extra_info("peername")
        self.addr = (peer[0], peer[1])
        if not self.port.admit(self):
            stream.abort()
            return
        self._timer = asyncio.get_running_loop().call_later(
            TCP_FIRST_FRAME_TIMEOUT, self._first_frame_timeout)

    def _first_frame_timeout(self) -> None:
        if not self.accepted and self.transport is not None:
            self.port.counters_timeout += 1
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while len(buffer) >= 2:
            length = (buffer[0] << 8) | buffer[1]
            if len(buffer) < 2 + length:
                break
            frame = bytes(buffer[2:2 + length])
            del buffer[:2 + length]
            if not self.port.frame_received(self, frame) and not self.accepted:
                if self.transport is not None:
                    self.transport.abort()  # its first frame was no check of ours
                return
        if len(buffer) > TCP_MAX_BUFFER and self.transport is not None:
            self.transport.abort()

    def send(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if transport.get_write_buffer_size() > TCP_MAX_BUFFER:
            self.port.send_dropped += 1  # a slow reader loses packets, never our memory
            return
        transport.write(struct.pack("!H", len(data)) + data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.transport = None
        self.port.lost(self)


class TcpMediaPort:
    """The ICE-TCP listener (passive candidates): frames go through a Demux as datagrams do,
    with the connection's peer address as the address."""

    transport_name = "tcp"

    def __init__(self) -> None:
        self.demux = Demux()
        self._server: asyncio.Server | None = None
        self._connections: dict[Addr, _TcpConnection] = {}
        self.refused = 0  # over TCP_MAX_CONNECTIONS
        self.counters_timeout = 0  # no good first frame in time
        self.send_dropped = 0

    @classmethod
    async def open(cls, address: str, port: int) -> TcpMediaPort:
        self = cls()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _TcpConnection(self), address, port,
                                                reuse_address=True)
        return self

    @property
    def local_addr(self) -> Addr:
        if self._server is None or not self._server.sockets:
            return ("", 0)
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    def admit(self, connection: _TcpConnection) -> bool:
        if len(self._connections) >= TCP_MAX_CONNECTIONS:
            self.refused += 1
            return False
        old = self._connections.get(connection.addr)
        if old is not None and old.transport is not None:
            old.transport.abort()
        self._connections[connection.addr] = connection
        return True

    def frame_received(self, connection: _TcpConnection, frame: bytes) -> bool:
        sink = self.demux.route(frame, connection.addr)
        if sink is None:
            return False
        connection.accepted = True
        sink.datagram_received(frame, connection.addr)
        return True

    def lost(self, connection: _TcpConnection) -> None:
        if self._connections.get(connection.addr) is connection:
            del self._connections[connection.addr]

    def sendto(self, data: bytes, addr: Addr) -> None:
        connection = self._connections.get((addr[0], addr[1]))
        if connection is not None:
            connection.send(data)

    def socket(self) -> socket.socket | None:
        return None  # no datagram socket: the send batch writes through sendto()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for connection in list(self._connections.values()):
                if connection.transport is not None:
                    connection.transport.abort()
            await self._server.wait_closed()
            self._server = None


def port_stats(udp: UdpMediaPort | None, tcp: TcpMediaPort | None) -> dict[str, int]:
    """The ports' counters for /api/stats ("media_port_*" for UDP, "media_tcp_*" for TCP)."""
    out: dict[str, int] = {}
    for prefix, port in (("media_port", udp), ("media_tcp", tcp)):
        if port is None:
            continue
        c = port.demux.counters
        out.update({
            f"{prefix}_endpoints": len(port.demux),
            f"{prefix}_routed": c.routed,
            f"{prefix}_unknown_address": c.unknown_address,
            f"{prefix}_unknown_credentials": c.unknown_credentials,
            f"{prefix}_unknown_transaction": c.unknown_transaction,
            f"{prefix}_malformed": c.malformed,
            f"{prefix}_latched": c.latched,
            f"{prefix}_relatched": c.relatched,
        })  # fmt: skip
    if udp is not None:
        out["media_port_send_errors"] = udp.send_errors
    if tcp is not None:
        out["media_tcp_connections"] = len(tcp._connections)
        out["media_tcp_refused"] = tcp.refused + tcp.counters_timeout
        out["media_tcp_send_dropped"] = tcp.send_dropped
    return out
