"""web/connections.py on real loopback sockets: the head deadline, the caps per source and
in all, and that every connection gives its count back however it ends."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from dialplan.limits import Networks
from web.connections import ConnectionGuard, ConnectionSettings, GuardedSite

ATTACKER = "127.0.0.2"


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hello")


async def ws_echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for msg in ws:
        await ws.send_str(msg.data)
    return ws


class Served:
    def __init__(self, guard: ConnectionGuard, port: int) -> None:
        self.guard = guard
        self.port = port

    async def open(self, source: str = "127.0.0.1") -> tuple[asyncio.StreamReader,
                                                             asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port, local_addr=(source, 0))

    async def until(self, predicate: object, timeout: float = 3.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():  # type: ignore[operator]
            assert time.monotonic() < deadline, "condition not met in time"
            await asyncio.sleep(0.01)


async def serve(settings: ConnectionSettings, keepalive: float = 15.0) -> tuple[
        web.AppRunner, Served]:  # fmt: skip
    app = web.Application()
    app.router.add_get("/", hello)
    app.router.add_get("/ws", ws_echo)
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=keepalive)
    await runner.setup()
    guard = ConnectionGuard(settings)
    site = GuardedSite(runner, "127.0.0.1", 0, guard)
    await site.start()
    return runner, Served(guard, site.port)


@pytest.fixture
async def served(request: pytest.FixtureRequest) -> AsyncIterator[Served]:
    settings = getattr(request, "param", ConnectionSettings(max_connections=8, max_per_source=3,
                                                            header_timeout=0.4))
    runner, s = await serve(settings)
    try:
        yield s
    finally:
        await runner.cleanup()
    assert s.guard.open == 0  # cleanup closed every connection and each gave its count back


async def read_all(reader: asyncio.StreamReader, timeout: float = 3.0) -> bytes:
    return await asyncio.wait_for(reader.read(), timeout)


async def get(port: int, source: str = "127.0.0.1") -> int:
    connector = aiohttp.TCPConnector(local_addr=(source, 0), force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session, \
            session.get(f"http://127.0.0.1:{port}/") as resp:  # fmt: skip
        return resp.status


async def test_a_slow_request_head_is_closed_after_the_deadline(served: Served) -> None:
    reader, writer = await served.open(ATTACKER)
    started = time.monotonic()
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
    for _ in range(3):
        await asyncio.sleep(0.1)
        writer.write(b"X-a: b\r\n")  # trickling: every byte keeps it busy, none completes it
    assert await read_all(reader) == b""  # closed, no answer
    assert 0.35 <= time.monotonic() - started < 2.0
    assert served.guard.header_timeouts == 1
    writer.close()
    await served.until(lambda: served.guard.open == 0)


async def test_a_complete_head_is_served_and_keep_alive_goes_on(served: Served) -> None:
    reader, writer = await served.open()
    for _ in range(2):  # two requests on one connection, the second after the deadline
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2.0)
        assert head.startswith(b"HTTP/1.1 200")
        assert await reader.readexactly(5) == b"hello"
        await asyncio.sleep(0.5)
    assert served.guard.header_timeouts == 0
    writer.close()


async def test_a_websocket_outlives_the_head_deadline_and_is_counted(served: Served) -> None:
    url = f"http://127.0.0.1:{served.port}/ws"
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        assert served.guard.open == 1
        await asyncio.sleep(0.6)
        await ws.send_str("still here")
        assert (await ws.receive(timeout=2)).data == "still here"
    await served.until(lambda: served.guard.open == 0)


async def test_one_address_is_capped_and_others_still_get_in(served: Served) -> None:
    idle = [await served.open(ATTACKER) for _ in range(3)]
    reader, writer = await served.open(ATTACKER)  # the fourth from that address
    assert (await read_all(reader)).startswith(b"HTTP/1.1 503")
    writer.close()
    assert served.guard.refused == 1
    assert await get(served.port) == 200  # another address is not affected
    idle[0][1].close()  # one closes: that address may open one more
    await served.until(lambda: served.guard.open == 2)
    assert await get(served.port, ATTACKER) == 200
    for _, w in idle[1:]:
        w.close()


TOTAL_4 = ConnectionSettings(max_connections=4, max_per_source=100, header_timeout=5.0)


@pytest.mark.parametrize("served", [TOTAL_4], indirect=True)
async def test_at_the_total_slow_heads_make_room_for_new_connections(served: Served) -> None:
    slow = []
    for i in range(4):  # from four addresses, each its head half sent
        reader, writer = await served.open(f"127.0.0.{10 + i}")
        writer.write(b"GET / HTTP/1.1\r\n")
        slow.append((reader, writer))
    await served.until(lambda: served.guard.open == 4)
    assert await get(served.port) == 200  # the oldest slow head was closed for it
    assert served.guard.evicted == 1
    assert await read_all(slow[0][0]) == b""
    for _, w in slow:
        w.close()


@pytest.mark.parametrize("served", [TOTAL_4], indirect=True)
async def test_at_the_total_with_every_head_complete_new_connections_get_503(
    served: Served
) -> None:
    async with aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{served.port}/ws"
        sockets = [await session.ws_connect(url) for _ in range(4)]
        reader, writer = await served.open("127.0.0.99")
        assert (await read_all(reader)).startswith(b"HTTP/1.1 503")
        writer.close()
        assert served.guard.evicted == 0
        for ws in sockets:
            await ws.close()
    await served.until(lambda: served.guard.open == 0)
    assert await get(served.port) == 200


@pytest.mark.parametrize(
    "served",
    [ConnectionSettings(max_connections=10, max_per_source=1, header_timeout=5.0,
                        trusted_proxies=Networks(["127.0.0.1"]))],
    indirect=True,
)
async def test_a_trusted_proxy_counts_only_in_all(served: Served) -> None:
    idle = [await served.open("127.0.0.1") for _ in range(3)]
    await served.until(lambda: served.guard.open == 3)
    assert await get(served.port) == 200
    for _, w in idle:
        w.close()


async def test_refused_and_timed_out_connections_do_not_leak_counts(served: Served) -> None:
    sockets = []
    for _ in range(20):  # far over the per-source cap, each left half-open
        s = socket.socket()
        s.bind((ATTACKER, 0))
        s.setblocking(False)
        await asyncio.get_running_loop().sock_connect(s, ("127.0.0.1", served.port))
        s.send(b"GET / HTTP/1.1\r\n")
        sockets.append(s)
    await served.until(lambda: served.guard.refused == 17)
    await served.until(lambda: served.guard.header_timeouts == 3)
    await served.until(lambda: served.guard.open == 0)
    for s in sockets:
        s.close()
    assert await get(served.port, ATTACKER) == 200
