"""HTTP connections before aiohttp sees them: caps per source and in all, and a deadline for
the request head (docs/security.md, "HTTP, WebSocket and the conference mapper").

aiohttp has no header timeout of its own, and counts no connections: a client that opens
connections and sends its request head a byte at a time holds a file descriptor each for as
long as it likes. `ConnectionGuard.wrap(factory)` wraps the protocol factory of the listening
socket (aiohttp's `web.Server`), so every connection meets these rules in this order:

1. When its address already has `max_per_source` open (WebSockets included), it is
   answered `503 Service Unavailable` and closed, before a byte of it is read. Addresses in
   `trusted_proxies` (a reverse proxy carries everyone's connections) count only in all.
2. When `max_connections` are open, the oldest connection that has not yet sent a complete
   request head is closed to make room (slow heads from many addresses cannot lock everyone
   out); when every open connection has sent its head, the new one gets the 503.
3. It has `header_timeout` seconds to send a complete request head (up to the blank line);
   otherwise it is closed. Later requests on a keep-alive connection are bounded by aiohttp's
   `keepalive_timeout` (set on the runner): an idle connection, or one still trickling its
   next request head, is closed when it runs out.

Refusals and timeouts are logged at most once per 10 s per address and kind (a flood does not become
a log flood) and counted in `stats()`. `GuardedSite` is aiohttp's `TCPSite` with the wrapped
factory: it starts with `site.start()` and stops with the runner's `cleanup()`, which closes
every connection (each releases its count and cancels its timer as it goes).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from aiohttp import web

from dialplan.limits import ConcurrencyLimit, Networks, RateLimiter

__all__ = ["ConnectionGuard", "ConnectionSettings", "GuardedSite"]

log = logging.getLogger(__name__)

REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
           b"Content-Length: 20\r\nConnection: close\r\nRetry-After: 10\r\n\r\n"
           b"too many connections")  # fmt: skip
LOG_EVERY = 10.0  # seconds: at most one refusal or timeout line per address this often


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    max_connections: int = 4000
    max_per_source: int = 64
    header_timeout: float = 10.0
    trusted_proxies: Networks = field(default_factory=Networks)


def _host(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return "unknown"


class ConnectionGuard:
    """The counts and rules above, shared by every connection of one listening socket."""

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        self._per_source = ConcurrencyLimit(settings.max_per_source)
        self._open = 0
        self._waiting: dict[_GuardedProtocol, None] = {}  # no complete head yet, oldest first
        self._log_limit = RateLimiter(1.0 / LOG_EVERY, 1, max_keys=1000)
        self.refused = 0
        self.header_timeouts = 0
        self.evicted = 0

    @property
    def open(self) -> int:
        return self._open

    def stats(self) -> dict[str, int]:
        return {"http_connections": self._open, "http_refused": self.refused,
                "http_header_timeouts": self.header_timeouts,
                "http_evicted": self.evicted}  # fmt: skip

    def wrap(self, factory: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for `loop.create_server` around aiohttp's."""

        def make() -> asyncio.Protocol:
            return _GuardedProtocol(self, factory)

        return make

    # -- counting (the protocol calls these) ------------------------------------------------

    def admit(self, proto: _GuardedProtocol, now: float) -> str | None:
        """Count a new connection; why not (for the log) when refused."""
        host = proto.host
        full = self._open >= self.settings.max_connections
        if full and not self._waiting:
            return f"{self._open} connections open (http.max_connections)"
        if host not in self.settings.trusted_proxies and not self._per_source.acquire(host):
            return (f"{self._per_source.count(host)} open from this address "
                    f"(http.max_connections_per_source)")  # fmt: skip
        if full:
            oldest = next(iter(self._waiting))
            self.evicted += 1
            self.note(oldest.host, now, "closed without a complete request head to make room "
                      "(http.max_connections reached)")  # fmt: skip
            oldest.drop()
        self._open += 1
        self._waiting[proto] = None
        return None

    def head_complete(self, proto: _GuardedProtocol) -> None:
        self._waiting.pop(proto, None)

    def release(self, proto: _GuardedProtocol) -> None:
        self._waiting.pop(proto, None)
        self._open -= 1
        if proto.host not in self.settings.trusted_proxies:
            self._per_source.release(proto.host)

    def note(self, host: str, now: float, message: str, *args: object) -> None:
        """A refusal or a timeout from `host`: logged unless the same was logged lately."""
        if self._log_limit.allow(f"{message} {host}", now):
            log.warning("http: connection from %s: " + message, host, *args)


class _GuardedProtocol(asyncio.Protocol):
    """One connection: admitted or refused, then aiohttp's RequestHandler behind a head
    deadline. Every callback the transport makes is passed on to it."""

    __slots__ = ("_counted", "_factory", "_guard", "_head_done", "_inner", "_tail", "_timer",
                 "_transport", "host")  # fmt: skip

    def __init__(self, guard: ConnectionGuard, factory: Callable[[], asyncio.Protocol]) -> None:
        self._guard = guard
        self._factory = factory
        self._inner: asyncio.Protocol | None = None
        self.host = "unknown"
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._head_done = False
        self._tail = b""
        self._counted = False  # holds a place in the guard's counts

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, base)  # uvloop's are not asyncio.Transport's kin
        self.host = _host(transport)
        loop = asyncio.get_running_loop()
        why = self._guard.admit(self, loop.time())
        if why is not None:
            self._guard.refused += 1
            self._guard.note(self.host, loop.time(), "refused (503): %s", why)
            try:
                transport.write(REFUSAL)
            finally:
                transport.close()
            return
        self._counted = True
        self._transport = transport
        self._timer = loop.call_later(self._guard.settings.header_timeout, self._head_timeout)
        self._inner = self._factory()
        self._inner.connection_made(transport)

    def _head_timeout(self) -> None:
        self._timer = None
        if self._head_done or self._transport is None:
            return
        self._guard.header_timeouts += 1
        self._guard.note(self.host, asyncio.get_running_loop().time(),
                         "no complete request head within %.0f s: closed",
                         self._guard.settings.header_timeout)  # fmt: skip
        self._transport.abort()

    def drop(self) -> None:
        """Close now (made room for another); counted out at once, not when the loop
        reports the connection lost."""
        transport = self._transport
        if transport is None or not self._counted:
            return
        self._counted = False
        self._guard.release(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        transport.abort()  # connection_lost follows, and tells aiohttp

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            return
        if not self._head_done:
            seen = self._tail + data
            if b"\r\n\r\n" in seen or b"\n\n" in seen:
                self._head_done = True
                self._tail = b""
                self._guard.head_complete(self)
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
            else:
                self._tail = seen[-3:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        inner, self._inner = self._inner, None
        if inner is None:
            return  # refused: never counted
        self._transport = None
        if self._counted:
            self._counted = False
            self._guard.release(self)
        inner.connection_lost(exc)


class GuardedSite(web.TCPSite):
    """aiohttp's TCPSite, its connections made through a `ConnectionGuard`."""

    __slots__ = ("guard",)

    def __init__(self, runner: web.BaseRunner, host: str, port: int, guard: ConnectionGuard,
                 *, backlog: int = 1024,
                 ssl_context: ssl.SSLContext | None = None) -> None:  # fmt: skip
        super().__init__(runner, host, port, backlog=backlog, ssl_context=ssl_context)
        self.guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self.guard.wrap(server), self._host, self._port, ssl=self._ssl_context,
            backlog=self._backlog, reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )  # fmt: skip
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port
