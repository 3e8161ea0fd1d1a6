"""Phone callers under the room policy: who gets in after the PIN, and the lobby's callers.

The rules a caller meets once the IVR accepted a digit string (gateway/ivr.py), in order:

1. The digits are a room's PIN (a guest) or its host PIN (a host): the store answers
   `room_by_pin`, then `room_by_host_pin`; both are one lookup of the PIN throttle, and a
   wrong one is one failed attempt whichever the caller meant.
2. `needs_password`: a guest in a room with a password that a phone can type (digits only,
   `RoomPolicy.password_digits`) is asked for it (the IVR's password stage, three tries;
   each wrong one also counts in the PIN throttle). A host is never asked.
3. `plan(policy, host, hosts_present, password)` is focus/policy.py's `admission`, as for a
   browser, with one phone rule before it: a room whose password a phone cannot type (it has
   anything but digits) tells the caller so (`password_not_typable`) and makes them knock
   (the lobby), whether or not the room's lobby is on. The answer is a `Plan`:
   "join" (in at once; a host as moderator), "wait" (the lobby, for a "moderator" or a
   "host"), or "refuse" (a prompt, then BYE).
4. `PhoneLobby.wait`: the caller takes a participant id (`Focus.new_id("phone")`) and an
   entry in the focus's lobby (`Lobby.wait`, kind "phone", named by the masked number),
   so the page's knocking list and `GET /api/rooms/{name}/lobby` show them. They hear the
   preamble (if any), "please wait, the host will let you in" (`lobby_wait`), then quiet
   music in a loop (gateway/tones.py `hold_music`).
5. The lobby's events for that id: `Admitted` (a moderator, the API, a host arriving, a
   policy change) joins the caller under that id, who hears `admitted`; `Denied` plays
   `denied`, then the gateway sends BYE. A caller is never cut off for arriving early: the
   wait ends only after `max_wait` seconds (ivr.lobby_max_wait, 30 min by default), with
   `lobby_timeout`, then BYE. A caller who hangs up leaves the lobby (`cancel`).

Nothing here logs a digit, a PIN or a password; the lobby entry carries the masked number.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from focus import Focus
from focus.lobby import Admitted, Cancelled, Denied, Lobby, LobbyEvent, LobbyFull
from focus.policy import RoomPolicy, Verdict, admission
from gateway.call import CallState, PhoneCall
from gateway.mixer import ConferenceMixer
from gateway.prompts import PromptSet
from gateway.tones import hold_music

__all__ = ["PhoneLobby", "Plan", "needs_password", "plan"]

log = logging.getLogger(__name__)

#: the prompt a refusal's code names (focus/policy.py's Refusal codes)
REFUSAL_PROMPTS = {"guests-not-allowed": "not_allowed", "password-required": "not_allowed",
                   "wrong-password": "password_failed"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Plan:
    """What happens to a caller once the IVR is done."""

    action: str  # "join" | "wait" | "refuse"
    reason: str = ""  # wait: "moderator" (knocks) | "host" (waits for a host)
    prompt: str | None = None  # refuse: before BYE; wait: before lobby_wait
    host: bool = False  # join: as a host (moderator)


def needs_password(policy: RoomPolicy, *, host: bool) -> bool:
    """Rule 2: ask this caller for the room's password after the PIN."""
    return not host and policy.has_password and policy.password_digits and policy.guests


def plan(policy: RoomPolicy, *, host: bool, hosts_present: bool,
         password: bool | None) -> Plan:  # fmt: skip
    """Rule 3. `password`: None when none was given, else whether it was right."""
    if not host and policy.has_password and not policy.password_digits and policy.guests \
            and password is None:  # fmt: skip
        return Plan("wait", "moderator", prompt="password_not_typable")
    result = admission(policy, host=host, member=False, hosts_present=hosts_present,
                       password=password)  # fmt: skip
    if result.verdict is None:
        assert result.refusal is not None
        return Plan("refuse", prompt=REFUSAL_PROMPTS.get(result.refusal.code, "not_allowed"))
    if result.verdict is Verdict.JOIN:
        return Plan("join", host=result.host)
    return Plan("wait", result.verdict.value)


@dataclass(eq=False, slots=True)
class WaitingCall:
    call: PhoneCall
    pid: str
    room: str
    deadline: float  # the gateway's clock
    queue: deque[str] = field(default_factory=deque)  # prompts still to play before music


AdmitFn = Callable[[PhoneCall, str, str], None]  # (call, room, participant id)


