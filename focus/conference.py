"""Conferences and participants: who is in which room, with which role, media and mute state.

The focus owns the roster; media components (the gateway's mixer, the browser meetings)
learn about changes by subscribing to a room. Everything here is synchronous and in memory;
the cluster replaces the transport of these calls, not their shape.

Roles (focus/policy.py): a host (a token with the moderator claim, a caller with the host
PIN) joins as moderator. In an open room (the conference's `open_room`, which the meetings
set from the room policy) the oldest browser participant is moderator when nobody is;
phone participants never become moderator automatically, as Jicofo never makes Jigasi an
owner. When the last moderator leaves, another host present takes over, else (open rooms
only) the oldest remaining browser participant.

Mute: `muted` is the participant's audio state as the room should show it. A participant
mutes and unmutes themself (`set_muted`, or `set_media` for a browser); a moderator can only
mute (`moderator_mute`, `mute_all`), which also sets `force_muted` until the participant
unmutes themself. Nobody can unmute someone else.

Receivers: a participant hears the room's audio either through the bridge (a browser, muted
or not: it still listens; a recording; another node's phone mixer later) or through a
gateway's phone mixer, which mixes the phones it carries itself (`mixed_by` names that
gateway's group). `audio_receivers(room, group)` counts the participants that need the
room's audio from the bridge as that group sees it: everyone not mixed by ``group``, and
one more while the room is being recorded (`set_recorded`, from the recorder). The
gateway encodes its callers' voices for the bridge only while that count is not zero, and
recounts on every `ParticipantJoined` and `ParticipantLeft` (the only events that change it)
and when a recording starts or stops (the composition root tells it).

Events: `ParticipantJoined`, `ParticipantLeft` and `ParticipantMuted` go to every listener;
`ParticipantUpdated` (name, hand, media flags, role) only to listeners that subscribe with
`updates=True`, so listeners written for the first three keep working unchanged.
"""

from __future__ import annotations

import itertools
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace

log = logging.getLogger(__name__)

__all__ = [
    "KINDS",
    "Focus",
    "FocusEvent",
    "Forbidden",
    "ParticipantInfo",
    "ParticipantJoined",
    "ParticipantLeft",
    "ParticipantMuted",
    "ParticipantUpdated",
    "UnknownParticipant",
]

KINDS = ("phone", "browser")


class UnknownParticipant(KeyError):
    """No participant with that id is in any conference."""


class Forbidden(PermissionError):
    """The acting participant may not do this (not a moderator, or another room)."""


@dataclass(frozen=True, slots=True)
class ParticipantInfo:
    id: str
    room: str
    kind: str
    name: str
    muted: bool = False
    moderator: bool = False
    audio: bool = False  # sending audio (a phone always is; `muted` says if it is heard)
    video: bool = False  # sending camera video
    screen: bool = False  # sharing a screen
    hand: bool = False  # hand raised
    force_muted: bool = False  # muted by a moderator, until the participant unmutes
    host: bool = False  # a host of the room (token moderator claim, host PIN)
    #: the picture the participant's token names (an https: URL, focus.tokens.avatar_url)
    avatar: str | None = None
    # The gateway group whose phone mixer this participant hears the room through (a
    # phone); None: it hears the room through the bridge (a browser).
    mixed_by: str | None = None
    #: a called-out phone's call state ("calling", "ringing", "in-meeting", "busy",
    #: "no-answer", "failed", "cancelled"; gateway/dialout.py) and why it ended; None for
    #: everyone else
    state: str | None = None
    state_reason: str | None = None

    @property
    def role(self) -> str:
        return "moderator" if self.moderator else "guest"

    def as_json(self) -> dict[str, object]:
        return {"id": self.id, "kind": self.kind, "name": self.name, "muted": self.muted}


@dataclass(frozen=True, slots=True)
class ParticipantJoined:
    participant: ParticipantInfo


@dataclass(frozen=True, slots=True)
class ParticipantLeft:
    participant: ParticipantInfo
    reason: str
    by: str | None = None  # the moderator, when reason == "kicked"


@dataclass(frozen=True, slots=True)
class ParticipantMuted:
    """`participant.muted` changed, or a moderator muted the participant (`by` set)."""

    participant: ParticipantInfo
    by: str | None = None


