"""GET /ws over aiohttp's test client: limits, close codes, bad input, floods, wrong room,
and that one hostile client affects no other participant or room."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient

from bridge.api import (
    BridgeListener,
    DtlsFingerprint,
    EndpointAllocation,
    EndpointUpdate,
    ReceiveSource,
    TransportDescription,
)
from dialplan.store import Store
from focus import Focus
from focus.meeting import Meetings
from focus.rooms import StoreRooms
from focus.session import MeetingSettings
from web.app import WebSettings, create_app
from web.signaling import FloodGuard, SignalingSettings, TokenBucket, add_signaling_routes

TOKEN = "s3cret-admin-token-0123456789"
Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]
WS = aiohttp.ClientWebSocketResponse


class MiniBridge:
    """Enough of a BridgeSession for the socket tests; `fail_update` makes answers fail."""

    def __init__(self) -> None:
        self.expired: list[str] = []
        self.fail_update = False

    async def allocate(self, conference_id: str, endpoint_id: str) -> EndpointAllocation:
        transport = TransportDescription("uf12", "p" * 24, (DtlsFingerprint("sha-256", "AA"),),
                                         "actpass")  # fmt: skip
        return EndpointAllocation(conference_id, endpoint_id, transport, (), ())

    async def update(self, conference_id: str, endpoint_id: str, update: EndpointUpdate) -> None:
        if self.fail_update:
            raise RuntimeError("bridge bug")

    async def expire(self, conference_id: str, endpoint_id: str) -> None:
        self.expired.append(endpoint_id)

    async def receive_sources(
        self, conference_id: str, endpoint_id: str
    ) -> tuple[ReceiveSource, ...]:
        return ()

    def subscribe(self, listener: BridgeListener) -> Callable[[], None]:
        return lambda: None

    def stats(self) -> dict[str, int]:
        return {}


@pytest.fixture
def store() -> Iterator[Store]:
    s = Store(":memory:")
    s.create_room("standup")
    yield s
    s.close()


class Setup:
    def __init__(self, store: Store, create_rooms: bool = True,
                 meeting: dict[str, Any] | None = None, web_settings: WebSettings | None = None,
                 **signaling: Any) -> None:  # fmt: skip
        self.focus = Focus()
        self.bridge = MiniBridge()
        self.meetings = Meetings(self.focus, self.bridge, StoreRooms(store),
                                 MeetingSettings(create_rooms=create_rooms,
                                                 renegotiate_delay=0.01,
                                                 **(meeting or {})))  # fmt: skip
        self.app = create_app(store, self.focus, admin_token=TOKEN, settings=web_settings)
        add_signaling_routes(self.app, self.meetings, SignalingSettings(**signaling))


async def start(aiohttp_client: MakeClient, store: Store, **kwargs: Any) -> tuple[Setup, Client]:
    setup = Setup(store, **kwargs)
    return setup, await aiohttp_client(setup.app)


async def receive(ws: WS, kind: str, timeout: float = 2.0) -> dict[str, Any]:
    """The next message of type `kind` (earlier ones of other types are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        msg = await ws.receive(timeout=max(0.01, deadline - time.monotonic()))
        assert msg.type is WSMsgType.TEXT, f"expected {kind}, got {msg.type} {msg.data}"
        data: dict[str, Any] = json.loads(msg.data)
        if data["type"] == kind:
            return data


async def closed_with(ws: WS, timeout: float = 3.0) -> int | None:
    """Read until the server closes; the code in its close frame."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = await ws.receive(timeout=max(0.01, deadline - time.monotonic()))
        if msg.type is WSMsgType.CLOSE:
            return int(msg.data)
        if msg.type in (WSMsgType.CLOSED, WSMsgType.CLOSING, WSMsgType.ERROR):
            return ws.close_code
    raise AssertionError("the server did not close")


async def join(client: Client, name: str, room: str = "standup") -> tuple[WS, str]:
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "join", "version": 1, "room": room, "name": name,
                        "audio": True, "video": False})  # fmt: skip
    joined = await receive(ws, "joined")
    await receive(ws, "offer")
    return ws, joined["self"]["id"]


# -- the sans-I/O pieces ---------------------------------------------------------------------


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=10, burst=5, now=0.0)
    assert [bucket.take(0.0) for _ in range(6)] == [True] * 5 + [False]
    assert bucket.take(0.1) and not bucket.take(0.1)  # one token per 100 ms
    assert sum(bucket.take(100.0) for _ in range(10)) == 5  # never more than the burst


def test_flood_guard_reports_once_a_second_then_closes() -> None:
    settings = SignalingSettings(rate=10, burst=10, flood_close_after=5.0,
                                 flood_close_count=10_000)  # fmt: skip
    guard = FloodGuard(settings, 0.0)
    assert [guard.check(0.0) for _ in range(11)] == ["ok"] * 10 + ["drop-report"]
    assert guard.check(0.05) == "drop"
    assert guard.check(0.15) == "ok"  # tokens trickle back in
    assert guard.check(0.15) == "drop"  # ... but the flood goes on, reported once a second
    assert [guard.check(1.1) for _ in range(11)] == ["ok"] * 10 + ["drop-report"]
    # 50 messages a second against a rate of 10: closed 5 s after the flood began
    verdicts = [(1.1 + i * 0.02, guard.check(1.1 + i * 0.02)) for i in range(1, 400)]
    first_close = next(t for t, v in verdicts if v == "close")
    assert 5.0 <= first_close <= 5.12  # the flood began at 0.0
    assert {v for t, v in verdicts if t < 4.9} == {"ok", "drop", "drop-report"}
    # a quiet second ends a flood: the next one starts its own clock
    guard = FloodGuard(settings, 0.0)
    for t in (0.0, 2.0, 4.0, 6.0):
        assert [guard.check(t) for _ in range(11)][-1] == "drop-report"
        assert guard.check(t + 0.5) != "close"
    counted = FloodGuard(SignalingSettings(rate=1, burst=1, flood_close_count=3), 0.0)
    assert [counted.check(0.0) for _ in range(4)] == ["ok", "drop-report", "drop", "close"]


# -- joining and the happy path --------------------------------------------------------------


async def test_join_ping_and_leave(aiohttp_client: MakeClient, store: Store) -> None:
    _setup, client = await start(aiohttp_client, store)
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "ping", "id": "before"})
    assert await receive(ws, "pong") == {"type": "pong", "id": "before"}
    await ws.send_json({"type": "chat", "text": "too early"})
    error = await receive(ws, "error")
    assert (error["code"], error["ref"]) == ("not-joined", "chat")
    await ws.send_json({"type": "join", "version": 1, "room": "StandUp", "name": "Ada",
                        "audio": True, "video": False})  # fmt: skip
    joined = await receive(ws, "joined")
    assert joined["room"] == "standup" and joined["dial_in"]["pin"]
    offer = await receive(ws, "offer")
    assert offer["revision"] == 1 and offer["sdp"].startswith("v=0")
    other, other_id = await join(client, "Bob")
    assert (await receive(ws, "participant-joined"))["participant"]["id"] == other_id
    await ws.send_json({"type": "leave"})
    assert await closed_with(ws) == 1000
    left = await receive(other, "participant-left")
    assert left["id"] == joined["self"]["id"] and left["reason"] == "left"
    await other.close()


async def test_participants_api_lists_browsers(aiohttp_client: MakeClient, store: Store) -> None:
    _setup, client = await start(aiohttp_client, store)
    ws, pid = await join(client, "Ada")
    resp = await client.get("/api/rooms/standup/participants",
                            headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
    assert resp.status == 200
    assert await resp.json() == [{"id": pid, "kind": "browser", "name": "Ada", "muted": False}]
    await ws.close()


async def test_unknown_room_without_creation_closes_4004(
    aiohttp_client: MakeClient, store: Store
) -> None:
    setup, client = await start(aiohttp_client, store, create_rooms=False)
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "join", "version": 1, "room": "nowhere", "name": "A",
                        "audio": False, "video": False})  # fmt: skip
    assert (await receive(ws, "error"))["code"] == "room-not-found"
    assert await closed_with(ws) == 4004
    assert setup.focus.stats()["participants"] == 0


async def test_client_that_never_joins_is_closed(aiohttp_client: MakeClient, store: Store) -> None:
    _setup, client = await start(aiohttp_client, store, join_timeout=0.3)
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "ping"})  # pings do not keep it open
    started = time.monotonic()
    assert await closed_with(ws) == 1008
    assert time.monotonic() - started < 2.0


# -- bad input -------------------------------------------------------------------------------


async def test_bad_json_unknown_type_and_ten_errors_close_4002(
    aiohttp_client: MakeClient, store: Store
) -> None:
    setup, client = await start(aiohttp_client, store)
    ws, _pid = await join(client, "Mallory")
    await ws.send_str("not json")
    assert (await receive(ws, "error"))["code"] == "bad-json"
    await ws.send_json({"type": "teleport"})
    error = await receive(ws, "error")
    assert (error["code"], error["ref"]) == ("unknown-type", "teleport")
    await ws.send_json({"type": "chat", "text": 5})
    error = await receive(ws, "error")
    assert error["code"] == "bad-message" and error["message"].startswith("text")
    await ws.send_json({"type": "ping", "id": 1})  # a good message resets the count
    await receive(ws, "pong")
    for _ in range(9):
        await ws.send_str("[]")
        await receive(ws, "error")
    await ws.send_json({"type": "ping", "id": 2})
    await receive(ws, "pong")
    for _ in range(10):
        await ws.send_str("{")
    assert await closed_with(ws) == 4002
    await asyncio.sleep(0.05)
    assert setup.focus.stats()["participants"] == 0


async def test_oversized_message_closes_1009(aiohttp_client: MakeClient, store: Store) -> None:
    setup, client = await start(aiohttp_client, store)
    ws, _pid = await join(client, "Big")
    await ws.send_str(json.dumps({"type": "chat", "text": "x" * 70_000}))
    assert await closed_with(ws) == 1009
    await asyncio.sleep(0.05)
    assert setup.focus.stats()["participants"] == 0


async def test_binary_frame_closes_1003(aiohttp_client: MakeClient, store: Store) -> None:
    _setup, client = await start(aiohttp_client, store)
    ws, _pid = await join(client, "Bin")
    await ws.send_bytes(b'{"type": "ping"}')
    assert await closed_with(ws) == 1003


async def test_wrong_room_is_refused_and_not_acted_on(
    aiohttp_client: MakeClient, store: Store
) -> None:
    _setup, client = await start(aiohttp_client, store)
    ws, _pid = await join(client, "A")
    other, _ = await join(client, "X", room="other")
    await ws.send_json({"type": "chat", "text": "psst", "room": "other"})
    error = await receive(ws, "error")
    assert (error["code"], error["ref"]) == ("wrong-room", "chat")
    await other.send_json({"type": "ping", "id": "x"})
    assert (await receive(other, "pong"))["id"] == "x"  # no chat arrived before the pong
    await ws.close()
    await other.close()


async def test_a_flood_is_limited_then_closed_and_nobody_else_notices(
    aiohttp_client: MakeClient, store: Store
) -> None:
    setup, client = await start(aiohttp_client, store, rate=20, burst=20, flood_close_count=200)
    victim, victim_id = await join(client, "Victim")
    bystander, _ = await join(client, "Elsewhere", room="other")
    flooder, flooder_id = await join(client, "Flooder")
    for i in range(300):
        await flooder.send_json({"type": "chat", "text": f"spam {i}"})
    error = await receive(flooder, "error")
    assert error["code"] == "rate-limited"
    assert await closed_with(flooder) == 4008
    left = await receive(victim, "participant-left")
    assert left["id"] == flooder_id
    # the victim got at most the burst of chat, and still works; the other room saw nothing
    await victim.send_json({"type": "ping", "id": "ok"})
    assert (await receive(victim, "pong"))["id"] == "ok"
    await bystander.send_json({"type": "ping", "id": "ok"})
    msg = await bystander.receive(timeout=2)
    assert json.loads(msg.data) == {"type": "pong", "id": "ok"}
    assert [p.id for p in setup.focus.participants("standup")] == [victim_id]
    await victim.close()
    await bystander.close()


async def test_room_messages_have_their_own_limit(aiohttp_client: MakeClient, store: Store) -> None:
    _setup, client = await start(aiohttp_client, store, room_burst=3, room_rate=0.01)
    spammer, _ = await join(client, "Spammer")
    reader, _ = await join(client, "Reader")
    for i in range(6):
        await spammer.send_json({"type": "chat", "text": f"spam {i}"})
    error = await receive(spammer, "error")
    assert (error["code"], error["ref"]) == ("rate-limited", "chat")
    await spammer.send_json({"type": "ping", "id": "still-ok"})  # other messages still pass
    assert (await receive(spammer, "pong"))["id"] == "still-ok"
    await reader.send_json({"type": "ping", "id": "end"})
    texts = []
    while True:
        msg = json.loads((await reader.receive(timeout=2)).data)
        if msg["type"] == "pong":
            break
        if msg["type"] == "chat":
            texts.append(msg["text"])
    assert texts == ["spam 0", "spam 1", "spam 2"]
    await spammer.close()
    await reader.close()


async def test_a_server_error_is_an_error_message_not_a_crash(
    aiohttp_client: MakeClient, store: Store
) -> None:
    setup, client = await start(aiohttp_client, store)
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "join", "version": 1, "room": "standup", "name": "A",
                        "audio": True, "video": False})  # fmt: skip
    offer = await receive(ws, "offer")
    setup.bridge.fail_update = True
    answer = _answer(offer["sdp"])
    await ws.send_json({"type": "answer", "sdp": answer, "revision": 1})
    error = await receive(ws, "error")
    assert (error["code"], error["ref"]) == ("internal", "answer")
    await ws.send_json({"type": "ping", "id": 3})
    assert (await receive(ws, "pong"))["id"] == 3
    await ws.close()


def _answer(offer: str) -> str:
    mids = [line.split(":", 1)[1] for line in offer.split("\r\n") if line.startswith("a=mid:")]
    kinds = [line[2:7] for line in offer.split("\r\n") if line.startswith("m=")]
    lines = ["v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0",
             "a=group:BUNDLE " + " ".join(mids)]  # fmt: skip
    for mid, kind in zip(mids, kinds, strict=True):
        lines += [f"m={kind} 9 UDP/TLS/RTP/SAVPF 111", "a=ice-ufrag:abcd",
                  "a=ice-pwd:" + "q" * 24, "a=fingerprint:sha-256 " + ":".join(["AA"] * 32),
                  "a=setup:active", f"a=mid:{mid}", "a=inactive"]  # fmt: skip
    return "\r\n".join(lines) + "\r\n"


# -- leaving in every way ----------------------------------------------------------------------


async def test_abrupt_disconnect_is_seen_by_the_others_quickly(
    aiohttp_client: MakeClient, store: Store
) -> None:
    setup, client = await start(aiohttp_client, store)
    stays, _ = await join(client, "Stays")
    goes, goes_id = await join(client, "Goes")
    started = time.monotonic()
    await goes.close()
    left = await receive(stays, "participant-left")
    assert left["id"] == goes_id and time.monotonic() - started < 2.0
    await asyncio.sleep(0.05)
    assert goes_id in setup.bridge.expired
    await stays.close()


async def test_kick_over_the_socket(aiohttp_client: MakeClient, store: Store) -> None:
    _setup, client = await start(aiohttp_client, store)
    mod, mod_id = await join(client, "Mod")
    guest, guest_id = await join(client, "Guest")
    await guest.send_json({"type": "moderate", "action": "kick", "target": mod_id})
    assert (await receive(guest, "error"))["code"] == "forbidden"
    await mod.send_json({"type": "moderate", "action": "kick", "target": guest_id})
    assert (await receive(guest, "kicked"))["by"] == mod_id
    assert await closed_with(guest) == 4001
    left = await receive(mod, "participant-left")
    assert (left["id"], left["reason"]) == (guest_id, "kicked")
    await mod.close()


async def test_shutdown_closes_every_browser_1001(aiohttp_client: MakeClient, store: Store) -> None:
    setup, client = await start(aiohttp_client, store)
    a, a_id = await join(client, "A")
    b, b_id = await join(client, "B", room="other")
    await setup.app.shutdown()
    assert await closed_with(a) == 1001 and await closed_with(b) == 1001
    assert sorted(setup.bridge.expired) == sorted([a_id, b_id])


async def test_heartbeats_do_not_keep_a_silent_socket_open(
    aiohttp_client: MakeClient, store: Store
) -> None:
    """aiohttp restarts receive(timeout=) after every PONG: the join deadline must not."""
    _setup, client = await start(aiohttp_client, store, join_timeout=0.6, heartbeat=0.2)
    ws = await client.ws_connect("/ws", autoping=True)
    started = time.monotonic()
    assert await closed_with(ws) == 1008
    assert time.monotonic() - started < 2.0


# -- who may open a socket, and how often they may join ----------------------------------------


async def refused_status(client: Client, origin: str) -> int | None:
    """The HTTP status of a refused upgrade; None when the WebSocket opened."""
    try:
        ws = await client.ws_connect("/ws", origin=origin)
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status
    await ws.close()
    return None


async def test_a_foreign_origin_is_refused_before_the_upgrade(
    aiohttp_client: MakeClient, store: Store
) -> None:
    settings = WebSettings.build(public_urls=["https://meet.example.org"])
    _setup, client = await start(aiohttp_client, store, web_settings=settings)
    own = f"http://127.0.0.1:{client.port}"
    assert await refused_status(client, own) is None  # the page's own origin
    assert await refused_status(client, own.upper()) is None  # origins compare without case
    assert await refused_status(client, "https://meet.example.org") is None  # a public URL
    for foreign in ("https://evil.example.net", f"https://127.0.0.1:{client.port}",
                    f"http://127.0.0.1:{client.port + 1}", "http://meet.example.org",
                    "null", "not a url"):  # fmt: skip
        assert await refused_status(client, foreign) == 403, foreign
    ws = await client.ws_connect("/ws")  # no Origin: not a browser, allowed
    await ws.send_json({"type": "ping", "id": "x"})
    assert (await receive(ws, "pong"))["id"] == "x"
    await ws.close()


async def join_error(client: Client, room: str) -> tuple[str, int | None]:
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "join", "version": 1, "room": room, "name": "N",
                        "audio": False, "video": False})  # fmt: skip
    error = await receive(ws, "error")
    return error["code"], await closed_with(ws)


async def test_joins_per_address_are_rate_limited(aiohttp_client: MakeClient, store: Store) -> None:
    setup, client = await start(aiohttp_client, store, meeting={"joins_per_minute": 3})
    sockets = [(await join(client, f"P{i}"))[0] for i in range(3)]
    assert await join_error(client, "standup") == ("too-many-joins", 4029)
    assert len(setup.focus.participants("standup")) == 3
    for ws in sockets:
        await ws.close()


async def test_rooms_created_per_address_are_limited(
    aiohttp_client: MakeClient, store: Store
) -> None:
    _setup, client = await start(aiohttp_client, store, meeting={"rooms_per_hour": 2})
    for name in ("new-1", "new-2"):
        ws, _ = await join(client, "Maker", room=name)
        await ws.close()
    assert await join_error(client, "new-3") == ("too-many-rooms", 4029)
    assert store.room("new-3") is None
    ws, _ = await join(client, "Joiner", room="new-1")  # existing rooms are still open to it
    await ws.close()
    assert [r.name for r in store.rooms()] == ["new-1", "new-2", "standup"]


async def test_endpoints_per_address_are_capped_and_given_back(
    aiohttp_client: MakeClient, store: Store
) -> None:
    setup, client = await start(aiohttp_client, store,
                                meeting={"max_endpoints_per_source": 2})  # fmt: skip
    a, _ = await join(client, "A")
    b, _ = await join(client, "B", room="other")
    assert await join_error(client, "standup") == ("too-many-endpoints", 4029)
    assert setup.meetings.admission.endpoints("127.0.0.1") == 2
    await a.send_json({"type": "leave"})
    assert await closed_with(a) == 1000
    c, _ = await join(client, "C")  # A's endpoint was given back
    await b.close()  # an abrupt close gives it back too
    await c.close()
    deadline = time.monotonic() + 2
    while setup.meetings.admission.endpoints("127.0.0.1") and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert setup.meetings.admission.endpoints("127.0.0.1") == 0
