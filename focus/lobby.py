"""The lobby: participants of any kind waiting to get into a room (sans-I/O, in memory).

Rules, in the order an entry meets them:

1. `wait(room, id, kind, name, reason)` puts a participant in the room's lobby: `reason`
   "moderator" (they knock: a moderator decides) or "host" (they wait for a host to arrive,
   focus/policy.py rule 5). The id is the participant id they will have in the room (the
   focus makes it: `Focus.new_id`), so whoever carries them (the browser meetings, later the
   gateway for a phone caller) keeps one id throughout. An id waits in one lobby at most.
2. `admit(room, id, by)`, `deny(room, id, by)` and `admit_all(room, by)` decide for those who
   knock or wait; `by` is the moderator's participant id, or "api". An id that is not waiting
   in that room is `UnknownParticipant`.
3. `host_arrived(room)` lets in those waiting for a host ("host"), never those who knock.
4. `cancel(id)` takes out someone who gave up (socket closed, caller hung up).
5. Every change is an event to the room's listeners: `Knocked`, `Admitted`, `Denied`,
   `Cancelled`. The owner of an entry acts on its own `Admitted` or `Denied` (join it, or
   tell it and hang up); moderators' pages redraw the knocking list on any of them.

Nothing is stored: the lobby of a room lives as long as someone waits in it. At most
`max_waiting` participants wait in one room (more: `LobbyFull`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from focus.conference import UnknownParticipant

__all__ = [
    "Admitted",
    "Cancelled",
    "Denied",
    "Knocked",
    "Lobby",
    "LobbyEntry",
    "LobbyEvent",
    "LobbyFull",
]

log = logging.getLogger(__name__)


class LobbyFull(Exception):
    """Too many participants wait in this room already."""


@dataclass(frozen=True, slots=True)
class LobbyEntry:
    id: str
    room: str
    kind: str  # "browser" | "phone"
    name: str
    reason: str  # "moderator" (knocking) | "host" (waiting for a host)
    since: float

    def as_json(self) -> dict[str, object]:
        """The API's and the knocking list's form."""
        return {"id": self.id, "kind": self.kind, "name": self.name}


@dataclass(frozen=True, slots=True)
class Knocked:
    entry: LobbyEntry


@dataclass(frozen=True, slots=True)
class Admitted:
    entry: LobbyEntry
    by: str | None  # None: a host arrived


@dataclass(frozen=True, slots=True)
class Denied:
    entry: LobbyEntry
    by: str


@dataclass(frozen=True, slots=True)
class Cancelled:
    entry: LobbyEntry


LobbyEvent = Knocked | Admitted | Denied | Cancelled
LobbyListener = Callable[[LobbyEvent], None]


class Lobby:
    def __init__(self, max_waiting: int = 100) -> None:
        self.max_waiting = max_waiting
        self._rooms: dict[str, dict[str, LobbyEntry]] = {}
        self._where: dict[str, str] = {}
        self._listeners: dict[str | None, list[LobbyListener]] = {}

    # -- queries ---------------------------------------------------------------------------

    def waiting(self, room: str) -> list[LobbyEntry]:
        """Everyone waiting in `room`, oldest first."""
        return list(self._rooms.get(room, {}).values())

    def waiting_rooms(self) -> dict[str, int]:
        """{room: how many wait} for every room with someone waiting."""
        return {room: len(entries) for room, entries in self._rooms.items() if entries}

    def get(self, participant_id: str) -> LobbyEntry | None:
        room = self._where.get(participant_id)
        return self._rooms[room][participant_id] if room is not None else None

    def stats(self) -> dict[str, int]:
        return {"lobby_waiting": len(self._where)}

    # -- changes ---------------------------------------------------------------------------

    def wait(self, room: str, participant_id: str, kind: str, name: str, reason: str,
             now: float) -> LobbyEntry:  # fmt: skip
        if reason not in ("moderator", "host"):
            raise ValueError(f"lobby reason must be 'moderator' or 'host', not {reason!r}")
        if participant_id in self._where:
            raise ValueError(f"{participant_id} already waits")
        entries = self._rooms.setdefault(room, {})
        if len(entries) >= self.max_waiting:
            if not entries:
                del self._rooms[room]
            raise LobbyFull(f"{self.max_waiting} participants already wait in room {room}")
        entry = LobbyEntry(participant_id, room, kind, name, reason, now)
        entries[participant_id] = entry
        self._where[participant_id] = room
        log.info("participant %s: waits in the lobby of %s (%s, for a %s)", participant_id,
                 room, kind, reason)  # fmt: skip
        self._emit(room, Knocked(entry))
        return entry

    def admit(self, room: str, participant_id: str, by: str | None) -> LobbyEntry:
        entry = self._take(room, participant_id)
        log.info("participant %s: admitted to %s by %s", participant_id, room, by or "a host")
        self._emit(room, Admitted(entry, by))
        return entry

    def deny(self, room: str, participant_id: str, by: str) -> LobbyEntry:
        entry = self._take(room, participant_id)
        log.info("participant %s: denied entry to %s by %s", participant_id, room, by)
        self._emit(room, Denied(entry, by))
        return entry

    def admit_all(self, room: str, by: str) -> list[LobbyEntry]:
        return [self.admit(room, e.id, by) for e in self.waiting(room)]

    def host_arrived(self, room: str) -> list[LobbyEntry]:
        """Let in those waiting for a host; those who knock keep knocking."""
        return [self.admit(room, e.id, None) for e in self.waiting(room) if e.reason == "host"]

    def cancel(self, participant_id: str) -> LobbyEntry | None:
        room = self._where.get(participant_id)
        if room is None:
            return None
        entry = self._take(room, participant_id)
        log.info("participant %s: left the lobby of %s", participant_id, room)
        self._emit(room, Cancelled(entry))
        return entry

    # -- subscriptions ---------------------------------------------------------------------

    def subscribe(self, room: str | None, listener: LobbyListener) -> Callable[[], None]:
        """Call `listener` for every change in `room`'s lobby (None: every room's) until the
        returned function is called."""
        self._listeners.setdefault(room, []).append(listener)

        def unsubscribe() -> None:
            listeners = self._listeners.get(room)
            if listeners is not None and listener in listeners:
                listeners.remove(listener)
                if not listeners:
                    del self._listeners[room]

        return unsubscribe

    # -- internals -------------------------------------------------------------------------

    def _take(self, room: str, participant_id: str) -> LobbyEntry:
        entries = self._rooms.get(room)
        if entries is None or participant_id not in entries:
            raise UnknownParticipant(participant_id)
        entry = entries.pop(participant_id)
        del self._where[participant_id]
        if not entries:
            del self._rooms[room]
        return entry

    def _emit(self, room: str, event: LobbyEvent) -> None:
        for listener in [*self._listeners.get(room, ()), *self._listeners.get(None, ())]:
            try:
                listener(event)
            except Exception:
                log.exception("lobby %s: a listener failed on %s", room,
                              type(event).__name__)  # fmt: skip
