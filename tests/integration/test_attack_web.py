"""Attacks on the web edge of the real server (issue 13, items 4 and 6), as an attacker runs
them, each asserting on what a genuine user gets:

- slow request heads (slowloris) from one address, and 1,010 of them from many addresses at
  a 1,024 open-file limit (systemd's default): health checks, the meeting page and joins
  still work, and the slow connections are closed;
- many idle WebSockets from one address: refused beyond the cap, others still get in;
- a WebSocket from a foreign Origin: 403; the page's own origin works;
- a flood of joins to new room names from one address: at most `meetings.rooms_per_hour`
  rooms made, joins refused past `meetings.joins_per_minute`, endpoints capped per address;
- the conference mapper: throttled (429), no wildcard CORS, no PIN by name when
  `meetings.mapper_by_name` is false.

The attackers send from 127.0.0.2 and up (Linux routes all of 127/8 to lo); genuine users
from 127.0.0.1. Every loop is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import SwitchboardServer, server_command

pytestmark = pytest.mark.integration

ServerFactory = Callable[..., SwitchboardServer]
SLOW_HEAD = b"GET /standup HTTP/1.1\r\nHost: 127.0.0.1\r\n"


# --- clients -------------------------------------------------------------------------------


def session(source: str = "127.0.0.1") -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(local_addr=(source, 0), force_close=True)
    return aiohttp.ClientSession(connector=connector, trust_env=False,
                                 timeout=aiohttp.ClientTimeout(total=10))


async def join(server: SwitchboardServer, room: str, *, source: str = "127.0.0.1",
               origin: str | None = None, leave: bool = True) -> dict[str, Any]:
    """Open /ws from `source` and join `room`: the first `joined` or `error` message (with
    the close code after an error), or {"type": "http", "status": N} for a refused upgrade."""
    headers = {"Origin": origin} if origin else {}
    async with session(source) as s:
        try:
            ws = await s.ws_connect(server.base_url + "/ws", headers=headers)
        except aiohttp.WSServerHandshakeError as exc:
            return {"type": "http", "status": exc.status}
        await ws.send_json({"type": "join", "version": 1, "room": room, "name": "Genuine",
                            "audio": False, "video": False})  # fmt: skip
        while True:
            msg = await ws.receive(timeout=10)
            if msg.type is not aiohttp.WSMsgType.TEXT:
                return {"type": "closed", "code": ws.close_code}
            data: dict[str, Any] = json.loads(msg.data)
            if data["type"] == "error":
                await ws.receive(timeout=5)  # the close frame
                data["close"] = ws.close_code
                return data
            if data["type"] == "joined":
                if leave:
                    await ws.send_json({"type": "leave"})
                    with contextlib.suppress(TimeoutError):
                        await ws.receive(timeout=5)
                await ws.close()
                return data


async def genuine_user(server: SwitchboardServer) -> list[str]:
    """What a person does: the health check, the meeting page, a join. Failures, described."""
    failures = []
    async with session() as s:
        async with s.get(server.base_url + "/api/health") as resp:
            if resp.status != 200:
                failures.append(f"/api/health: {resp.status}")
        async with s.get(server.base_url + "/standup") as resp:
            if resp.status != 200 or "<html" not in (await resp.text()).lower():
                failures.append(f"/standup: {resp.status}")
    joined = await join(server, "standup", origin=server.base_url)
    if joined["type"] != "joined":
        failures.append(f"join: {joined}")
    return failures


class SlowLoris:
    """Connections that send a request head a line at a time and never finish it. Each has a
    reader task from the start, so what the server sends is kept even if a later write of
    ours meets a reset."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.writers: list[asyncio.StreamWriter] = []
        self.readers: list[asyncio.Task[tuple[bytes, float]]] = []
        self.failed = 0  # could not even connect

    async def open(self, sources: Sequence[str], per_source: int) -> None:
        for source in sources:
            for _ in range(per_source):
                try:
                    reader, writer = await asyncio.open_connection(
                        "127.0.0.1", self.port, local_addr=(source, 0))
                except OSError:
                    self.failed += 1
                    continue
                writer.write(SLOW_HEAD)
                self.writers.append(writer)
                self.readers.append(asyncio.create_task(self._collect(reader)))

    @staticmethod
    async def _collect(reader: asyncio.StreamReader) -> tuple[bytes, float]:
        """Everything the server sent, and seconds from open to the end of the connection."""
        opened, data = time.monotonic(), b""
        with contextlib.suppress(OSError):
            while chunk := await reader.read(4096):
                data += chunk
        return data, time.monotonic() - opened

    async def trickle(self, seconds: float) -> None:
        """One more header line on every connection still open, every half second."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for writer in self.writers:
                if not writer.is_closing():
                    with contextlib.suppress(OSError):
                        writer.write(b"X-Slow: 1\r\n")
            await asyncio.sleep(0.5)

    async def outcomes(self, timeout: float) -> list[tuple[bytes, float]]:
        done, _pending = await asyncio.wait(self.readers, timeout=timeout)
        return [t.result() if t in done else (b"<still open>", timeout) for t in self.readers]

    def close(self) -> None:
        for writer in self.writers:
            writer.close()
        for task in self.readers:
            task.cancel()


# --- slow request heads --------------------------------------------------------------------


def test_slow_headers_from_one_address(switchboard_server: ServerFactory) -> None:
    server = switchboard_server({"http": {"header_timeout": 5.0}})
    server.api("POST", "/api/rooms", {"name": "standup"})

    async def attack() -> None:
        loris = SlowLoris(server.http_port)
        try:
            await loris.open(["127.0.0.2"], 320)
            trickling = asyncio.create_task(loris.trickle(12.0))
            assert await genuine_user(server) == []  # while 320 slow heads are pending
            results = await loris.outcomes(timeout=15.0)
            trickling.cancel()
        finally:
            loris.close()
        # Beyond http.max_connections_per_source: 503 and closed at once (a client that has
        # sent its request already may see the reset before the 503).
        refused = [data for data, t in results if t < 1.0]
        assert len(refused) == 320 - 64
        assert all(d == b"" or d.startswith(b"HTTP/1.1 503") for d in refused)
        assert any(d.startswith(b"HTTP/1.1 503") for d in refused)
        # The 64 admitted: closed after the head deadline, without an answer.
        timed_out = [(data, t) for data, t in results if t >= 1.0]
        assert all(d == b"" and 4.5 <= t <= 10.0 for d, t in timed_out), timed_out
        assert await genuine_user(server) == []

    asyncio.run(asyncio.wait_for(attack(), 45))
    stats = server.api("GET", "/api/stats").json()
    assert stats["http_header_timeouts"] == 64 and stats["http_refused"] >= 256
    log = server.log_text()
    assert "no complete request head within 5 s" in log and "127.0.0.2" in log
    assert "Traceback" not in log


def test_slow_headers_at_a_1024_open_file_limit(switchboard_server: ServerFactory) -> None:
    """The reported outage: 1,010 slow connections at systemd's default limit of 1,024 open
    files broke every call, join and health check. Here the hard limit is 1,024 too, so the
    server cannot raise it: half of it (512) is for HTTP, and slow heads make room for
    genuine users."""

    def limited(config: Path) -> list[str]:
        return ["prlimit", "--nofile=1024:1024", "--", *server_command(config)]

    server = switchboard_server({"http": {"header_timeout": 30.0}}, command=limited)
    server.api("POST", "/api/rooms", {"name": "standup"})
    sources = [f"127.0.0.{i}" for i in range(2, 18)]  # 16 addresses, 63 each, under the cap

    async def attack() -> None:
        loris = SlowLoris(server.http_port)
        try:
            await loris.open(sources, 63)
            await loris.open(["127.0.0.18"], 2)  # 1,010 in all
            assert len(loris.writers) == 1010 and loris.failed == 0
            trickling = asyncio.create_task(loris.trickle(30.0))
            for _ in range(3):
                assert await genuine_user(server) == []
            trickling.cancel()
        finally:
            loris.close()

    asyncio.run(asyncio.wait_for(attack(), 50))
    assert server.running()
    log = server.log_text()
    assert "open files: limit 1024" in log
    assert "at most 512 connections" in log
    assert "to make room" in log
    stats = server.api("GET", "/api/stats").json()
    assert stats["http_evicted"] >= 1010 - 512


# --- idle WebSockets -----------------------------------------------------------------------


def test_many_idle_websockets_from_one_address(switchboard_server: ServerFactory) -> None:
    server = switchboard_server()
    server.api("POST", "/api/rooms", {"name": "standup"})

    async def attack() -> None:
        async with session("127.0.0.3") as s:
            opened: list[aiohttp.ClientWebSocketResponse] = []
            refused: list[int | str] = []
            for _ in range(80):
                try:
                    opened.append(await s.ws_connect(server.base_url + "/ws"))
                except aiohttp.WSServerHandshakeError as exc:
                    refused.append(exc.status)
                except aiohttp.ClientError:  # the reset came before the 503
                    refused.append("reset")
            assert len(opened) == 64 and len(refused) == 16
            assert set(refused) <= {503, "reset"} and 503 in refused
            assert await genuine_user(server) == []
            other = await join(server, "standup", source="127.0.0.4")
            assert other["type"] == "joined"
            for ws in opened:
                await ws.close()

    asyncio.run(asyncio.wait_for(attack(), 45))
    assert "open from this address (http.max_connections_per_source)" in server.log_text()


# --- Origin --------------------------------------------------------------------------------


def test_websocket_from_a_foreign_origin_is_refused(switchboard_server: ServerFactory) -> None:
    server = switchboard_server({"http": {"public_urls": ["https://meet.example.org"]}})
    server.api("POST", "/api/rooms", {"name": "standup"})

    async def attempts() -> list[dict[str, Any]]:
        return [
            await join(server, "standup", origin="https://evil.example.net"),
            await join(server, "standup", origin="null"),
            await join(server, "standup", origin=server.base_url),
            await join(server, "standup", origin="https://meet.example.org"),
        ]

    foreign, null, own, public = asyncio.run(asyncio.wait_for(attempts(), 30))
    assert foreign == {"type": "http", "status": 403}
    assert null == {"type": "http", "status": 403}
    assert own["type"] == "joined" and public["type"] == "joined"
    assert server.api("GET", "/api/rooms/standup/participants").json() == []
    log = server.log_text()
    assert "refused (403): Origin 'https://evil.example.net'" in log


# --- joins and rooms -----------------------------------------------------------------------


def test_room_creation_and_join_floods_are_limited(switchboard_server: ServerFactory) -> None:
    server = switchboard_server()
    before = len(server.api("GET", "/api/rooms").json())

    async def flood() -> list[dict[str, Any]]:
        return [await join(server, f"flood-{i}", source="127.0.0.5") for i in range(100)]

    started = time.monotonic()
    results = asyncio.run(asyncio.wait_for(flood(), 50))
    elapsed = time.monotonic() - started
    joined = [r for r in results if r["type"] == "joined"]
    codes = [r.get("code") for r in results if r["type"] == "error"]
    assert len(joined) == 20  # meetings.rooms_per_hour
    assert codes[:10] == ["too-many-rooms"] * 10  # the rest of the 30 joins a minute
    assert set(codes) == {"too-many-rooms", "too-many-joins"} and len(codes) == 80
    assert codes.count("too-many-joins") >= 70 - elapsed / 2 - 1  # one every 2 s comes back
    assert {r["close"] for r in results if r["type"] == "error"} == {4029}
    rooms = server.api("GET", "/api/rooms").json()
    assert len(rooms) == before + 20
    # another address is not affected, and makes its own room
    assert asyncio.run(join(server, "genuine-room"))["type"] == "joined"
    assert server.api("GET", "/api/rooms/genuine-room").status == 200
    assert "too-many-rooms" in server.log_text()


def test_endpoints_per_address_are_capped(switchboard_server: ServerFactory) -> None:
    server = switchboard_server()
    server.api("POST", "/api/rooms", {"name": "standup"})

    async def crowd() -> None:
        async with session("127.0.0.6") as s:
            sockets, refused = [], []
            for i in range(24):
                ws = await s.ws_connect(server.base_url + "/ws")
                await ws.send_json({"type": "join", "version": 1, "room": "standup",
                                    "name": f"Bot {i}", "audio": False, "video": False})
                while True:
                    data = json.loads((await ws.receive(timeout=10)).data)
                    if data["type"] in ("joined", "error"):
                        break
                if data["type"] == "joined":
                    sockets.append(ws)
                else:
                    refused.append(data["code"])
                    await ws.close()
            assert len(sockets) == 20 and refused == ["too-many-endpoints"] * 4
            assert await genuine_user(server) == []
            for ws in sockets:
                await ws.close()

    asyncio.run(asyncio.wait_for(crowd(), 50))
    deadline = time.monotonic() + 10
    while server.api("GET", "/api/rooms/standup/participants").json():
        assert time.monotonic() < deadline, "the bots did not leave"
        time.sleep(0.2)
    # their endpoints were given back: the same address may join again
    assert asyncio.run(join(server, "standup", source="127.0.0.6"))["type"] == "joined"


# --- the conference mapper -----------------------------------------------------------------


async def lookups(server: SwitchboardServer, params: Sequence[dict[str, str]], *,
                  source: str = "127.0.0.7",
                  origin: str | None = None) -> list[tuple[int, dict[str, str], Any]]:
    out = []
    headers = {"Origin": origin} if origin else {}
    async with session(source) as s:
        for p in params:
            async with s.get(server.base_url + "/api/conference-mapper", params=p,
                             headers=headers) as resp:  # fmt: skip
                out.append((resp.status, dict(resp.headers), await resp.json()))
    return out


def test_the_mapper_is_throttled_and_sends_no_wildcard_cors(
    switchboard_server: ServerFactory,
) -> None:
    server = switchboard_server({"http": {"cors_origins": ["https://jitsi.example.com"]}})
    pin = server.api("POST", "/api/rooms", {"name": "standup"}).json()["pin"]
    names = [{"conference": f"guess{i}@conference.example.com"} for i in range(200)]
    started = time.monotonic()
    results = asyncio.run(lookups(server, names, origin="https://evil.example.net"))
    elapsed = time.monotonic() - started
    statuses = [status for status, _, _ in results]
    assert statuses[:60] == [404] * 60 and statuses[60] == 429  # the burst, then throttled
    assert set(statuses) == {404, 429}
    assert statuses.count(404) <= 60 + elapsed + 1  # one a second trickles back in
    assert all("Access-Control-Allow-Origin" not in h for _, h, _ in results)
    # a configured origin is echoed, never "*"; another address is not throttled
    ((status, headers, data),) = asyncio.run(lookups(
        server, [{"conference": "standup"}], source="127.0.0.8",
        origin="https://jitsi.example.com"))  # fmt: skip
    assert (status, data["id"]) == (200, int(pin))
    assert headers["Access-Control-Allow-Origin"] == "https://jitsi.example.com"
    assert headers["Vary"] == "Origin"
    assert "conference mapper: lookups from 127.0.0.7 refused" in server.log_text()


def test_the_mapper_by_name_can_be_off(switchboard_server: ServerFactory) -> None:
    server = switchboard_server({"meetings": {"mapper_by_name": False}})
    pin = server.api("POST", "/api/rooms", {"name": "standup"}).json()["pin"]
    results = asyncio.run(lookups(server, [{"conference": "standup@x"},
                                           {"conference": "nosuch@x"}, {"id": pin}]))
    (s1, _, known), (s2, _, unknown), (s3, _, by_pin) = results
    assert (s1, known) == (s2, unknown) == (404, {"message": "No conference mapping was found",
                                                  "id": False, "conference": False})
    assert (s3, by_pin["conference"]) == (200, "standup")
    # a participant still sees the PIN: it comes in `joined`
    joined = asyncio.run(join(server, "standup"))
    assert joined["dial_in"]["pin"] == pin
