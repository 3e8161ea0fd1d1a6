"""The signaling endpoint: GET /ws, a WebSocket per browser (docs/signaling.md).

`add_signaling_routes(app, meetings)` adds the route; `Meetings` (focus/meeting.py) does
the meeting logic, this module only guards the socket:

- before the upgrade, a browser's `Origin` must be the page's own (the scheme and Host of
  this request) or one of `http.public_urls`; any other (a page elsewhere opening a socket
  with its visitor's browser) gets 403 and a log line. No Origin at all is not a browser
  (scripts, tests): allowed, and held by the limits below like anyone else;
- the client's address (web.app.client_address) goes with `join` to the focus, which
  limits joins, room creation and concurrent endpoints per address (close 4029);
- text frames only (binary: close 1003), at most 64 KiB (aiohttp closes with 1009);
- a token bucket per connection (50 messages/s, bursts of 100): over it, an `error`
  `rate-limited` (at most one a second) and the message is dropped; still flooding after
  5 s, or 1,000 dropped messages: close 4008; messages that reach the whole room (chat,
  hand, name, media, moderate, lobby, policy) have their own bucket (5/s, bursts of 20);
- `error` for what does not parse or is refused; 10 errors in a row: close 4002;
- before `join` only `join` and `ping`; no `join` within 30 s: close 1008;
- heartbeat pings every 20 s: a peer that stops answering is closed and leaves the room;
- messages to the browser go through a queue with one writer task, so a slow browser
  never holds up the others; a browser that stops reading (1,000 queued) is closed 1008.

Nothing a client sends can end the handler with an exception: every path is caught and
logged with the participant's id (or the peer's address before `join`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import WSMsgType, web

from focus import protocol as p
from focus.meeting import Meetings
from focus.session import JoinRefused
from web.app import WEB, WebSettings, client_address
from web.origins import origin_of, request_origin

__all__ = [
    "MEETINGS",
    "SIGNALING",
    "FloodGuard",
    "SignalingSettings",
    "TokenBucket",
    "WsConnection",
    "add_signaling_routes",
    "origin_allowed",
]

log = logging.getLogger(__name__)

CLOSE_UNSUPPORTED = 1003
CLOSE_POLICY = 1008
CLOSE_BAD_MESSAGES = 4002
CLOSE_FLOOD = 4008
# Messages that make the server write to everyone in the room.
ROOM_MESSAGES = (p.Chat, p.Hand, p.SetName, p.Media, p.Moderate, p.LobbyAction,
                 p.PolicyChange, p.RecordingAction, p.Reaction, p.PrivateChat)


@dataclass(frozen=True, slots=True)
class SignalingSettings:
    max_message: int = p.MAX_MESSAGE_BYTES
    rate: float = 50.0  # messages per second, sustained
    burst: int = 100
    flood_close_after: float = 5.0  # seconds of continuous flooding before close 4008
    flood_close_count: int = 1000  # or this many dropped messages
    room_rate: float = 5.0  # messages that reach the whole room (chat, hand, name, media,
    room_burst: int = 20  # moderate): a spammer cannot drown the others
    max_errors: int = 10  # in a row
    join_timeout: float = 30.0
    heartbeat: float = 20.0
    send_queue: int = 1000


MEETINGS = web.AppKey("switchboard_meetings", Meetings)
SIGNALING = web.AppKey("switchboard_signaling", SignalingSettings)


class TokenBucket:
    """`rate` tokens a second up to `burst`; time comes in as `now` (monotonic seconds)."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class FloodGuard:
    """The rate limit's verdicts for one connection: admit, drop (telling the client at most
    once a second), or close when the flood goes on."""

    QUIET = 1.0  # a flood ends after this long without a dropped message

    def __init__(self, settings: SignalingSettings, now: float) -> None:
        self.settings = settings
        self.bucket = TokenBucket(settings.rate, settings.burst, now)
        self.since = now  # start of the current flood
        self.last_drop = float("-inf")
        self.dropped = 0  # in the current flood
        self.reported = float("-inf")

    def check(self, now: float) -> str:
        """The verdict: "ok", "drop", "drop-report" (drop, send `rate-limited`) or "close". A
        client sending faster than the rate gets some messages through as tokens trickle in;
        that does not end the flood, only a quiet second does."""
        if self.bucket.take(now):
            return "ok"
        if now - self.last_drop >= self.QUIET:
            self.since = now
            self.dropped = 0
        self.last_drop = now
        self.dropped += 1
        if now - self.since >= self.settings.flood_close_after or \
                self.dropped >= self.settings.flood_close_count:  # fmt: skip
            return "close"
        if now - self.reported >= 1.0:
            self.reported = now
            return "drop-report"
        return "drop"


