"""A phone call under its room's policy: the IVR, PIN or host PIN, password, lobby, the host's
keys.

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

The IVR's actions (``_run_ivr``: prompts, PIN and password checks through the throttle, join,
hang up), the caller's digits (``_on_digit``) and, after every mix tick, the prompts that
finished and the IVR's and lobby's timers (``_after_tick``) are here too.

Without a ``Gate`` (a gateway built without the focus's policy) every room is open, as
before issue 17. Nothing here logs a digit, a PIN or a password.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from dialplan.models import RoomRecord
from dialplan.store import Store, StoreError
from dialplan.throttle import PinThrottle
from focus import Focus
from focus.gate import Gate
from focus.lobby import Lobby
from focus.policy import OPEN, RoomPolicy
from focus.session import PolicyUpdate
from gateway.call import CallState, PhoneCall
from gateway.ivr import (
    CheckPassword,
    CheckPin,
    Hangup,
    IvrState,
    Join,
    PinIvr,
    PlayPrompt,
    StopPrompt,
)
from gateway.mixer import ConferenceMixer, PromptFinished
from gateway.phone_lobby import PhoneLobby, needs_password, plan
from gateway.phone_rooms import PhoneRooms
from gateway.prompts import PromptSet
from gateway.settings import STAR_WINDOW

log = logging.getLogger(__name__)

#: seconds between asks while a PIN lookup waits for the global limit (PinThrottle)
PIN_CHECK_RETRY = 0.05

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

    _ivr_calls: set[PhoneCall]  # the gateway's: calls in the IVR, whose timers it runs
    _by_leg: dict[str, PhoneCall]

    if TYPE_CHECKING:  # the gateway's own methods
        def _end(self, call: PhoneCall, reason: str) -> None: ...
        def _flush(self) -> None: ...
        def _time(self) -> float: raise NotImplementedError
        def _spawn(self, coro: Coroutine[Any, Any, None]) -> None: ...
        def _hand_off_if_elsewhere(self, call: PhoneCall, room: str,
                                   password: bool | None) -> bool: ...
        def _handoff_digit(self, call: PhoneCall, digit: str) -> bool: ...

    # -- the IVR: its actions, the caller's digits, its timers and prompts ----------------

    def _run_ivr(self, call: PhoneCall, now: float) -> None:
        ivr = call.ivr
        if ivr is None:
            return
        while (action := ivr.next_action()) is not None:
            if isinstance(action, PlayPrompt):
                self.mixer.set_prompt(call.leg_id, self.prompts.player(action.name))
            elif isinstance(action, StopPrompt):
                self.mixer.set_prompt(call.leg_id, None)
            elif isinstance(action, CheckPin | CheckPassword):
                verdict = self.throttle.request_check(call.call_id, now)
                if verdict == "wait":  # the global limit: ask again shortly
                    ivr.check_later(now + PIN_CHECK_RETRY)
                elif verdict == "blocked":
                    self.counters["pin_checks_refused"] += 1
                    ivr.give_up("blocked", "PIN guessing blocked", now)
                elif verdict == "busy":
                    self.counters["pin_checks_refused"] += 1
                    ivr.give_up("busy", "PIN lookups overloaded", now)
                else:
                    try:
                        if isinstance(action, CheckPin):
                            self._check_pin(call, ivr, action.pin, now)
                        else:
                            self._check_password(call, ivr, action.password)
                    except StoreError as exc:  # not the caller's fault: not a wrong PIN
                        log.error("call %s: PIN lookup failed: %s", call.call_id, exc)
                        ivr.give_up("busy", "the dialplan's database is unavailable", now)
            elif isinstance(action, Join):
                self._ivr_calls.discard(call)
                call.ivr = None
                self.throttle.finish(call.call_id)
                assert call.room is not None
                self._after_ivr(call, call.room, True if ivr.stage == "password" else None,
                                now)  # fmt: skip
                return
            elif isinstance(action, Hangup):
                self._ivr_calls.discard(call)
                call.ivr = None
                self.throttle.finish(call.call_id)
                self._end(call, action.reason)
                return

    def _on_digit(self, call: PhoneCall, digit: str, now: float) -> None:
        log.info("call %s: DTMF: a digit", call.call_id)  # never which: PINs
        if call.ivr is not None:
            call.ivr.on_digit(digit, now)
            self._run_ivr(call, now)
        elif self._handoff_digit(call, digit):  # in a room on another node: sent on
            return
        elif call.state is CallState.ROOM and call.participant_id is not None:
            self._room_key(call, digit, now)  # '*' keys: gateway/call_policy.py

    def _after_tick(self, now: float) -> None:
        acted = False
        while (event := self.mixer.next_event()) is not None:
            if isinstance(event, PromptFinished):
                call = self._by_leg.get(event.leg_id)
                if call is not None and call.state is CallState.ENDING:
                    self._end(call, "removed")
                    acted = True
                elif call is not None and call.ivr is not None:
                    call.ivr.on_prompt_finished(now, event.name)
                    self._run_ivr(call, now)
                    acted = True
                elif call is not None and self.phone_lobby is not None:
                    self.phone_lobby.on_prompt_finished(call)
        if self.phone_lobby is not None and self.phone_lobby.expire(now):
            acted = True
        for call in list(self._ivr_calls):
            if call.ivr is None:
                continue
            deadline = call.ivr.get_timer()
            if deadline is not None and deadline <= now:
                call.ivr.handle_timer(now)
                self._run_ivr(call, now)
                acted = True
        if acted:
            self._flush()

    # -- the room's policy -------------------------------------------------------------

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
