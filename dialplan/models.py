"""What the dialplan stores: rooms with their PINs, and numbers with where they lead.

Also the errors the store raises. Each names what is wrong in words an operator can act on;
the web layer turns them into 400 (`InvalidInput`), 404 (`NotFound`) and 409 (`Conflict`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Literal, TypeGuard

__all__ = [
    "DISPLAY_POLICIES",
    "PIN_MAX_LENGTH",
    "PIN_MIN_LENGTH",
    "ROUTES",
    "START_POLICIES",
    "UNSET",
    "Conflict",
    "DialplanError",
    "DisplayPolicy",
    "InvalidInput",
    "NotFound",
    "NumberRecord",
    "RoomInUse",
    "RoomRecord",
    "RouteKind",
    "StartPolicy",
    "Unset",
    "digits_only",
    "hash_password",
    "is_display_policy",
    "is_route_kind",
    "is_start_policy",
    "validate_password",
    "validate_pin",
    "validate_room_name",
    "verify_password",
]

RouteKind = Literal["pin", "room"]
DisplayPolicy = Literal["show", "mask", "hide"]
StartPolicy = Literal["anyone", "hosts"]  # who may start a meeting (guests wait for a host)
START_POLICIES: tuple[StartPolicy, ...] = ("anyone", "hosts")
ROUTES: tuple[RouteKind, ...] = ("pin", "room")
DISPLAY_POLICIES: tuple[DisplayPolicy, ...] = ("show", "mask", "hide")

PASSWORD_MIN_LENGTH = 4
PASSWORD_MAX_LENGTH = 64
# scrypt with a 16-byte salt: about 16 MiB and some tens of milliseconds per check, which
# the per-address join limits bound (focus/admission.py).
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
PIN_MIN_LENGTH = 4
PIN_MAX_LENGTH = 12
ROOM_NAME_MAX_LENGTH = 64
_ROOM_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_PIN = re.compile(r"[0-9]+")


def digits_only(password: str) -> bool:
    """Whether a phone can type the password: ASCII digits 0-9 only (not other scripts'
    digits, which str.isdigit accepts and no keypad has)."""
    return bool(_PIN.fullmatch(password))


class Unset:
    """The type of UNSET: "leave this as it is" where None means "remove it"."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"


UNSET = Unset()


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
    """A room and its policy. The password is kept only as a salted scrypt hash."""

    name: str  # lower case, [a-z0-9._-]{1,64}
    pin: str  # 4..12 digits, never starting with 0
    created: float  # wall-clock seconds since the epoch
    host_pin: str | None = None  # like `pin`; unique among every room's PIN and host PIN
    lobby: bool = False  # guests knock and wait for a moderator
    password_hash: str | None = None  # "scrypt$N$r$p$salt$hash" (base64), or no password
    start: StartPolicy = "anyone"  # "hosts": guests wait until a host is in
    guests: bool = True  # False: only hosts and token holders may join
    # The password is digits only (a phone can type it); None: no password, or one set
    # before this was stored (not known: a caller is asked for it anyway)
    password_digits: bool | None = None

    @property
    def has_password(self) -> bool:
        return self.password_hash is not None

    def as_json(self) -> dict[str, object]:
        """The API's form: never the password, only whether there is one."""
        return {"name": self.name, "pin": self.pin, "host_pin": self.host_pin,
                "lobby": self.lobby, "has_password": self.has_password, "start": self.start,
                "guests": self.guests}  # fmt: skip


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


def is_start_policy(value: object) -> TypeGuard[StartPolicy]:
    return value in START_POLICIES


def validate_password(password: object) -> str:
    """A room password: 4 to 64 printable characters (digits only if phone callers are to
    type it: the page accepts any)."""
    if not isinstance(password, str) or not password.isprintable():
        raise InvalidInput("password: expected printable characters")
    if not PASSWORD_MIN_LENGTH <= len(password) <= PASSWORD_MAX_LENGTH:
        raise InvalidInput(f"password: expected {PASSWORD_MIN_LENGTH} to "
                           f"{PASSWORD_MAX_LENGTH} characters")  # fmt: skip
    return password


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """The stored form of a password: scrypt over a random 16-byte salt."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R,
                            p=_SCRYPT_P, dklen=32)  # fmt: skip
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(stored: str, password: str) -> bool:
    """Whether `password` is the one `stored` was made from (compared in constant time)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt" or len(password) > PASSWORD_MAX_LENGTH * 4:
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n),
                             r=int(r), p=int(p), dklen=len(expected))  # fmt: skip
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


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
