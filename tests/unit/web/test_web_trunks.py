"""/api/trunks: the admin token, 201 with the issue's body, never the password, the
registration state from the gateway, 400/404/409, and DELETE un-registering."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from dialplan.store import Store
from dialplan.trunks import TrunkRecord
from web.app import create_app

TOKEN = "s3cret-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]

ISSUE_BODY = {
    "name": "carrier", "address": "127.0.0.1:5070", "transport": "udp",
    "username": "sb", "password": "hunter2-secret", "register": True, "expires": 300,
    "numbers": ["+15550100"], "allowed_addresses": ["192.0.2.0/24"], "auth": True,
    "media_encryption": "off", "allowed_destinations": ["+1555"],
}  # fmt: skip


class FakeFocus:
    def participants(self, room: str) -> list[Any]:
        return []

    def stats(self) -> dict[str, int]:
        return {}


@dataclass
class FakeTrunks:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def registration(self, name: str) -> tuple[str, str]:
        return ("registered", f"200 for {name}") if name in self.added else ("off", "")

    def trunk_added(self, trunk: TrunkRecord) -> None:
        self.added.append(trunk.name)

    def trunk_removed(self, trunk: TrunkRecord) -> None:
        self.removed.append(trunk.name)


@pytest.fixture
def store() -> Iterator[Store]:
    s = Store(":memory:")
    yield s
    s.close()


@pytest.fixture
def trunks() -> FakeTrunks:
    return FakeTrunks()


@pytest.fixture
async def client(aiohttp_client: MakeClient, store: Store, trunks: FakeTrunks) -> Client:
    app = create_app(store, FakeFocus(), admin_token=TOKEN, trunks=trunks,
                     default_country="44")
    return await aiohttp_client(app)


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/api/trunks"), ("POST", "/api/trunks"), ("GET", "/api/trunks/carrier"),
    ("DELETE", "/api/trunks/carrier")])  # fmt: skip
async def test_trunks_need_the_token(client: Client, method: str, path: str) -> None:
    resp = await client.request(method, path, json=ISSUE_BODY)
    assert resp.status == 401


async def test_create_get_list_delete(client: Client, store: Store, trunks: FakeTrunks) -> None:
    resp = await client.post("/api/trunks", json=ISSUE_BODY, headers=AUTH)
    assert resp.status == 201
    created = await resp.json()
    text = str(created)
    assert "password" not in created and "hunter2" not in text
    assert created["registration"] == {"state": "registered", "detail": "200 for carrier"}
    assert trunks.added == ["carrier"]
    one = await (await client.get("/api/trunks/carrier", headers=AUTH)).json()
    assert one["numbers"] == ["+15550100"] and one["auth"] is True
    assert one["registration"]["state"] == "registered" and "hunter2" not in str(one)
    listed = await (await client.get("/api/trunks", headers=AUTH)).json()
    assert [t["name"] for t in listed] == ["carrier"] and "hunter2" not in str(listed)
    assert (await client.delete("/api/trunks/carrier", headers=AUTH)).status == 204
    assert trunks.removed == ["carrier"] and store.trunks() == []
    assert (await client.get("/api/trunks/carrier", headers=AUTH)).status == 404
    assert (await client.delete("/api/trunks/carrier", headers=AUTH)).status == 404


async def test_default_country_normalises_numbers(client: Client) -> None:
    body = {**ISSUE_BODY, "numbers": ["020 7946 0000"]}
    resp = await client.post("/api/trunks", json=body, headers=AUTH)
    assert resp.status == 201
    assert (await resp.json())["numbers"] == ["+442079460000"]


@pytest.mark.parametrize(("body", "status", "message"), [
    ({**ISSUE_BODY, "transport": "carrier-pigeon"}, 400, "transport"),
    ({**ISSUE_BODY, "media_encryption": "maybe"}, 400, "media_encryption"),
    ({**ISSUE_BODY, "password": 5}, 400, "password"),
    ({**ISSUE_BODY, "extra": 1}, 400, "unknown field"),
    (["not", "an", "object"], 400, "object"),
])  # fmt: skip
async def test_bad_bodies(client: Client, body: object, status: int, message: str) -> None:
    resp = await client.post("/api/trunks", json=body, headers=AUTH)
    assert resp.status == status
    assert message in (await resp.json())["error"]


async def test_duplicates_are_409(client: Client) -> None:
    assert (await client.post("/api/trunks", json=ISSUE_BODY, headers=AUTH)).status == 201
    resp = await client.post("/api/trunks", json=ISSUE_BODY, headers=AUTH)
    assert resp.status == 409
    resp = await client.post("/api/trunks", json={**ISSUE_BODY, "name": "b"}, headers=AUTH)
    assert resp.status == 409 and "+15550100" in (await resp.json())["error"]
