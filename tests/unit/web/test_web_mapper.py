"""The Jitsi-compatible conference mapper and phone-number list."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from dialplan.store import Store
from dialplan.throttle import PinThrottle
from web.app import create_app

TOKEN = "s3cret-admin-token-0123456789"
Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]

FOUND = "Successfully retrieved conference mapping"
MISSING = "No conference mapping was found"


class NoFocus:
    def participants(self, room: str) -> list[Any]:
        return []

    def stats(self) -> dict[str, int]:
        return {}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store() -> Iterator[Store]:
    s = Store(":memory:")
    s.create_room("standup", "48213077")
    yield s
    s.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def client(aiohttp_client: MakeClient, store: Store, clock: Clock) -> Client:
    app = create_app(
        store, NoFocus(), admin_token=TOKEN, mapper_domain="conference.meet.example.com",
        clock=clock, lookup_throttle=PinThrottle(failures=3, window=60.0, block=100.0),
    )  # fmt: skip
    return await aiohttp_client(app)


async def get(client: Client, path: str, **params: str) -> tuple[int, Any]:
    resp = await client.get(path, params=params)
    assert resp.content_type == "application/json"
    return resp.status, await resp.json()


@pytest.mark.parametrize(
    "conference",
    ["standup@conference.meet.example.com", "StandUp@conference.meet.example.com", "standup"],
)
async def test_mapper_by_conference(client: Client, conference: str) -> None:
    status, data = await get(client, "/api/conference-mapper", conference=conference,
                             url="https://meet.example.com/standup")  # fmt: skip
    assert status == 200
    assert data == {"message": FOUND, "id": 48213077, "conference": conference}
    assert isinstance(data["id"], int)


async def test_mapper_sends_cors_header(client: Client) -> None:
    resp = await client.get("/api/conference-mapper", params={"conference": "standup@x"})
    assert resp.headers["Access-Control-Allow-Origin"] == "*"


async def test_mapper_unknown_conference(client: Client) -> None:
    status, data = await get(client, "/api/conference-mapper", conference="nosuch@x.example")
    assert status == 404
    assert data == {"message": MISSING, "id": False, "conference": False}


@pytest.mark.parametrize("param", ["id", "cid"])
async def test_mapper_by_pin(client: Client, param: str) -> None:
    status, data = await get(client, "/api/conference-mapper", **{param: "48213077"})
    assert status == 200
    assert data == {"message": FOUND, "id": 48213077,
                    "conference": "standup@conference.meet.example.com"}  # fmt: skip


async def test_mapper_by_pin_without_domain(aiohttp_client: MakeClient, store: Store) -> None:
    client = await aiohttp_client(create_app(store, NoFocus(), admin_token=TOKEN))
    status, data = await get(client, "/api/conference-mapper", id="48213077")
    assert (status, data["conference"]) == (200, "standup")


async def test_mapper_unknown_pin(client: Client) -> None:
    status, data = await get(client, "/api/conference-mapper", id="11112222")
    assert status == 200
    assert data == {"message": MISSING, "id": 11112222, "conference": False}


@pytest.mark.parametrize("params", [{}, {"id": ""}, {"conference": " "}])
async def test_mapper_nothing_given(client: Client, params: dict[str, str]) -> None:
    status, data = await get(client, "/api/conference-mapper", **params)
    assert status == 400
    assert data == {"message": "No conference or id provided", "id": False, "conference": False}


@pytest.mark.parametrize("pin", ["12ab", "-5", "1" * 21, "\u0661\u0662\u0663\u0664"])
async def test_mapper_invalid_pin(client: Client, pin: str) -> None:
    status, data = await get(client, "/api/conference-mapper", id=pin)
    assert status == 400
    assert (data["id"], data["conference"]) == (False, False)


async def test_mapper_pin_guessing_is_throttled(client: Client, clock: Clock) -> None:
    for guess in ("11112222", "11112223", "11112224"):
        status, _ = await get(client, "/api/conference-mapper", id=guess)
        assert status == 200
    status, data = await get(client, "/api/conference-mapper", id="48213077")
    assert status == 429  # even the right PIN, while blocked
    assert data["conference"] is False
    clock.now += 100.0
    status, data = await get(client, "/api/conference-mapper", id="48213077")
    assert (status, data["conference"]) == (200, "standup@conference.meet.example.com")


async def test_phone_numbers_lists_pin_numbers_only(client: Client, store: Store) -> None:
    store.add_number("+15550100", "pin")
    store.add_number("+15550101", "room", "standup")
    store.add_number("+4930123456", "pin", toll_free=True)
    store.add_number("5550100", "pin")
    status, data = await get(client, "/api/phone-numbers", conference="standup@x")
    assert status == 200
    assert data == [
        {"countryCode": "US", "tollFree": False, "formattedNumber": "+1 555 0100",
         "default": True},
        {"countryCode": "DE", "tollFree": True, "formattedNumber": "+49 3012 3456",
         "default": False},
        {"countryCode": "", "tollFree": False, "formattedNumber": "5550100", "default": False},
    ]  # fmt: skip


async def test_phone_numbers_empty(client: Client) -> None:
    resp = await client.get("/api/phone-numbers")
    assert resp.status == 200
    assert await resp.json() == []
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