@dataclass(frozen=True, slots=True)
class ParticipantUpdated:
    """Anything but mute changed; `changed` names the fields ("name", "hand", "role"...)."""

    participant: ParticipantInfo
    changed: frozenset[str]


FocusEvent = ParticipantJoined | ParticipantLeft | ParticipantMuted | ParticipantUpdated
Listener = Callable[[FocusEvent], None]


class _Conference:
    __slots__ = ("listeners", "open_room", "participants", "room")

    def __init__(self, room: str) -> None:
        self.room = room
        self.open_room = True  # the oldest browser moderates when no host does
        self.participants: dict[str, ParticipantInfo] = {}  # in joining order
        self.listeners: list[tuple[Listener, bool]] = []  # (listener, wants updates)


class Focus:
    """The roster of every live conference in this process."""

    def __init__(self) -> None:
        self._conferences: dict[str, _Conference] = {}
        self._where: dict[str, str] = {}
        self._ids = itertools.count(1)
        self._recorded: set[str] = set()  # rooms being recorded (recorder/service.py)

    # -- joining and leaving ---------------------------------------------------------------

    def join(
        self,
        room: str,
        kind: str,
        name: str,
        *,
        audio: bool | None = None,
        video: bool = False,
        mixed_by: str | None = None,
        participant_id: str | None = None,
        host: bool = False,
        open_room: bool | None = None,
        state: str | None = None,
        moderator: bool | None = None,
        avatar: str | None = None,
    ) -> ParticipantInfo:
        """Add a participant. `audio` (sending audio) defaults to True for a phone; a
        browser that joins with its microphone off is muted. `mixed_by`: the gateway group
        that mixes this phone's room audio itself (see "Receivers" above).
        `participant_id`: one made by `new_id` (a participant who waited in the lobby keeps
        it); `host`: joins as a host and moderator; `open_room`: the room's policy is open
        (see "Roles"), kept for the conference; `state`: a called-out phone's call state;
        `moderator`: True or False to set the role (a browser resuming its place after its
        room moved, focus/meeting_resume.py), None for the rule above (a host always is)."""
        if kind not in KINDS:
            raise ValueError(f"participant kind must be one of {KINDS}, not {kind!r}")
        conference = self._conferences.get(room)
        if conference is None:
            conference = self._conferences[room] = _Conference(room)
        if open_room is not None:
            conference.open_room = open_room
        if not conference.participants:
            log.info("conference %s: started", room)
        sending = audio if audio is not None else kind == "phone"
        pid = participant_id if participant_id is not None else self.new_id(kind)
        if pid in self._where:
            raise ValueError(f"participant {pid} is already in a conference")
        has_moderator = any(p.moderator for p in conference.participants.values())
        info = ParticipantInfo(
            id=pid, room=room, kind=kind, name=name,
            muted=kind == "browser" and not sending,
            moderator=host or (moderator if moderator is not None else (
                kind == "browser" and not has_moderator and conference.open_room)),
            audio=sending, video=video and kind == "browser", mixed_by=mixed_by, host=host,
            state=state, avatar=avatar,
        )  # fmt: skip
        conference.participants[pid] = info
        self._where[pid] = room
        log.info("participant %s: joined %s as %s %s (%s)", pid, room, info.role, kind, name)
        self._emit(conference, ParticipantJoined(info))
        return info

    def leave(self, participant_id: str, reason: str = "left", by: str | None = None) -> None:
        room = self._where.pop(participant_id, None)
        if room is None:
            return
        conference = self._conferences[room]
        info = conference.participants.pop(participant_id)
        log.info("participant %s: left %s (%s)", participant_id, room, reason)
        self._emit(conference, ParticipantLeft(info, reason, by))
        if info.moderator:
            self._hand_over(conference)
        if not conference.participants:
            log.info("conference %s: ended", room)
            if not conference.listeners and self._conferences.get(room) is conference:
                del self._conferences[room]  # (a listener may have unsubscribed already)

    def new_id(self, kind: str) -> str:
        """A participant id nobody has had: "b12-9f3a0c" for a browser, "p..." a phone."""
        if kind not in KINDS:
            raise ValueError(f"participant kind must be one of {KINDS}, not {kind!r}")
        return f"{kind[0]}{next(self._ids)}-{secrets.token_hex(3)}"

    def set_open_room(self, room: str, open_room: bool) -> None:
        """The room's policy changed: whether its oldest browser may moderate when no host
        does (see "Roles"). A live conference without a moderator gets one now if open."""
        conference = self._conferences.get(room)
        if conference is None or conference.open_room == open_room:
            return
        conference.open_room = open_room
        if open_room:
            self._hand_over(conference)

    def ensure_moderator(self, room: str) -> None:
        """Give the room a moderator now if it has none (the rule of "Roles"): when the
        moderators a moved room waited for have not come back."""
        conference = self._conferences.get(room)
        if conference is not None:
            self._hand_over(conference)

    def hosts_present(self, room: str) -> bool:
        conference = self._conferences.get(room)
        return conference is not None and any(p.host for p in conference.participants.values())

    def _hand_over(self, conference: _Conference) -> None:
        if any(p.moderator for p in conference.participants.values()):
            return
        hosts = [p for p in conference.participants.values() if p.host]
        browsers = [p for p in conference.participants.values() if p.kind == "browser"]
        for candidate in hosts or (browsers if conference.open_room else []):
                log.info("participant %s: is now moderator of %s", candidate.id, conference.room)
                self._change(candidate, frozenset({"role"}), moderator=True)
                return

    # -- queries ---------------------------------------------------------------------------

    def get(self, participant_id: str) -> ParticipantInfo:
        room = self._where.get(participant_id)
        if room is None:
            raise UnknownParticipant(participant_id)
        return self._conferences[room].participants[participant_id]

    def participants(self, room: str) -> list[ParticipantInfo]:
        conference = self._conferences.get(room)
        return list(conference.participants.values()) if conference else []

    def audio_receivers(self, room: str, group: str | None = None) -> int:
        """How many participants of `room` hear its audio through the bridge, as the gateway
        group `group` sees it: all but those `group`'s phone mixer serves (a muted browser
        counts: it still listens)."""
        conference = self._conferences.get(room)
        if conference is None:
            return 0
        return sum(1 for p in conference.participants.values()
                   if p.mixed_by is None or p.mixed_by != group) + (room in self._recorded)

    def set_recorded(self, room: str, recorded: bool) -> None:
        """The recorder says whether `room` is being recorded: a recording hears the room
        through the bridge, so it counts as one of the room's audio receivers."""
        if recorded:
            self._recorded.add(room)
        else:
            self._recorded.discard(room)

    def recorded(self, room: str) -> bool:
        return room in self._recorded

    def live_rooms(self) -> dict[str, int]:
        """{room: participants} of every conference with someone in it (cluster claims)."""
        return {c.room: len(c.participants) for c in self._conferences.values()
                if c.participants}  # fmt: skip

    def stats(self) -> dict[str, int]:
        return {
            "conferences": sum(1 for c in self._conferences.values() if c.participants),
            "participants": len(self._where),
        }

    # -- the participant's own changes -----------------------------------------------------

    def set_muted(self, participant_id: str, muted: bool) -> ParticipantInfo:
        """The participant mutes or unmutes themself (a phone's *6). Unmuting ends a
        moderator's mute."""
        info = self.get(participant_id)
        if info.muted == muted:  # a moderator's mute implies muted: unmuting always acts
            return info
        return self._mute(info, muted, force=False, by=None)

    def set_media(
        self, participant_id: str, *, audio: bool, video: bool, screen: bool
    ) -> ParticipantInfo:
        """What a browser participant sends now. `audio` False mutes; True unmutes (and
        ends a moderator's mute: only the participant can do this)."""
        info = self.get(participant_id)
        changed = frozenset(
            name
            for name, value in (("audio", audio), ("video", video), ("screen", screen))
            if getattr(info, name) != value
        )
        muted = not audio
        new = replace(info, audio=audio, video=video, screen=screen)
        if muted != info.muted:  # carries the other flags too
            return self._mute(new, muted, force=False, by=None)
        if not changed:
            return info
        conference = self._conferences[info.room]
        conference.participants[participant_id] = new
        self._emit(conference, ParticipantUpdated(new, changed))
        return new

    def set_hand(self, participant_id: str, raised: bool) -> ParticipantInfo:
        info = self.get(participant_id)
        if info.hand == raised:
            return info
        log.info("participant %s: hand %s", participant_id, "raised" if raised else "lowered")
        return self._change(info, frozenset({"hand"}), hand=raised)

    def set_name(self, participant_id: str, name: str) -> ParticipantInfo:
        info = self.get(participant_id)
        if info.name == name:
            return info
        log.info("participant %s: renamed to %s", participant_id, name)
        return self._change(info, frozenset({"name"}), name=name)

    def set_state(self, participant_id: str, state: str,
                  reason: str | None = None) -> ParticipantInfo:
        """A called-out phone's call state changed (ParticipantUpdated, "state")."""
        info = self.get(participant_id)
        if (info.state, info.state_reason) == (state, reason):
            return info
        log.info("participant %s: %s", participant_id, state)
        return self._change(info, frozenset({"state"}), state=state, state_reason=reason)

    # -- moderation ------------------------------------------------------------------------

    def moderator_mute(self, moderator_id: str, target_id: str) -> ParticipantInfo:
        """A moderator mutes someone in their room (Forbidden otherwise). The event goes
        out even when the target was already muted: the target is told to stop sending."""
        self._check_moderator(moderator_id, target_id)
        return self._mute(self.get(target_id), True, force=True, by=moderator_id)

    def mute_all(self, moderator_id: str) -> list[ParticipantInfo]:
        """Mute everyone in the moderator's room but the moderator."""
        moderator = self._check_moderator(moderator_id, None)
        targets = [p for p in self.participants(moderator.room) if p.id != moderator_id]
        return [self._mute(p, True, force=True, by=moderator_id) for p in targets]

    def kick(self, moderator_id: str, target_id: str) -> ParticipantInfo:
        """A moderator removes someone from their room: ParticipantLeft(reason "kicked")."""
        self._check_moderator(moderator_id, target_id)
        info = self.get(target_id)
        log.info("participant %s: kicked by %s", target_id, moderator_id)
        self.leave(target_id, "kicked", by=moderator_id)
        return info

    def _check_moderator(self, moderator_id: str, target_id: str | None) -> ParticipantInfo:
        moderator = self.get(moderator_id)
        if not moderator.moderator:
            raise Forbidden(f"{moderator_id} is not a moderator")
        if target_id is not None and self.get(target_id).room != moderator.room:
            raise Forbidden(f"{target_id} is not in room {moderator.room}")
        return moderator

    # -- subscriptions ---------------------------------------------------------------------

    def subscribe(
        self, room: str, listener: Listener, *, updates: bool = False
    ) -> Callable[[], None]:
        """Call `listener` for every change in `room`, from now until the returned function
        is called. With `updates`, ParticipantUpdated events too. Subscribing does not start
        a conference."""
        conference = self._conferences.get(room)
        if conference is None:
            conference = self._conferences[room] = _Conference(room)
        entry = (listener, updates)

        def unsubscribe() -> None:
            current = self._conferences.get(room)
            if current is not None and entry in current.listeners:
                current.listeners.remove(entry)
                if not current.participants and not current.listeners:
                    del self._conferences[room]

        conference.listeners.append(entry)
        return unsubscribe

    # -- internals -------------------------------------------------------------------------

    def _mute(
        self, info: ParticipantInfo, muted: bool, *, force: bool, by: str | None
    ) -> ParticipantInfo:
        conference = self._conferences[info.room]
        info = conference.participants[info.id] = replace(info, muted=muted, force_muted=force)
        if by is not None:
            log.info("participant %s: muted by %s", info.id, by)
        else:
            log.info("participant %s: %s", info.id, "muted" if muted else "unmuted")
        self._emit(conference, ParticipantMuted(info, by))
        return info

    def _change(
        self, info: ParticipantInfo, changed: frozenset[str], **values: object
    ) -> ParticipantInfo:
        conference = self._conferences[info.room]
        info = conference.participants[info.id] = replace(info, **values)  # type: ignore[arg-type]
        self._emit(conference, ParticipantUpdated(info, changed))
        return info

    def _emit(self, conference: _Conference, event: FocusEvent) -> None:
        for listener, updates in list(conference.listeners):
            if isinstance(event, ParticipantUpdated) and not updates:
                continue
            try:
                listener(event)
            except Exception:
                log.exception("conference %s: listener failed on %s", conference.room, event)
