"""What the dialplan stores: rooms with their PINs, and numbers with where they lead.

Also the errors the store raises. Each names what is wrong in words an operator can act on;
the web layer turns them into 400 (`InvalidInput`), 404 (`NotFound`) and 409 (`Conflict`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, TypeGuard

__all__ = [
    "DISPLAY_POLICIES",
    "PIN_MAX_LENGTH",
    "PIN_MIN_LENGTH",
    "ROUTES",
    "Conflict",
    "DialplanError",
    "DisplayPolicy",
    "InvalidInput",
    "NotFound",
    "NumberRecord",
    "RoomInUse",
    "RoomRecord",
    "RouteKind",
    "is_display_policy",
    "is_route_kind",
    "validate_pin",
    "validate_room_name",
]

RouteKind = Literal["pin", "room"]
DisplayPolicy = Literal["show", "mask", "hide"]
ROUTES: tuple[RouteKind, ...] = ("pin", "room")
DISPLAY_POLICIES: tuple[DisplayPolicy, ...] = ("show", "mask", "hide")

PIN_MIN_LENGTH = 4
PIN_MAX_LENGTH = 12
ROOM_NAME_MAX_LENGTH = 64
_ROOM_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_PIN = re.compile(r"[0-9]+")


class DialplanError(Exception):
    """Base of the dialplan's errors; str(error) is the message for the operator."""


class InvalidInput(DialplanError, ValueError):
    """A value given to the store is malformed (bad room name, PIN, number...)."""


class NotFound(DialplanError, LookupError):
    """No room or number by that name."""


class Conflict(DialplanError, ValueError):
    """The change would break a uniqueness rule (duplicate name, PIN or number), or delete a
    room that is still in use."""


class RoomInUse(Conflict):
    """The room is the route of one or more numbers, so it cannot be deleted."""

    def __init__(self, room: str, numbers: list[str]) -> None:
        self.room = room
        self.numbers = numbers
        super().__init__(
            f"room {room!r} is the route of number(s) {', '.join(numbers)}; "
            "delete or re-route them first"
        )


@dataclass(frozen=True, slots=True)
class RoomRecord:
    name: str  # lower case, [a-z0-9._-]{1,64}
    pin: str  # 4..12 digits, never starting with 0
    created: float  # wall-clock seconds since the epoch

    def as_json(self) -> dict[str, object]:
        return {"name": self.name, "pin": self.pin}


@dataclass(frozen=True, slots=True)
class NumberRecord:
    number: str  # normalised: "+" and digits (E.164), or digits as given
    route: RouteKind  # "pin": the PIN prompt; "room": straight to `room`
    room: str | None  # set exactly when route == "room"
    display: DisplayPolicy  # how a caller's number is shown to the room
    country_code: str | None  # ISO 3166 alpha-2, upper case ("US", "GB"), when known
    toll_free: bool
    formatted: str  # for people: "+1 555 0100"
    created: float

    def as_json(self) -> dict[str, object]:
        """The API's form (keys as in Jitsi's phone-number list where they overlap)."""
        return {
            "number": self.number,
            "route": self.route,
            "room": self.room,
            "display": self.display,
            "tollFree": self.toll_free,
            "countryCode": self.country_code,
            "formattedNumber": self.formatted,
        }


def is_route_kind(value: object) -> TypeGuard[RouteKind]:
    return value in ROUTES


def is_display_policy(value: object) -> TypeGuard[DisplayPolicy]:
    return value in DISPLAY_POLICIES


def validate_room_name(name: object) -> str:
    """The stored (lower-case) form of a room name, or InvalidInput."""
    if not isinstance(name, str) or not _ROOM_NAME.fullmatch(name):
        raise InvalidInput(
            "room name: expected 1 to 64 characters from A-Z, a-z, 0-9, '.', '_' and '-'"
        )
    return name.lower()


def validate_pin(pin: object) -> str:
    """A PIN as given by an operator: 4 to 12 ASCII digits, not starting with 0.

    The leading-zero rule exists because the Jitsi conference mapper reports a PIN as a JSON
    integer, which cannot carry a leading zero.
    """
    if not isinstance(pin, str) or not _PIN.fullmatch(pin) or not pin.isascii():
        raise InvalidInput("pin: expected digits only")
    if not PIN_MIN_LENGTH <= len(pin) <= PIN_MAX_LENGTH:
        raise InvalidInput(f"pin: expected {PIN_MIN_LENGTH} to {PIN_MAX_LENGTH} digits")
    if pin[0] == "0":
        raise InvalidInput("pin: must not start with 0")
    return pin
