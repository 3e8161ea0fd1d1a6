"""Conferences and participants: who is in which room, with which role and mute state.

The focus owns the roster; media components (the gateway's mixer, later the bridge) learn
about changes by subscribing to a room. Everything here is synchronous and in memory; the
cluster replaces the transport of these calls, not their shape.
"""

from __future__ import annotations

import itertools
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace

log = logging.getLogger(__name__)

__all__ = [
    "Focus",
    "FocusEvent",
    "ParticipantInfo",
    "ParticipantJoined",
    "ParticipantLeft",
    "ParticipantMuted",
    "UnknownParticipant",
]

KINDS = ("phone", "browser")


class UnknownParticipant(KeyError):
    """No participant with that id is in any conference."""


@dataclass(frozen=True, slots=True)
class ParticipantInfo:
    id: str
    room: str
    kind: str
    name: str
    muted: bool = False
    moderator: bool = False

    def as_json(self) -> dict[str, object]:
        return {"id": self.id, "kind": self.kind, "name": self.name, "muted": self.muted}


@dataclass(frozen=True, slots=True)
class ParticipantJoined:
    participant: ParticipantInfo


@dataclass(frozen=True, slots=True)
class ParticipantLeft:
    participant: ParticipantInfo
    reason: str


@dataclass(frozen=True, slots=True)
class ParticipantMuted:
    participant: ParticipantInfo


FocusEvent = ParticipantJoined | ParticipantLeft | ParticipantMuted
Listener = Callable[[FocusEvent], None]


class _Conference:
    __slots__ = ("listeners", "participants", "room")

    def __init__(self, room: str) -> None:
        self.room = room
        self.participants: dict[str, ParticipantInfo] = {}
        self.listeners: list[Listener] = []


class Focus:
    """The roster of every live conference in this process."""

    def __init__(self) -> None:
        self._conferences: dict[str, _Conference] = {}
        self._where: dict[str, str] = {}
        self._ids = itertools.count(1)

    def join(self, room: str, kind: str, name: str) -> ParticipantInfo:
        if kind not in KINDS:
            raise ValueError(f"participant kind must be one of {KINDS}, not {kind!r}")
        conference = self._conferences.get(room)
        if conference is None:
            conference = self._conferences[room] = _Conference(room)
        if not conference.participants:
            log.info("conference %s: started", room)
        pid = f"{kind[0]}{next(self._ids)}-{secrets.token_hex(3)}"
        info = ParticipantInfo(
            id=pid, room=room, kind=kind, name=name, moderator=not conference.participants
        )
        conference.participants[pid] = info
        self._where[pid] = room
        log.info("participant %s: joined %s as %s (%s)", pid, room, kind, name)
        self._emit(conference, ParticipantJoined(info))
        return info

    def leave(self, participant_id: str, reason: str = "left") -> None:
        room = self._where.pop(participant_id, None)
        if room is None:
            return
        conference = self._conferences[room]
        info = conference.participants.pop(participant_id)
        log.info("participant %s: left %s (%s)", participant_id, room, reason)
        self._emit(conference, ParticipantLeft(info, reason))
        if not conference.participants:
            log.info("conference %s: ended", room)
            if not conference.listeners:
                del self._conferences[room]

    def get(self, participant_id: str) -> ParticipantInfo:
        room = self._where.get(participant_id)
        if room is None:
            raise UnknownParticipant(participant_id)
        return self._conferences[room].participants[participant_id]

    def set_muted(self, participant_id: str, muted: bool) -> ParticipantInfo:
        info = self.get(participant_id)
        if info.muted == muted:
            return info
        conference = self._conferences[info.room]
        info = conference.participants[participant_id] = replace(info, muted=muted)
        log.info("participant %s: %s", participant_id, "muted" if muted else "unmuted")
        self._emit(conference, ParticipantMuted(info))
        return info

    def participants(self, room: str) -> list[ParticipantInfo]:
        conference = self._conferences.get(room)
        return list(conference.participants.values()) if conference else []

    def subscribe(self, room: str, listener: Listener) -> Callable[[], None]:
        """Call `listener` for every change in `room`, from now until the returned function
        is called. Subscribing does not start a conference."""
        conference = self._conferences.get(room)
        if conference is None:
            conference = self._conferences[room] = _Conference(room)

        def unsubscribe() -> None:
            current = self._conferences.get(room)
            if current is not None and listener in current.listeners:
                current.listeners.remove(listener)
                if not current.participants and not current.listeners:
                    del self._conferences[room]

        conference.listeners.append(listener)
        return unsubscribe

    def stats(self) -> dict[str, int]:
        return {
            "conferences": sum(1 for c in self._conferences.values() if c.participants),
            "participants": len(self._where),
        }

    def _emit(self, conference: _Conference, event: FocusEvent) -> None:
        for listener in list(conference.listeners):
            try:
                listener(event)
            except Exception:
                log.exception("conference %s: listener failed on %s", conference.room, event)