class WsConnection:
    """focus.session.Connection over an aiohttp WebSocket: `send` queues, `run` writes."""

    def __init__(self, ws: web.WebSocketResponse, limit: int, label: str) -> None:
        self.ws = ws
        self.limit = limit
        self.label = label  # for logs: the participant id once joined
        self._queue: deque[str] = deque()
        self._wake = asyncio.Event()
        self._close: tuple[int, str] | None = None

    @property
    def closing(self) -> bool:
        return self._close is not None

    def send(self, message: Mapping[str, object]) -> None:
        if self._close is not None:
            return
        if len(self._queue) >= self.limit:
            log.warning("participant %s: not reading its messages: closing", self.label)
            self.close(CLOSE_POLICY, "not reading")
            return
        self._queue.append(p.encode(message))
        self._wake.set()

    def close(self, code: int, reason: str) -> None:
        if self._close is None:
            self._close = (code, reason)
            self._wake.set()

    async def run(self) -> None:
        """Write queued messages in order; close when asked. Ends when the socket does."""
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._queue:
                    if self.ws.closed:
                        return
                    await self.ws.send_str(self._queue.popleft())
                if self._close is not None:
                    code, reason = self._close
                    if not self.ws.closed:
                        log.info("participant %s: closing %d (%s)", self.label, code, reason)
                        await self.ws.close(code=code, message=reason.encode()[:120])
                    return
        except (ConnectionError, RuntimeError) as exc:  # the peer went away mid-write
            log.info("participant %s: write failed: %s", self.label, exc)


def add_signaling_routes(
    app: web.Application, meetings: Meetings, settings: SignalingSettings | None = None
) -> None:
    """GET /ws. On the application's shutdown, every browser is closed with 1001."""
    app[MEETINGS] = meetings
    app[SIGNALING] = settings if settings is not None else SignalingSettings()
    app.router.add_get("/ws", signaling)

    async def on_shutdown(app: web.Application) -> None:
        await app[MEETINGS].close()

    app.on_shutdown.append(on_shutdown)


