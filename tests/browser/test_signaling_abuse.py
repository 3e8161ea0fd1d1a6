"""Bad input on the signaling WebSocket of the real `switchboard serve` (docs/signaling.md):
every case gets its documented `error` or close code, while two real Chromium browsers in
another room keep their media and their roster, a third room notices nothing, and the
server stays up and comes back to rest (the `crowd` fixture checks /api/stats after the
test, `module_switchboard` after the module).

The bad clients are aiohttp WebSocket clients (and one raw TCP socket, for a text frame that
is not UTF-8) driven from a thread with its own event loop, beside Playwright's sync API.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

import aiohttp
from browser_harness import Member, RemoteSource, wait_for
from playwright.sync_api import expect

log = logging.getLogger(__name__)

T = TypeVar("T")

# Raw clients never answer their offers: their endpoints must outlive the test.
SWITCHBOARD_CONFIG = {"bridge": {"endpoint_timeout": 120}}
BROWSER_ROOM = "abuse-browsers"
BAD_ROOM = "abuse-bad"
QUIET_ROOM = "abuse-quiet"
JOIN_TIMEOUT = 30.0  # docs/signaling.md: no join within 30 s: close 1008
# What a bystander may receive while others misbehave elsewhere.
HARMLESS = {"offer", "quality", "dominant-speaker", "pong"}


# -- an event loop in a thread, and a raw signaling client ---------------------------------


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="abuse-loop",
                                       daemon=True)  # fmt: skip
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class Closed(Exception):
    def __init__(self, code: int | None) -> None:
        super().__init__(f"closed with {code}")
        self.code = code


class Client:
    """One signaling WebSocket. A reader task queues what the server sends (aiohttp's own
    receive(timeout) restarts its timeout on every ping, so waits here use the queue); every
    message received is also kept in `received`."""

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse,
                 label: str) -> None:  # fmt: skip
        self.session = session
        self.ws = ws
        self.label = label
        self.received: list[dict[str, Any]] = []
        self.id: str | None = None
        self.closed_at: float | None = None  # time.monotonic() when the server closed
        self._queue: asyncio.Queue[dict[str, Any] | Closed] = asyncio.Queue()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(cls, url: str, label: str) -> Client:
        session = aiohttp.ClientSession()
        try:
            ws = await session.ws_connect(url.replace("http://", "ws://") + "/ws",
                                          max_msg_size=0, autoping=True)  # fmt: skip
        except BaseException:
            await session.close()
            raise
        return cls(session, ws, label)

    async def _read(self) -> None:
        while True:
            msg = await self.ws.receive()
            if msg.type is aiohttp.WSMsgType.TEXT:
                data = json.loads(msg.data)
                self.received.append(data)
                await self._queue.put(data)
            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING,
                              aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):  # fmt: skip
                self.closed_at = time.monotonic()
                await self._queue.put(Closed(self.ws.close_code))
                return
            else:
                await self._queue.put(Closed(None))
                raise AssertionError(f"{self.label}: unexpected frame {msg.type}")

    async def send(self, message: dict[str, Any] | str) -> None:
        await self.ws.send_str(message if isinstance(message, str) else json.dumps(message))

    async def next(self, timeout: float) -> dict[str, Any]:
        """The next message (TimeoutError after `timeout`); Closed once the server closed."""
        item = await asyncio.wait_for(self._queue.get(), timeout)
        if isinstance(item, Closed):
            self._queue.put_nowait(item)  # closed stays closed
            raise item
        return item

    async def expect(self, type_: str, timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
        """The first message of `type_` (with `fields`), skipping others."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.label}: no {type_} {fields} within {timeout} s; "
                                     f"got {self.received[-5:]}")  # fmt: skip
            try:
                msg = await self.next(left)
            except TimeoutError:
                continue
            except Closed as closed:
                raise AssertionError(f"{self.label}: closed with {closed.code} while waiting "
                                     f"for {type_} {fields}; got {self.received[-5:]}") from None
            if msg.get("type") == type_ and all(msg.get(k) == v for k, v in fields.items()):
                return msg

    async def error(self, code: str, timeout: float = 5.0) -> dict[str, Any]:
        msg = await self.expect("error", timeout)
        assert msg["code"] == code, f"{self.label}: expected error {code}, got {msg}"
        return msg

    async def closed(self, timeout: float = 10.0) -> int | None:
        """Read until the server closes; its close code."""
        deadline = time.monotonic() + max(0.5, timeout)
        while time.monotonic() < deadline:
            try:
                await self.next(max(0.01, deadline - time.monotonic()))
            except Closed as closed:
                return closed.code
            except TimeoutError:
                break
        raise AssertionError(f"{self.label}: not closed within {timeout} s; "
                             f"got {self.received[-5:]}")  # fmt: skip

    async def join(self, room: str, name: str) -> dict[str, Any]:
        await self.send({"type": "join", "version": 1, "room": room, "name": name,
                         "audio": True, "video": False})  # fmt: skip
        joined = await self.expect("joined")
        self.id = str(joined["self"]["id"])
        return joined

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()
        self._reader.cancel()


