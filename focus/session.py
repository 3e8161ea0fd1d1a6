"""One browser participant's meeting state, and the seams `Meetings` talks through.

`Connection` is the signaling socket as the focus sees it (web/signaling.py implements it
over a WebSocket; tests use a list): `send` queues one message and never blocks or raises,
`close` sends any queued messages, then closes with a code from docs/signaling.md.
`RoomDirectory` is the dialplan as the focus sees it (`focus.rooms.StoreRooms`).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from bridge.api import EndpointAllocation, MediaSource, TransportDescription
from focus.policy import RoomPolicy
from focus.sdp import OWN_SLOTS, ReceiveSlots
from focus.turn import IceServers

__all__ = [
    "CLOSE_BAD_TOKEN",
    "CLOSE_DENIED",
    "CLOSE_GOING_AWAY",
    "CLOSE_KICKED",
    "CLOSE_MEDIA_FAILED",
    "CLOSE_NORMAL",
    "CLOSE_NOT_ALLOWED",
    "CLOSE_NO_ROOM",
    "CLOSE_PASSWORD",
    "CLOSE_ROOM_FULL",
    "CLOSE_TRY_LATER",
    "BrowserSession",
    "Connection",
    "JoinRefused",
    "MeetingSettings",
    "PolicyUpdate",
    "RoomDirectory",
    "RoomPolicies",
]

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_KICKED = 4001
CLOSE_ROOM_FULL = 4003
CLOSE_NO_ROOM = 4004
CLOSE_MEDIA_FAILED = 4010
CLOSE_BAD_TOKEN = 4011  # the join's token was refused
CLOSE_PASSWORD = 4012  # the room needs a password, or the one given is wrong
CLOSE_DENIED = 4013  # a moderator denied entry from the lobby
CLOSE_NOT_ALLOWED = 4014  # the room admits no guests, or its lobby is full
CLOSE_TRY_LATER = 4029  # too many joins, rooms or endpoints from one address


class Connection(Protocol):
    def send(self, message: Mapping[str, object]) -> None: ...

    def close(self, code: int, reason: str) -> None: ...


class RoomDirectory(Protocol):
    """Which rooms exist, and their dial-in information (the dialplan's data)."""

    def exists(self, room: str) -> bool: ...

    def create(self, room: str) -> None: ...

    def dial_in(self, room: str) -> Mapping[str, object] | None:
        """{"pin": "...", "numbers": [{"number", "formatted", "country", "toll_free"}]},
        and "host_pin" when the room has one (a secret for moderators only)."""
        ...


class RoomPolicies(Protocol):
    """Each room's stored policy (focus.rooms.StoreRooms over the dialplan's store)."""

    def policy(self, room: str) -> RoomPolicy | None:
        """None when the room does not exist."""
        ...

    def check_password(self, room: str, password: str) -> bool:
        """Whether it is the room's password (slow on purpose: call it in a thread)."""
        ...

    def set_policy(self, room: str, change: PolicyUpdate) -> RoomPolicy:
        """Store a change (slow when it sets a password: call it in a thread)."""
        ...


@dataclass(frozen=True, slots=True)
class PolicyUpdate:
    """A change to a room's policy; None leaves a field. `password` "" removes it."""

    lobby: bool | None = None
    start: str | None = None
    password: str | None = None
    guests: bool | None = None

    def __repr__(self) -> str:
        return (f"PolicyUpdate(lobby={self.lobby}, start={self.start!r}, "
                f"password={'...' if self.password is not None else None}, "
                f"guests={self.guests})")


class JoinRefused(Exception):
    """The join is refused: answer `error` with `code`, then close with `close_code`."""

    def __init__(self, code: str, message: str, close_code: int) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.close_code = close_code


@dataclass(frozen=True, slots=True)
class MeetingSettings:
    # Who creates a room that does not exist by joining it: "anyone", "hosts" (a token
    # that makes its holder a moderator of that room), "nobody" (True/False: anyone/nobody).
    create_rooms: str | bool = "anyone"
    max_participants: int = 100  # per room, phones included
    chat_history: int = 50  # messages kept per live conference, sent in `joined`
    ice_servers: tuple[Mapping[str, object], ...] = ()  # RTCIceServer dicts for the browser
    # STUN/TURN servers with per-participant TURN credentials (focus/turn.py), after those
    ice: IceServers | None = None
    renegotiate_delay: float = 0.1  # a burst of source changes makes one offer
    bridge_timeout: float = 10.0  # seconds for one call to the bridge
    # Per client address (focus/admission.py); a join without an address is not limited.
    joins_per_minute: int = 30
    rooms_per_hour: int = 20  # rooms created by joining
    max_endpoints_per_source: int = 20
    lobby_size: int = 100  # participants waiting in one room's lobby at most

    @property
    def who_creates(self) -> str:
        if isinstance(self.create_rooms, bool):
            return "anyone" if self.create_rooms else "nobody"
        return self.create_rooms


@dataclass(eq=False, slots=True)
class BrowserSession:
    """What the focus keeps about one browser: its socket, bridge endpoint and offers."""

    participant_id: str
    room: str
    conn: Connection
    source: str | None = None  # the client's address, holding one of its endpoints
    allocation: EndpointAllocation | None = None
    slots: ReceiveSlots = field(default_factory=ReceiveSlots)
    session_id: int = field(default_factory=lambda: secrets.randbelow(2**62) + 1)
    revision: int = 0  # of the last offer sent
    pending: int | None = None  # revision of the offer awaiting its answer
    offered_mids: tuple[str, ...] = ()  # of the pending offer
    want_offer: bool = False  # sources changed elsewhere: offer once nothing is pending
    force_offer: bool = False  # the browser asked (renegotiate): offer even if pending
    transport: TransportDescription | None = None  # from the last answer
    sources: tuple[MediaSource, ...] = ()  # what the browser sends, per the last answer
    forced_off: bool = False  # the bridge is told to drop this endpoint's audio
    join: object = None  # the p.Join it came in with (to wait in the lobby again)
    host: bool = False  # joined as a host of the room
    to_lobby: bool = False  # leaving the roster for the lobby: keep the socket open
    closed: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def offer_mids(self) -> tuple[str, ...]:
        return tuple(OWN_SLOTS) + tuple(s.mid for s in self.slots.slots)
