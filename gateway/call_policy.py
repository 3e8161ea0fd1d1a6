"""A phone call under its room's policy: PIN or host PIN, password, lobby, the host's keys.

``CallPolicy`` is a part of ``gateway.service.Gateway`` (a mixin, as ``CallMedia`` is). The
decisions are gateway/phone_lobby.py's (``needs_password``, ``plan``); this is where they
meet the call:

- a right PIN or host PIN (``_pin_accepted``): the IVR asks for the password next, or
  finishes with or without "joining the meeting" (not when the caller will wait or be
  refused: they hear their own prompt instead);
- ``CheckPassword``: checked in a thread (scrypt is slow on purpose), after the PIN
  throttle's ``request_check`` as a PIN lookup is; a wrong password counts in the
  throttle as a wrong PIN does;
- the IVR's ``Join`` (``_after_ivr``): the plan is made again with the room as it is now
  (a host may have come or gone while the prompt played) and carried out: join, the lobby
  (gateway/phone_lobby.py), or a prompt and BYE;
- a host in the room (``_host_key``): ``*1`` lets in everyone waiting in the lobby, ``*2``
  locks the room (the lobby on: everyone new knocks) or unlocks it; ``*6`` (mute) is every
  caller's, in the gateway's ``_on_digit``.

Without a ``Gate`` (a gateway built without the focus's policy) every room is open, as
before issue 17. Nothing here logs a digit, a PIN or a password.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from dialplan.models import RoomRecord
from dialplan.store import Store
from dialplan.throttle import PinThrottle
from focus import Focus
from focus.gate import Gate
from focus.lobby import Lobby
from focus.policy import OPEN, RoomPolicy
from focus.session import PolicyUpdate
from gateway.call import CallState, PhoneCall
from gateway.ivr import IvrState, PinIvr
from gateway.mixer import ConferenceMixer
from gateway.phone_lobby import PhoneLobby, needs_password, plan
from gateway.phone_rooms import PhoneRooms
from gateway.prompts import PromptSet
from gateway.settings import STAR_WINDOW

log = logging.getLogger(__name__)

#: the host's keys, after '*' (as '*6' mutes): let everyone in, lock or unlock, record
KEY_ADMIT_ALL = "1"
KEY_LOCK = "2"
KEY_RECORD = "3"


class RecordingSwitch(Protocol):
    """What a host's '*3' needs of the recorder (recorder/service.py's `Recordings`,
    structurally; set by the composition root: the gateway never imports the recorder)."""

    async def start(self, room: str, by: str) -> Any: ...

    def stop(self, room: str, reason: str) -> Any: ...


class CallPolicy:
    """The policy half of the gateway's call handling (see the module)."""

    focus: Focus
    store: Store
    throttle: PinThrottle
    mixer: ConferenceMixer
    prompts: PromptSet
    rooms: PhoneRooms
    gate: Gate | None
    lobby: Lobby | None
    phone_lobby: PhoneLobby | None
    policy_changed: Callable[[str], None] | None
    recording_switch: RecordingSwitch | None
    counters: dict[str, int]

    if TYPE_CHECKING:  # the gateway's own methods
        def _run_ivr(self, call: PhoneCall, now: float) -> None: ...
        def _end(self, call: PhoneCall, reason: str) -> None: ...
        def _flush(self) -> None: ...
        def _time(self) -> float: raise NotImplementedError
        def _spawn(self, coro: Coroutine[Any, Any, None]) -> None: ...
        def _hand_off_if_elsewhere(self, call: PhoneCall, room: str,
                                   password: bool | None) -> bool: ...

    def _policy(self, room: str) -> RoomPolicy:
        return self.gate.policy(room) if self.gate is not None else OPEN

    def _find_room(self, digits: str) -> tuple[RoomRecord | None, bool]:
        """The room whose PIN (a guest) or host PIN (a host) these digits are."""
        room = self.store.room_by_pin(digits)
        if room is not None:
            return room, False
        room = self.store.room_by_host_pin(digits)
        return room, room is not None

    def _check_pin(self, call: PhoneCall, ivr: PinIvr, pin: str, now: float) -> None:
        room, host = self._find_room(pin)  # its PIN, else its host PIN: one lookup
        if room is None:
            self.counters["pin_failures"] += 1
            log.info("call %s: wrong PIN from %s", call.call_id, call.caller)
            self.throttle.call_failed(call.call_id, now)
            ivr.pin_result(False, now)
        else:
            self.throttle.record_success(call.caller, call.source.host, now)
            call.room = room.name
            call.set_state(CallState.JOINING)
            self._pin_accepted(call, ivr, room.name, host, now)

    def _pin_accepted(self, call: PhoneCall, ivr: PinIvr, room: str, host: bool,
                      now: float) -> None:  # fmt: skip
        call.extra["host"] = host
        policy = self._policy(room)
        if host:
            log.info("call %s: host PIN for room %s", call.call_id, room)
        if needs_password(policy, host=host):
            ivr.pin_result(True, now, password=True)
            return
        then = plan(policy, host=host, hosts_present=self.focus.hosts_present(room),
                    password=None)  # fmt: skip
        ivr.pin_result(True, now, announce=then.action == "join")

    def _check_password(self, call: PhoneCall, ivr: PinIvr, password: str) -> None:
        if self.gate is None or self.gate.policies is None or call.room is None:
            ivr.password_result(False, self._time())  # (not reached: no policy, no password)
            return
        self._spawn(self._password_checked(call, ivr, call.room, password, self.gate))

    async def _password_checked(self, call: PhoneCall, ivr: PinIvr, room: str, password: str,
                                gate: Gate) -> None:  # fmt: skip
        policies = gate.policies
        assert policies is not None
        try:
            ok = await asyncio.to_thread(policies.check_password, room, password)
        except Exception as exc:  # (no traceback: its values could hold the password)
            log.error("call %s: password check failed (%s)", call.call_id, type(exc).__name__)
            ok = False
        if call.ivr is not ivr or ivr.state is not IvrState.CHECKING:
            return  # hung up meanwhile
        now = self._time()
        if not ok:
            self.counters["password_failures"] += 1
            self.throttle.call_failed(call.call_id, now)
            ivr.password_result(False, now)
        else:
            then = plan(self._policy(room), host=False,
                        hosts_present=self.focus.hosts_present(room), password=True)
            ivr.password_result(True, now, announce=then.action == "join")
        self._run_ivr(call, now)
        self._flush()

    def _after_ivr(self, call: PhoneCall, room: str, password: bool | None, now: float) -> None:
        """The IVR is done: in a cluster, the room may live on another node (the call is
        handed there: gateway/handoff.py); else `_join_here`."""
        if not self._hand_off_if_elsewhere(call, room, password):
            self._join_here(call, room, password, now)

    def _join_here(self, call: PhoneCall, room: str, password: bool | None, now: float) -> None:
        """Join, wait in the lobby, or be refused (rule 3 of phone_lobby)."""
        host = bool(call.extra.get("host"))
        policy = self._policy(room)
        then = plan(policy, host=host, hosts_present=self.focus.hosts_present(room),
                    password=password)  # fmt: skip
        if then.action == "join":
            self._enter_room(call, room, host=then.host, open_room=policy.open)
        elif then.action == "wait" and self.phone_lobby is not None:
            name = str(call.extra.get("lobby_name") or "Phone caller")
            self.phone_lobby.wait(call, room, then.reason, name, now, then.prompt)
        else:
            log.info("call %s: room %s refuses the caller", call.call_id, room)
            prompt = then.prompt if then.action == "refuse" and then.prompt else "not_allowed"
            call.set_state(CallState.ENDING)
            self.mixer.set_prompt(call.leg_id, self.prompts.player(prompt))

    def _enter_room(self, call: PhoneCall, room: str, *, host: bool = False,
                    open_room: bool | None = None, participant_id: str | None = None,
                    greeting: str | None = None) -> None:  # fmt: skip
        if call.leg is None:
            self._end(call, "no media")
            return
        if host:
            greeting = "host_joined"
        if not self.rooms.join(call, room, participant_id=participant_id, host=host,
                               open_room=open_room, greeting=greeting):  # fmt: skip
            return
        if host and self.lobby is not None:
            self.lobby.host_arrived(room)  # those waiting for a host, never those knocking

    def _lobby_admitted(self, call: PhoneCall, room: str, participant_id: str) -> None:
        """The lobby let a waiting caller in (PhoneLobby's `admitted`)."""
        self._enter_room(call, room, open_room=self._policy(room).open,
                         participant_id=participant_id, greeting="admitted")  # fmt: skip

    def _room_key(self, call: PhoneCall, digit: str, now: float) -> None:
        """A key from a caller in a room: '*' then, within STAR_WINDOW, '6' (mute, anyone)
        or a host's key."""
        assert call.participant_id is not None
        starred = call.pending_star is not None and now - call.pending_star <= STAR_WINDOW
        if digit == "*":
            call.pending_star = now
            return
        call.pending_star = None
        if not starred or self._host_key(call, digit) or digit != "6":
            return
        muted = not self.mixer.is_muted(call.leg_id)
        self.focus.set_muted(call.participant_id, muted)
        self.mixer.play_to_leg(call.leg_id, self.prompts.player("muted" if muted else "unmuted"))

    def _host_key(self, call: PhoneCall, key: str) -> bool:
        """A host's '*' key in a room (after '*'); False when it is not one of theirs."""
        if key not in (KEY_ADMIT_ALL, KEY_LOCK, KEY_RECORD) or call.participant_id is None or \
                call.room is None:  # fmt: skip
            return False
        try:
            info = self.focus.get(call.participant_id)
        except KeyError:
            return False
        if not info.host:
            return False
        room, pid = call.room, call.participant_id
        if key == KEY_ADMIT_ALL:
            admitted = self.lobby.admit_all(room, pid) if self.lobby is not None else []
            log.info("call %s: the host let in %d waiting", call.call_id, len(admitted))
            self.mixer.play_to_leg(call.leg_id, self.prompts.player(
                "admitted_all" if admitted else "nobody_waiting"))
        elif key == KEY_RECORD:
            self._spawn(self._toggle_recording(call, room, pid))
        elif self.gate is not None:
            self._spawn(self._toggle_lock(call, room, self.gate))
        return True

    def send_back_to_lobby(self, participant_id: str, by: str) -> bool:
        """A moderator sends a caller in a room back to its lobby (Meetings' `send-back`):
        out of the room, waiting again with the music, in the knocking list until let in
        (then back as `admitted`) or denied. False when there is no such caller here."""
        call = self.rooms.by_participant.get(participant_id)
        if call is None or call.room is None or call.state is not CallState.ROOM or \
                self.phone_lobby is None or call.leg_id not in self.mixer:  # fmt: skip
            return False
        room = call.room
        name = str(call.extra.get("lobby_name") or call.name or "Phone caller")
        log.info("call %s: sent back to the lobby of %s by %s", call.call_id, room, by)
        self.rooms.leave(call, "lobby", by=by)
        self.phone_lobby.wait(call, room, "moderator", name, self._time(), "moved_to_lobby")
        self._flush()
        return True

    async def _toggle_recording(self, call: PhoneCall, room: str, pid: str) -> None:
        """A host's '*3': start recording the room, or stop it. Everyone in the room hears
        the change (the recorder tells the composition root, which tells the callers);
        a refused start is said to this caller alone."""
        switch = self.recording_switch
        if switch is not None and self.focus.recorded(room):
            log.info("call %s: the host stops the recording of %s", call.call_id, room)
            switch.stop(room, f"stopped by {pid}")
            return
        refused = switch is None
        if switch is not None:
            try:
                await switch.start(room, pid)
                log.info("call %s: the host starts recording %s", call.call_id, room)
            except Exception as exc:
                refused = True
                log.warning("call %s: recording %s refused: %s", call.call_id, room,
                            getattr(exc, "message", type(exc).__name__))
        if refused and call.state is CallState.ROOM and call.leg_id in self.mixer:
            self.mixer.play_to_leg(call.leg_id, self.prompts.player("recording_failed"))

    async def _toggle_lock(self, call: PhoneCall, room: str, gate: Gate) -> None:
        locked = not gate.policy(room).lobby
        try:
            await gate.change(room, PolicyUpdate(lobby=locked))
        except (ValueError, LookupError):
            log.exception("call %s: could not change the lobby of %s", call.call_id, room)
            return
        log.info("call %s: the host %s room %s", call.call_id,
                 "locked" if locked else "unlocked", room)  # fmt: skip
        if self.policy_changed is not None:
            self.policy_changed(room)
        if call.state is CallState.ROOM and call.leg_id in self.mixer:
            self.mixer.play_to_leg(call.leg_id, self.prompts.player(
                "room_locked" if locked else "room_unlocked"))
