"""HTTP connections before aiohttp sees them: caps per source and in all, and a deadline for
the request head (docs/security.md, "HTTP, WebSocket and the conference mapper").

aiohttp has no header timeout of its own, and counts no connections: a client that opens
connections and sends its request head a byte at a time holds a file descriptor each for as
long as it likes. `ConnectionGuard.wrap(factory)` wraps the protocol factory of the listening
socket (aiohttp's `web.Server`), so every connection meets these rules in this order:

1. When `max_connections` are open (WebSockets included), the new one is answered
   `503 Service Unavailable` and closed, before a byte of it is read.
2. When its address already has `max_per_source` open, the same. Addresses in
   `trusted_proxies` (a reverse proxy carries everyone's connections) count only in all.
3. It has `header_timeout` seconds to send a complete request head (up to the blank line);
   otherwise it is closed. Later requests on a keep-alive connection are bounded by aiohttp's
   `keepalive_timeout` (set on the runner): an idle connection, or one still trickling its
   next request head, is closed when it runs out.

Refusals and timeouts are logged at most once per 10 s per address (a flood does not become
a log flood) and counted in `stats()`. `GuardedSite` is aiohttp's `TCPSite` with the wrapped
factory: it starts with `site.start()` and stops with the runner's `cleanup()`, which closes
every connection (each releases its count and cancels its timer as it goes).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

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
        self._log_limit = RateLimiter(1.0 / LOG_EVERY, 1, max_keys=1000)
        self.refused = 0
        self.header_timeouts = 0

    @property
    def open(self) -> int:
        return self._open

    def stats(self) -> dict[str, int]:
        return {"http_connections": self._open, "http_refused": self.refused,
                "http_header_timeouts": self.header_timeouts}  # fmt: skip

    def wrap(self, factory: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for `loop.create_server` around aiohttp's."""

        def make() -> asyncio.Protocol:
            return _GuardedProtocol(self, factory)

        return make

    # -- counting (the protocol calls these) ------------------------------------------------

    def admit(self, host: str) -> str | None:
        """Count a new connection from `host`; why not (for the log) when refused."""
        if self._open >= self.settings.max_connections:
            return f"{self._open} connections open (http.max_connections)"
        if host not in self.settings.trusted_proxies and not self._per_source.acquire(host):
            return (f"{self._per_source.count(host)} open from this address "
                    f"(http.max_connections_per_source)")  # fmt: skip
        self._open += 1
        return None

    def release(self, host: str) -> None:
        self._open -= 1
        if host not in self.settings.trusted_proxies:
            self._per_source.release(host)

    def note(self, host: str, now: float, message: str, *args: object) -> None:
        """A refusal or a timeout from `host`: logged unless one was logged lately."""
        if self._log_limit.allow(host, now):
            log.warning("http: connection from %s: " + message, host, *args)


class _GuardedProtocol(asyncio.Protocol):
    """One connection: admitted or refused, then aiohttp's RequestHandler behind a head
    deadline. Every callback the transport makes is passed on to it."""

    __slots__ = ("_factory", "_guard", "_head_done", "_host", "_inner", "_tail", "_timer",
                 "_transport")  # fmt: skip

    def __init__(self, guard: ConnectionGuard, factory: Callable[[], asyncio.Protocol]) -> None:
        self._guard = guard
        self._factory = factory
        self._inner: asyncio.Protocol | None = None
        self._host = "unknown"
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._head_done = False
        self._tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._host = _host(transport)
        loop = asyncio.get_running_loop()
        why = self._guard.admit(self._host)
        if why is not None:
            self._guard.refused += 1
            self._guard.note(self._host, loop.time(), "refused (503): %s", why)
            try:
                transport.write(REFUSAL)
            finally:
                transport.close()
            return
        self._transport = transport
        self._timer = loop.call_later(self._guard.settings.header_timeout, self._head_timeout)
        self._inner = self._factory()
        self._inner.connection_made(transport)

    def _head_timeout(self) -> None:
        self._timer = None
        if self._head_done or self._transport is None:
            return
        self._guard.header_timeouts += 1
        self._guard.note(self._host, asyncio.get_running_loop().time(),
                         "no complete request head within %.0f s: closed",
                         self._guard.settings.header_timeout)  # fmt: skip
        self._transport.abort()

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            return
        if not self._head_done:
            seen = self._tail + data
            if b"\r\n\r\n" in seen or b"\n\n" in seen:
                self._head_done = True
                self._tail = b""
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
        self._guard.release(self._host)
        inner.connection_lost(exc)


class GuardedSite(web.TCPSite):
    """aiohttp's TCPSite, its connections made through a `ConnectionGuard`."""

    __slots__ = ("guard",)

    def __init__(self, runner: web.BaseRunner, host: str, port: int, guard: ConnectionGuard,
                 *, backlog: int = 1024) -> None:  # fmt: skip
        super().__init__(runner, host, port, backlog=backlog)
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