async def raw_text_frame(url: str, payload: bytes, timeout: float = 5.0) -> int | None:
    """Open /ws over a plain TCP socket, send one masked text frame holding `payload` (not
    necessarily UTF-8) and return the server's close code."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        key = "dGhlIHNhbXBsZSBub25jZQ=="
        writer.write((f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      f"Sec-WebSocket-Version: 13\r\n\r\n").encode())  # fmt: skip
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        assert head.startswith(b"HTTP/1.1 101"), head
        mask = os.urandom(4)
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        writer.write(bytes([0x81, 0x80 | len(payload)]) + mask + body)
        await writer.drain()
        while True:  # skip text frames until the close frame
            first = await asyncio.wait_for(reader.readexactly(2), timeout)
            size = first[1] & 0x7F
            if size == 126:
                size = int.from_bytes(await reader.readexactly(2), "big")
            elif size == 127:
                size = int.from_bytes(await reader.readexactly(8), "big")
            data = await asyncio.wait_for(reader.readexactly(size), timeout)
            if first[0] & 0x0F == 0x8:
                return int.from_bytes(data[:2], "big") if len(data) >= 2 else None
    finally:
        writer.close()


# -- what the browsers see -------------------------------------------------------------------


def _sources(member: Member) -> dict[str, RemoteSource]:
    """The member's live remote audio source per sender (a=msid agrees with `tracks`)."""
    out = {}
    for s in member.media():
        assert s.tracks_participant == s.participant, s
        if s.kind == "audio":
            out[s.participant] = s
    return out


def _frames(member: Member, sender: Member) -> int:
    return sum(s.frames for s in member.media() if s.participant == sender.id and
               s.kind == "video")  # fmt: skip


def _media_flows(a: Member, b: Member) -> dict[str, tuple[int, int]]:
    """a and b hear (packets and energy rising) and see (frames rising) each other."""
    pairs = ((a, b), (b, a))
    for member, sender in pairs:
        def receiving(m: Member = member, s: Member = sender) -> bool:
            audio = _sources(m).get(s.id)
            return audio is not None and audio.packets > 0 and _frames(m, s) > 0

        wait_for(receiving, timeout=25, message=f"{member.name} receiving media")
    first = {m.name: (_sources(m)[s.id], _frames(m, s)) for m, s in pairs}
    a.page.wait_for_timeout(1500)
    out = {}
    for member, sender in pairs:
        audio0, frames0 = first[member.name]
        audio1, frames1 = _sources(member)[sender.id], _frames(member, sender)
        assert audio1.packets > audio0.packets, f"{member.name}: audio stopped"
        assert audio1.audio_energy > audio0.audio_energy, f"{member.name}: silent audio"
        assert frames1 > frames0, f"{member.name}: video stopped"
        out[member.name] = (audio1.packets, frames1)
    return out


ROSTER_TYPES = ("participant-joined", "participant-left", "participant-updated", "chat",
                "muted", "kicked", "error")


def _roster_events(member: Member) -> list[dict[str, Any]]:
    return [m for m in member.messages() if m.get("type") in ROSTER_TYPES]


# -- the test --------------------------------------------------------------------------------


