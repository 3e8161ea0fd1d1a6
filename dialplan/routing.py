"""Where an incoming call goes: the PIN prompt, straight into a room, or nowhere.

In order:
1. A room header (X-Room-Name, or Jitsi-Conference-Room as Jigasi sends it) names the room;
   a value "room@conference.example.com" means "room". It is honoured only when the call
   comes from a trusted peer (`trusted=True`: the gateway decides, from `sip.trusted_peers`
   and later the trunk the call came over); an unknown room is then a 404 reject. From
   anyone else the header is ignored (logged, without its value) and the call goes on as if
   it had none, so an untrusted caller gets the same answer for a known and an unknown room
   and cannot use the header to skip the PIN or to learn which rooms exist. A Router built
   with `room_headers=False` ignores the headers from everyone.
2. The dialled number (Request-URI user part, or To), matched in normalised form (see
   dialplan.numbers): its route is the prompt or one room.
3. Otherwise the default route from configuration: "pin", "reject" or "room:NAME".

The decision carries the number's caller-ID display policy ("mask" when no number matched).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from dialplan.models import DisplayPolicy, NumberRecord
from dialplan.numbers import candidates
from dialplan.store import Store

__all__ = [
    "ROOM_HEADERS",
    "Prompt",
    "Reject",
    "Room",
    "RouteDecision",
    "Router",
    "parse_default_route",
]

log = logging.getLogger(__name__)

ROOM_HEADERS = ("X-Room-Name", "Jitsi-Conference-Room")
DEFAULT_DISPLAY: DisplayPolicy = "mask"


@dataclass(frozen=True, slots=True)
class Prompt:
    """Play the PIN prompt and collect digits."""

    display: DisplayPolicy = DEFAULT_DISPLAY


@dataclass(frozen=True, slots=True)
class Room:
    """Join this room (stored, lower-case name) without a prompt."""

    name: str
    display: DisplayPolicy = DEFAULT_DISPLAY


@dataclass(frozen=True, slots=True)
class Reject:
    """Refuse the call with this SIP status."""

    status: int
    reason: str


RouteDecision = Prompt | Room | Reject

DefaultRoute = tuple[Literal["pin", "reject", "room"], str | None]


def parse_default_route(text: str) -> DefaultRoute:
    """ "pin" | "reject" | "room:NAME" -> (kind, room); ValueError otherwise."""
    if text == "pin":
        return ("pin", None)
    if text == "reject":
        return ("reject", None)
    if text.startswith("room:") and len(text) > 5:
        return ("room", text[5:].lower())
    raise ValueError(f"default route: expected 'pin', 'reject' or 'room:NAME', got {text!r}")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, val in headers.items():
        if key.lower() == lowered:
            return val
    return None


class Router:
    """Routing decisions for call setup; synchronous, one or two indexed queries."""

    def __init__(
        self, store: Store, default_route: str = "pin", *, room_headers: bool = True
    ) -> None:
        self._store = store
        self._default = parse_default_route(default_route)
        self._room_headers = room_headers

    def route(
        self,
        dialled: str | None,
        caller: str | None,
        headers: Mapping[str, str],
        *,
        call_id: str = "-",
        trusted: bool = False,
    ) -> RouteDecision:
        """The decision for a call to `dialled` from `caller` with these SIP headers;
        `trusted`: the call comes from a peer allowed to pick the room by header."""
        number = self._match(dialled)
        display = number.display if number else DEFAULT_DISPLAY
        if self._room_headers:
            for name in ROOM_HEADERS:
                value = _header(headers, name)
                if value is None:
                    continue
                if not trusted:
                    log.info("call %s: %s from an untrusted peer ignored", call_id, name)
                    break
                room_name = value.strip().split("@", 1)[0]
                room = self._store.room(room_name)
                if room is None:
                    log.info("call %s: %s names unknown room %r", call_id, name, room_name)
                    return Reject(404, "Room Not Found")
                log.info("call %s: to room %s by %s", call_id, room.name, name)
                return Room(room.name, display)
        if number is not None:
            if number.route == "room" and number.room is not None:
                return self._to_room(number.room, display, call_id, f"number {number.number}")
            log.info("call %s: number %s leads to the PIN prompt", call_id, number.number)
            return Prompt(display)
        kind, default_room = self._default
        if kind == "room" and default_room is not None:
            return self._to_room(default_room, display, call_id, "the default route")
        if kind == "reject":
            log.info("call %s: number %r is not configured: rejected", call_id, dialled)
            return Reject(404, "Not Found")
        log.info("call %s: number %r is not configured: PIN prompt", call_id, dialled)
        return Prompt(display)

    def _match(self, dialled: str | None) -> NumberRecord | None:
        for candidate in candidates(dialled or ""):
            record = self._store.number(candidate)
            if record is not None:
                return record
        return None

    def _to_room(self, name: str, display: DisplayPolicy, call_id: str, why: str) -> Reject | Room:
        room = self._store.room(name)
        if room is None:
            log.error("call %s: %s leads to room %r, which does not exist", call_id, why, name)
            return Reject(404, "Room Not Found")
        log.info("call %s: to room %s by %s", call_id, room.name, why)
        return Room(room.name, display)

    def room_for_pin(self, pin: str) -> str | None:
        """The room a PIN opens (for the IVR), or None."""
        room = self._store.room_by_pin(pin)
        return room.name if room else None
