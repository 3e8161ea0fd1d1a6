"""Chat, moderation, reactions and private chat (a base class of `focus.meeting.Meetings`).

- `chat` {text}: to every browser of the room, kept in the room's history (the last
  `chat_history`, sent in `joined`; in a cluster, also in the room's memory:
  focus/meeting_resume.py). `moderate` (mute, mute-all, kick): a moderator's, else `forbidden`.

- `reaction` {emoji}: one of `protocol.REACTIONS`, relayed as `reaction` {from, emoji} to
  every browser of the sender's room (the sender too: its page shows what the others see),
  never stored. Each participant may send REACTION_BURST at once and REACTION_RATE a second
  after that (`error` `rate-limited` beyond; the signaling socket's room bucket comes first).
- `private-chat` {to, text}: `to` must be another browser in the sender's own room (looked up
  among that room's sessions only: an id from another room is `unknown-participant`, as is a
  phone caller, who cannot read chat). The message, `private-chat` {from, name, to, to_name,
  text, ts}, goes to the addressee and back to the sender, to nobody else; it is not kept in
  the room's chat history. The log line has the ids and the length, never the text.

Time comes in through Meetings' monotonic clock (sans-I/O): the tests pass their own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from focus import protocol as p
from focus.conference import Focus, Forbidden, UnknownParticipant
from focus.session import BrowserSession

if TYPE_CHECKING:
    from focus.meeting import _Room
    from focus.meeting_resume import RoomMemory

__all__ = ["REACTION_BURST", "REACTION_RATE", "ReactionBucket", "SocialActions"]

log = logging.getLogger(__name__)

REACTION_RATE = 1.0  # reactions a second, sustained, per participant
REACTION_BURST = 5


class ReactionBucket:
    """A token bucket for one participant's reactions; `now` in monotonic seconds."""

    __slots__ = ("stamp", "tokens")

    def __init__(self, now: float) -> None:
        self.tokens = float(REACTION_BURST)
        self.stamp = now

    def take(self, now: float) -> bool:
        elapsed = max(0.0, now - self.stamp)
        self.tokens = min(float(REACTION_BURST), self.tokens + elapsed * REACTION_RATE)
        self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class SocialActions:
    """Meetings' reactions and private chat; the attributes below are Meetings' own."""

    focus: Focus
    _rooms: dict[str, _Room]
    _sessions: dict[str, BrowserSession]
    _reaction_buckets: dict[str, ReactionBucket]
    _monotonic: Callable[[], float]
    _clock: Callable[[], float]
    memory: RoomMemory | None

    # -- provided by Meetings ----------------------------------------------------------------

    def _send(self, session: BrowserSession, message: Mapping[str, object]) -> None:
        raise NotImplementedError

    def _broadcast(self, room: _Room, message: Mapping[str, object],
                   except_id: str | None = None) -> None:  # fmt: skip
        raise NotImplementedError

    # -- chat and moderation -----------------------------------------------------------------

    def _chat(self, session: BrowserSession, text: str) -> None:
        room = self._rooms[session.room]
        info = self.focus.get(session.participant_id)
        message = p.chat(info.id, info.name, text, round(self._clock(), 3))
        room.chat.append(message)
        if self.memory is not None:
            self.memory.remember_chat(room.name, message)
        log.info("participant %s: chat in %s (%d characters)", info.id, room.name, len(text))
        self._broadcast(room, message)

    def _moderate(self, session: BrowserSession, msg: p.Moderate) -> None:
        pid = session.participant_id
        present = {x.id for x in self.focus.participants(session.room)}
        if msg.target is not None and msg.target not in present:
            raise p.ProtocolError("unknown-participant", f"no participant {msg.target}",
                                  msg.TYPE)  # fmt: skip
        try:
            if msg.action == "mute-all":
                self.focus.mute_all(pid)
            elif msg.action == "mute":
                assert msg.target is not None
                self.focus.moderator_mute(pid, msg.target)
            else:
                assert msg.target is not None
                self.focus.kick(pid, msg.target)
        except Forbidden:
            raise p.ProtocolError("forbidden", "only a moderator can do this", msg.TYPE) from None
        except UnknownParticipant:
            raise p.ProtocolError("unknown-participant", "no such participant",
                                  msg.TYPE) from None  # fmt: skip

    # -- reactions ---------------------------------------------------------------------------

    def _reaction(self, session: BrowserSession, msg: p.Reaction) -> None:
        pid = session.participant_id
        room = self._rooms.get(session.room)
        if room is None or room.sessions.get(pid) is not session:
            raise p.ProtocolError("not-joined", "not in a room", msg.TYPE)
        now = self._monotonic()
        bucket = self._reaction_buckets.get(pid)
        if bucket is None:
            self._prune_buckets()
            bucket = self._reaction_buckets[pid] = ReactionBucket(now)
        if not bucket.take(now):
            raise p.ProtocolError("rate-limited", "too many reactions: slow down", msg.TYPE)
        log.info("participant %s: reaction in %s", pid, room.name)
        self._broadcast(room, p.reaction(pid, msg.emoji))

    def _prune_buckets(self) -> None:
        """Forget the buckets of participants who left (bounded by the sessions present)."""
        if len(self._reaction_buckets) > len(self._sessions) + 64:
            for pid in [x for x in self._reaction_buckets if x not in self._sessions]:
                del self._reaction_buckets[pid]

    # -- private chat ------------------------------------------------------------------------

    def _private_chat(self, session: BrowserSession, msg: p.PrivateChat) -> None:
        pid = session.participant_id
        room = self._rooms.get(session.room)
        if room is None or room.sessions.get(pid) is not session:
            raise p.ProtocolError("not-joined", "not in a room", msg.TYPE)
        if msg.to == pid:
            raise p.ProtocolError("bad-message", "to: another participant, not yourself",
                                  msg.TYPE)  # fmt: skip
        target = room.sessions.get(msg.to)  # this room's browsers only
        if target is None or target.closed:
            raise p.ProtocolError("unknown-participant",
                                  f"no participant {msg.to} here who can read chat",
                                  msg.TYPE)  # fmt: skip
        sender = self.focus.get(pid)
        addressee = self.focus.get(target.participant_id)
        message = p.private_chat(pid, sender.name, addressee.id, addressee.name, msg.text,
                                 round(self._clock(), 3))  # fmt: skip
        log.info("participant %s: private chat to %s in %s (%d characters)", pid,
                 addressee.id, room.name, len(msg.text))  # fmt: skip
        self._send(target, message)
        self._send(session, message)
