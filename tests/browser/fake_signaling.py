"""A scripted stand-in for the signaling server, for testing the meeting page alone.

It serves the real pages (web.pages.add_page_routes) and a /ws endpoint that speaks
docs/signaling.md from the server's side with made-up participants and no media: `join` is
answered by `joined` (with the configured fake participants, dial-in numbers and chat history)
and an `offer` whose receive m-lines carry the fake participants' sources. Its ICE has no
candidates, so no media ever flows; the page's negotiation, tiles, chat, moderation and end
states are what it exercises.

Everything a client sends is recorded (`received`), and a test can push any server message to
every client (`push`). The server runs its own event loop in a thread so that synchronous
Playwright tests can drive the browser meanwhile.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import WSMsgType, web

from web.pages import add_page_routes

log = logging.getLogger(__name__)

Json = dict[str, Any]

DIAL_IN: Json = {
    "pin": "482913",
    "numbers": [
        {"number": "+15550100", "formatted": "+1 555 0100", "country": "US", "toll_free": False},
        {"number": "+442071234567", "formatted": "+44 20 7123 4567", "country": "GB",
         "toll_free": False},
        {"number": "+18005550199", "formatted": "+1 800 555 0199", "country": "US",
         "toll_free": True},
    ],
}


def participant(
    pid: str, name: str, *, kind: str = "browser", role: str = "guest", audio: bool = True,
    video: bool = True, screen: bool = False, muted: bool | None = None, hand: bool = False,
) -> Json:
    return {
        "id": pid, "name": name, "kind": kind, "role": role, "audio": audio,
        "video": video and kind == "browser", "screen": screen,
        "muted": (not audio) if muted is None else muted, "hand": hand,
    }


def default_participants() -> list[Json]:
    return [
        participant("p-ada", "Ada Lovelace", role="moderator"),
        participant("p-grace", "Grace Hopper", audio=False, hand=True),
        participant("p-phone", "+1 555 •••• 42", kind="phone", video=False),
    ]


# --- the offer ------------------------------------------------------------------------------

_AUDIO = (
    "a=rtpmap:111 opus/48000/2\r\n"
    "a=rtcp-fb:111 transport-cc\r\n"
    "a=fmtp:111 minptime=10;useinbandfec=1\r\n"
)
_VIDEO_FEEDBACK = "".join(
    f"a=rtcp-fb:{pt} {fb}\r\n"
    for pt in (96, 102)
    for fb in ("goog-remb", "transport-cc", "ccm fir", "nack", "nack pli")
)
_VIDEO = (
    "a=rtpmap:96 VP8/90000\r\n"
    "a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n"
    "a=rtpmap:102 H264/90000\r\n"
    "a=fmtp:102 profile-level-id=42e01f;packetization-mode=1;level-asymmetry-allowed=1\r\n"
    "a=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\n" + _VIDEO_FEEDBACK
)
_EXTMAP = (
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n"
    "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n"
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n"
)


@dataclass(frozen=True, slots=True)
class Source:
    """One receive m-line: another participant's audio, camera or screen."""

    mid: str
    participant: str
    kind: str  # "audio" | "video"
    video_type: str | None  # "camera" | "screen" | None
    ssrc: int
    active: bool = True


