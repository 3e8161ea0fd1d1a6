"""The asyncio side of SIP: UDP endpoints, TCP servers and connections around one sans-I/O node.

``SipTransport`` owns every socket it opens. Each datagram, and each complete message cut out
of a TCP stream by ``parser.StreamFramer``, goes to ``node.receive_data(data, Peer, now)``;
after every input (and every timer) ``flush()`` sends what ``node.datagrams_to_send()`` gives
(TCP: over the connection keyed by that Peer, opening one when there is none) and re-arms the
ONE timer handle to ``node.get_timer()`` (aioquic's ``asyncio/protocol.py`` pattern).

TCP hygiene: a connection that breaks the framing is closed; one that sent part of a message
and then nothing for ``partial_timeout`` (64*T1 = 32 s) is closed; one idle for
``idle_timeout`` is closed; beyond ``max_connections`` in all, or beyond
``max_connections_per_source`` accepted from one host, or from a host ``admit_host`` says no
to (a blocked scanner), new ones are refused at accept.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import socket
import ssl
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, cast

from dialplan.limits import ConcurrencyLimit
from gateway.sip.errors import RemoteProtocolError
from gateway.sip.loop import SansIoNode
from gateway.sip.parser import MAX_MESSAGE_SIZE, StreamFramer
from gateway.sip.peer import Peer

__all__ = ["SipTransport"]

log = logging.getLogger(__name__)

MAX_WRITE_BUFFER = 4 * 1024 * 1024  # a peer that lets this much pile up is dropped


def _peer(transport: str, addr: tuple[str, int] | tuple[str, int, int, int]) -> Peer:
    return Peer(transport, addr[0], addr[1])


def _same(endpoint: _UdpEndpoint) -> _UdpEndpoint:
    return endpoint


def _is_ipv6(host: str) -> bool:
    return ":" in host


UDP_RECEIVE_BUFFER = 4 * 1024 * 1024  # bursts of call setups queue here, not in drops


def _grow_receive_buffer(transport: asyncio.BaseTransport) -> None:
    """Ask for a larger kernel receive buffer on the SIP socket (capped by net.core.rmem_max
    unless root, where SO_RCVBUFFORCE goes past it); a burst of INVITEs at hundreds of calls
    per second otherwise overflows the default and costs retransmissions."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
        if option is None:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, UDP_RECEIVE_BUFFER)
            return
        except OSError:
            continue


class _UdpEndpoint(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransport) -> None:
        self.owner = owner
        self.transport: asyncio.DatagramTransport | None = None
        self.local: Peer | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.local = _peer("udp", transport.get_extra_info("sockname"))

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.owner._input(data, _peer("udp", addr))

    def error_received(self, exc: Exception) -> None:
        log.debug("udp %s: %s", self.local, exc)  # e.g. ICMP port unreachable

    def sendto(self, data: bytes, dest: Peer) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, (dest.host, dest.port))


class _TcpConnection(asyncio.Protocol):
    """One TCP connection, accepted or opened by us; keyed by the remote Peer."""

    def __init__(self, owner: SipTransport, peer: Peer | None = None, kind: str = "tcp") -> None:
        self.owner = owner
        self.peer = peer
        self.kind = kind  # "tcp", or "tls" (the same stream, encrypted)
        self.transport: asyncio.Transport | None = None
        self.framer = StreamFramer(owner.max_message_size)
        self.pending: list[bytes] = []  # written before the connection was up
        self.last_activity = owner._now()
        self.partial_since: float | None = None
        self.closed = False
        self.counted = False  # accepted and counted against its host's limit

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        self.last_activity = self.owner._now()
        if self.peer is None:  # accepted
            peername = transport.get_extra_info("peername")
            if not peername:  # reset before we saw it
                log.debug("tcp: connection gone before it was accepted")
                self.closed = True
                transport.abort()
                return
            self.peer = _peer(self.kind, peername)
            if not self.owner._accept(self):
                transport.abort()
                return
        for data in self.pending:
            transport.write(data)
        self.pending.clear()

    def data_received(self, data: bytes) -> None:
        owner, peer = self.owner, self.peer
        assert peer is not None
        now = self.last_activity = owner._now()
        try:
            messages = self.framer.feed(data)
        except RemoteProtocolError as exc:
            log.warning("tcp %s: framing error (%s); closing", peer, exc)
            self.close()
            return
        self.partial_since = (self.partial_since or now) if self.framer.buffered() else None
        for message in messages:
            owner._deliver(message, peer)
        owner.flush()
        if self.framer.failed is not None:
            log.warning("tcp %s: framing error (%s); closing", peer, self.framer.failed)
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        log.debug("tcp %s: closed (%s)", self.peer, exc or "eof")
        self.owner._forget(self)

    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is None:
            self.pending.append(data)
        elif transport.is_closing():
            log.debug("tcp %s: closing; %d bytes dropped", self.peer, len(data))
        elif transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            log.warning("tcp %s: peer does not read (%d bytes queued); closing", self.peer,
                        transport.get_write_buffer_size())
            transport.abort()
        else:
            transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        else:
            self.closed = True
            self.owner._forget(self)


