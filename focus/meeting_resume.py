"""A browser's place in a room that outlives the node hosting it (a base class of
`focus.meeting.Meetings`; only in a cluster, when the composition root sets `memory`).

- `RoomMemory` keeps, outside this process (cluster/room_state.py: Redis), what a room must
  not lose with its node: its public chat as the page shows it (the last `chat_history`
  messages; private messages are never kept) and, per participant, a `Resumed` entry (id,
  name, role, host, hand) under the participant's resume token. Writes are queued and never
  wait; reads happen when a join needs them.
- Each browser that joins gets a resume token in `joined` (`resume`), a secret the page
  keeps for the tab and presents in its next `join` (after a restart, a 1001, a
  room-elsewhere, a room moved to another node). A token this room's memory knows gives the
  browser back its participant id, name, role (moderator, host) and raised hand, and lets it
  in without waiting in the lobby again (it was let in before); any other token (forged,
  stale, another room's: the memory is looked up under the room joined) gives nothing and
  the browser joins as anyone would, with a new token. An explicit leave, a kick and a
  send-back to the lobby forget the entry; a dropped socket or a node that stops does not.
- The first join of a room on this node reads the room's memory: the chat history comes
  back (in `joined`, as before), and while the room's former moderators have not come back
  (at most RESUME_GRACE seconds) nobody becomes moderator by the open-room rule; then the
  rule applies again (`Focus.ensure_moderator`).

Nothing here without a memory: the single process behaves as before. The log has ids, never
a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from focus.conference import Focus, ParticipantInfo, UnknownParticipant
from focus.session import BrowserSession

if TYPE_CHECKING:
    from focus.meeting import _Room

__all__ = ["RESUME_GRACE", "Recalled", "ResumeActions", "Resumed", "RoomMemory", "new_token"]

log = logging.getLogger(__name__)

RESUME_GRACE = 20.0  # seconds a moved room waits for its moderators before the usual rule
ROLE_SETTLE = 2.0  # seconds a new role must last before it is kept (see _changed)
FORGET_ON = frozenset({"left", "kicked", "lobby"})  # leave reasons that end a resume token


def new_token() -> str:
    return secrets.token_urlsafe(24)


@dataclass(frozen=True, slots=True)
class Resumed:
    """A participant as the room's memory keeps it."""

    pid: str
    name: str
    moderator: bool = False
    host: bool = False
    hand: bool = False

    def encode(self) -> str:
        return json.dumps({"pid": self.pid, "name": self.name, "moderator": self.moderator,
                           "host": self.host, "hand": self.hand})  # fmt: skip

    @classmethod
    def decode(cls, text: str | bytes | None) -> Resumed | None:
        try:
            data = json.loads(text) if text else None
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        pid, name = data.get("pid"), data.get("name")
        if not isinstance(pid, str) or not 1 <= len(pid) <= 64 or not isinstance(name, str):
            return None
        return cls(pid, name[:64], data.get("moderator") is True, data.get("host") is True,
                   data.get("hand") is True)  # fmt: skip

    @classmethod
    def of(cls, info: ParticipantInfo) -> Resumed:
        return cls(info.id, info.name, info.moderator, info.host, info.hand)


@dataclass(frozen=True, slots=True)
class Recalled:
    """What a room's memory holds: its public chat (oldest first) and its people."""

    chat: list[dict[str, object]] = field(default_factory=list)
    people: list[Resumed] = field(default_factory=list)


class RoomMemory(Protocol):
    def remember_person(self, room: str, token: str, person: Resumed) -> None: ...
    def forget_person(self, room: str, token: str) -> None: ...
    def remember_chat(self, room: str, message: Mapping[str, object]) -> None: ...
    async def recall(self, room: str) -> Recalled: ...
    async def resume(self, room: str, token: str) -> Resumed | None: ...
    async def close(self) -> None: ...
    def stats(self) -> dict[str, int]: ...


