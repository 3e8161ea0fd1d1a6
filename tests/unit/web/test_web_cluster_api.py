"""GET /api/cluster (admin token) and the API's answer to an unreachable database."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from dialplan.store import Store, StoreError
from web.api import add_cluster_route
from web.app import create_app

TOKEN = "s3cret-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
STATUS = {"nodes": [{"id": "a", "alive": True, "load": 0.12, "rooms": 1},
                    {"id": "b", "alive": False, "load": 0.0, "rooms": 0}],
          "rooms": {"standup": "a"}}

Client = TestClient[web.Request, web.Application]


class NoFocus:
    def participants(self, room: str) -> list[object]:
        return []

    def stats(self) -> dict[str, int]:
        return {}


async def _client(aiohttp_client: Callable[..., Awaitable[Client]], store: Store,
                  status: Callable[[], Awaitable[dict[str, object]]] | None) -> Client:
    app = create_app(store, NoFocus(), admin_token=TOKEN)  # type: ignore[arg-type]
    if status is not None:
        add_cluster_route(app, status)
    return await aiohttp_client(app)


async def test_cluster_status_needs_the_admin_token_and_has_the_contract_shape(
        aiohttp_client: Callable[..., Awaitable[Client]]) -> None:
    async def status() -> dict[str, object]:
        return STATUS

    with Store(":memory:") as store:
        client = await _client(aiohttp_client, store, status)
        assert (await client.get("/api/cluster")).status == 401
        resp = await client.get("/api/cluster", headers=AUTH)
        assert resp.status == 200
        assert await resp.json() == STATUS


@pytest.mark.parametrize("cluster", [False, True])
async def test_without_a_cluster_or_without_redis(
        aiohttp_client: Callable[..., Awaitable[Client]], cluster: bool) -> None:
    async def unreachable() -> dict[str, object]:
        raise ConnectionError("the cluster's Redis is unreachable")

    with Store(":memory:") as store:
        client = await _client(aiohttp_client, store, unreachable if cluster else None)
        resp = await client.get("/api/cluster", headers=AUTH)
        assert resp.status == (503 if cluster else 404)
        assert "error" in await resp.json()


async def test_an_unreachable_database_is_a_503_not_a_500(
        aiohttp_client: Callable[..., Awaitable[Client]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    with Store(":memory:") as store:
        def down(*args: object, **kwargs: object) -> None:
            raise StoreError("store postgresql://127.0.0.1:5432/x: PostgreSQL is unreachable")

        monkeypatch.setattr(store, "rooms", down)
        client = await _client(aiohttp_client, store, None)
        resp = await client.get("/api/rooms", headers=AUTH)
        assert resp.status == 503
        assert "database is unavailable" in (await resp.json())["error"]


async def test_drain_and_undrain_through_the_api(
        aiohttp_client: Callable[..., Awaitable[Client]]) -> None:
    """POST /api/cluster/nodes/{id}/drain {"force": bool} and DELETE: admin token, the
    node's id and the force flag passed on, 404 for an unknown node, 400 for a bad body."""
    orders: list[tuple[str, bool, bool]] = []

    async def status() -> dict[str, object]:
        return STATUS

    async def drain(node: str, drain: bool, force: bool) -> dict[str, object]:
        if node not in ("a", "b"):
            raise LookupError(node)
        orders.append((node, drain, force))
        return {"id": node, "draining": drain, "force": force}

    with Store(":memory:") as store:
        app = create_app(store, NoFocus(), admin_token=TOKEN)  # type: ignore[arg-type]
        add_cluster_route(app, status, drain)
        client = await aiohttp_client(app)
        path = "/api/cluster/nodes/a/drain"
        assert (await client.post(path, json={"force": True})).status == 401
        assert orders == []
        resp = await client.post(path, headers=AUTH)  # no body: not forced
        assert resp.status == 200 and (await resp.json())["draining"] is True
        resp = await client.post(path, json={"force": True}, headers=AUTH)
        assert resp.status == 200 and (await resp.json())["force"] is True
        resp = await client.delete(path, headers=AUTH)
        assert resp.status == 200 and (await resp.json())["draining"] is False
        assert orders == [("a", True, False), ("a", True, True), ("a", False, False)]
        for body in ({"force": "yes"}, {"forse": True}, [True]):
            assert (await client.post(path, json=body, headers=AUTH)).status == 400
        assert (await client.post("/api/cluster/nodes/zz/drain", headers=AUTH)).status == 404
        assert len(orders) == 3


async def test_drain_without_a_cluster_is_404(
        aiohttp_client: Callable[..., Awaitable[Client]]) -> None:
    with Store(":memory:") as store:
        client = await _client(aiohttp_client, store, None)
        resp = await client.post("/api/cluster/nodes/a/drain", headers=AUTH)
        assert resp.status == 404
