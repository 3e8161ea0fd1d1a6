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
from focus.sdp import OWN_SLOTS, ReceiveSlots

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_KICKED",
    "CLOSE_MEDIA_FAILED",
    "CLOSE_NORMAL",
    "CLOSE_NO_ROOM",
    "CLOSE_ROOM_FULL",
    "CLOSE_TRY_LATER",
    "BrowserSession",
    "Connection",
    "JoinRefused",
    "MeetingSettings",
    "RoomDirectory",
]

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_KICKED = 4001
CLOSE_ROOM_FULL = 4003
CLOSE_NO_ROOM = 4004
CLOSE_MEDIA_FAILED = 4010
CLOSE_TRY_LATER = 4029  # too many joins, rooms or endpoints from one address


class Connection(Protocol):
    def send(self, message: Mapping[str, object]) -> None: ...

    def close(self, code: int, reason: str) -> None: ...


class RoomDirectory(Protocol):
    """Which rooms exist, and their dial-in information (the dialplan's data)."""

    def exists(self, room: str) -> bool: ...

    def create(self, room: str) -> None: ...

    def dial_in(self, room: str) -> Mapping[str, object] | None:
        """{"pin": "...", "numbers": [{"number", "formatted", "country", "toll_free"}]}"""
        ...


class JoinRefused(Exception):
    """The join is refused: answer `error` with `code`, then close with `close_code`."""

    def __init__(self, code: str, message: str, close_code: int) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.close_code = close_code


@dataclass(frozen=True, slots=True)
class MeetingSettings:
    create_rooms: bool = True  # a join for an unknown room creates it in the dialplan
    max_participants: int = 100  # per room, phones included
    chat_history: int = 50  # messages kept per live conference, sent in `joined`
    ice_servers: tuple[Mapping[str, object], ...] = ()  # RTCIceServer dicts for the browser
    renegotiate_delay: float = 0.1  # a burst of source changes makes one offer
    bridge_timeout: float = 10.0  # seconds for one call to the bridge
    # Per client address (focus/admission.py); a join without an address is not limited.
    joins_per_minute: int = 30
    rooms_per_hour: int = 20  # rooms created by joining
    max_endpoints_per_source: int = 20


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
    closed: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def offer_mids(self) -> tuple[str, ...]:
        return tuple(OWN_SLOTS) + tuple(s.mid for s in self.slots.slots)
