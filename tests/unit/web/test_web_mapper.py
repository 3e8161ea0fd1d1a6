"""The Jitsi-compatible conference mapper and phone-number list."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from dialplan.store import Store
from dialplan.throttle import PinThrottle
from web.app import WebSettings, create_app

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


SETTINGS = WebSettings.build(public_urls=["https://meet.example.org"],
                             cors_origins=["https://jitsi.example.com:8443/"])  # fmt: skip


@pytest.fixture
async def client(aiohttp_client: MakeClient, store: Store, clock: Clock) -> Client:
    app = create_app(
        store, NoFocus(), admin_token=TOKEN, mapper_domain="conference.meet.example.com",
        clock=clock, lookup_throttle=PinThrottle(failures=3, window=60.0, block=100.0),
        settings=SETTINGS,
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


@pytest.mark.parametrize("path", ["/api/conference-mapper", "/api/phone-numbers"])
@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://meet.example.org", "https://meet.example.org"),  # a public URL
        ("https://jitsi.example.com:8443", "https://jitsi.example.com:8443"),  # cors_origins
        ("https://evil.example.net", None),
        ("https://meet.example.org.evil.example.net", None),
        ("http://meet.example.org", None),  # another scheme is another origin
        ("null", None),
        (None, None),
    ],
)
async def test_cors_echoes_only_configured_origins(
    client: Client, path: str, origin: str | None, allowed: str | None
) -> None:
    headers = {"Origin": origin} if origin is not None else {}
    resp = await client.get(path, params={"conference": "standup@x"}, headers=headers)
    assert resp.headers.get("Access-Control-Allow-Origin") == allowed
    assert resp.headers["Vary"] == "Origin"


async def test_no_wildcard_cors_by_default(aiohttp_client: MakeClient, store: Store) -> None:
    client = await aiohttp_client(create_app(store, NoFocus(), admin_token=TOKEN))
    resp = await client.get("/api/conference-mapper", params={"conference": "standup"},
                            headers={"Origin": "https://anywhere.example"})  # fmt: skip
    assert "Access-Control-Allow-Origin" not in resp.headers


async def test_mapper_lookups_are_rate_limited_per_address(
    aiohttp_client: MakeClient, store: Store, clock: Clock
) -> None:
    settings = WebSettings.build(mapper_lookups_per_minute=6)
    client = await aiohttp_client(create_app(store, NoFocus(), admin_token=TOKEN, clock=clock,
                                             settings=settings))  # fmt: skip
    statuses = []
    for i in range(10):  # by name and by PIN alike: names are enumerated as PINs are guessed
        params = {"conference": f"room{i}"} if i % 2 else {"id": "48213077"}
        resp = await client.get("/api/conference-mapper", params=params)
        statuses.append(resp.status)
    assert statuses[:6] == [200, 404] * 3
    assert statuses[6:] == [429] * 4
    assert resp.headers["Retry-After"] == "60"
    assert (await resp.json())["conference"] is False
    clock.now += 10.0  # six a minute: one more lookup after ten seconds
    status, data = await get(client, "/api/conference-mapper", conference="standup")
    assert (status, data["id"]) == (200, 48213077)
    status, _ = await get(client, "/api/conference-mapper", conference="standup")
    assert status == 429


async def test_mapper_by_name_can_be_turned_off(
    aiohttp_client: MakeClient, store: Store
) -> None:
    settings = WebSettings.build(mapper_by_name=False)
    client = await aiohttp_client(create_app(store, NoFocus(), admin_token=TOKEN,
                                             settings=settings))  # fmt: skip
    known = await get(client, "/api/conference-mapper", conference="standup")
    unknown = await get(client, "/api/conference-mapper", conference="nosuch")
    assert known == unknown == (404, {"message": MISSING, "id": False, "conference": False})
    status, data = await get(client, "/api/conference-mapper", id="48213077")
    assert (status, data["conference"]) == (200, "standup")  # by PIN: still answered


async def test_trusted_proxy_forwards_the_client_address(
    aiohttp_client: MakeClient, store: Store, clock: Clock
) -> None:
    """Behind a trusted proxy the limit is per client (the last X-Forwarded-For entry, the
    one the proxy added); a client cannot pick its own address by sending the header."""
    settings = WebSettings.build(mapper_lookups_per_minute=2, trusted_proxies=["127.0.0.1"])
    client = await aiohttp_client(create_app(store, NoFocus(), admin_token=TOKEN, clock=clock,
                                             settings=settings))  # fmt: skip

    async def status(forwarded: str) -> int:
        resp = await client.get("/api/conference-mapper", params={"id": "48213077"},
                                headers={"X-Forwarded-For": forwarded})  # fmt: skip
        return resp.status

    assert [await status("198.51.100.7") for _ in range(3)] == [200, 200, 429]
    assert await status("203.0.113.9") == 200  # another client behind the same proxy
    # a client's own X-Forwarded-For comes first; the proxy appends the real address
    assert await status("203.0.113.77, 198.51.100.7") == 429


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
