"""The trunks API: POST/GET /api/trunks, GET/DELETE /api/trunks/{name} (admin token).

A trunk's JSON is `TrunkRecord.as_json()` (never the password: "has_password" says whether
one is set), and GET of one trunk adds "registration": {"state", "detail"} from the
gateway ("off" when the trunk does not register or no gateway runs). Errors: 400 for a bad
body or field (named), 404 for an unknown trunk, 409 for a name or number already used.
"""

from __future__ import annotations

import json
import logging

from aiohttp import web

from dialplan.models import DialplanError
from dialplan.trunks import TrunkRecord, parse_trunk
from web.api import _store_error
from web.app import CONTEXT, json_error

__all__ = ["add_trunk_routes", "trunk_json"]

log = logging.getLogger(__name__)


def trunk_json(request: web.Request, trunk: TrunkRecord) -> dict[str, object]:
    data = trunk.as_json()
    control = request.app[CONTEXT].trunks
    state, detail = control.registration(trunk.name) if control is not None else ("off", "")
    data["registration"] = {"state": state, "detail": detail}
    return data


async def list_trunks(request: web.Request) -> web.Response:
    store = request.app[CONTEXT].store
    return web.json_response([trunk_json(request, t) for t in store.trunks()])


async def create_trunk(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    raw = await request.read()
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return json_error(400, "body: expected JSON")
    if not isinstance(data, dict):
        return json_error(400, "body: expected a JSON object")
    try:
        trunk = context.store.add_trunk(parse_trunk(data, context.default_country))
    except DialplanError as exc:
        return _store_error(exc)
    if context.trunks is not None:
        context.trunks.trunk_added(trunk)
    return web.json_response(trunk_json(request, trunk), status=201)


async def get_trunk(request: web.Request) -> web.Response:
    trunk = request.app[CONTEXT].store.trunk(request.match_info["name"])
    if trunk is None:
        return json_error(404, f"trunk {request.match_info['name']!r} not found")
    return web.json_response(trunk_json(request, trunk))


async def delete_trunk(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    trunk = context.store.trunk(request.match_info["name"])
    if trunk is None:
        return json_error(404, f"trunk {request.match_info['name']!r} not found")
    try:
        context.store.delete_trunk(trunk.name)
    except DialplanError as exc:
        return _store_error(exc)
    if context.trunks is not None:
        context.trunks.trunk_removed(trunk)  # un-REGISTERs
    return web.Response(status=204)


def add_trunk_routes(app: web.Application) -> None:
    app.router.add_get("/api/trunks", list_trunks)
    app.router.add_post("/api/trunks", create_trunk)
    app.router.add_get("/api/trunks/{name}", get_trunk)
    app.router.add_delete("/api/trunks/{name}", delete_trunk)
