"""The admin REST API over aiohttp's test client: auth, every endpoint, errors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from dialplan.store import Store
from web.app import create_app

TOKEN = "s3cret-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


@dataclass(frozen=True)
class FakeParticipant:
    id: str
    room: str
    kind: str
    name: str
    muted: bool


@dataclass
class FakeFocus:
    people: dict[str, list[FakeParticipant]] = field(default_factory=dict)

    def participants(self, room: str) -> list[FakeParticipant]:
        return list(self.people.get(room, []))

    def stats(self) -> dict[str, int]:
        return {
            "conferences": len(self.people),
            "participants": sum(map(len, self.people.values())),
        }


@dataclass
class Process:
    healthy: dict[str, bool] = field(default_factory=lambda: {"sip": True, "http": True})
    counts: dict[str, int] = field(default_factory=lambda: {"calls": 2})

    def health(self) -> Mapping[str, bool]:
        return self.healthy

    def stats(self) -> Mapping[str, int]:
        return self.counts


@pytest.fixture
def store() -> Iterator[Store]:
    s = Store(":memory:")
    yield s
    s.close()


@pytest.fixture
def focus() -> FakeFocus:
    return FakeFocus()


@pytest.fixture
def process() -> Process:
    return Process()


@pytest.fixture
async def client(
    aiohttp_client: MakeClient, store: Store, focus: FakeFocus, process: Process
) -> Client:
    app = create_app(store, focus, admin_token=TOKEN, health=process.health, stats=process.stats)
    return await aiohttp_client(app)


async def body(resp: Any) -> Any:
    assert resp.content_type == "application/json"
    return await resp.json()


# -- auth ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/rooms"), ("POST", "/api/rooms"), ("DELETE", "/api/rooms/x"),
     ("GET", "/api/rooms/x/participants"), ("GET", "/api/numbers"), ("POST", "/api/numbers"),
     ("DELETE", "/api/numbers/%2B1555"), ("GET", "/api/stats"), ("GET", "/api/nosuch"),
     ("POST", "/api/health")],
)  # fmt: skip
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token-wrong-token"}, {"Authorization": TOKEN},
     {"Authorization": f"Basic {TOKEN}"}, {"Authorization": "Bearer "},
     {"Authorization": f"Bearer {TOKEN}x"}],
)  # fmt: skip
async def test_private_endpoints_need_the_token(
    client: Client, method: str, path: str, headers: dict[str, str]
) -> None:
    resp = await client.request(method, path, headers=headers, data=b'{"name": "x"}')
    assert resp.status == 401
    assert (await body(resp)) == {"error": "admin token required"}
    assert resp.headers["WWW-Authenticate"] == "Bearer"


async def test_scheme_is_case_insensitive(client: Client) -> None:
    resp = await client.get("/api/rooms", headers={"Authorization": f"bearer {TOKEN}"})
    assert resp.status == 200


@pytest.mark.parametrize("path", ["/api/health", "/api/conference-mapper?id=1234",
                                  "/api/phone-numbers"])  # fmt: skip
async def test_public_endpoints_need_no_token(client: Client, path: str) -> None:
    resp = await client.get(path)
    assert resp.status == 200


def test_short_admin_token_is_refused(store: Store, focus: FakeFocus) -> None:
    with pytest.raises(ValueError):
        create_app(store, focus, admin_token="")
    with pytest.raises(ValueError):
        create_app(store, focus, admin_token="short")


# -- rooms -----------------------------------------------------------------------------------


async def test_create_room_with_generated_pin(client: Client, store: Store) -> None:
    resp = await client.post("/api/rooms", json={"name": "StandUp"}, headers=AUTH)
    assert resp.status == 201
    data = await body(resp)
    assert data["name"] == "standup"
    assert len(data["pin"]) == 8 and data["pin"].isdigit()
    room = store.room("standup")
    assert room is not None and room.pin == data["pin"]


async def test_create_room_with_pin_and_list(client: Client) -> None:
    resp = await client.post("/api/rooms", json={"name": "b", "pin": "48213077"}, headers=AUTH)
    # the room's JSON carries its policy too (issue 17): today's behaviour by default, and a
    # generated host PIN (8 digits, not the PIN)
    policy = {"lobby": False, "has_password": False, "start": "anyone", "guests": True}
    created = await body(resp)
    host_b = created.pop("host_pin")
    assert (resp.status, created) == (201, {"name": "b", "pin": "48213077", **policy})
    assert len(host_b) == 8 and host_b.isdigit() and host_b != "48213077"
    resp = await client.post("/api/rooms", json={"name": "a", "pin": "51234987",
                                                 "host_pin": None}, headers=AUTH)  # fmt: skip
    assert (await body(resp))["host_pin"] is None  # asked for none
    resp = await client.get("/api/rooms", headers=AUTH)
    assert (await body(resp)) == [
        {"name": "a", "pin": "51234987", "host_pin": None, **policy},
        {"name": "b", "pin": "48213077", "host_pin": host_b, **policy}]  # fmt: skip
    resp = await client.get("/api/rooms/B", headers=AUTH)
    assert (await body(resp)) == {"name": "b", "pin": "48213077", "host_pin": host_b, **policy}


@pytest.mark.parametrize(
    ("second", "status"),
    [({"name": "STANDUP"}, 409), ({"name": "other", "pin": "48213077"}, 409)],
)
async def test_create_room_conflicts(client: Client, second: dict[str, str], status: int) -> None:
    await client.post("/api/rooms", json={"name": "standup", "pin": "48213077"}, headers=AUTH)
    resp = await client.post("/api/rooms", json=second, headers=AUTH)
    assert resp.status == status
    assert "error" in await body(resp)


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [({"name": "bad name"}, "room name"), ({"name": "x" * 65}, "room name"),
     ({"name": ""}, "room name"), ({}, "name: required"), ({"name": 5}, "name: expected"),
     ({"name": "ok", "pin": "123"}, "pin"), ({"name": "ok", "pin": "1234567890123"}, "pin"),
     ({"name": "ok", "pin": "12ab"}, "pin"), ({"name": "ok", "pin": 12345678}, "pin"),
     ({"name": "ok", "colour": "red"}, "unknown field 'colour'")],
)  # fmt: skip
async def test_create_room_bad_input(
    client: Client, payload: dict[str, Any], fragment: str
) -> None:
    resp = await client.post("/api/rooms", json=payload, headers=AUTH)
    assert resp.status == 400
    assert fragment in (await body(resp))["error"]


async def test_delete_room(client: Client, store: Store) -> None:
    store.create_room("gone")
    resp = await client.delete("/api/rooms/gone", headers=AUTH)
    assert resp.status == 204
    assert store.room("gone") is None
    resp = await client.delete("/api/rooms/gone", headers=AUTH)
    assert resp.status == 404
    assert "not found" in (await body(resp))["error"]


async def test_delete_room_in_use_is_409(client: Client, store: Store) -> None:
    store.create_room("standup")
    store.add_number("+15550101", "room", "standup")
    resp = await client.delete("/api/rooms/standup", headers=AUTH)
    assert resp.status == 409
    assert "+15550101" in (await body(resp))["error"]
    assert store.room("standup") is not None


async def test_participants(client: Client, store: Store, focus: FakeFocus) -> None:
    store.create_room("standup")
    store.create_room("quiet")
    focus.people["standup"] = [
        FakeParticipant("p1-aa", "standup", "phone", "+1 555 ••• 0100", False),
        FakeParticipant("b2-bb", "standup", "browser", "Ann", True),
    ]
    resp = await client.get("/api/rooms/StandUp/participants", headers=AUTH)
    assert resp.status == 200
    assert (await body(resp)) == [
        {"id": "p1-aa", "kind": "phone", "name": "+1 555 ••• 0100", "muted": False},
        {"id": "b2-bb", "kind": "browser", "name": "Ann", "muted": True},
    ]
    resp = await client.get("/api/rooms/quiet/participants", headers=AUTH)
    assert (resp.status, await body(resp)) == (200, [])
    resp = await client.get("/api/rooms/nosuch/participants", headers=AUTH)
    assert resp.status == 404


# -- numbers ---------------------------------------------------------------------------------


async def test_create_pin_number(client: Client) -> None:
    resp = await client.post(
        "/api/numbers", json={"number": "+1 555 0100", "route": "pin"}, headers=AUTH
    )
    assert resp.status == 201
    assert (await body(resp)) == {
        "number": "+15550100", "route": "pin", "room": None, "display": "mask",
        "tollFree": False, "countryCode": "US", "formattedNumber": "+1 555 0100",
    }  # fmt: skip


async def test_create_room_number_with_options_and_list(client: Client, store: Store) -> None:
    store.create_room("standup")
    payload = {
        "number": "+442079460958",
        "route": "room",
        "room": "standup",
        "display": "hide",
        "tollFree": True,
        "countryCode": "gb",
        "formattedNumber": "+44 20 7946 0958",
    }
    resp = await client.post("/api/numbers", json=payload, headers=AUTH)
    assert resp.status == 201
    expected = {"number": "+442079460958", "route": "room", "room": "standup",
                "display": "hide", "tollFree": True, "countryCode": "GB",
                "formattedNumber": "+44 20 7946 0958"}  # fmt: skip
    assert (await body(resp)) == expected
    resp = await client.get("/api/numbers", headers=AUTH)
    assert (await body(resp)) == [expected]


@pytest.mark.parametrize(
    ("payload", "status", "fragment"),
    [({"route": "pin"}, 400, "number: required"),
     ({"number": "+15550100"}, 400, "route: required"),
     ({"number": "+15550100", "route": "ivr"}, 400, "route"),
     ({"number": "+15550100", "route": "room"}, 400, "room"),
     ({"number": "+15550100", "route": "room", "room": "nosuch"}, 400, "not found"),
     ({"number": "+15550100", "route": "pin", "room": "standup"}, 400, "room"),
     ({"number": "not a number", "route": "pin"}, 400, "number"),
     ({"number": "+15550100", "route": "pin", "display": "all"}, 400, "display"),
     ({"number": "+15550100", "route": "pin", "tollFree": "yes"}, 400, "tollFree"),
     ({"number": "+15550100", "route": "pin", "countryCode": "USA"}, 400, "countryCode"),
     ({"number": 15550100, "route": "pin"}, 400, "number: expected"),
     ({"number": "+15550100", "route": "pin", "trunk": "x"}, 400, "unknown field 'trunk'"),
     ({"number": "+15550199", "route": "pin"}, 409, "already exists")],
)  # fmt: skip
async def test_create_number_errors(
    client: Client, store: Store, payload: dict[str, Any], status: int, fragment: str
) -> None:
    store.create_room("standup")
    store.add_number("+15550199")
    resp = await client.post("/api/numbers", json=payload, headers=AUTH)
    assert resp.status == status
    assert fragment in (await body(resp))["error"]


@pytest.mark.parametrize("path", ["/api/numbers/%2B15550100", "/api/numbers/+15550100",
                                  "/api/numbers/0015550100"])  # fmt: skip
async def test_delete_number(client: Client, store: Store, path: str) -> None:
    store.add_number("+15550100")
    resp = await client.delete(path, headers=AUTH)
    assert resp.status == 204
    assert store.numbers() == []
    resp = await client.delete(path, headers=AUTH)
    assert resp.status == 404


# -- health and stats ------------------------------------------------------------------------


async def test_health_ok(client: Client) -> None:
    resp = await client.get("/api/health")
    assert resp.status == 200
    assert (await body(resp)) == {
        "status": "ok", "components": {"store": True, "sip": True, "http": True}
    }  # fmt: skip


async def test_health_failing_component_is_503(client: Client, process: Process) -> None:
    process.healthy["sip"] = False
    resp = await client.get("/api/health")
    assert resp.status == 503
    data = await body(resp)
    assert data["status"] != "ok" and data["components"]["sip"] is False


async def test_health_source_that_raises_is_503(client: Client, process: Process) -> None:
    process.healthy = None  # type: ignore[assignment]  # dict(None) raises inside health()
    resp = await client.get("/api/health")
    assert resp.status == 503


async def test_health_with_closed_store_is_503(client: Client, store: Store) -> None:
    store.close()
    resp = await client.get("/api/health")
    assert resp.status == 503
    assert (await body(resp))["components"]["store"] is False


async def test_stats_merges_sources(client: Client, store: Store, focus: FakeFocus) -> None:
    store.create_room("standup")
    focus.people["standup"] = [FakeParticipant("p1", "standup", "phone", "x", False)]
    resp = await client.get("/api/stats", headers=AUTH)
    assert resp.status == 200
    assert (await body(resp)) == {
        "conferences": 1, "participants": 1, "rooms": 1, "numbers": 0, "calls": 2
    }  # fmt: skip


# -- hostile input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", [b"", b"{", b"not json", b"[1, 2]", b'"name"', b"\xff\xfe", b"[" * 50000, b"null"]
)
async def test_malformed_bodies_are_400(client: Client, raw: bytes) -> None:
    resp = await client.post("/api/rooms", data=raw, headers=AUTH)
    assert resp.status == 400
    assert "body" in (await body(resp))["error"]


async def test_oversize_body_is_413(client: Client, store: Store) -> None:
    raw = b'{"name": "' + b"x" * (70 * 1024) + b'"}'
    resp = await client.post("/api/rooms", data=raw, headers=AUTH)
    assert resp.status == 413
    assert "too large" in (await body(resp))["error"]
    assert store.rooms() == []


async def test_unknown_api_path_with_token_is_json_404(client: Client) -> None:
    resp = await client.get("/api/nosuch", headers=AUTH)
    assert resp.status == 404
    assert "error" in await body(resp)


async def test_wrong_method_is_json_405(client: Client) -> None:
    resp = await client.put("/api/rooms", headers=AUTH, json={})
    assert resp.status == 405
    assert "error" in await body(resp)
    assert "GET" in resp.headers["Allow"]


async def test_internal_error_is_json_500(
    aiohttp_client: MakeClient, store: Store, process: Process
) -> None:
    class BrokenFocus(FakeFocus):
        def participants(self, room: str) -> list[FakeParticipant]:
            raise RuntimeError("boom")

    store.create_room("standup")
    app = create_app(store, BrokenFocus(), admin_token=TOKEN)
    client = await aiohttp_client(app)
    resp = await client.get("/api/rooms/standup/participants", headers=AUTH)
    assert (resp.status, await body(resp)) == (500, {"error": "internal error"})
