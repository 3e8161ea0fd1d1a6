"""The room policy and the lobby over the API: POST/GET/PATCH /api/rooms with the policy,
GET and POST /api/rooms/{name}/lobby, and room moderators' tokens as bearers."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from dialplan.store import Store
from focus.lobby import Admitted, Denied, Lobby, LobbyEvent
from focus.tokens import TokenSettings, TokenVerifier
from web.app import create_app, mask_secrets

ADMIN = "s3cret-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
SECRET = "api-tests-secret-0123456789abcdefgh"

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


def bearer(room: str = "standup", moderator: bool = True, **over: Any) -> dict[str, str]:
    claims: dict[str, Any] = {"room": room, "exp": time.time() + 600,
                              "context": {"user": {"moderator": moderator}}}  # fmt: skip
    claims.update(over)
    return {"Authorization": "Bearer " + jwt.encode(claims, SECRET, algorithm="HS256")}


class FakeFocus:
    def participants(self, room: str) -> list[Any]:
        return []

    def stats(self) -> dict[str, int]:
        return {}


@pytest.fixture
def store() -> Iterator[Store]:
    s = Store(":memory:")
    yield s
    s.close()


@pytest.fixture
def lobby() -> Lobby:
    return Lobby()


@pytest.fixture
async def client(aiohttp_client: MakeClient, store: Store, lobby: Lobby) -> Client:
    changed: list[str] = []
    app = create_app(store, FakeFocus(), admin_token=ADMIN, lobby=lobby,
                     tokens=TokenVerifier(TokenSettings(secret=SECRET)),
                     policy_changed=changed.append)  # fmt: skip
    test_client = await aiohttp_client(app)
    test_client.changed = changed  # type: ignore[attr-defined]
    return test_client


async def test_create_get_and_patch_the_policy(client: Client, store: Store) -> None:
    resp = await client.post("/api/rooms", headers=AUTH, json={
        "name": "standup", "pin": "48213077", "host_pin": "59372014", "lobby": True,
        "password": "sesame42", "start": "hosts"})  # fmt: skip
    assert resp.status == 201
    created = await resp.json()
    assert created == {"name": "standup", "pin": "48213077", "host_pin": "59372014",
                       "lobby": True, "has_password": True, "start": "hosts", "guests": True}
    resp = await client.get("/api/rooms/standup", headers=AUTH)
    got = await resp.json()
    assert got == created and "password" not in got
    resp = await client.patch("/api/rooms/StandUp", headers=AUTH,
                              json={"lobby": False, "password": None, "start": "anyone"})
    patched = await resp.json()
    assert resp.status == 200 and patched["lobby"] is False and patched["has_password"] is False
    assert patched["host_pin"] == "59372014" and patched["start"] == "anyone"
    assert client.changed == ["standup"]  # type: ignore[attr-defined]
    resp = await client.patch("/api/rooms/standup", headers=AUTH, json={"host_pin": None})
    assert (await resp.json())["host_pin"] is None


@pytest.mark.parametrize(
    ("payload", "status", "fragment"),
    [({"lobby": "yes"}, 400, "lobby"), ({"start": "everyone"}, 400, "start"),
     ({"password": "abc"}, 400, "password"), ({"host_pin": "48213077"}, 400, "host_pin"),
     ({"pin": "12345678"}, 400, "unknown field"), ({"colour": 1}, 400, "unknown field")],
)  # fmt: skip
async def test_patch_refuses_bad_values(client: Client, store: Store, payload: dict[str, Any],
                                        status: int, fragment: str) -> None:  # fmt: skip
    store.create_room("standup", "48213077")
    resp = await client.patch("/api/rooms/standup", headers=AUTH, json=payload)
    assert resp.status == status and fragment in (await resp.json())["error"]


async def test_a_host_pin_taken_is_a_conflict(client: Client, store: Store) -> None:
    store.create_room("a", "48213077")
    store.create_room("b", "61829304")
    resp = await client.patch("/api/rooms/b", headers=AUTH, json={"host_pin": "48213077"})
    assert resp.status == 409
    resp = await client.patch("/api/rooms/nope", headers=AUTH, json={"lobby": True})
    assert resp.status == 404


async def test_the_lobby_list_and_decisions(client: Client, store: Store, lobby: Lobby) -> None:
    store.create_room("standup")
    events: list[LobbyEvent] = []
    lobby.subscribe("standup", events.append)
    lobby.wait("standup", "b1-aaaaaa", "browser", "Ada", "moderator", 1.0)
    lobby.wait("standup", "p2-bbbbbb", "phone", "+1 555 ***0100", "moderator", 2.0)
    resp = await client.get("/api/rooms/standup/lobby", headers=AUTH)
    assert await resp.json() == [{"id": "b1-aaaaaa", "kind": "browser", "name": "Ada"},
                                 {"id": "p2-bbbbbb", "kind": "phone",
                                  "name": "+1 555 ***0100"}]  # fmt: skip
    resp = await client.post("/api/rooms/standup/lobby/b1-aaaaaa", headers=bearer(),
                             json={"action": "admit"})  # a moderator's token will do
    assert resp.status == 200 and (await resp.json())["action"] == "admit"
    resp = await client.post("/api/rooms/standup/lobby/p2-bbbbbb", headers=AUTH,
                             json={"action": "deny"})
    assert resp.status == 200
    assert [type(e) for e in events[2:]] == [Admitted, Denied]
    resp = await client.post("/api/rooms/standup/lobby/p2-bbbbbb", headers=AUTH,
                             json={"action": "deny"})
    assert resp.status == 404  # decided already
    resp = await client.post("/api/rooms/standup/lobby/x", headers=AUTH,
                             json={"action": "kick"})
    assert resp.status == 400
    resp = await client.get("/api/rooms/nope/lobby", headers=AUTH)
    assert resp.status == 404


@pytest.mark.parametrize(
    ("make_headers", "status"),
    # made when the test runs, not when it is collected: in the whole suite a token made at
    # collection had expired (10 min) before this test ran
    [(lambda: bearer(moderator=False), 403),  # a member is no moderator
     (lambda: bearer(room="other"), 401),  # a token for another room
     (lambda: bearer(exp=time.time() - 3600), 401),
     (lambda: {"Authorization": "Bearer not.a.token"}, 401), (dict, 401)],
)  # fmt: skip
async def test_tokens_that_may_not_decide(client: Client, store: Store, lobby: Lobby,
                                          make_headers: Callable[[], dict[str, str]],
                                          status: int,
                                          caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    headers = make_headers()
    store.create_room("standup")
    lobby.wait("standup", "b1-aaaaaa", "browser", "Ada", "moderator", 1.0)
    caplog.set_level(logging.DEBUG)
    resp = await client.post("/api/rooms/standup/lobby/b1-aaaaaa", headers=headers,
                             json={"action": "admit"})  # fmt: skip
    assert resp.status == status
    assert lobby.get("b1-aaaaaa") is not None  # still waiting
    if headers:
        assert headers["Authorization"].split(" ", 1)[1] not in caplog.text


async def test_a_moderator_token_reaches_only_its_rooms_own_paths(client: Client,
                                                                  store: Store) -> None:
    store.create_room("standup", "48213077")
    store.create_room("other", "61829304")
    resp = await client.patch("/api/rooms/standup", headers=bearer(), json={"lobby": True})
    assert resp.status == 200 and (await resp.json())["lobby"] is True
    assert (await client.get("/api/rooms/standup", headers=bearer())).status == 200
    for method, path in (("GET", "/api/rooms/other"), ("GET", "/api/rooms"),
                         ("DELETE", "/api/rooms/standup"), ("POST", "/api/rooms"),
                         ("GET", "/api/numbers"), ("GET", "/api/rooms/standup/participants")):
        resp = await client.request(method, path, headers=bearer())
        assert resp.status == 401, (method, path)
    any_room = bearer(room="*")
    assert (await client.get("/api/rooms/other", headers=any_room)).status == 200


def test_secrets_are_masked_in_request_targets() -> None:
    assert mask_secrets("/standup?jwt=eyJ.abc.def&x=1") == "/standup?jwt=***&x=1"
    assert mask_secrets("/a?x=1&password=hunter2;token=zz") == "/a?x=1&password=***;token=***"
    assert mask_secrets("/plain/path") == "/plain/path"