class PhoneLobby:
    """The callers of this gateway waiting in the focus's lobby (rules 4 and 5)."""

    def __init__(self, lobby: Lobby, focus: Focus, mixer: ConferenceMixer, prompts: PromptSet,
                 *, max_wait: float, admitted: AdmitFn) -> None:  # fmt: skip
        """`admitted(call, room, pid)`: join an admitted caller (the gateway's join)."""
        self.lobby = lobby
        self.focus = focus
        self.mixer = mixer
        self.prompts = prompts
        self.max_wait = max_wait
        self._admitted = admitted
        self._by_call: dict[str, WaitingCall] = {}
        self._by_pid: dict[str, WaitingCall] = {}
        self._unsubscribe = lobby.subscribe(None, self._on_event)

    def close(self) -> None:
        self._unsubscribe()

    def __len__(self) -> int:
        return len(self._by_call)

    def waiting(self, call: PhoneCall) -> bool:
        return call.call_id in self._by_call

    def wait(self, call: PhoneCall, room: str, reason: str, name: str, now: float,
             preamble: str | None = None) -> bool:  # fmt: skip
        """Put the caller in the room's lobby (rule 4); False when the lobby is full (the
        caller then hears `room_full` and the gateway hangs up)."""
        pid = self.focus.new_id("phone")
        try:
            self.lobby.wait(room, pid, "phone", name, reason, time.time())
        except LobbyFull:
            log.info("call %s: the lobby of %s is full: refused", call.call_id, room)
            self._refuse(call, "room_full")
            return False
        call.set_state(CallState.JOINING)  # (a call routed to a room comes from ANSWERED)
        waiting = WaitingCall(call, pid, room, now + self.max_wait)
        if preamble is not None:
            waiting.queue.append(preamble)
        waiting.queue.append("lobby_wait")
        self._by_call[call.call_id] = waiting
        self._by_pid[pid] = waiting
        log.info("call %s: waits in the lobby of %s as %s (for a %s)", call.call_id, room,
                 pid, reason)  # fmt: skip
        self._play_next(waiting)
        return True

    def on_prompt_finished(self, call: PhoneCall) -> bool:
        """A prompt of a waiting caller ended: the next one, or the music again. False when
        the caller does not wait here."""
        waiting = self._by_call.get(call.call_id)
        if waiting is None:
            return False
        self._play_next(waiting)
        return True

    def expire(self, now: float) -> int:
        """End the wait of callers who waited `max_wait` (a prompt, then BYE); how many."""
        expired = [w for w in self._by_call.values() if w.deadline <= now]
        for waiting in expired:
            log.info("call %s: waited %.0f s in the lobby of %s: giving up", waiting.call.call_id,
                     self.max_wait, waiting.room)  # fmt: skip
            self._forget(waiting)
            self.lobby.cancel(waiting.pid)
            self._refuse(waiting.call, "lobby_timeout")
        return len(expired)

    def cancel(self, call: PhoneCall) -> None:
        """The caller hung up (or the call ended otherwise): out of the lobby."""
        waiting = self._by_call.get(call.call_id)
        if waiting is not None:
            self._forget(waiting)
            self.lobby.cancel(waiting.pid)

    # -- internals ---------------------------------------------------------------------------

    def _on_event(self, event: LobbyEvent) -> None:
        waiting = self._by_pid.get(event.entry.id)
        if waiting is None or isinstance(event, Cancelled):
            if waiting is not None:
                self._forget(waiting)
            return
        self._forget(waiting)
        call = waiting.call
        if call.state is not CallState.JOINING or call.leg_id not in self.mixer:
            return  # the call is ending anyway
        self.mixer.set_prompt(call.leg_id, None)
        if isinstance(event, Admitted):
            self._admitted(call, waiting.room, waiting.pid)
        elif isinstance(event, Denied):
            self._refuse(call, "denied")

    def _play_next(self, waiting: WaitingCall) -> None:
        leg = waiting.call.leg_id
        if leg not in self.mixer:
            return
        if waiting.queue:
            self.mixer.set_prompt(leg, self.prompts.player(waiting.queue.popleft()))
        else:
            self.mixer.set_prompt(leg, hold_music())

    def _refuse(self, call: PhoneCall, prompt: str) -> None:
        """The prompt, then BYE (the gateway ends a call in ENDING when its prompt ends)."""
        call.set_state(CallState.ENDING)
        if call.leg_id in self.mixer:
            self.mixer.set_prompt(call.leg_id, self.prompts.player(prompt))

    def _forget(self, waiting: WaitingCall) -> None:
        self._by_call.pop(waiting.call.call_id, None)
        self._by_pid.pop(waiting.pid, None)