class ResumeActions:
    """Meetings' resume tokens and room memory; the attributes below are Meetings' own."""

    focus: Focus
    memory: RoomMemory | None
    peer_nodes: Callable[[], list[str]] | None
    _rooms: dict[str, _Room]
    _tokens: dict[str, str]  # participant id -> resume token (this process only)
    _sessions: dict[str, BrowserSession]
    _expiring: set[str]
    _closing: bool

    # -- provided by Meetings ----------------------------------------------------------------

    if TYPE_CHECKING:
        def leave(self, participant_id: str, reason: str = "left") -> None: ...

    async def _lookup(self, room: str, token: str | None) -> Resumed | None:
        """The participant a join's resume token names in `room`; None for none."""
        if self.memory is None or token is None:
            return None
        try:
            found = await self.memory.resume(room, token)
        except Exception as exc:  # unreachable memory: the browser joins anew
            log.warning("room %s: resume token not checked (%s): joins anew", room, exc)
            return None
        if found is None:
            log.info("room %s: a join's resume token is unknown here: joins anew", room)
        return found

    def _resume_id(self, pid: str) -> str | None:
        """The id a resumed browser gets back: its own, unless in use here (an older socket
        of the same tab: closed now, and the browser gets a new id, its endpoint being
        expired); None for a new one."""
        if pid in self._sessions:
            log.info("participant %s: replaced by a resumed join", pid)
            self.leave(pid, "replaced")
        if pid in self._expiring or pid in self._sessions:
            return None
        try:
            self.focus.get(pid)
        except UnknownParticipant:
            return pid
        return None

    async def _recall(self, name: str) -> Recalled | None:
        """The room's memory when this node starts hosting it; None without one."""
        if self.memory is None:
            return None
        try:
            return await self.memory.recall(name)
        except Exception as exc:
            log.warning("room %s: its memory could not be read (%s): starts empty", name, exc)
            return None

    def _restore(self, room: _Room, recalled: Recalled, now: float) -> None:
        """A room's first join here: its chat comes back; its former moderators are
        awaited (see the module's docstring)."""
        room.chat.extend(recalled.chat)
        room.awaited = {x.pid for x in recalled.people if x.moderator}
        if room.awaited:
            room.awaited_until = now + RESUME_GRACE
            loop = asyncio.get_running_loop()
            room.grace = loop.call_later(RESUME_GRACE, self._grace_over, room.name)
        log.info("room %s: memory read: %d chat messages, %d people (%d moderators)",
                 room.name, len(recalled.chat), len(recalled.people), len(room.awaited))

    def _role(self, room: _Room, resumed: Resumed | None, now: float) -> bool | None:
        """The role a joining browser gets: its own back when resumed; guest while the
        room's former moderators are awaited; else None (the usual rule)."""
        if resumed is not None:
            room.awaited.discard(resumed.pid)
            if resumed.moderator:
                return True
        if room.awaited and now < room.awaited_until:
            return False
        return None

    def _grace_over(self, name: str) -> None:
        room = self._rooms.get(name)
        if room is None:
            return
        room.grace = None
        if room.awaited:
            log.info("room %s: %d former moderators did not come back", name,
                     len(room.awaited))  # fmt: skip
        room.awaited.clear()
        self.focus.ensure_moderator(name)

    def _issue(self, joined: dict[str, object], info: ParticipantInfo,
               kept: str | None) -> None:  # fmt: skip
        """`joined` gets the browser's resume token (`kept`: the one it resumed with; else a
        new one), a secret for this tab's next join, never logged; the memory its entry."""
        if self.peer_nodes is not None:  # where the page goes if this node stops answering
            joined["nodes"] = self.peer_nodes()
        if self.memory is None:
            return
        token = self._tokens[info.id] = kept or new_token()
        joined["resume"] = token
        self._remember(info)

    def _changed(self, info: ParticipantInfo, changed: frozenset[str]) -> None:
        """A browser's name, hand or role changed. A new role is written ROLE_SETTLE seconds
        later if the browser is still here: a room whose browsers are all leaving (moved to
        another node: closed with 1001 one after another) hands the moderator role down as
        each goes, and those hand-overs must not outlive the move."""
        if "role" in changed:
            loop = asyncio.get_running_loop()
            loop.call_later(ROLE_SETTLE, self._remember_if_here, info.id)
        elif changed & {"name", "hand"}:
            self._remember(info)

    def _remember_if_here(self, pid: str) -> None:
        session = self._sessions.get(pid)
        if session is None or session.closed or self._closing:
            return
        with contextlib.suppress(UnknownParticipant):
            self._remember(self.focus.get(pid))

    def _remember(self, info: ParticipantInfo) -> None:
        token = self._tokens.get(info.id)
        if self.memory is not None and token is not None:
            self.memory.remember_person(info.room, token, Resumed.of(info))

    def _forget(self, info: ParticipantInfo, reason: str) -> None:
        token = self._tokens.pop(info.id, None)
        if self.memory is None or token is None:
            return
        if reason in FORGET_ON and not self._closing:
            self.memory.forget_person(info.room, token)
