"""The PIN IVR: a sans-I/O state machine that asks a caller for a meeting PIN.

It never plays audio, reads a clock or checks a PIN itself. The caller of this class feeds it
DTMF digits, "the prompt ended" and "the PIN was right/wrong", each with ``now``, and pulls
:class:`IvrAction` values from :meth:`PinIvr.next_action`:

- ``PlayPrompt(name)``: start playing a prompt to the caller (replacing any other);
  call :meth:`PinIvr.on_prompt_finished` when it has played to its end;
- ``StopPrompt()``: the caller pressed a key during a prompt (barge-in);
- ``CheckPin(pin)``: look the PIN up (dialplan) and answer with :meth:`PinIvr.pin_result`,
  or, when the lookup may not happen now (the throttle's global limit), with
  :meth:`PinIvr.check_later` (``CheckPin`` comes again at that time, the caller hears
  silence and keys are ignored meanwhile) or :meth:`PinIvr.give_up` (a prompt, then
  ``Hangup``; nothing counts as a wrong PIN);
- ``CheckPassword(password)``: check the room's password (slow on purpose: in a thread) and
  answer with :meth:`PinIvr.password_result` (or ``check_later`` / ``give_up`` as for a PIN);
- ``Join()``: move the leg into the room (or its lobby: the gateway decides); the IVR is
  finished;
- ``Hangup(reason)``: end the call; the IVR is finished.

Rules (decisions are marked *):

- Start: play ``welcome``. Any key during ``welcome`` or ``invalid_pin`` stops it (barge-in).
- ``#`` ends the PIN. ``*`` clears the digits typed so far. ``A``-``D`` are ignored.
- Reaching ``max_pin_length`` digits submits the PIN without waiting for ``#``.*
- A failed attempt is: a wrong PIN; ``#`` with no digits*; no key within
  ``first_digit_timeout`` after a prompt ended*. The inter-digit timeout with digits typed
  submits those digits* (a wrong PIN then counts as a failed attempt).
- After a wrong PIN play ``invalid_pin``; after an empty PIN or no input replay ``welcome``;
  then collect again. After ``max_attempts`` failed attempts play ``goodbye``, then
  ``Hangup("too many attempts")``.
- A right PIN plays ``joining``, then ``Join()``; without ``announce`` (the caller will wait
  in the lobby, or is refused: the gateway plays its own prompt) ``Join()`` comes at once.
- The password (``pin_result(True, now, password=True)``: the room has one): play
  ``enter_password``, then collect as for the PIN: ``#`` ends it, ``*`` clears, reaching
  ``max_password_length`` submits, the inter-digit timeout submits what was typed. A wrong
  password, ``#`` with nothing typed, or no key in time is a failed password attempt,
  counted apart from the PIN's: ``invalid_password`` (or ``enter_password`` again), then
  collect again; after ``max_password_attempts`` play ``password_failed`` and
  ``Hangup("too many wrong passwords")``. A right one plays ``joining`` (or not, as above),
  then ``Join()``.
- A prompt that never reports its end is treated as ended after ``prompt_timeout``, so a call
  cannot hang in the IVR forever.
- Nothing here logs a key, a digit, a PIN or a password (only counts): logs are read by
  more people than those who may join the rooms.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

WELCOME = "welcome"
INVALID_PIN = "invalid_pin"
JOINING = "joining"
GOODBYE = "goodbye"
ENTER_PASSWORD = "enter_password"
INVALID_PASSWORD = "invalid_password"
PASSWORD_FAILED = "password_failed"

PIN_DIGITS = frozenset("0123456789")
IGNORED_KEYS = frozenset("ABCDabcd")


class IvrError(Exception):
    """The IVR's API was misused by our own code (a LocalProtocolError in spirit)."""