def build_offer(session_id: int, revision: int, sources: Sequence[Source], ice: Mapping[str, str]
                ) -> str:
    """An SDP offer of the shape docs/signaling.md gives (a0, v0, s0 recvonly; then sources)."""
    mids = ["a0", "v0", "s0", *(s.mid for s in sources)]
    lines = [
        "v=0\r\n",
        f"o=- {session_id} {revision} IN IP4 127.0.0.1\r\n",
        "s=-\r\n",
        "t=0 0\r\n",
        f"a=group:BUNDLE {' '.join(mids)}\r\n",
        "a=msid-semantic: WMS *\r\n",
        "a=ice-lite\r\n",
    ]

    def media(kind: str, mid: str, direction: str, extra: str = "") -> str:
        fmts = "111" if kind == "audio" else "96 97 102 103"
        codecs = _AUDIO if kind == "audio" else _VIDEO
        return (
            f"m={kind} 9 UDP/TLS/RTP/SAVPF {fmts}\r\n"
            "c=IN IP4 127.0.0.1\r\n"
            "a=rtcp:9 IN IP4 127.0.0.1\r\n"
            f"a=ice-ufrag:{ice['ufrag']}\r\na=ice-pwd:{ice['pwd']}\r\n"
            f"a=fingerprint:sha-256 {ice['fingerprint']}\r\n"
            "a=setup:actpass\r\n"
            f"a=mid:{mid}\r\n" + _EXTMAP + f"a={direction}\r\n"
            "a=rtcp-mux\r\n" + ("a=rtcp-rsize\r\n" if kind == "video" else "") + codecs + extra
        )

    lines.append(media("audio", "a0", "recvonly"))
    lines.append(media("video", "v0", "recvonly"))
    lines.append(media("video", "s0", "recvonly"))
    for s in sources:
        if not s.active:
            lines.append(media(s.kind, s.mid, "inactive"))
            continue
        stream, track = f"{s.participant}", f"{s.participant}-{s.mid}"
        extra = (
            f"a=msid:{stream} {track}\r\n"
            f"a=ssrc:{s.ssrc} cname:{s.participant}\r\n"
            f"a=ssrc:{s.ssrc} msid:{stream} {track}\r\n"
        )
        lines.append(media(s.kind, s.mid, "sendonly", extra))
    return "".join(lines)


def update_sources(sources: list[Source], participants: Sequence[Json]) -> list[Source]:
    """The sources after a roster change: m-lines keep their mids and order (a source that
    goes away turns inactive), new sources are appended."""
    wanted: list[tuple[str, str, str | None]] = []
    for p in participants:
        wanted.append((p["id"], "audio", None))
        if p.get("video"):
            wanted.append((p["id"], "video", "camera"))
        if p.get("screen"):
            wanted.append((p["id"], "video", "screen"))
    out = [
        replace(s, active=(s.participant, s.kind, s.video_type) in wanted) for s in sources
    ]
    have = {(s.participant, s.kind, s.video_type) for s in out if s.active}
    for pid, kind, video_type in wanted:
        if (pid, kind, video_type) not in have:
            out.append(Source(f"r{len(out) + 1}", pid, kind, video_type, 1000 + 7 * len(out)))
    return out


# --- the server -----------------------------------------------------------------------------


@dataclass
class Client:
    ws: web.WebSocketResponse
    id: str = ""
    name: str = ""
    revision: int = 0
    participant: Json = field(default_factory=dict)
    sources: list[Source] = field(default_factory=list)


