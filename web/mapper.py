"""Jitsi-compatible public endpoints: the conference mapper and the dial-in number list.

Jitsi Meet's `dialInConfCodeUrl` points at GET /api/conference-mapper and `dialInNumbersUrl`
at GET /api/phone-numbers; both answer without a token, as Jitsi Meet fetches them from the
meeting page.

Conference mapper (the contract of Jitsi's reference mappers):
- ?conference=ROOM@DOMAIN (Jitsi Meet adds &url=..., ignored): the part before '@' is the
  room, compared case-insensitively. Known: 200 {"message": "Successfully retrieved conference
  mapping", "id": PIN as a JSON integer, "conference": the value as given}. Unknown: 404
  {"message": "No conference mapping was found", "id": false, "conference": false}; rooms are
  not created on demand (Jitsi's mappers do; here rooms come from the admin API). With
  `mapper_by_name` off (meetings.mapper_by_name = false) every room answers as unknown by
  name: the meeting page does not need it (participants get the PIN in `joined`).
- ?id=PIN or ?cid=PIN: known: 200 as above with "conference": "ROOM@<mapper_domain>" (just
  "ROOM" when no domain is configured); unknown: 200 {"message": "No conference mapping was
  found", "id": PIN, "conference": false}. Wrong PINs count against the client address in a
  PinThrottle, the same rule as PIN entry by phone; a blocked address gets 429.
- Neither, or a PIN that is not digits: 400 with the same shape and "id"/"conference" false.
- Every lookup (by name or by PIN) takes a token from the client address's bucket
  (`mapper_lookups_per_minute`, in bursts of as many); an empty bucket gets 429 with
  Retry-After, and one log line per address a minute at most.
- CORS: `Access-Control-Allow-Origin` only for the origins configured (http.public_urls and
  http.cors_origins), echoed, with `Vary: Origin`; never `*` (web/app.py).

Phone numbers: the list format of `dialInNumbersUrl` (the newer one; the older is a dict by
country), [{"countryCode": "US", "tollFree": false, "formattedNumber": "+1 555 0100",
"default": true}, ...]. Only numbers that lead to the PIN prompt are listed: a number routed
straight to one room is not a way into the other rooms, so showing it next to another room's
PIN would mislead. The oldest such number is the default. Unknown countries give "".
"""

from __future__ import annotations

import logging

from aiohttp import web

from web.app import CONTEXT, client_address

__all__ = ["MESSAGE_FOUND", "MESSAGE_MISSING", "MESSAGE_NONE", "add_mapper_routes"]

log = logging.getLogger(__name__)

MESSAGE_FOUND = "Successfully retrieved conference mapping"
MESSAGE_MISSING = "No conference mapping was found"
MESSAGE_NONE = "No conference or id provided"
MESSAGE_INVALID = "Invalid id"
MESSAGE_BLOCKED = "Too many failed lookups; try again later"
MESSAGE_RATE = "Too many lookups; try again later"


def _answer(message: str, pin: int | bool, conference: str | bool, status: int) -> web.Response:
    return web.json_response(
        {"message": message, "id": pin, "conference": conference}, status=status
    )


async def conference_mapper(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    query = request.rel_url.query
    conference = query.get("conference", "").strip()
    pin = (query.get("id") or query.get("cid") or "").strip()
    if not conference and not pin:
        return _answer(MESSAGE_NONE, False, False, 400)
    address = client_address(request)
    now = context.clock()
    if not context.mapper_limit.allow(address, now):
        if context.mapper_log_limit.allow(address, now):
            log.warning("conference mapper: lookups from %s refused (over %d a minute)",
                        address, context.settings.mapper_lookups_per_minute)  # fmt: skip
        answer = _answer(MESSAGE_RATE, False, False, 429)
        answer.headers["Retry-After"] = "60"
        return answer
    if conference:
        if not context.settings.mapper_by_name:
            return _answer(MESSAGE_MISSING, False, False, 404)
        room = context.store.room(conference.split("@", 1)[0])
        if room is None:
            return _answer(MESSAGE_MISSING, False, False, 404)
        return _answer(MESSAGE_FOUND, int(room.pin), conference, 200)

    if not (pin.isascii() and pin.isdigit() and len(pin) <= 20):
        return _answer(MESSAGE_INVALID, False, False, 400)
    if context.lookup_throttle.is_blocked(None, address, now):
        log.info("conference mapper: lookup from %s refused (throttled)", address)
        return _answer(MESSAGE_BLOCKED, False, False, 429)
    found = context.store.room_by_pin(pin)
    if found is None:
        context.lookup_throttle.record_failure(None, address, now)
        return _answer(MESSAGE_MISSING, int(pin), False, 200)
    context.lookup_throttle.record_success(None, address, now)
    name = f"{found.name}@{context.mapper_domain}" if context.mapper_domain else found.name
    return _answer(MESSAGE_FOUND, int(found.pin), name, 200)


async def phone_numbers(request: web.Request) -> web.Response:
    store = request.app[CONTEXT].store
    listed = [n for n in store.numbers() if n.route == "pin"]
    return web.json_response(
        [
            {
                "countryCode": n.country_code or "",
                "tollFree": n.toll_free,
                "formattedNumber": n.formatted,
                "default": i == 0,
            }
            for i, n in enumerate(listed)
        ]
    )


def add_mapper_routes(app: web.Application) -> None:
    app.router.add_get("/api/conference-mapper", conference_mapper)
    app.router.add_get("/api/phone-numbers", phone_numbers)
