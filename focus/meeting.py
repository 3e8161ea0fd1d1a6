"""Browser meetings: the focus's side of docs/signaling.md, per conference.

`Meetings` joins browsers to the roster (`Focus`) and to the bridge (`BridgeSession`:
allocate / update / expire / receive_sources only), sends every SDP offer, applies the
answers, and renegotiates the other browsers of a room when sources come and go (a burst
of changes within `renegotiate_delay` makes one offer each). It talks to each browser
through a `Connection` (send a message dict, close with a code) and knows nothing of
aiohttp.

Every roster change goes through `Focus` and comes back as a focus event, which this module
turns into signaling messages; so a phone caller's join, leave or *6 mute reaches the
browsers the same way a browser's does, and a kick or mute from anywhere acts the same.

Who gets in is the `Gate`'s answer (focus/gate.py: token, room policy): a browser gets in
at once, or waits in the `Lobby` (focus/lobby.py) with the participant id it will have in
the room, its socket open and told `lobby` `waiting`; an `Admitted` from the lobby (a
moderator, the API, a host arriving) joins it, a `Denied` tells it and closes 4013.
Moderators get the knocking list (`lobby-list`) on joining, on becoming moderator and on
every change; they admit, deny, send back to the lobby, and change the policy. They also
start and stop recording; everyone is told when it changes (focus/meeting_recording.py).
In a cluster, a room's chat and each browser's place (id, name, role) outlive the node:
focus/meeting_resume.py.

Errors a client causes raise `ProtocolError` (answered with `error` by the caller); bridge
failures are logged with the participant's id and never reach another participant.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar

from bridge.api import (
    BridgeEvent,
    BridgeSession,
    DominantSpeakerChanged,
    EndpointConnected,
    EndpointFailed,
    EndpointStats,
    EndpointUpdate,
)
from dialplan.store_base import StoreError
from focus import protocol as p
from focus.admission import JoinAdmission
from focus.conference import (
    Focus,
    FocusEvent,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantMuted,
    ParticipantUpdated,
)
from focus.gate import Gate
from focus.lobby import Lobby
from focus.meeting_lobby import LobbyActions, Waiting
from focus.meeting_recording import RecordingActions, RecordingControl
from focus.meeting_resume import ResumeActions, Resumed, RoomMemory
from focus.meeting_social import ReactionBucket, SocialActions
from focus.policy import Verdict
from focus.sdp import SdpError, build_offer, parse_answer, tracks_json
from focus.session import (
    CLOSE_GOING_AWAY,
    CLOSE_KICKED,
    CLOSE_MEDIA_FAILED,
    CLOSE_NO_ROOM,
    CLOSE_NORMAL,
    CLOSE_ROOM_FULL,
    CLOSE_TRY_LATER,
    BrowserSession,
    Connection,
    JoinRefused,
    MeetingSettings,
    RoomDirectory,
)

__all__ = ["Meetings"]

log = logging.getLogger(__name__)

DTLS_CLOSE_GRACE = 1.0  # seconds a browser that closed its DTLS has to send `leave`

T = TypeVar("T")


class _Room:
    """A conference with at least one browser in it."""

    __slots__ = ("awaited", "awaited_until", "chat", "flush", "grace", "name", "sessions",
                 "unsubscribe")

    def __init__(self, name: str, history: int) -> None:
        self.name = name
        self.sessions: dict[str, BrowserSession] = {}
        self.chat: deque[dict[str, object]] = deque(maxlen=history)
        self.flush: asyncio.TimerHandle | None = None
        self.unsubscribe: Callable[[], None] = lambda: None
        self.awaited: set[str] = set()  # former moderators of a moved room (meeting_resume)
        self.awaited_until = 0.0
        self.grace: asyncio.TimerHandle | None = None


class Meetings(LobbyActions, RecordingActions, SocialActions, ResumeActions):
    """Every browser session of this process, by participant id and by room."""

    def __init__(
        self,
        focus: Focus,
        bridge: BridgeSession,
        rooms: RoomDirectory,
        settings: MeetingSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        gate: Gate | None = None,
        lobby: Lobby | None = None,
        placement: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.focus = focus
        # In a cluster: may this node host the room (cluster/node.py)? Raises JoinRefused.
        self.placement = placement
        self.bridge = bridge
        self.directory = rooms
        self.settings = settings if settings is not None else MeetingSettings()
        self._clock = clock  # wall clock, for chat timestamps
        self._monotonic = monotonic  # for the per-source limits
        s = self.settings
        self.admission = JoinAdmission(s.joins_per_minute, s.rooms_per_hour,
                                       s.max_endpoints_per_source)  # fmt: skip
        self._rooms: dict[str, _Room] = {}
        self._sessions: dict[str, BrowserSession] = {}
        self._turn_issued = 0  # TURN credentials handed out (REST, per participant)
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._unsubscribe_bridge = bridge.subscribe(self._on_bridge_event)
        self.gate = gate if gate is not None else Gate(focus)
        self.lobby = lobby if lobby is not None else Lobby(s.lobby_size)
        self._waiting: dict[str, Waiting] = {}
        self._reaction_buckets: dict[str, ReactionBucket] = {}  # focus/meeting_social.py
        self._unsubscribe_lobby = self.lobby.subscribe(None, self._on_lobby_event)
        self.recording_control: RecordingControl | None = None  # set by the composition root
        # A phone caller sent back to the lobby by a moderator: the gateway's (set by the
        # composition root); (participant id, moderator's id) -> whether it could.
        self.phone_send_back: Callable[[str, str], bool] | None = None
        self.memory: RoomMemory | None = None  # a cluster's room memory (composition root)
        self.peer_nodes: Callable[[], list[str]] | None = None  # other nodes' public URLs
        self._tokens: dict[str, str] = {}  # participant id -> resume token
        self._expiring: set[str] = set()  # ids whose bridge endpoint is being expired

    # -- the public surface ----------------------------------------------------------------

    def session(self, participant_id: str) -> BrowserSession | None:
        return self._sessions.get(participant_id)

    def stats(self) -> dict[str, int]:
        memory = self.memory.stats() if self.memory is not None else {}
        return {"meeting_rooms": len(self._rooms), "browsers": len(self._sessions),
                "turn_credentials_issued": self._turn_issued, **memory}

    def sources_changed(self, room: str) -> None:
        """Another participant's sources came or went (a phone caller's, from
        focus.phones): re-offer the room's browsers."""
        self._renegotiate_others(room, None)

    async def join(self, conn: Connection, msg: p.Join, *, source: str | None = None) -> str:
        """Join a browser: roster, `joined`, bridge endpoint, then offer revision 1; or put
        it in the lobby (`lobby` `waiting`). Raises JoinRefused (nothing joined) for a bad
        token, a missing or full room, a refusal of the room's policy, or a `source` (the
        client's address) over its limits (focus/admission.py)."""
        if self._closing:
            raise JoinRefused("internal", "the server is stopping", CLOSE_GOING_AWAY)
        name = msg.room
        if source is not None:
            self.admission.check_join(source, self._monotonic())
        identity = await self.gate.identify(name, msg.token, source)
        host = identity is not None and identity.moderator
        self._ensure_room_exists(name, source, host)
        if self.placement is not None:
            await self.placement(name)
        entry = await self.gate.decide(name, identity, msg.password, source)
        display = identity.name if identity is not None and identity.name else msg.name
        avatar = identity.avatar if identity is not None else None
        resumed = await self._lookup(name, msg.resume)  # let in before: no lobby again
        if entry.verdict is Verdict.JOIN or resumed is not None:
            return await self._enter(conn, msg, source, None, display, host=entry.host,
                                     open_room=entry.open_room, resumed=resumed,
                                     avatar=avatar)  # fmt: skip
        pid = self.focus.new_id("browser")
        self._wait(Waiting(pid, name, conn, msg, source, display, avatar), entry.verdict.value)
        return pid

    async def _enter(self, conn: Connection, msg: p.Join, source: str | None, pid: str | None,
                     display: str, *, host: bool, open_room: bool,
                     resumed: Resumed | None = None, avatar: str | None = None) -> str:  # fmt: skip
        name = msg.room
        if len(self.focus.participants(name)) >= self.settings.max_participants:
            raise JoinRefused("room-full", f"room {name} is full", CLOSE_ROOM_FULL)
        recalled = await self._recall(name) if name not in self._rooms else None
        if resumed is not None:  # its place back: id (if free here), name, role
            pid = self._resume_id(resumed.pid)
            display, host = resumed.name, host or resumed.host
        if source is not None:
            self.admission.acquire_endpoint(source)  # given back in _remove
        try:
            fresh = name not in self._rooms
            room = self._room(name)
            if fresh and recalled is not None:
                self._restore(room, recalled, self._monotonic())
            info = self.focus.join(name, "browser", display, audio=msg.audio, video=msg.video,
                                   participant_id=pid, host=host, open_room=open_room,
                                   moderator=self._role(room, resumed, self._monotonic()),
                                   avatar=avatar)
        except BaseException:
            if source is not None:
                self.admission.release_endpoint(source)
            raise
        pid = info.id
        session = BrowserSession(pid, name, conn, source=source, join=msg, host=host)
        room.sessions[pid] = session
        self._sessions[pid] = session
        others = [x for x in self.focus.participants(name) if x.id != pid]
        policy = self.gate.policy(name).as_json() if self.gate.policies is not None else None
        ice = self.settings.ice_servers
        if self.settings.ice is not None:
            issued = self.settings.ice.for_participant(pid, self._clock())
            self._turn_issued += sum(1 for server in issued if "credential" in server)
            ice += issued
        joined = p.joined(name, info, others, ice, self._dial_in(name, info.moderator),
                          room.chat, policy)  # fmt: skip
        self._issue(joined, info, msg.resume if resumed is not None else None)
        self._send(session, joined)
        if resumed is not None and resumed.hand:
            self.focus.set_hand(pid, True)
        if info.moderator and self.lobby.waiting(name):  # else the page's list starts empty
            self._send(session, self._lobby_list(name, knock=False))
        self._tell_recording(session)
        if host:
            self.lobby.host_arrived(name)
        try:
            allocation = await self._bridge_call(self.bridge.allocate(name, pid))
        except Exception:
            log.exception("participant %s: bridge allocation failed", pid)
            self.leave(pid, "timeout")
            raise JoinRefused("internal", "media unavailable", CLOSE_MEDIA_FAILED) from None
        if session.closed:  # left while the bridge allocated
            self._spawn(self._expire(name, pid), pid)
            return pid
        session.allocation = allocation
        session.force_offer = True
        try:
            await self._offer(session)
        except Exception:
            log.exception("participant %s: first offer failed", pid)
            self.leave(pid, "timeout")
            raise JoinRefused("internal", "media unavailable", CLOSE_MEDIA_FAILED) from None
        return pid

    async def handle(self, participant_id: str, msg: p.ClientMessage) -> None:
        """One message from a joined browser. ProtocolError for what the client got wrong."""
        if participant_id in self._waiting:
            self._while_waiting(participant_id, msg)
            return
        session = self._sessions.get(participant_id)
        if session is None:
            raise p.ProtocolError("not-joined", "not in a room", msg.TYPE)
        if msg.room is not None and msg.room != session.room:
            raise p.ProtocolError("wrong-room", f"you are in room {session.room}", msg.TYPE)
        pid = participant_id
        match msg:
            case p.Join():
                raise p.ProtocolError("already-joined", "already in a room", msg.TYPE)
            case p.Answer():
                await self._answer(session, msg)
            case p.Renegotiate():
                session.force_offer = True
                self._schedule(session.room)
            case p.Media(audio=audio, video=video, screen=screen):
                self.focus.set_media(pid, audio=audio, video=video, screen=screen)
            case p.Chat(text=text):
                self._chat(session, text)
            case p.Reaction():
                self._reaction(session, msg)
            case p.PrivateChat():
                self._private_chat(session, msg)
            case p.Hand(raised=raised):
                self.focus.set_hand(pid, raised)
            case p.SetName(name=name):
                self.focus.set_name(pid, name)
            case p.Moderate():
                self._moderate(session, msg)
            case p.LobbyAction():
                self._lobby_action(session, msg)
            case p.PolicyChange():
                await self._policy_change(session, msg)
            case p.RecordingAction():
                await self._recording_action(session, msg)
            case p.Stats():
                log.debug("participant %s: client stats %s", pid, msg)
            case p.Ping(id=ping_id):
                self._send(session, p.pong(ping_id))
            case p.Leave():
                self.leave(pid, "left")

    def leave(self, participant_id: str, reason: str = "left") -> None:
        """Remove a browser (socket closed, `leave`, media failed): roster, bridge, close."""
        if self._unwait(participant_id) is not None:
            self.lobby.cancel(participant_id)
            return
        session = self._sessions.get(participant_id)
        if session is None:
            return
        self.focus.leave(participant_id, reason)  # the focus event removes the session
        if not session.closed:  # the focus did not know it
            self._remove(session, reason, None)

    async def close(self) -> None:
        """Stop: close every browser (1001), expire every endpoint, forget every room."""
        self._closing = True
        unsubscribe, self._unsubscribe_bridge = self._unsubscribe_bridge, lambda: None
        unsubscribe()
        self._unsubscribe_lobby()
        for waiting in list(self._waiting.values()):
            waiting.conn.close(CLOSE_GOING_AWAY, "server stopping")
            self.leave(waiting.pid, "left")
        for session in list(self._sessions.values()):
            session.conn.close(CLOSE_GOING_AWAY, "server stopping")
            self.leave(session.participant_id, "left")
        for room in list(self._rooms.values()):
            self._drop_room(room)
        if self.memory is not None:  # what is queued goes out first
            await self.memory.close()
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=5.0)
            for task in pending:
                task.cancel()

    # -- joining ---------------------------------------------------------------------------

    def _ensure_room_exists(self, name: str, source: str | None, host: bool = False) -> None:
        who = self.settings.who_creates
        try:
            if self.directory.exists(name):
                return
            if who == "anyone" or (who == "hosts" and host):
                if source is not None:
                    self.admission.check_room_creation(source, self._monotonic())
                self.directory.create(name)
                log.info("room %s: created for a browser join from %s", name, source)
                return
        except JoinRefused:
            raise
        except StoreError as exc:  # the database is unreachable: no traceback, a clear no
            log.error("room %s: cannot be looked up now: %s", name, exc)
            raise JoinRefused("unavailable", "the room cannot be looked up now; try again "
                              "shortly", CLOSE_TRY_LATER) from None
        except Exception:
            log.exception("room %s: could not look up or create", name)
            if self.directory.exists(name):  # created concurrently: fine
                return
        raise JoinRefused("room-not-found", f"room {name} does not exist", CLOSE_NO_ROOM)

    def _room_sessions(self, name: str) -> list[BrowserSession]:
        room = self._rooms.get(name)
        return list(room.sessions.values()) if room is not None else []

    def _room(self, name: str) -> _Room:
        room = self._rooms.get(name)
        if room is None:
            room = self._rooms[name] = _Room(name, self.settings.chat_history)

            def listener(event: FocusEvent) -> None:
                self._on_focus_event(name, event)

            room.unsubscribe = self.focus.subscribe(name, listener, updates=True)
        return room

    def _drop_room(self, room: _Room) -> None:
        if self._rooms.get(room.name) is room:
            del self._rooms[room.name]
        room.unsubscribe()
        for timer in (room.flush, room.grace):
            if timer is not None:
                timer.cancel()
        room.flush = room.grace = None

    # -- offers and answers ----------------------------------------------------------------

    async def _offer(self, session: BrowserSession) -> None:
        """Send a new offer if one is wanted and allowed (one pending at a time, unless the
        browser asked), and if it would change anything (unless forced)."""
        pid = session.participant_id
        async with session.lock:
            force, session.force_offer = session.force_offer, False
            if session.closed or session.allocation is None:
                return
            if session.pending is not None and not force:
                session.want_offer = True
                return
            sources = await self._bridge_call(self.bridge.receive_sources(session.room, pid))
            if session.closed:
                return
            session.want_offer = False
            if not force and not session.slots.differs(sources):
                return
            slots = session.slots.assign(sources)
            session.revision += 1
            session.pending = session.revision
            session.offered_mids = session.offer_mids()
            sdp = build_offer(session.allocation, slots, session_id=session.session_id,
                              version=session.revision)  # fmt: skip
            log.info("participant %s: offer %d (%d receive m-lines)", pid, session.revision,
                     sum(1 for s in slots if s.source is not None))  # fmt: skip
            self._send(session, p.offer(sdp, session.revision, tracks_json(slots)))

    async def _answer(self, session: BrowserSession, msg: p.Answer) -> None:
        pid = session.participant_id
        if msg.revision > session.revision:
            raise p.ProtocolError("bad-message", f"revision: no offer {msg.revision}", "answer")
        try:
            parsed = parse_answer(msg.sdp, pid)
        except SdpError as exc:
            raise p.ProtocolError("bad-sdp", str(exc), "answer") from None
        async with session.lock:
            if session.closed or msg.revision != session.pending:
                log.info("participant %s: answer to old offer %d ignored", pid, msg.revision)
                return
            if parsed.mids != session.offered_mids:
                raise p.ProtocolError("bad-sdp", "the answer's m-lines do not match the offer",
                                      "answer")  # fmt: skip
            transport = parsed.transport if parsed.transport != session.transport else None
            sources = parsed.sources if parsed.sources != session.sources else None
            if transport is not None or sources is not None:
                update = EndpointUpdate(transport=transport, sources=sources)
                await self._bridge_call(self.bridge.update(session.room, pid, update))
            session.transport = parsed.transport
            session.sources = parsed.sources
            session.pending = None
            log.info("participant %s: answer %d (%d sources)", pid, msg.revision,
                     len(parsed.sources))  # fmt: skip
        if sources is not None:
            self._renegotiate_others(session.room, pid)
        if session.want_offer:
            self._schedule(session.room)

    def _renegotiate_others(self, name: str, except_id: str | None) -> None:
        room = self._rooms.get(name)
        if room is None:
            return
        for other in room.sessions.values():
            if other.participant_id != except_id:
                other.want_offer = True
        self._schedule(name)

    def _schedule(self, name: str) -> None:
        room = self._rooms.get(name)
        if room is None or room.flush is not None:
            return
        loop = asyncio.get_running_loop()
        room.flush = loop.call_later(self.settings.renegotiate_delay, self._flush, name)

    def _flush(self, name: str) -> None:
        room = self._rooms.get(name)
        if room is None:
            return
        room.flush = None
        for session in list(room.sessions.values()):
            if session.want_offer or session.force_offer:
                self._spawn(self._offer(session), session.participant_id)

    # -- focus events ----------------------------------------------------------------------

    def _on_focus_event(self, name: str, event: FocusEvent) -> None:
        room = self._rooms.get(name)
        if room is None:
            return
        info = event.participant
        if isinstance(event, ParticipantJoined):
            self._broadcast(room, p.participant_joined(info), except_id=info.id)
            return
        if isinstance(event, ParticipantLeft):
            own = room.sessions.get(info.id)
            self._forget(info, event.reason)
            if own is not None:
                self._remove(own, event.reason, event.by)
            self._broadcast(room, p.participant_left(info.id, event.reason))
            self._renegotiate_others(name, None)
            return
        own = room.sessions.get(info.id)
        if isinstance(event, ParticipantUpdated) and own is not None:
            self._changed(info, event.changed)
        if isinstance(event, ParticipantUpdated) and "role" in event.changed and \
                own is not None and info.moderator:  # fmt: skip
            self._became_moderator(own, name)
        if isinstance(event, ParticipantMuted) and own is not None and event.by is not None:
            self._send(own, p.muted(event.by))
        self._broadcast(room, p.participant_updated(info))
        if own is not None and own.forced_off != info.force_muted:
            own.forced_off = info.force_muted
            self._spawn(self._push_forced(own), own.participant_id)

    async def _push_forced(self, session: BrowserSession) -> None:
        async with session.lock:
            if session.closed:
                return
            update = EndpointUpdate(audio_forced_off=session.forced_off)
            await self._bridge_call(self.bridge.update(session.room, session.participant_id,
                                                       update))  # fmt: skip
            log.info("participant %s: bridge %s their audio", session.participant_id,
                     "drops" if session.forced_off else "forwards")  # fmt: skip

    def _remove(self, session: BrowserSession, reason: str, by: str | None) -> None:
        """Forget a session (once): close its socket with the reason's code, expire its
        endpoint, and drop the room when it was the last browser."""
        if session.closed:
            return
        session.closed = True
        pid = session.participant_id
        if session.source is not None:
            self.admission.release_endpoint(session.source)
        self._sessions.pop(pid, None)
        room = self._rooms.get(session.room)
        if room is not None:
            room.sessions.pop(pid, None)
            if not room.sessions:
                self._drop_room(room)
        if session.to_lobby:
            pass  # the socket stays open: the browser waits in the lobby (_send_back)
        elif reason == "kicked":
            self._send(session, p.kicked(by))
            session.conn.close(CLOSE_KICKED, "kicked")
        elif reason == "timeout":
            session.conn.close(CLOSE_MEDIA_FAILED, "media failed or timed out")
        else:
            session.conn.close(CLOSE_NORMAL, reason)
        if session.allocation is not None:
            self._expiring.add(pid)  # its id is not resumed meanwhile (meeting_resume)
            self._spawn(self._expire(session.room, pid), pid)

    async def _expire(self, name: str, pid: str) -> None:
        try:
            await self._bridge_call(self.bridge.expire(name, pid))
        finally:
            self._expiring.discard(pid)
        log.info("participant %s: endpoint expired", pid)

    # -- bridge events ---------------------------------------------------------------------

    def _on_bridge_event(self, event: BridgeEvent) -> None:
        if isinstance(event, DominantSpeakerChanged):
            room = self._rooms.get(event.conference_id)
            if room is not None:
                self._broadcast(room, p.dominant_speaker(event.endpoint_id))
            return
        session = self._sessions.get(event.endpoint_id)
        if session is None or session.room != event.conference_id:
            return
        if isinstance(event, EndpointFailed):
            if event.reason == "DTLS closed":
                log.info("participant %s: media closed by the browser", event.endpoint_id)
                # The browser closed its peer connection on purpose, as it does when leaving;
                # its `leave` travels on the WebSocket and may come a moment later. Wait for
                # it, so the others see a leave and not a lost connection.
                asyncio.get_running_loop().call_later(
                    DTLS_CLOSE_GRACE, self.leave, event.endpoint_id, "left"
                )
            else:
                # The page then says "a firewall may be blocking the media": the operator
                # needs to see it (docs/deploy.md, the ports table).
                log.warning("participant %s: media failed (%s); a firewall may be blocking "
                            "the media port", event.endpoint_id, event.reason)
                self.leave(event.endpoint_id, "timeout")
        elif isinstance(event, EndpointStats):
            self._send(session, p.quality(event.rtt_ms, event.receive_bitrate,
                                          event.send_bitrate, event.loss_fraction))  # fmt: skip
        elif isinstance(event, EndpointConnected):
            log.info("participant %s: media connected", event.endpoint_id)

    # -- plumbing --------------------------------------------------------------------------

    def _send(self, session: BrowserSession, message: Mapping[str, object]) -> None:
        try:
            session.conn.send(message)
        except Exception:
            log.exception("participant %s: send failed", session.participant_id)

    def _broadcast(
        self, room: _Room, message: Mapping[str, object], except_id: str | None = None
    ) -> None:
        for session in list(room.sessions.values()):
            if session.participant_id != except_id:
                self._send(session, message)

    async def _bridge_call(self, call: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wait_for(call, self.settings.bridge_timeout)

    def _spawn(self, coro: Coroutine[Any, Any, None], pid: str) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("participant %s: background task failed", pid,
                          exc_info=t.exception())  # fmt: skip

        task.add_done_callback(done)