@dataclass
class FakeSignalingServer:
    """Serves the pages and a scripted /ws on 127.0.0.1 from a thread.

    `role`: the joining browser's role; `participants`: the fake others; `chat`: history.
    `room_exists(name)`: False makes `join` close with 4004.
    """

    participants: list[Json] = field(default_factory=default_participants)
    role: str = "moderator"
    chat: list[Json] = field(default_factory=list)
    dial_in: Json | None = field(default_factory=lambda: dict(DIAL_IN))
    room_exists: Callable[[str], bool] = lambda name: True
    send_offer: bool = True
    received: list[Json] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        self._clients: list[Client] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._session = secrets.randbelow(2**31)
        self._ice = {
            "ufrag": secrets.token_hex(4),
            "pwd": secrets.token_hex(12),
            "fingerprint": ":".join(f"{b:02X}" for b in secrets.token_bytes(32)),
        }

    # lifecycle

    def start(self) -> str:
        self._thread = threading.Thread(target=self._run, name="fake-signaling", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake signaling server did not start in 10 s")
        return self.url

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        loop.run_until_complete(self._serve())
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(self._shutdown())
        loop.close()

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_get("/ws", self._ws)
        add_page_routes(app)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def _shutdown(self) -> None:
        for c in list(self._clients):
            await c.ws.close(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    # what tests use

    def messages(self, type_: str) -> list[Json]:
        with self._lock:
            return [m for m in self.received if m.get("type") == type_]

    def push(self, message: Json) -> None:
        """Send a server message to every joined client."""
        self._call(self._broadcast(message))

    def close_clients(self, code: int) -> None:
        async def close() -> None:
            for c in list(self._clients):
                await c.ws.close(code=code)
        self._call(close())

    def add_participant(self, p: Json) -> None:
        async def add() -> None:
            self.participants.append(p)
            await self._broadcast({"type": "participant-joined", "participant": p})
            await self._offer_all()
        self._call(add())

    def remove_participant(self, pid: str, reason: str = "left") -> None:
        async def remove() -> None:
            self.participants[:] = [p for p in self.participants if p["id"] != pid]
            await self._broadcast({"type": "participant-left", "id": pid, "reason": reason})
            await self._offer_all()
        self._call(remove())

    def _call(self, coro: Any) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(5)

    # protocol

    async def _broadcast(self, message: Json) -> None:
        for c in list(self._clients):
            if c.id and not c.ws.closed:
                await c.ws.send_json(message)

    async def _offer(self, c: Client) -> None:
        if not self.send_offer:
            return
        c.revision += 1
        c.sources = update_sources(c.sources, self.participants)
        tracks = {
            s.mid: {"participant": s.participant, "kind": s.kind, "video_type": s.video_type}
            for s in c.sources
            if s.active
        }
        sdp = build_offer(self._session, c.revision, c.sources, self._ice)
        await c.ws.send_json({"type": "offer", "sdp": sdp, "revision": c.revision,
                              "tracks": tracks})

    async def _offer_all(self) -> None:
        for c in list(self._clients):
            if c.id:
                await self._offer(c)

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=64 * 1024, heartbeat=None)
        await ws.prepare(request)
        client = Client(ws)
        self._clients.append(client)
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    await ws.close(code=1003)
                    break
                data = json.loads(msg.data)
                with self._lock:
                    self.received.append(data)
                await self._handle(client, data)
        finally:
            self._clients.remove(client)
        return ws

    async def _handle(self, c: Client, m: Json) -> None:
        kind = m.get("type")
        if kind == "ping":
            await c.ws.send_json({"type": "pong", "id": m.get("id")})
        elif kind == "join":
            if not self.room_exists(str(m.get("room"))):
                await c.ws.send_json({"type": "error", "code": "room-not-found",
                                      "message": "no such room", "ref": "join"})
                await c.ws.close(code=4004)
                return
            c.id = f"p-self-{next(self._ids)}"
            c.name = str(m.get("name"))
            c.participant = participant(
                c.id, c.name, role=self.role, audio=bool(m.get("audio")),
                video=bool(m.get("video")),
            )
            await c.ws.send_json({
                "type": "joined", "version": 1, "room": m.get("room"), "self": c.participant,
                "participants": list(self.participants), "ice_servers": [],
                "dial_in": self.dial_in, "chat": self.chat[-50:],
            })
            await self._offer(c)
        elif kind == "renegotiate":
            await self._offer(c)
        elif kind == "chat":
            entry = {"type": "chat", "from": c.id, "name": c.name, "text": m.get("text"),
                     "ts": time.time()}
            self.chat.append(entry)
            await self._broadcast(entry)
        elif kind in ("hand", "media", "set-name"):
            p = c.participant
            if kind == "hand":
                p["hand"] = bool(m.get("raised"))
            elif kind == "media":
                p.update(audio=bool(m.get("audio")), video=bool(m.get("video")),
                         screen=bool(m.get("screen")), muted=not m.get("audio"))
            else:
                p["name"] = c.name = str(m.get("name"))
            await self._broadcast({"type": "participant-updated", "participant": dict(p)})
        elif kind == "moderate":
            await self._moderate(c, m)
        elif kind == "leave":
            await c.ws.close(code=1000)

    async def _moderate(self, c: Client, m: Json) -> None:
        if c.participant.get("role") != "moderator":
            await c.ws.send_json({"type": "error", "code": "forbidden",
                                  "message": "moderators only", "ref": "moderate"})
            return
        targets = (
            [p for p in self.participants if p["id"] != c.id]
            if m.get("action") == "mute-all"
            else [p for p in self.participants if p["id"] == m.get("target")]
        )
        for p in targets:
            if m.get("action") == "kick":
                await self._broadcast({"type": "participant-left", "id": p["id"],
                                       "reason": "kicked"})
                self.participants.remove(p)
            else:
                p.update(muted=True, audio=False)
                await self._broadcast({"type": "participant-updated", "participant": dict(p)})