def test_bad_input_is_refused_and_nobody_else_notices(crowd: Any,
                                                      module_switchboard: Any) -> None:
    server = module_switchboard
    url = server.url
    loop = LoopThread()
    clients: list[Client] = []

    async def connect(label: str) -> Client:
        client = await Client.connect(url, label)
        clients.append(client)
        return client

    try:
        idle = loop.run(connect("idle (never joins)"))
        idle_since = time.monotonic()

        ada = crowd.join(BROWSER_ROOM, "Ada Lovelace")
        grace = crowd.join(BROWSER_ROOM, "Grace Hopper")
        _media_flows(ada, grace)
        for member in (ada, grace):
            expect(member.page.locator("#grid .tile")).to_have_count(2)
        events_before = {m.name: len(_roster_events(m)) for m in (ada, grace)}
        quiet = loop.run(connect("quiet room"))
        loop.run(quiet.join(QUIET_ROOM, "Quiet Observer"))
        health_before = server.api("GET", "/api/health")

        failures: list[str] = []
        cases = _cases(connect, ada, grace, url)
        for name, case in cases:
            started = time.monotonic()
            try:
                loop.run(case(), timeout=30)
            except (AssertionError, TimeoutError, aiohttp.ClientError) as exc:
                failures.append(f"{name}: {exc!r}")
            log.info("case %s: %.2f s", name, time.monotonic() - started)

        # The browsers noticed nothing: media flowing, the same roster, no messages.
        _media_flows(ada, grace)
        for member in (ada, grace):
            expect(member.page.locator("#grid .tile")).to_have_count(2)
            assert len(_roster_events(member)) == events_before[member.name], \
                f"{member.name} got {_roster_events(member)[events_before[member.name]:]}"
            assert member.browser.errors(member.page) == []
        people = server.api("GET", f"/api/rooms/{BROWSER_ROOM}/participants")
        assert {p["id"] for p in people} == {ada.id, grace.id}, people
        assert not any(p["muted"] for p in people), people
        # The quiet room neither: only harmless messages, and it still answers.
        loop.run(quiet.send({"type": "ping", "id": "still-there"}))
        loop.run(quiet.expect("pong", id="still-there"))
        noisy = [m for m in quiet.received[1:] if m.get("type") not in HARMLESS]
        assert not noisy, f"the quiet room got {noisy}"
        assert server.api("GET", "/api/health") == health_before

        # No join within 30 s: close 1008 (the idle socket opened at the start).
        try:
            code: int | str | None = loop.run(
                idle.closed(JOIN_TIMEOUT - (time.monotonic() - idle_since) + 5),
                timeout=JOIN_TIMEOUT + 10)  # fmt: skip
        except AssertionError:
            code = "not closed"
        closed_after = (idle.closed_at or float("inf")) - idle_since
        if code != 1008 or not JOIN_TIMEOUT - 1 <= closed_after <= JOIN_TIMEOUT + 5:
            failures.append(f"a socket that never joins: {code} after {closed_after:.1f} s "
                            f"(expected close 1008 after {JOIN_TIMEOUT:g} s)")
        assert not failures, "\n".join(failures)
        log_text = server.log_path.read_text(errors="replace")
        assert not re.search(r"Traceback| ERROR ", log_text), server.log_tail(80)
    finally:
        for client in clients:
            try:
                loop.run(client.close(), timeout=10)
            except Exception:  # already closed by the server
                log.debug("closing %s", client.label, exc_info=True)
        loop.close()


