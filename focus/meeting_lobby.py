"""The lobby side of the browser meetings (a base class of `focus.meeting.Meetings`).

- A browser that must wait (focus/gate.py) is a `_Waiting`: its socket stays open, it is
  told `lobby` `waiting` (for a "moderator" or a "host"), and it may only `ping` or `leave`
  (anything else: `error` `in-lobby`). It holds no bridge endpoint.
- Lobby events (focus/lobby.py), whoever caused them (a moderator's page, the API, a host
  arriving, a policy change): `Admitted` joins the browser with the id it waited under;
  `Denied` sends `lobby` `denied`, then `error` `denied` and close 4013. Every event sends
  the room's moderators the knocking list (`lobby-list`, `knock` true when someone new
  knocked, for the page's sound).
- Moderators (`lobby` messages): `admit`, `deny`, `admit-all`, and `send-back` (a browser
  guest leaves the roster with reason `lobby` and waits again, socket open). A host cannot
  be sent back; phone callers cannot yet (they wait in the same lobby, carried by the
  gateway: gateway/phone_lobby.py, and are admitted and denied like browsers).
- The host PIN goes to moderators only: `joined.dial_in` drops it for anyone else, and a
  participant made moderator gets `dial-in` with it.
- `policy` messages from a moderator change the stored policy; `policy_changed(room)` (also
  called by the API's PATCH) tells the room and lets in those waiting for a host when the
  room no longer needs one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from focus import protocol as p
from focus.admission import JoinAdmission
from focus.conference import Focus, Forbidden, UnknownParticipant
from focus.gate import Gate
from focus.lobby import Admitted, Cancelled, Denied, Knocked, Lobby, LobbyEvent, LobbyFull
from focus.session import (
    CLOSE_DENIED,
    CLOSE_NOT_ALLOWED,
    BrowserSession,
    Connection,
    JoinRefused,
    PolicyUpdate,
    RoomDirectory,
)

__all__ = ["LobbyActions", "Waiting"]

log = logging.getLogger(__name__)


@dataclass(eq=False, slots=True)
class Waiting:
    """A browser in the lobby: its socket and the join it completes when admitted."""

    pid: str
    room: str
    conn: Connection
    join: p.Join
    source: str | None
    name: str
    avatar: str | None = None  # the picture its token names


class LobbyActions:
    """Meetings' lobby handling; the attributes and methods below are Meetings' own."""

    focus: Focus
    gate: Gate
    admission: JoinAdmission
    lobby: Lobby
    directory: RoomDirectory
    _waiting: dict[str, Waiting]
    _sessions: dict[str, BrowserSession]

    # -- provided by Meetings ----------------------------------------------------------------

    def _send(self, session: BrowserSession, message: Mapping[str, object]) -> None:
        raise NotImplementedError

    def _spawn(self, coro: Coroutine[Any, Any, None], pid: str) -> None:
        raise NotImplementedError

    def _room_sessions(self, room: str) -> list[BrowserSession]:
        raise NotImplementedError

    async def _enter(self, conn: Connection, msg: p.Join, source: str | None, pid: str | None,
                     display: str, *, host: bool, open_room: bool,
                     avatar: str | None = None) -> str:  # fmt: skip
        raise NotImplementedError

    # -- waiting -----------------------------------------------------------------------------

    def _wait(self, waiting: Waiting, reason: str) -> None:
        """Into the lobby; the browser's source holds one of its waiting places until it
        leaves the lobby in any way (`_unwait`)."""
        if waiting.source is not None:
            self.admission.acquire_waiting(waiting.source)
        try:
            self.lobby.wait(waiting.room, waiting.pid, "browser", waiting.name, reason,
                            time.time())  # fmt: skip
        except LobbyFull:
            if waiting.source is not None:
                self.admission.release_waiting(waiting.source)
            raise JoinRefused("lobby-full", "too many people are waiting to get in: try "
                              "again later", CLOSE_NOT_ALLOWED) from None  # fmt: skip
        self._waiting[waiting.pid] = waiting
        _safe_send(waiting.conn, p.lobby_state("waiting", reason), waiting.pid)

    def _unwait(self, pid: str) -> Waiting | None:
        waiting = self._waiting.pop(pid, None)
        if waiting is not None and waiting.source is not None:
            self.admission.release_waiting(waiting.source)
        return waiting

    def _while_waiting(self, pid: str, msg: p.ClientMessage) -> None:
        waiting = self._waiting[pid]
        if isinstance(msg, p.Ping):
            _safe_send(waiting.conn, p.pong(msg.id), pid)
        elif isinstance(msg, p.Leave):
            self._unwait(pid)
            self.lobby.cancel(pid)
            waiting.conn.close(1000, "left")
        else:
            raise p.ProtocolError("in-lobby", "you are waiting in the lobby", msg.TYPE)

    def _on_lobby_event(self, event: LobbyEvent) -> None:
        entry = event.entry
        self._send_lobby_list(entry.room, knock=isinstance(event, Knocked))
        if isinstance(event, Admitted):
            if entry.id in self._waiting:  # taken out when its join starts (_admit)
                self._spawn(self._admit(entry.id), entry.id)
            return
        waiting = self._unwait(entry.id)  # Denied, Cancelled
        if waiting is None or isinstance(event, Cancelled):  # not ours, or gone already
            return
        if isinstance(event, Denied):
            _safe_send(waiting.conn, p.lobby_state("denied"), waiting.pid)
            _safe_send(waiting.conn, p.error("denied", "a moderator did not let you in",
                                             "join"), waiting.pid)  # fmt: skip
            waiting.conn.close(CLOSE_DENIED, "denied")

    async def _admit(self, pid: str) -> None:
        """Join an admitted browser, unless it left in the meantime (its socket closed
        between the decision and now: `leave` found it still waiting)."""
        waiting = self._unwait(pid)
        if waiting is None:
            return
        open_room = self.gate.policy(waiting.room).open
        try:
            await self._enter(waiting.conn, waiting.join, waiting.source, waiting.pid,
                              waiting.name, host=False, open_room=open_room,
                              avatar=waiting.avatar)  # fmt: skip
        except JoinRefused as exc:
            log.info("participant %s: admitted but the join failed: %s", waiting.pid, exc)
            _safe_send(waiting.conn, p.error(exc.code, exc.message, "join"), waiting.pid)
            waiting.conn.close(exc.close_code, exc.message)

    def _dial_in(self, name: str, moderator: bool) -> Mapping[str, object] | None:
        """The room's dial-in details (for `joined`); the host PIN for a moderator only."""
        try:
            info = self.directory.dial_in(name)
        except Exception:
            log.exception("room %s: dial-in information unavailable", name)
            return None
        if info is None or moderator:
            return info
        return {k: v for k, v in info.items() if k != "host_pin"}

    def _became_moderator(self, session: BrowserSession, room: str) -> None:
        """A participant was made moderator (the last one left): the host PIN it may now
        see (`dial-in`), and the knocking list if anyone waits."""
        dial_in = self._dial_in(room, True)
        if dial_in is not None and "host_pin" in dial_in:
            self._send(session, p.dial_in(dial_in))
        if self.lobby.waiting(room):
            self._send(session, self._lobby_list(room, knock=False))

    def _lobby_list(self, room: str, *, knock: bool) -> dict[str, object]:
        return p.lobby_list((e.as_json() for e in self.lobby.waiting(room)), knock)

    def _send_lobby_list(self, room: str, *, knock: bool) -> None:
        message = self._lobby_list(room, knock=knock)
        for session in self._room_sessions(room):
            try:
                moderator = self.focus.get(session.participant_id).moderator
            except UnknownParticipant:
                continue
            if moderator:
                self._send(session, message)

    # -- moderators --------------------------------------------------------------------------

    def _check_moderator(self, session: BrowserSession, ref: str) -> None:
        if not self.focus.get(session.participant_id).moderator:
            raise p.ProtocolError("forbidden", "only a moderator can do this", ref)

    def _lobby_action(self, session: BrowserSession, msg: p.LobbyAction) -> None:
        self._check_moderator(session, msg.TYPE)
        pid, room = session.participant_id, session.room
        try:
            if msg.action == "admit-all":
                self.lobby.admit_all(room, pid)
            elif msg.action == "admit":
                assert msg.target is not None
                self.lobby.admit(room, msg.target, pid)
            elif msg.action == "deny":
                assert msg.target is not None
                self.lobby.deny(room, msg.target, pid)
            else:
                assert msg.target is not None
                self._send_back(session, msg.target)
        except UnknownParticipant:
            raise p.ProtocolError("unknown-participant", "nobody by that id waits or is in "
                                  "this room", msg.TYPE) from None  # fmt: skip
        except Forbidden as exc:
            raise p.ProtocolError("forbidden", str(exc), msg.TYPE) from None

    phone_send_back: Callable[[str, str], bool] | None

    def _send_back(self, moderator: BrowserSession, target_id: str) -> None:
        info = self.focus.get(target_id)
        if info.room != moderator.room:
            raise UnknownParticipant(target_id)
        if info.host or target_id == moderator.participant_id:
            raise Forbidden("a host cannot be sent to the lobby")
        if info.kind == "phone":  # the gateway moves its caller (gateway/call_policy.py)
            hook = self.phone_send_back
            if hook is None or not hook(target_id, moderator.participant_id):
                raise Forbidden("this caller cannot be sent to the lobby")
            return
        target = self._sessions.get(target_id)
        if target is None or info.kind != "browser":
            raise Forbidden("only browsers and phone callers can be sent to the lobby")
        assert isinstance(target.join, p.Join)
        log.info("participant %s: sent back to the lobby by %s", target_id,
                 moderator.participant_id)  # fmt: skip
        target.to_lobby = True
        self.focus.leave(target_id, "lobby", by=moderator.participant_id)
        try:
            self._wait(Waiting(target_id, info.room, target.conn, target.join, target.source,
                               info.name, info.avatar), "moderator")  # fmt: skip
        except JoinRefused as exc:  # the lobby is full: the target is told, not the moderator
            _safe_send(target.conn, p.error(exc.code, exc.message, "join"), target_id)
            target.conn.close(exc.close_code, exc.message)

    async def _policy_change(self, session: BrowserSession, msg: p.PolicyChange) -> None:
        self._check_moderator(session, msg.TYPE)
        update = PolicyUpdate(lobby=msg.lobby, start=msg.start, password=msg.password,
                              guests=msg.guests)  # fmt: skip
        try:
            await self.gate.change(session.room, update)
        except ValueError as exc:
            raise p.ProtocolError("bad-message", str(exc), msg.TYPE) from None
        except LookupError:
            raise p.ProtocolError("room-not-found", "the room no longer exists",
                                  msg.TYPE) from None  # fmt: skip
        log.info("participant %s: changed the policy of %s (%r)", session.participant_id,
                 session.room, update)  # fmt: skip
        self.policy_changed(session.room)

    def policy_changed(self, room: str) -> None:
        """The room's stored policy changed (a moderator, the API): tell the room, and let
        in those waiting for a host if the room no longer needs one."""
        policy = self.gate.policy(room)
        self.focus.set_open_room(room, policy.open)
        message = p.policy(policy.as_json())
        for session in self._room_sessions(room):
            self._send(session, message)
        if policy.start == "anyone" or self.focus.hosts_present(room):
            self.lobby.host_arrived(room)


def _safe_send(conn: Connection, message: Mapping[str, object], pid: str) -> None:
    try:
        conn.send(message)
    except Exception:
        log.exception("participant %s: send failed", pid)
