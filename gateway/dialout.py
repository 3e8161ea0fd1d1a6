"""Dial-out: a moderator (or the API) calls a phone into a room. The sans-I/O half.

`pick_trunk` is the toll-fraud guard, applied before anything is sent:

1. the number is normalised to E.164 with `dialplan.default_country` (no "+" and no default
   country: refused, nothing is ever prefixed blindly);
2. a trunk named in the request must exist, and the number must start with one of its
   `allowed_destinations` prefixes ("+" alone allows every number); an empty list allows
   none: a trunk nobody configured for dial-out never carries one;
3. without a trunk named, the trunks whose prefixes allow the number are the candidates:
   exactly one is used; none is a refusal, several ask the caller to name one.

`DialOut` is one outbound call's state, time passed in as `now`:

- states: "dialing" (INVITE sent) -> "ringing" (a 180 or 183; a 183's early media is
  never played into the room) -> "connected" (200 OK; the callee is now an ordinary phone
  participant) -> "ended"; or "dialing"/"ringing" -> "ended" directly;
- one ringing timeout, counted from the INVITE: when it passes before the answer, the call
  is cancelled (`cancel_due()`) and ends as "no answer";
- the end's outcome (the participant's state in the roster, `participant_state`) is named
  from the final status: 486 and 600 "busy", 603 "busy" (declined), 408/480/487 after the
  timeout "no-answer", 404/484/604 "failed" (no such number), other 4xx/5xx/6xx "failed";
  a CANCEL we sent because the request was withdrawn is "cancelled"; an answered call that
  ends is "ended" (reason "hangup" or the SIP side's reason);
- SRTP "optional" over TLS (`plain_fallback`): a 488 or 415 to our RTP/SAVP offer sends
  the INVITE once more with plain RTP/AVP (`on_offer_retried`): the same call, the same
  participant, the same ringing timeout (still counted from the first INVITE); a second
  refusal ends it as any final response does. "required" never falls back;
- DTMF after the answer: `dtmf` is a string of 0-9, *, #, A-D and ',' (a pause of
  `PAUSE` seconds); each digit is due `DIGIT_GAP` after the previous one, the first
  `FIRST_DIGIT_DELAY` after the answer (the far side's IVR must be listening).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from dialplan.numbers import InvalidNumber
from dialplan.trunks import TrunkRecord, to_e164

__all__ = [
    "DialOut",
    "DialRefused",
    "destination_allowed",
    "outcome_of",
    "parse_dtmf",
    "pick_trunk",
]

log = logging.getLogger(__name__)

DialState = Literal["dialing", "ringing", "connected", "ended"]
#: the participant's state in the roster and the API
ParticipantState = Literal["calling", "ringing", "in-meeting", "busy", "no-answer", "failed",
                           "cancelled", "ended"]

PAUSE = 1.0  # seconds per ',' in a DTMF string
DIGIT_GAP = 0.25  # between the starts of two digits (each lasts 160 ms)
FIRST_DIGIT_DELAY = 1.0  # after the answer, before the first digit
MAX_DTMF = 64
MIN_RINGING, MAX_RINGING = 5.0, 300.0
#: calls a room may have ringing at once (each holds an RTP port pair): more is a 429
MAX_RINGING_PER_ROOM = 10
_DTMF = re.compile(r"[0-9*#A-Da-d,]*")


class DialRefused(Exception):
    """A dial request refused before anything was sent: `status` is the HTTP status (400
    for a bad number, 403 for the toll-fraud guard, 404 for an unknown trunk)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def destination_allowed(trunk: TrunkRecord, number: str) -> bool:
    """The E.164 `number` starts with one of the trunk's allowed destination prefixes."""
    return any(number.startswith(prefix) for prefix in trunk.allowed_destinations)


def pick_trunk(trunks: Iterable[TrunkRecord], raw_number: str, trunk_name: str | None,
               default_country: str) -> tuple[TrunkRecord, str]:
    """(trunk, E.164 number) for a dial request; DialRefused says why not (rules 1-3)."""
    try:
        number = to_e164(raw_number, default_country)
    except InvalidNumber as exc:
        raise DialRefused(400, str(exc)) from None
    trunks = list(trunks)
    if trunk_name is not None:
        named = [t for t in trunks if t.name == trunk_name.strip().lower()]
        if not named:
            raise DialRefused(404, f"trunk {trunk_name!r} not found")
        trunk = named[0]
        if not destination_allowed(trunk, number):
            raise DialRefused(403, f"trunk {trunk.name} does not allow calls to {number} "
                                   "(allowed_destinations)")
        return trunk, number
    fits = [t for t in trunks if destination_allowed(t, number)]
    if not fits:
        raise DialRefused(403, f"no trunk allows calls to {number} (allowed_destinations)")
    if len(fits) > 1:
        raise DialRefused(400, f"several trunks allow calls to {number} ("
                               f"{', '.join(t.name for t in fits)}): name one in 'trunk'")
    return fits[0], number


def parse_dtmf(text: str) -> str:
    """A DTMF string as the API takes it (digits, *, #, A-D, ',' pauses); ValueError."""
    if len(text) > MAX_DTMF or not _DTMF.fullmatch(text):
        raise ValueError(f"dtmf: expected at most {MAX_DTMF} of 0-9 * # A-D and ','")
    return text.upper()


