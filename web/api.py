"""The admin REST API: rooms, numbers, participants, stats, and the public health check.

POST bodies are JSON objects; a body that is not JSON, not an object, has an unknown field
(named in the error) or a field of the wrong type is a 400. Store errors map to HTTP as
InvalidInput -> 400, NotFound -> 404, Conflict (duplicates, a room still routed to) -> 409.

A room's JSON: {"name", "pin", "host_pin" (or null), "lobby", "has_password", "start"
("anyone" | "hosts"), "guests"}; POST without "host_pin" generates one ("host_pin": null:
none); the password is only ever written ("password" in POST and
PATCH; PATCH "password": null removes it), never returned. The lobby: GET
/api/rooms/{name}/lobby lists who waits ([{"id", "kind", "name"}]); POST
/api/rooms/{name}/lobby/{id} with {"action": "admit" | "deny"} decides for one.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import TypeVar

from aiohttp import web

from dialplan.models import (
    UNSET,
    Conflict,
    DialplanError,
    NotFound,
    NumberRecord,
    RoomRecord,
    Unset,
)
from dialplan.store import StoreError
from focus.conference import UnknownParticipant
from web.app import CONTEXT, json_error

__all__ = ["CLUSTER_DRAIN", "CLUSTER_STATUS", "add_api_routes", "add_cluster_route",
           "number_json", "room_json"]

#: GET /api/cluster's source: {"nodes": [{"id", "alive", "load", "rooms"}], "rooms": {...}},
#: raising ConnectionError when the cluster cannot be read (cluster/node.py, ClusterUnavailable)
ClusterStatus = Callable[[], Awaitable[dict[str, object]]]
CLUSTER_STATUS: web.AppKey[ClusterStatus] = web.AppKey("cluster_status")
#: POST/DELETE /api/cluster/nodes/{id}/drain: (node, drain, force) -> {"id", "draining",
#: "force"}, raising LookupError for an unknown node, ConnectionError without Redis
ClusterDrain = Callable[[str, bool, bool], Awaitable[dict[str, object]]]
CLUSTER_DRAIN: web.AppKey[ClusterDrain] = web.AppKey("cluster_drain")

log = logging.getLogger(__name__)

T = TypeVar("T")


class BadRequest(Exception):
    """The request body is unusable; the message says why."""


def room_json(room: RoomRecord) -> dict[str, object]:
    return room.as_json()


def number_json(number: NumberRecord) -> dict[str, object]:
    return number.as_json()


def _store_error(exc: DialplanError) -> web.Response:
    if isinstance(exc, NotFound):
        return json_error(404, str(exc))
    if isinstance(exc, Conflict):
        return json_error(409, str(exc))
    return json_error(400, str(exc))


async def _read_object(request: web.Request, allowed: Collection[str]) -> dict[str, object]:
    raw = await request.read()  # 413 past client_max_size
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are both
        raise BadRequest("body: expected JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("body: expected a JSON object")
    for key in data:
        if key not in allowed:
            raise BadRequest(f"unknown field {key!r}")
    return data


def _field(
    data: Mapping[str, object], name: str, kind: type[T], *, required: bool = False
) -> T | None:
    value = data.get(name)
    if value is None:
        if required:
            raise BadRequest(f"{name}: required")
        return None
    # bool is an int subclass; no field here takes an int, so a plain isinstance is enough
    if not isinstance(value, kind):
        raise BadRequest(f"{name}: expected {'a string' if kind is str else 'true or false'}")
    return value


# -- rooms -----------------------------------------------------------------------------------


async def list_rooms(request: web.Request) -> web.Response:
    store = request.app[CONTEXT].store
    return web.json_response([room_json(r) for r in store.rooms()])


_POLICY_FIELDS = ("host_pin", "lobby", "password", "start", "guests")


async def create_room(request: web.Request) -> web.Response:
    store = request.app[CONTEXT].store
    try:
        data = await _read_object(request, ("name", "pin", *_POLICY_FIELDS))
        name = _field(data, "name", str, required=True)
        pin = _field(data, "pin", str)
        # absent: a generated host PIN; null: none
        host_pin: str | Unset | None = _field(data, "host_pin", str) \
            if "host_pin" in data else UNSET  # fmt: skip
        lobby = _field(data, "lobby", bool)
        password = _field(data, "password", str)
        start = _field(data, "start", str)
        guests = _field(data, "guests", bool)
    except BadRequest as exc:
        return json_error(400, str(exc))
    assert name is not None
    try:
        # scrypt takes tens of milliseconds: off the event loop when a password is set
        room = await asyncio.to_thread(
            store.create_room, name, pin, host_pin=host_pin, lobby=lobby, password=password,
            start=start, guests=guests,
        )  # fmt: skip
    except DialplanError as exc:
        return _store_error(exc)
    return web.json_response(room_json(room), status=201)


async def update_room(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    try:
        data = await _read_object(request, _POLICY_FIELDS)
        host_pin: str | Unset | None = _field(data, "host_pin", str) \
            if "host_pin" in data else UNSET  # fmt: skip
        password: str | Unset | None = _field(data, "password", str) \
            if "password" in data else UNSET  # fmt: skip
        lobby = _field(data, "lobby", bool)
        start = _field(data, "start", str)
        guests = _field(data, "guests", bool)
    except BadRequest as exc:
        return json_error(400, str(exc))
    try:
        room = await asyncio.to_thread(
            context.store.update_room, request.match_info["name"], host_pin=host_pin,
            lobby=lobby, password=password, start=start, guests=guests,
        )  # fmt: skip
    except DialplanError as exc:
        return _store_error(exc)
    if context.policy_changed is not None:
        try:
            context.policy_changed(room.name)
        except Exception:
            log.exception("room %s: telling the conference of its new policy failed", room.name)
    return web.json_response(room_json(room))


async def lobby_list(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    room = context.store.room(request.match_info["name"])
    if room is None:
        return json_error(404, f"room {request.match_info['name']!r} not found")
    waiting = context.lobby.waiting(room.name) if context.lobby is not None else []
    return web.json_response([e.as_json() for e in waiting])


async def lobby_decide(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    room = context.store.room(request.match_info["name"])
    if room is None:
        return json_error(404, f"room {request.match_info['name']!r} not found")
    try:
        data = await _read_object(request, ("action",))
        action = _field(data, "action", str, required=True)
    except BadRequest as exc:
        return json_error(400, str(exc))
    if action not in ("admit", "deny"):
        return json_error(400, 'action: expected "admit" or "deny"')
    pid = request.match_info["id"]
    if context.lobby is None:
        return json_error(404, f"nobody waits as {pid!r}")
    try:
        if action == "admit":
            entry = context.lobby.admit(room.name, pid, "api")
        else:
            entry = context.lobby.deny(room.name, pid, "api")
    except UnknownParticipant:
        return json_error(404, f"nobody waits as {pid!r} in room {room.name!r}")
    return web.json_response({**entry.as_json(), "action": action})


async def get_room(request: web.Request) -> web.Response:
    store = request.app[CONTEXT].store
    room = store.room(request.match_info["name"])
    if room is None:
        return json_error(404, f"room {request.match_info['name']!r} not found")
    return web.json_response(room_json(room))


async def delete_room(request: web.Request) -> web.Response:
    store = request.app[CONTEXT].store
    try:
        store.delete_room(request.match_info["name"])
    except DialplanError as exc:
        return _store_error(exc)
    return web.Response(status=204)


async def participants(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    room = context.store.room(request.match_info["name"])
    if room is None:
        return json_error(404, f"room {request.match_info['name']!r} not found")
    out: list[dict[str, object]] = []
    for p in context.focus.participants(room.name):
        item: dict[str, object] = {"id": p.id, "kind": p.kind, "name": p.name, "muted": p.muted}
        state = getattr(p, "state", None)  # a called-out phone's (gateway/dialout.py)
        if state is not None:
            item["state"] = state
            reason = getattr(p, "state_reason", None)
            if reason is not None:
                item["reason"] = reason
        out.append(item)
    return web.json_response(out)


# -- numbers ---------------------------------------------------------------------------------

_NUMBER_FIELDS = ("number", "route", "room", "display", "tollFree", "countryCode",
                  "formattedNumber")  # fmt: skip


async def list_numbers(request: web.Request) -> web.Response:
    store = request.app[CONTEXT].store
    return web.json_response([number_json(n) for n in store.numbers()])


async def create_number(request: web.Request) -> web.Response:
    store = request.app[CONTEXT].store
    try:
        data = await _read_object(request, _NUMBER_FIELDS)
        number = _field(data, "number", str, required=True)
        route = _field(data, "route", str, required=True)
        room = _field(data, "room", str)
        display = _field(data, "display", str)
        toll_free = _field(data, "tollFree", bool)
        country = _field(data, "countryCode", str)
        formatted = _field(data, "formattedNumber", str)
    except BadRequest as exc:
        return json_error(400, str(exc))
    assert number is not None and route is not None
    try:
        record = store.add_number(
            number, route, room, display=display or "mask", country_code=country,
            toll_free=bool(toll_free), formatted=formatted,
        )  # fmt: skip
    except NotFound as exc:  # the room named in the body: the request is at fault
        return json_error(400, str(exc))
    except DialplanError as exc:
        return _store_error(exc)
    return web.json_response(number_json(record), status=201)


async def delete_number(request: web.Request) -> web.Response:
    store = request.app[CONTEXT].store
    try:
        store.delete_number(request.match_info["number"])
    except DialplanError as exc:
        return _store_error(exc)
    return web.Response(status=204)


# -- health and stats ------------------------------------------------------------------------


def _safely(what: str, source: Callable[[], Mapping[str, T]]) -> dict[str, T] | None:
    try:
        return dict(source())
    except StoreError as exc:  # the database is unreachable: said once per request
        log.warning("%s source failed: %s", what, exc)
        return None
    except Exception:
        log.exception("%s source failed", what)
        return None


async def health(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    components: dict[str, bool] = {"store": context.store.health()}
    if context.health is not None:
        reported = _safely("health", context.health)
        if reported is None:
            components["health"] = False
        else:
            components.update({k: bool(v) for k, v in reported.items()})
    ok = all(components.values())
    return web.json_response(
        {"status": "ok" if ok else "unavailable", "components": components},
        status=200 if ok else 503,
    )


async def stats(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    merged: dict[str, int] = {}
    sources: list[tuple[str, Callable[[], Mapping[str, int]]]] = [
        ("focus", context.focus.stats),
        ("store", context.store.stats),
    ]
    if context.stats is not None:
        sources.append(("stats", context.stats))
    for what, source in sources:
        merged.update(_safely(what, source) or {})
    return web.json_response(merged)


async def cluster_status(request: web.Request) -> web.Response:
    """GET /api/cluster (admin token): the nodes and the room-to-node map, read from Redis
    now; 404 when this server is not a cluster node, 503 when Redis cannot be reached."""
    source = request.app.get(CLUSTER_STATUS)
    if source is None:
        return json_error(404, "not a cluster node (cluster.redis_url is empty)")
    try:
        return web.json_response(await source())
    except ConnectionError as exc:
        return json_error(503, str(exc))


async def cluster_drain(request: web.Request) -> web.Response:
    """POST /api/cluster/nodes/{id}/drain {"force": bool} (admin token): the node takes no
    new rooms, its rooms move when empty (at once when forced); DELETE undrains it. 404 when
    this server is not a cluster node or the node is unknown, 503 without Redis."""
    drain = request.app.get(CLUSTER_DRAIN)
    if drain is None:
        return json_error(404, "not a cluster node (cluster.redis_url is empty)")
    node = request.match_info["node"]
    force = False
    if request.method == "POST" and await request.read():
        try:
            force = bool(_field(await _read_object(request, ("force",)), "force", bool))
        except BadRequest as exc:
            return json_error(400, str(exc))
    try:
        return web.json_response(await drain(node, request.method == "POST", force))
    except LookupError:
        return json_error(404, "no such node in the cluster")
    except ConnectionError as exc:
        return json_error(503, str(exc))


def add_cluster_route(app: web.Application, status: ClusterStatus,
                      drain: ClusterDrain | None = None) -> None:
    app[CLUSTER_STATUS] = status
    if drain is not None:
        app[CLUSTER_DRAIN] = drain


def add_api_routes(app: web.Application) -> None:
    app.router.add_get("/api/cluster", cluster_status)
    app.router.add_post("/api/cluster/nodes/{node}/drain", cluster_drain)
    app.router.add_delete("/api/cluster/nodes/{node}/drain", cluster_drain)
    app.router.add_get("/api/rooms", list_rooms)
    app.router.add_post("/api/rooms", create_room)
    app.router.add_get("/api/rooms/{name}", get_room)
    app.router.add_patch("/api/rooms/{name}", update_room)
    app.router.add_get("/api/rooms/{name}/lobby", lobby_list)
    app.router.add_post("/api/rooms/{name}/lobby/{id}", lobby_decide)
    app.router.add_delete("/api/rooms/{name}", delete_room)
    app.router.add_get("/api/rooms/{name}/participants", participants)
    app.router.add_get("/api/numbers", list_numbers)
    app.router.add_post("/api/numbers", create_number)
    app.router.add_delete("/api/numbers/{number}", delete_number)
    app.router.add_get("/api/health", health)
    app.router.add_get("/api/stats", stats)