def _cases(connect: Callable[[str], Awaitable[Client]], ada: Member, grace: Member,
           url: str) -> Sequence[tuple[str, Callable[[], Coroutine[Any, Any, None]]]]:
    """(name, coroutine function) per kind of bad input."""

    async def before_join() -> None:
        c = await connect("before join")
        await c.send({"type": "ping", "id": 7})
        await c.expect("pong", id=7)
        await c.send({"type": "chat", "text": "hello?"})
        assert (await c.error("not-joined"))["ref"] == "chat"
        await c.send({"type": "moderate", "action": "kick", "target": ada.id})
        await c.error("not-joined")
        await c.send({"type": "join", "version": 2, "room": BAD_ROOM, "name": "Future"})
        await c.error("unsupported-version")

    async def not_json() -> None:
        c = await connect("not json")
        for text in ("this is not json", "[1, 2, 3]", '"a string"', "{\"type\": \"ping\""):
            await c.send(text)
            await c.error("bad-json")
        await c.send({"type": "ping", "id": "ok"})  # the connection still works
        await c.expect("pong", id="ok")

    async def unknown_and_malformed() -> None:
        c = await connect("unknown types")
        await c.join(BAD_ROOM, "Mallory")
        await c.send({"type": "teleport", "to": "mars"})
        assert (await c.error("unknown-type"))["ref"] == "teleport"
        await c.send({"type": "ping"})  # accepted: the count of errors in a row starts again
        await c.expect("pong")
        for message, field in (({"type": "chat", "text": ""}, "text"),
                               ({"type": "chat", "text": "x" * 2001}, "text"),
                               ({"type": "hand", "raised": "yes"}, "raised"),
                               ({"type": "hand", "raised": True, "colour": "red"}, "colour"),
                               ({"type": "set-name", "name": "bad\u0007bell"}, "name"),
                               ({"type": "join", "version": 1, "room": BAD_ROOM, "name": "x",
                                 "audio": True, "video": True}, None)):  # fmt: skip
            await c.send(message)
            err = await c.expect("error")
            if field is None:
                assert err["code"] == "already-joined", err
            else:
                assert err["code"] == "bad-message" and err["message"].startswith(field), err
        await c.send({"type": "answer", "sdp": "v=0\r\nnonsense", "revision": 1})
        assert (await c.expect("error"))["code"] in ("bad-sdp", "bad-message")
        await c.send({"type": "answer", "sdp": "v=0\r\n", "revision": 99})
        await c.error("bad-message")

    async def wrong_room_and_forbidden() -> None:
        mallory = await connect("wrong room (moderator of its own room)")
        await mallory.join(BAD_ROOM + "-2", "Mallory")
        await mallory.send({"type": "chat", "room": BROWSER_ROOM, "text": "hi from outside"})
        assert (await mallory.error("wrong-room"))["ref"] == "chat"
        await mallory.send({"type": "moderate", "room": BROWSER_ROOM, "action": "kick",
                            "target": ada.id})  # fmt: skip
        await mallory.error("wrong-room")
        await mallory.send({"type": "moderate", "action": "mute", "target": grace.id})
        await mallory.error("unknown-participant")
        await mallory.send({"type": "moderate", "action": "mute-all", "room": BROWSER_ROOM})
        await mallory.error("wrong-room")
        # Its own room, named in upper case, is its own room.
        await mallory.send({"type": "chat", "room": (BAD_ROOM + "-2").upper(), "text": "mine"})
        await mallory.expect("chat", text="mine")
        eve = await connect("a guest")
        await eve.join(BAD_ROOM + "-2", "Eve")
        await eve.send({"type": "moderate", "action": "kick", "target": mallory.id})
        await eve.error("forbidden")
        await eve.send({"type": "moderate", "action": "unmute", "target": mallory.id})
        assert (await eve.error("bad-message"))["message"].startswith("action")

    async def oversized() -> None:
        c = await connect("oversized")
        await c.join(BAD_ROOM, "Big Mouth")
        await c.send({"type": "chat", "text": "x" * (70 * 1024)})
        code = await c.closed()
        assert code == 1009, f"closed with {code}"

    async def binary() -> None:
        c = await connect("binary")
        await c.join(BAD_ROOM, "Bits")
        await c.ws.send_bytes(b"\x00\x01binary")
        code = await c.closed()
        assert code == 1003, f"closed with {code}"

    async def not_utf8() -> None:
        code = await raw_text_frame(url, b'{"type": "ping", "id": "\xff\xfe"}')
        assert code == 1007, f"closed with {code}"

    async def ten_errors() -> None:
        c = await connect("ten errors")
        for _ in range(10):
            await c.send("garbage")
        code = await c.closed()
        errors = [m for m in c.received if m.get("type") == "error"]
        assert code == 4002 and len(errors) == 10, f"closed with {code} after {errors}"

    async def room_flood() -> None:
        spammer = await connect("chat spammer")
        await spammer.join(BAD_ROOM + "-3", "Spammer")
        listener = await connect("chat listener")
        await listener.join(BAD_ROOM + "-3", "Listener")
        for i in range(40):
            await spammer.send({"type": "chat", "text": f"spam {i}"})
        limited = await spammer.error("rate-limited")
        assert limited["ref"] == "chat", limited
        await asyncio.sleep(1.0)
        await listener.send({"type": "ping", "id": "end"})
        await listener.expect("pong", id="end")
        got = [m for m in listener.received if m.get("type") == "chat"]
        assert 20 <= len(got) <= 26, f"the listener got {len(got)} of 40 chats (burst 20)"

    async def flood() -> None:
        c = await connect("flooder")
        await c.join(BAD_ROOM + "-4", "Flooder")
        started = time.monotonic()
        try:
            for i in range(1200):
                await c.send({"type": "ping", "id": i})
        except ConnectionError:  # closed under our feet: fine, the code says why
            pass
        code = await c.closed(10)
        errors = [m for m in c.received if m.get("type") == "error"]
        assert errors and all(e["code"] == "rate-limited" for e in errors), errors[:3]
        assert len(errors) <= 1 + int(time.monotonic() - started), \
            f"{len(errors)} rate-limited errors: more than one a second"
        pongs = sum(1 for m in c.received if m.get("type") == "pong")
        assert code == 4008, f"closed with {code} after {time.monotonic() - started:.1f} s"
        assert pongs < 200, f"{pongs} pings answered in a flood (burst 100)"

    return [("before join", before_join), ("not json", not_json),
            ("unknown and malformed", unknown_and_malformed),
            ("wrong room and forbidden", wrong_room_and_forbidden), ("oversized", oversized),
            ("binary", binary), ("not UTF-8", not_utf8), ("ten errors", ten_errors),
            ("room flood", room_flood), ("flood", flood)]  # fmt: skip
