"""The dial-out API (issue 16, section 2): a room calls a phone.

- `POST /api/rooms/{room}/dial` with {"number", "trunk"?, "ringing_timeout"?, "dtmf"?,
  "redial"?}: (`redial`, a cluster only: if the room's node dies while the callee is in the
  room, the node that takes the room over calls the number again)
  202 {"id", "participant_id"}; the callee is in /api/rooms/{room}/participants at once
  ("kind": "phone", "state": "calling"). Refusals: 400 (a bad field or number, several
  trunks fit and none was named), 403 (the number matches no allowed_destinations prefix
  of the trunk: the toll-fraud guard, with the reason), 404 (no such room or trunk), 409
  (the room is full), 429 (ten calls of the room ring already), 503 (no gateway, no media
  port). In a cluster, a room hosted by another node answers 307 with that node's URL of
  the same path in Location (and the JSON body's "location"): its node places the call
  (`switchboard dial` follows it once, then asks that node about the call).
- `GET /api/rooms/{room}/dial`: what the page's "Call a phone" control shows:
  {"default_country": "1" or "", "trunks": [names of trunks that allow some destination]}.
- `GET /api/calls/{id}`: {"id", "state": "dialing" | "ringing" | "connected" | "ended",
  "reason", "participant_id", "participant_state", "room", "trunk"}; 404 when unknown.
- `DELETE /api/calls/{id}`: cancels a call still ringing or hangs up an answered one; 204.

Auth as the room's own paths (web/app.py): the admin token, or a moderator's token for
that room (for /api/calls/{id}: the call's room).
"""

from __future__ import annotations

import json
import logging
from typing import Protocol

from aiohttp import web

from web.app import CONTEXT, json_error
from web.pages import ROOM_OWNER

__all__ = ["DialControl", "add_dial_routes"]

log = logging.getLogger(__name__)

FIELDS = ("number", "trunk", "ringing_timeout", "dtmf", "redial")


class DialControl(Protocol):
    """What the API needs of dial-out (the gateway implements it)."""

    async def api_dial(self, room: str, number: str, trunk: str | None,
                       ringing_timeout: float | None, dtmf: str,
                       redial: bool = False) -> tuple[int, dict[str, object]]: ...

    def api_call(self, dial_id: str) -> dict[str, object] | None: ...

    def api_hang_up(self, dial_id: str) -> bool: ...

    def call_room(self, dial_id: str) -> str | None: ...


def _control(request: web.Request) -> DialControl | None:
    control: DialControl | None = request.app[CONTEXT].dialout
    return control


async def dial(request: web.Request) -> web.Response:
    control = _control(request)
    if control is None:
        return json_error(503, "dial-out needs the gateway")
    try:
        data = json.loads(await request.read())
    except (ValueError, RecursionError):
        return json_error(400, "body: expected JSON")
    if not isinstance(data, dict):
        return json_error(400, "body: expected a JSON object")
    for key in data:
        if key not in FIELDS:
            return json_error(400, f"unknown field {key!r}")
    number, trunk, dtmf = data.get("number"), data.get("trunk"), data.get("dtmf", "")
    timeout = data.get("ringing_timeout")
    if not isinstance(number, str) or not number.strip() or len(number) > 32:
        return json_error(400, "number: expected a phone number (E.164 with '+', or national)")
    if trunk is not None and (not isinstance(trunk, str) or len(trunk) > 64):
        return json_error(400, "trunk: expected a trunk name")
    if dtmf is None:
        dtmf = ""
    if not isinstance(dtmf, str):
        return json_error(400, "dtmf: expected a string")
    if timeout is not None and (isinstance(timeout, bool)
                                or not isinstance(timeout, int | float)):
        return json_error(400, "ringing_timeout: expected seconds")
    redial = data.get("redial", False)
    if not isinstance(redial, bool):
        return json_error(400, "redial: expected true or false")
    room = request.match_info["name"].lower()
    owner = request.app.get(ROOM_OWNER)
    elsewhere = await owner(room) if owner is not None else None
    if elsewhere:  # a cluster: the node hosting the room places its calls
        log.info("dial-out for room %s: sent to its node %s", room, elsewhere)
        return web.json_response({"error": f"room {room} is hosted by {elsewhere}",
                                  "location": elsewhere + request.rel_url.path},
                                 status=307,
                                 headers={"Location": elsewhere + request.rel_url.path})
    status, body = await control.api_dial(
        room, number.strip(), trunk,
        float(timeout) if timeout is not None else None, dtmf, redial)
    return web.json_response(body, status=status)


async def dial_defaults(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    if context.store.room(request.match_info["name"].lower()) is None:
        return json_error(404, f"room {request.match_info['name']!r} not found")
    trunks = [t.name for t in context.store.trunks() if t.allowed_destinations]
    return web.json_response({"default_country": context.default_country, "trunks": trunks})


async def get_call(request: web.Request) -> web.Response:
    control = _control(request)
    found = control.api_call(request.match_info["id"]) if control is not None else None
    if found is None:
        return json_error(404, f"call {request.match_info['id']!r} not found")
    return web.json_response(found)


async def delete_call(request: web.Request) -> web.Response:
    control = _control(request)
    if control is None or not control.api_hang_up(request.match_info["id"]):
        return json_error(404, f"call {request.match_info['id']!r} not found")
    return web.Response(status=204)


def add_dial_routes(app: web.Application) -> None:
    app.router.add_post("/api/rooms/{name}/dial", dial)
    app.router.add_get("/api/rooms/{name}/dial", dial_defaults)
    app.router.add_get("/api/calls/{id}", get_call)
    app.router.add_delete("/api/calls/{id}", delete_call)