def outcome_of(status: int | None, timed_out: bool, withdrawn: bool) -> tuple[str, str]:
    """(participant state, reason) for a call that ended before it was answered."""
    if withdrawn:
        return "cancelled", "cancelled"
    if timed_out or status in (408, 480, 487):
        return "no-answer", "no answer"
    if status in (486, 600):
        return "busy", "busy"
    if status == 603:
        return "busy", "declined"
    if status in (404, 484, 604):
        return "failed", f"number not found ({status})"
    if status is None:
        return "failed", "no final response"
    if status == 488:
        return "failed", "media not acceptable (488)"
    if status in (401, 407, 403):
        return "failed", f"refused by the trunk ({status})"
    return "failed", f"SIP {status}"


@dataclass
class DialOut:
    """One outbound call (see the module). `id` is the API's call id."""

    id: str
    room: str
    number: str  # E.164
    trunk: str
    started: float
    ringing_timeout: float
    dtmf: str = ""
    state: DialState = "dialing"
    participant_state: str = "calling"
    reason: str | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    timed_out: bool = False
    withdrawn: bool = False  # DELETE before the answer: a CANCEL, "cancelled"
    participant_id: str = ""
    redial: bool = False  # a cluster: called again by the room's next node if this one dies
    plain_fallback: bool = False  # SRTP offered under "optional": plain RTP after a 488/415
    fell_back: bool = False  # the INVITE went again with plain RTP
    _digits: list[tuple[float, str]] = field(default_factory=list)

    # -- inputs --------------------------------------------------------------------------

    def on_provisional(self, status: int, now: float) -> bool:
        """A 180/183 arrived; True when the state changed (to "ringing")."""
        if self.state != "dialing" or status <= 100:
            return False
        self._set("ringing", "ringing", now)
        return True

    def on_offer_retried(self, status: int, now: float) -> bool:
        """The callee refused our SRTP offer (`status` 488/415) and the INVITE went again
        with plain RTP. True when that was allowed (a plain fallback not used yet, still
        dialing or ringing); the state and the ringing timeout stay as they are."""
        if not self.plain_fallback or self.fell_back or status not in (415, 488) \
                or self.state not in ("dialing", "ringing"):
            return False
        self.fell_back = True
        log.info("dial-out %s: %d to the SRTP offer: calling again with plain RTP", self.id,
                 status)
        return True

    def on_answered(self, now: float) -> None:
        """The 200 OK: connected; the DTMF string is scheduled from now."""
        if self.state not in ("dialing", "ringing"):
            return
        self.answered_at = now
        self._set("connected", "in-meeting", now)
        at = now + FIRST_DIGIT_DELAY
        for ch in self.dtmf:
            if ch == ",":
                at += PAUSE
                continue
            self._digits.append((at, ch))
            at += DIGIT_GAP

    def on_ended(self, status: int | None, now: float, reason: str = "hangup") -> None:
        """The SIP call is over (a final non-2xx, CANCEL done, BYE either way)."""
        if self.state == "ended":
            return
        if self.state == "connected":
            self.reason = reason
            self._set("ended", "ended", now)
        else:
            state, self.reason = outcome_of(status, self.timed_out, self.withdrawn)
            self._set("ended", state, now)
        self.ended_at = now
        self._digits.clear()

    def on_transport_failed(self, reason: str, now: float) -> bool:
        """The INVITE could not be sent: its connection failed (`reason`, e.g. a TLS
        certificate that does not verify). Ends a call not answered yet as "failed" with
        that reason; True when it did."""
        if self.state not in ("dialing", "ringing"):
            return False
        self.reason = reason
        self._set("ended", "failed", now)
        self.ended_at = now
        return True

    def withdraw(self, now: float) -> None:
        """The request is withdrawn (API DELETE, a moderator's cancel) before the answer."""
        if self.state in ("dialing", "ringing"):
            self.withdrawn = True

    # -- timers --------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        if self.state in ("dialing", "ringing") and not (self.timed_out or self.withdrawn):
            return self.started + self.ringing_timeout
        if self.state == "connected" and self._digits:
            return self._digits[0][0]
        return None

    def cancel_due(self, now: float) -> bool:
        """The ringing timeout passed (True once): the caller sends CANCEL."""
        if self.state in ("dialing", "ringing") and not (self.timed_out or self.withdrawn) \
                and now >= self.started + self.ringing_timeout:
            self.timed_out = True
            log.info("dial-out %s: no answer within %.0f s: cancelling", self.id,
                     self.ringing_timeout)
            return True
        return False

    def digits_due(self, now: float) -> str:
        """The DTMF digits due by `now` (sent by the caller through the leg, RFC 4733)."""
        due = ""
        while self._digits and self._digits[0][0] <= now:
            due += self._digits.pop(0)[1]
        return due

    # -- views ---------------------------------------------------------------------------

    def redial_entry(self) -> dict[str, object]:
        """What the room's next node needs to call this number again (CalleeMemory)."""
        return {"number": self.number, "trunk": self.trunk, "dtmf": self.dtmf,
                "ringing_timeout": self.ringing_timeout}

    def as_json(self) -> dict[str, object]:
        return {"id": self.id, "state": self.state, "reason": self.reason,
                "participant_id": self.participant_id,
                "participant_state": self.participant_state, "room": self.room,
                "trunk": self.trunk, "srtp_fallback": self.fell_back}

    def _set(self, state: DialState, participant_state: str, now: float) -> None:
        log.info("dial-out %s: %s -> %s (%s)", self.id, self.state, state, participant_state)
        self.state = state
        self.participant_state = participant_state