@dataclass(frozen=True, slots=True)
class IvrSettings:
    first_digit_timeout: float = 10.0
    inter_digit_timeout: float = 5.0
    max_attempts: int = 3
    max_pin_length: int = 12
    prompt_timeout: float = 60.0
    max_password_attempts: int = 3
    max_password_length: int = 64  # dialplan.models.PASSWORD_MAX_LENGTH

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.max_password_attempts < 1:
            raise ValueError("max_attempts and max_password_attempts must be at least 1")
        if self.max_password_length < 1:
            raise ValueError("max_password_length must be at least 1")
        if self.max_pin_length < 1:
            raise ValueError("max_pin_length must be at least 1")
        if min(self.first_digit_timeout, self.inter_digit_timeout, self.prompt_timeout) <= 0:
            raise ValueError("timeouts must be positive")


@dataclass(frozen=True, slots=True)
class PlayPrompt:
    name: str


@dataclass(frozen=True, slots=True)
class StopPrompt:
    pass


@dataclass(frozen=True, slots=True)
class CheckPin:
    pin: str = field(repr=False)  # never in a log line, even by accident


@dataclass(frozen=True, slots=True)
class CheckPassword:
    password: str = field(repr=False)  # never in a log line, even by accident


@dataclass(frozen=True, slots=True)
class Join:
    pass


@dataclass(frozen=True, slots=True)
class Hangup:
    reason: str


IvrAction = PlayPrompt | StopPrompt | CheckPin | CheckPassword | Join | Hangup


class IvrState(enum.Enum):
    IDLE = "idle"            # not started
    PROMPTING = "prompting"  # welcome / invalid_pin playing; keys barge in
    COLLECTING = "collecting"  # waiting for digits, a digit timer runs
    CHECKING = "checking"    # CheckPin (CheckPassword) sent, waiting for its result
    JOINING = "joining"      # joining prompt playing, then Join
    GOODBYE = "goodbye"      # goodbye prompt playing, then Hangup
    DONE = "done"            # Join or Hangup sent


# The transitions that may happen; _set_state refuses any other (a bug in this module).
TRANSITIONS: dict[IvrState, frozenset[IvrState]] = {
    IvrState.IDLE: frozenset({IvrState.PROMPTING}),
    IvrState.PROMPTING: frozenset({IvrState.COLLECTING}),
    IvrState.COLLECTING: frozenset({IvrState.CHECKING, IvrState.PROMPTING, IvrState.GOODBYE}),
    IvrState.CHECKING: frozenset({IvrState.JOINING, IvrState.PROMPTING, IvrState.GOODBYE,
                                  IvrState.DONE}),
    IvrState.JOINING: frozenset({IvrState.DONE}),
    IvrState.GOODBYE: frozenset({IvrState.DONE}),
    IvrState.DONE: frozenset(),
}