def origin_allowed(request: web.Request) -> bool:
    """No Origin (not a browser), the page's own origin, or a configured public URL's."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    normalized = origin_of(origin)
    if normalized is None:  # "null" (a sandboxed or file page), or garbage
        return False
    if normalized == request_origin(request.scheme, request.host):
        return True
    web_settings = request.app.get(WEB) or WebSettings()
    return normalized in web_settings.public_origins


async def signaling(request: web.Request) -> web.StreamResponse:
    meetings = request.app[MEETINGS]
    settings = request.app[SIGNALING]
    source = client_address(request)
    if not origin_allowed(request):
        log.warning("signaling: WebSocket from %s refused (403): Origin %r is neither this "
                    "page's nor in http.public_urls", source,
                    request.headers.get("Origin", "")[:100])  # fmt: skip
        return web.Response(status=403, text="origin not allowed\n")
    ws = web.WebSocketResponse(heartbeat=settings.heartbeat, max_msg_size=settings.max_message)
    await ws.prepare(request)
    conn = WsConnection(ws, settings.send_queue, f"(peer {source})")
    writer = asyncio.get_running_loop().create_task(conn.run())
    session = _Socket(meetings, settings, conn, ws, source)
    try:
        await session.serve()
    except Exception:
        log.exception("participant %s: signaling failed", conn.label)
    finally:
        if session.pid is not None:
            try:
                meetings.leave(session.pid, session.reason)
            except Exception:
                log.exception("participant %s: leaving failed", conn.label)
        conn.close(1000, "")
        try:
            await asyncio.wait_for(writer, 5.0)
        except (TimeoutError, asyncio.CancelledError):
            writer.cancel()
        if not ws.closed:
            await ws.close()
    return ws


class _Socket:
    """The read side of one signaling connection."""

    def __init__(
        self,
        meetings: Meetings,
        settings: SignalingSettings,
        conn: WsConnection,
        ws: web.WebSocketResponse,
        source: str,
    ) -> None:
        self.meetings = meetings
        self.source = source  # the client's address, for the focus's per-source limits
        self.settings = settings
        self.conn = conn
        self.ws = ws
        self.pid: str | None = None
        self.reason = "timeout"  # why the participant leaves if the socket just drops
        self.errors = 0
        self.loop = asyncio.get_running_loop()
        self.room_bucket = TokenBucket(settings.room_rate, settings.room_burst, self.loop.time())

    async def serve(self) -> None:
        loop = self.loop
        guard = FloodGuard(self.settings, loop.time())
        # One absolute deadline for the join: aiohttp's receive(timeout=) restarts its wait
        # after every PING/PONG it handles, so a heartbeat would keep a silent socket open.
        join_deadline = loop.call_at(
            loop.time() + self.settings.join_timeout, self._join_timeout
        )
        try:
            await self._receive_loop(guard)
        finally:
            join_deadline.cancel()

    def _join_timeout(self) -> None:
        if self.pid is None and not self.conn.closing:
            log.info("participant %s: no join within %.0f s", self.conn.label,
                     self.settings.join_timeout)  # fmt: skip
            self.conn.close(CLOSE_POLICY, "join timeout")

    async def _receive_loop(self, guard: FloodGuard) -> None:
        loop = self.loop
        while not self.conn.closing:
            msg = await self.ws.receive()
            if msg.type is WSMsgType.TEXT:
                verdict = guard.check(loop.time())
                if verdict == "ok":
                    await self._message(msg.data)
                elif verdict == "close":
                    log.warning("participant %s: flooding: closing", self.conn.label)
                    self.conn.close(CLOSE_FLOOD, "flooding")
                elif verdict == "drop-report":
                    self.conn.send(p.error("rate-limited", "too many messages: slow down"))
            elif msg.type is WSMsgType.BINARY:
                log.info("participant %s: binary frame: closing", self.conn.label)
                self.conn.close(CLOSE_UNSUPPORTED, "text frames only")
            elif msg.type is WSMsgType.CLOSE:
                self.reason = "left"
                return
            else:  # CLOSING, CLOSED, ERROR (1009 too large, 1007 bad UTF-8, lost peer)
                if msg.type is WSMsgType.ERROR:
                    log.info("participant %s: socket error: %s", self.conn.label, msg.data)
                return

    async def _message(self, text: str) -> None:
        ref: str | None = None
        try:
            message = p.parse_message(text)
            ref = message.TYPE
            if self.pid is None:
                await self._before_join(message)
            elif isinstance(message, ROOM_MESSAGES) and \
                    not self.room_bucket.take(self.loop.time()):  # fmt: skip
                self.conn.send(p.error("rate-limited", "too many messages to the room", ref))
                return
            else:
                await self.meetings.handle(self.pid, message)
                if isinstance(message, p.Leave):
                    self.reason = "left"
            self.errors = 0
        except p.ProtocolError as exc:
            log.info("participant %s: %s", self.conn.label, exc)
            self._error(exc.as_message())
        except JoinRefused as exc:
            log.info("participant %s: join refused: %s", self.conn.label, exc)
            self.conn.send(p.error(exc.code, exc.message, "join"))
            self.conn.close(exc.close_code, exc.message)
        except Exception:
            log.exception("participant %s: handling %s failed", self.conn.label, ref)
            self._error(p.error("internal", "the server failed on this message", ref))

    async def _before_join(self, message: p.ClientMessage) -> None:
        if isinstance(message, p.Ping):
            self.conn.send(p.pong(message.id))
        elif isinstance(message, p.Join):
            self.pid = await self.meetings.join(self.conn, message, source=self.source)
            self.conn.label = self.pid
        else:
            raise p.ProtocolError("not-joined", "send join first", message.TYPE)

    def _error(self, message: Mapping[str, object]) -> None:
        self.errors += 1
        self.conn.send(message)
        if self.errors >= self.settings.max_errors:
            log.warning("participant %s: %d bad messages in a row: closing", self.conn.label,
                        self.errors)  # fmt: skip
            self.conn.close(CLOSE_BAD_MESSAGES, "too many bad messages")