class SipTransport:
    """Sockets for one sans-I/O SIP node.

    ``listen`` is a list of ``(transport, host, port)`` with transport "udp", "tcp" or "tls";
    port 0 picks a free one (see ``local_addresses`` after ``start()``). TLS is TCP's stream
    wrapped by ``tls_server`` (our certificate) for what we accept and ``tls_client`` (the
    CAs we trust) for what we open; its Peers say "tls", so Via and Contact say TLS.
    ``tls_for(dest)`` may give a connection we open its own (context, name to check) (a
    trunk's ``tls_verify``/``tls_ca``: gateway/trunk_tls.py); None: ``tls_client`` and the
    address itself. ``connect_failed(dest, reason)`` hears of every connection we could not
    open (the messages waiting for it are dropped), so a registration need not wait for its
    transaction's timeout to say why.
    """

    def __init__(
        self,
        node: SansIoNode,
        listen: Sequence[tuple[str, str, int]],
        *,
        idle_timeout: float = 300.0,
        partial_timeout: float = 32.0,
        max_connections: int = 1024,
        max_connections_per_source: int = 32,
        connect_timeout: float = 10.0,
        max_message_size: int = MAX_MESSAGE_SIZE,
        admit_host: Callable[[str, float], bool] | None = None,
        tls_server: ssl.SSLContext | None = None,
        tls_client: ssl.SSLContext | None = None,
        tls_for: Callable[[Peer], tuple[ssl.SSLContext, str] | None] | None = None,
        connect_failed: Callable[[Peer, str], None] | None = None,
    ) -> None:
        for transport, _, _ in listen:
            if transport not in ("udp", "tcp", "tls"):
                raise ValueError(f"unsupported SIP transport {transport!r}")
            if transport == "tls" and tls_server is None:
                raise ValueError("a tls listen address needs tls_server (a certificate)")
        self.tls_server = tls_server
        self.tls_client = tls_client
        self.tls_for = tls_for
        self.connect_failed = connect_failed
        self.node = node
        self.listen = list(listen)
        self.idle_timeout = idle_timeout
        self.partial_timeout = partial_timeout
        self.max_connections = max_connections
        self.refused = 0
        self.admit_host = admit_host
        self._per_source = ConcurrencyLimit(max_connections_per_source)
        self._refusing: set[str] = set()  # hosts at their limit (logged once)
        self.connect_timeout = connect_timeout
        self.max_message_size = max_message_size
        self._loop: asyncio.AbstractEventLoop | None = None
        self._udp: list[_UdpEndpoint] = []
        self._servers: list[tuple[str, asyncio.Server]] = []  # ("tcp" | "tls", server)
        self._connections: dict[Peer, _TcpConnection] = {}
        self._connecting: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._running = False

    # --- start / stop ------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind every listen address; on any failure, close what was opened and raise."""
        self._loop = asyncio.get_running_loop()
        self._running = True
        try:
            for transport, host, port in self.listen:
                if transport == "udp":
                    endpoint = _UdpEndpoint(self)
                    self._udp.append(endpoint)
                    udp, _ = await self._loop.create_datagram_endpoint(
                        functools.partial(_same, endpoint), local_addr=(host, port)
                    )
                    _grow_receive_buffer(udp)
                else:
                    kind = transport
                    server = await self._loop.create_server(
                        functools.partial(_TcpConnection, self, None, kind), host, port,
                        reuse_address=True, ssl=self.tls_server if kind == "tls" else None,
                        ssl_handshake_timeout=self.connect_timeout if kind == "tls" else None,
                    )
                    self._servers.append((kind, server))
        except BaseException:
            await self.stop()
            raise
        log.info("SIP listening on %s", ", ".join(str(p) for p in self.local_addresses))
        self._sweeper = self._loop.call_later(self._sweep_interval(), self._sweep)
        self.flush()

    async def stop(self) -> None:
        """Close every socket, connection, task and timer this transport opened."""
        self._running = False
        for handle in (self._timer, self._sweeper):
            if handle is not None:
                handle.cancel()
        self._timer = self._sweeper = None
        self._timer_at = None
        tasks = list(self._connecting)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for connection in list(self._connections.values()):
            if connection.transport is not None:
                connection.transport.abort()
            connection.close()
        self._connections.clear()
        for endpoint in self._udp:
            if endpoint.transport is not None:
                endpoint.transport.close()
        self._udp.clear()
        for _, server in self._servers:
            server.close()
        for _, server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    @property
    def local_addresses(self) -> list[Peer]:
        """The bound addresses (ports resolved when 0 was asked for)."""
        out = [e.local for e in self._udp if e.local is not None]
        for kind, server in self._servers:
            out += [_peer(kind, s.getsockname()) for s in server.sockets]
        return out

    @property
    def connections(self) -> int:
        """Open (or opening) TCP connections."""
        return len(self._connections)

    # --- the node ----------------------------------------------------------------------------

    def flush(self) -> None:
        """Send what the node has queued and re-arm its timer."""
        if not self._running:
            return
        for data, dest in self.node.datagrams_to_send():
            try:
                self._send(data, dest)
            except OSError as exc:
                log.warning("send to %s failed: %s", dest, exc)
        self._arm_timer()

    def _input(self, data: bytes, source: Peer) -> None:
        self._deliver(data, source)
        self.flush()

    def _deliver(self, data: bytes, source: Peer) -> None:
        try:
            self.node.receive_data(data, source, self._now())
        except Exception:  # a bug in the node must not kill the socket
            log.exception("node failed on %d bytes from %s", len(data), source)

    def _arm_timer(self) -> None:
        assert self._loop is not None
        at = self.node.get_timer()
        if at == self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = at
        if at is not None:
            self._timer = self._loop.call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        now = max(self._now(), self._timer_at or 0.0)  # call_at may run a hair early
        self._timer = None
        self._timer_at = None
        try:
            self.node.handle_timer(now)
        except Exception:
            log.exception("node failed in handle_timer")
        self.flush()

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    # --- sending -----------------------------------------------------------------------------

    def _send(self, data: bytes, dest: Peer) -> None:
        if dest.transport == "udp":
            endpoint = self._udp_for(dest.host)
            if endpoint is None:
                log.warning("no UDP socket to reach %s; dropped", dest)
            elif _is_ip(dest.host):
                endpoint.sendto(data, dest)
            else:
                self._start(self._resolve_and_send(endpoint, data, dest))
            return
        if dest.transport not in ("tcp", "tls"):
            log.warning("cannot send over %s; dropped", dest.transport)
            return
        if dest.transport == "tls" and self.tls_client is None:
            log.warning("tls %s: no TLS client settings; dropped", dest)
            return
        connection = self._connections.get(dest)
        if connection is None:
            if len(self._connections) >= self.max_connections:
                log.warning("tcp %s: connection limit reached; dropped", dest)
                return
            connection = _TcpConnection(self, dest, dest.transport)
            self._connections[dest] = connection
            self._start(self._open(connection, dest))
        connection.write(data)

    def _udp_for(self, host: str) -> _UdpEndpoint | None:
        v6 = _is_ipv6(host)
        for endpoint in self._udp:
            if endpoint.local is not None and _is_ipv6(endpoint.local.host) == v6:
                return endpoint
        return self._udp[0] if self._udp and not _is_ip(host) else None

    def _start(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _open(self, connection: _TcpConnection, dest: Peer) -> None:
        assert self._loop is not None
        # a peer known by its IP address: the name checked is that address
        context, name = self.tls_client, dest.host
        try:
            if dest.transport == "tls" and self.tls_for is not None:
                chosen = self.tls_for(dest)
                if chosen is not None:
                    context, name = chosen
            await asyncio.wait_for(
                self._loop.create_connection(
                    lambda: connection, dest.host, dest.port,
                    ssl=context if dest.transport == "tls" else None,
                    server_hostname=name if dest.transport == "tls" else None),
                self.connect_timeout,
            )
            log.debug("tcp %s: connected", dest)
        except (TimeoutError, OSError, ValueError) as exc:
            reason = _connect_error(exc)
            log.warning("%s %s: connect failed (%s); %d message(s) dropped", dest.transport,
                        dest, reason, len(connection.pending))
            connection.pending.clear()
            connection.close()
            if self.connect_failed is not None:
                try:
                    self.connect_failed(dest, reason)
                except Exception:
                    log.exception("%s: connect_failed handler failed", dest)

    async def _resolve_and_send(self, endpoint: _UdpEndpoint, data: bytes, dest: Peer) -> None:
        assert self._loop is not None
        try:
            infos = await self._loop.getaddrinfo(dest.host, dest.port, type=socket.SOCK_DGRAM)
        except OSError as exc:
            log.warning("cannot resolve %s: %s", dest.host, exc)
            return
        if infos:
            host = str(infos[0][4][0])
            endpoint.sendto(data, Peer("udp", host, dest.port))

    # --- connections -------------------------------------------------------------------------

    def _accept(self, connection: _TcpConnection) -> bool:
        assert connection.peer is not None
        host = connection.peer.host
        if not self._running or len(self._connections) >= self.max_connections:
            self.refused += 1
            log.warning("tcp %s: refused (%d connections)", connection.peer,
                        len(self._connections))
            return False
        if self.admit_host is not None and not self.admit_host(host, self._now()):
            self.refused += 1
            log.debug("tcp %s: refused (source not admitted)", connection.peer)
            return False
        if not self._per_source.acquire(host):
            self.refused += 1
            if host not in self._refusing:
                self._refusing.add(host)
                log.warning("tcp %s: refused: %d connections from %s already", connection.peer,
                            self._per_source.per_key, host)
            return False
        connection.counted = True
        old = self._connections.get(connection.peer)
        if old is not None and old is not connection:
            old.close()
        self._connections[connection.peer] = connection
        log.debug("tcp %s: accepted", connection.peer)
        return True

    def _forget(self, connection: _TcpConnection) -> None:
        if connection.peer is not None and self._connections.get(connection.peer) is connection:
            del self._connections[connection.peer]
        if connection.counted and connection.peer is not None:
            connection.counted = False
            self._per_source.release(connection.peer.host)
            self._refusing.discard(connection.peer.host)

    def _sweep_interval(self) -> float:
        return min(max(min(self.idle_timeout, self.partial_timeout) / 4, 0.05), 5.0)

    def _sweep(self) -> None:
        assert self._loop is not None
        now = self._now()
        for connection in list(self._connections.values()):
            if connection.transport is None:
                continue  # still connecting: connect_timeout applies
            if connection.partial_since is not None and (
                now - connection.partial_since >= self.partial_timeout
            ):
                log.info("tcp %s: incomplete message for %.0f s; closing", connection.peer,
                         now - connection.partial_since)
                connection.close()
            elif now - connection.last_activity >= self.idle_timeout:
                log.info("tcp %s: idle; closing", connection.peer)
                connection.close()
        if self._running:
            self._sweeper = self._loop.call_later(self._sweep_interval(), self._sweep)


def _connect_error(exc: BaseException) -> str:
    """Why a connection could not be opened, in a few words ("TLS: ..." for TLS)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: certificate verify failed: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, TimeoutError) or not str(exc):
        return "timeout"
    return str(exc)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