class PinIvr:
    """PIN collection for one call leg. ``call_id`` only labels the log records."""

    def __init__(self, call_id: str, settings: IvrSettings | None = None) -> None:
        self.call_id = call_id
        self.settings = settings if settings is not None else IvrSettings()
        self._state = IvrState.IDLE
        self._digits: list[str] = []
        self._failures = 0
        self._password_failures = 0
        self._stage = "pin"  # "pin", then "password" when the room has one
        self._prompt: str | None = None  # the prompt we asked to be played, if any
        self._timer: float | None = None
        self._actions: deque[IvrAction] = deque()
        self._hangup_reason = "too many attempts"  # after the goodbye prompt
        self.pin: str | None = None  # the accepted PIN, once pin_result(True)

    # ----------------------------------------------------------------- read-only state
    @property
    def state(self) -> IvrState:
        return self._state

    @property
    def digits(self) -> str:
        return "".join(self._digits)

    @property
    def failures(self) -> int:
        """Failed attempts so far."""
        return self._failures

    @property
    def password_failures(self) -> int:
        return self._password_failures

    @property
    def stage(self) -> str:
        """What the digits are: "pin", or "password" once the PIN was right."""
        return self._stage

    @property
    def prompt(self) -> str | None:
        return self._prompt

    # ----------------------------------------------------------------- inputs
    def start(self, now: float) -> None:
        if self._state is not IvrState.IDLE:
            raise IvrError(f"call {self.call_id}: IVR already started")
        log.info("call %s: PIN IVR started", self.call_id)
        self._play(WELCOME, IvrState.PROMPTING, now)

    def on_digit(self, digit: str, now: float) -> None:
        state = self._state
        if state is IvrState.IDLE:
            raise IvrError(f"call {self.call_id}: digit before start()")
        if digit in IGNORED_KEYS:
            log.debug("call %s: IVR ignores a letter key", self.call_id)
            return
        if digit not in PIN_DIGITS and digit not in ("#", "*"):
            log.warning("call %s: IVR ignores an unknown DTMF key", self.call_id)
            return
        if state not in (IvrState.PROMPTING, IvrState.COLLECTING):
            log.debug("call %s: IVR ignores a key in state %s", self.call_id, state.value)
            return
        if state is IvrState.PROMPTING:
            log.debug("call %s: barge-in on prompt %s", self.call_id, self._prompt)
            self._actions.append(StopPrompt())
            self._prompt = None
            self._set_state(IvrState.COLLECTING)
        if digit == "#":
            if self._digits:
                self._submit()
            else:
                log.info("call %s: empty %s", self.call_id, self._stage)
                self._fail(self._reprompt(), now)
        elif digit == "*":
            self._digits.clear()
            self._timer = now + self.settings.first_digit_timeout
        else:
            self._digits.append(digit)
            longest = self.settings.max_pin_length if self._stage == "pin" \
                else self.settings.max_password_length  # fmt: skip
            if len(self._digits) >= longest:
                self._submit()
            else:
                self._timer = now + self.settings.inter_digit_timeout

    def on_prompt_finished(self, now: float, name: str | None = None) -> None:
        """The prompt asked for with PlayPrompt has played to its end. With ``name``, a late
        report about another (stopped or replaced) prompt is recognised and ignored."""
        if self._prompt is None or (name is not None and name != self._prompt):
            log.debug("call %s: ignoring end of prompt %s", self.call_id, name)
            return
        self._prompt_ended(now)

    def pin_result(self, ok: bool, now: float, *, password: bool = False,
                   announce: bool = True) -> None:
        """The PIN (or host PIN) was right or wrong. ``password``: the room has a password
        the caller must give next; ``announce``: play ``joining`` before ``Join``."""
        if self._state is not IvrState.CHECKING or self._stage != "pin":
            raise IvrError(f"call {self.call_id}: pin_result in state {self._state.value}")
        if ok:
            self.pin = self.digits
            log.info("call %s: PIN accepted", self.call_id)
            self._digits.clear()
            if password:
                self._stage = "password"
                self._play(ENTER_PASSWORD, IvrState.PROMPTING, now)
            else:
                self._accepted(now, announce)
        else:
            log.info("call %s: wrong PIN", self.call_id)
            self._fail(INVALID_PIN, now)

    def password_result(self, ok: bool, now: float, *, announce: bool = True) -> None:
        if self._state is not IvrState.CHECKING or self._stage != "password":
            raise IvrError(f"call {self.call_id}: password_result in state "
                           f"{self._state.value} ({self._stage})")  # fmt: skip
        self._digits.clear()
        if ok:
            log.info("call %s: password accepted", self.call_id)
            self._accepted(now, announce)
        else:
            log.info("call %s: wrong password", self.call_id)
            self._fail(INVALID_PASSWORD, now)

    def check_later(self, at: float) -> None:
        """The PIN could not be looked up now: ask again (``CheckPin``) at ``at``."""
        if self._state is not IvrState.CHECKING:
            raise IvrError(f"call {self.call_id}: check_later in state {self._state.value}")
        self._timer = at

    def give_up(self, prompt: str, reason: str, now: float) -> None:
        """The PIN will not be looked up (blocked, or waited too long): play ``prompt``,
        then ``Hangup(reason)``. Not a failed attempt."""
        if self._state is not IvrState.CHECKING:
            raise IvrError(f"call {self.call_id}: give_up in state {self._state.value}")
        log.info("call %s: PIN not checked (%s)", self.call_id, reason)
        self._digits.clear()
        self._hangup_reason = reason
        self._play(prompt, IvrState.GOODBYE, now)

    def handle_timer(self, now: float) -> None:
        if self._timer is None or now < self._timer:
            return
        self._timer = None
        if self._state is IvrState.CHECKING:  # check_later's time has come
            self._actions.append(self._check())
        elif self._prompt is not None:
            log.warning("call %s: prompt %s did not report its end; going on",
                        self.call_id, self._prompt)
            self._prompt_ended(now)
        elif self._state is IvrState.COLLECTING:
            if self._digits:
                log.info("call %s: inter-digit timeout, submitting %d digits",
                         self.call_id, len(self._digits))
                self._submit()
            else:
                log.info("call %s: no input", self.call_id)
                self._fail(self._reprompt(), now)

    # ----------------------------------------------------------------- outputs
    def get_timer(self) -> float | None:
        return self._timer

    def next_action(self) -> IvrAction | None:
        return self._actions.popleft() if self._actions else None

    # ----------------------------------------------------------------- internals
    def _set_state(self, new: IvrState) -> None:
        old = self._state
        if new not in TRANSITIONS[old]:
            raise IvrError(f"call {self.call_id}: IVR transition {old.value} -> {new.value}")
        if new is not old:
            log.info("call %s: ivr %s -> %s", self.call_id, old.value, new.value)
        self._state = new

    def _play(self, name: str, state: IvrState, now: float) -> None:
        self._set_state(state)
        self._prompt = name
        self._timer = now + self.settings.prompt_timeout
        self._actions.append(PlayPrompt(name))

    def _prompt_ended(self, now: float) -> None:
        self._prompt = None
        state = self._state
        if state is IvrState.PROMPTING:
            self._set_state(IvrState.COLLECTING)
            self._timer = now + self.settings.first_digit_timeout
        elif state is IvrState.JOINING:
            self._finish(Join())
        elif state is IvrState.GOODBYE:
            self._finish(Hangup(self._hangup_reason))

    def _submit(self) -> None:
        self._set_state(IvrState.CHECKING)
        self._timer = None
        self._actions.append(self._check())

    def _check(self) -> CheckPin | CheckPassword:
        return CheckPin(self.digits) if self._stage == "pin" else CheckPassword(self.digits)

    def _reprompt(self) -> str:
        """The prompt after an empty entry or no input."""
        return WELCOME if self._stage == "pin" else ENTER_PASSWORD

    def _accepted(self, now: float, announce: bool) -> None:
        if announce:
            self._play(JOINING, IvrState.JOINING, now)
        else:
            self._finish(Join())

    def _fail(self, reprompt: str, now: float) -> None:
        self._digits.clear()
        if self._stage == "password":
            self._password_failures += 1
            failures, most = self._password_failures, self.settings.max_password_attempts
            goodbye = PASSWORD_FAILED
            self._hangup_reason = "too many wrong passwords"
        else:
            self._failures += 1
            failures, most = self._failures, self.settings.max_attempts
            goodbye = GOODBYE
        log.info("call %s: failed %s attempt %d of %d", self.call_id, self._stage, failures,
                 most)  # fmt: skip
        if failures >= most:
            self._play(goodbye, IvrState.GOODBYE, now)
        else:
            self._play(reprompt, IvrState.PROMPTING, now)

    def _finish(self, action: Join | Hangup) -> None:
        self._set_state(IvrState.DONE)
        self._timer = None
        self._actions.append(action)
        log.info("call %s: PIN IVR done: %s", self.call_id, action)
