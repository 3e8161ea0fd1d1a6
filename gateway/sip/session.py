"""The INVITE session usage of a dialog: call state, offer/answer bookkeeping and the
RFC 4028 session timer rules.

`InviteSession` is the per-call record the UserAgent keeps; every state change goes through
`InviteSession.set_state`, checked against `TRANSITIONS`. The session timer functions are
pure: they read a request or response and return what to do.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from typing import ClassVar

from .dialog import Dialog
from .errors import LocalProtocolError, RemoteProtocolError
from .layer import ClientTransaction, ServerTransaction
from .message import SipMessage, SipRequest, SipResponse
from .peer import Peer
from .timers import RetransmitSchedule

__all__ = [
    "AckWait",
    "CallState",
    "InviteSession",
    "SessionTimer",
    "TimerOffer",
    "negotiate_uas_timer",
    "parse_session_expires",
    "supports",
    "timer_from_response",
]

log = logging.getLogger(__name__)

MIN_SE_FLOOR = 90  # RFC 4028 section 4: no interval below 90 seconds


class CallState(enum.Enum):
    INCOMING = "incoming"  # UAS: INVITE received, no final response yet
    CALLING = "calling"  # UAC: INVITE sent, no final response yet
    ANSWERED = "answered"  # UAS: 2xx sent, waiting for the ACK
    CONFIRMED = "confirmed"  # the call is up
    TERMINATING = "terminating"  # our BYE is on its way
    ENDED = "ended"

    def __str__(self) -> str:
        return self.value


S = CallState


def supports(message: SipMessage, option: str) -> bool:
    """The message lists `option` in Supported (or Require)."""
    wanted = option.lower()
    return any(
        value.strip().lower() == wanted
        for name in ("Supported", "Require")
        for value in message.headers.get_all(name)
    )


def parse_session_expires(value: str) -> tuple[int, str | None]:
    """`Session-Expires: 1800;refresher=uac` -> (1800, "uac")."""
    delta, *params = value.split(";")
    delta = delta.strip()
    if not delta.isdigit() or len(delta) > 10:
        raise RemoteProtocolError(f"bad Session-Expires {value[:40]!r}")
    refresher: str | None = None
    for param in params:
        name, _, param_value = param.partition("=")
        if name.strip().lower() == "refresher":
            refresher = param_value.strip().lower()
            if refresher not in ("uac", "uas"):
                raise RemoteProtocolError(f"bad refresher in Session-Expires {value[:40]!r}")
    return int(delta), refresher


def _min_se(message: SipMessage) -> int:
    value = message.headers.get("Min-SE")
    if value is None:
        return MIN_SE_FLOOR
    delta = value.split(";", 1)[0].strip()
    if not delta.isdigit() or len(delta) > 10:
        raise RemoteProtocolError(f"bad Min-SE {value[:40]!r}")
    return int(delta)


@dataclass(frozen=True, slots=True)
class SessionTimer:
    """A running session timer: its interval and whether we send the refreshes."""

    interval: int
    we_refresh: bool

    def refresh_at(self, now: float) -> float:
        return now + self.interval / 2

    def expire_at(self, now: float) -> float:
        """RFC 4028 section 10: the non-refresher gives up at expiry minus min(32, SE/3)."""
        return now + self.interval - min(32.0, self.interval / 3)


@dataclass(frozen=True, slots=True)
class TimerOffer:
    """What a UAS answers about session timers: 422 (with our Min-SE), or the timer to run
    (None: no timer) and the headers that say so in the 2xx."""

    reject_min_se: int | None = None
    timer: SessionTimer | None = None
    headers: tuple[tuple[str, str], ...] = ()


def negotiate_uas_timer(request: SipRequest, session_expires: int, min_se: int) -> TimerOffer:
    """RFC 4028 section 9, for an INVITE, re-INVITE or UPDATE we are about to accept.

    A Session-Expires below our Min-SE gets 422. Without one we impose our own interval
    (session_expires <= 0: we do not) and refresh ourselves. The refresher is what the request
    asked for, else the UAC when it supports "timer", else us.
    """
    uac_supports = supports(request, "timer")
    floor = max(min_se, MIN_SE_FLOOR)
    value = request.headers.get("Session-Expires")
    if value is not None:
        interval, refresher = parse_session_expires(value)
        if interval < floor:
            return TimerOffer(reject_min_se=floor)
        if session_expires > 0:
            interval = min(interval, max(session_expires, _min_se(request), floor))
    else:
        if session_expires <= 0:
            return TimerOffer()
        interval = max(session_expires, _min_se(request), floor)
        refresher = "uas"
    if refresher is None or not uac_supports:
        refresher = "uac" if uac_supports else "uas"
    headers: list[tuple[str, str]] = [("Session-Expires", f"{interval};refresher={refresher}")]
    if uac_supports:
        headers.append(("Require", "timer"))
    return TimerOffer(timer=SessionTimer(interval, refresher == "uas"), headers=tuple(headers))


def timer_from_response(response: SipResponse, fallback: int) -> SessionTimer | None:
    """RFC 4028 section 7.2, the UAC's view of a 2xx to its INVITE/UPDATE.

    With Session-Expires the response names the refresher (default: us, the UAC). Without
    one the peer does not run timers; we still refresh every `fallback` seconds to notice a
    dead peer (None when fallback <= 0)."""
    value = response.headers.get("Session-Expires")
    if value is None:
        return SessionTimer(fallback, True) if fallback > 0 else None
    interval, refresher = parse_session_expires(value)
    return SessionTimer(interval, refresher != "uas")


@dataclass(slots=True, eq=False)
class AckWait:
    """A 2xx to an INVITE (initial or re-INVITE) that we retransmit until the ACK arrives."""

    txn: ServerTransaction
    response: SipResponse
    cseq: int
    schedule: RetransmitSchedule
    offer_in_2xx: bool  # our 2xx carried an offer: the ACK carries the answer


@dataclass(slots=True, eq=False)
class InviteSession:
    """One call as the UserAgent sees it (the INVITE usage of one dialog)."""

    TRANSITIONS: ClassVar[dict[CallState, frozenset[CallState]]] = {
        S.INCOMING: frozenset({S.ANSWERED, S.ENDED}),
        S.CALLING: frozenset({S.CONFIRMED, S.TERMINATING, S.ENDED}),
        S.ANSWERED: frozenset({S.CONFIRMED, S.TERMINATING, S.ENDED}),
        S.CONFIRMED: frozenset({S.TERMINATING, S.ENDED}),
        S.TERMINATING: frozenset({S.ENDED}),
        S.ENDED: frozenset(),
    }

    call_id: str
    role: str  # "uac" | "uas"
    local_tag: str
    invite: SipRequest  # the dialog-creating INVITE (ours or theirs)
    peer: Peer  # UAS: where the INVITE came from; UAC: where we sent it
    state: CallState
    dialog: Dialog | None = None
    invite_server: ServerTransaction | None = None  # UAS: the INVITE before its final response
    invite_client: ClientTransaction | None = None  # UAC: our INVITE transaction
    ack_wait: AckWait | None = None
    local_sdp: bytes | None = None
    remote_sdp: bytes | None = None
    sdp_version: int = -1  # the highest o= version we have sent
    timer: SessionTimer | None = None
    timer_offer: TimerOffer | None = None  # negotiated for the pending 2xx we will send
    pending_server: ServerTransaction | None = None  # re-INVITE/UPDATE we received, unanswered
    pending_client: ClientTransaction | None = None  # re-INVITE/UPDATE we sent, unanswered
    peer_methods: frozenset[str] = frozenset()
    peer_timer: bool = False  # the peer supports RFC 4028
    ack: SipRequest | None = None  # UAC: our ACK for the 2xx, resent for 2xx retransmissions
    ack_dest: Peer | None = None
    got_provisional: bool = False  # UAC: CANCEL is allowed
    cancel_requested: bool = False  # UAC: hang up as soon as we may
    cancel_sent: bool = False
    hangup_after_ack: bool = False  # UAS: hang up once the ACK arrives
    bye: ClientTransaction | None = None
    end_reason: tuple[str, int | None] = ("hangup", None)
    ended_reported: bool = False  # CallEnded is out (the BYE may still be running)
    retries: int = 0  # 422 retries of the current INVITE/refresh
    #: UAC: (username, password) answering a 401/407 to our INVITE (never logged)
    credentials: tuple[str, str] | None = field(default=None, repr=False)
    auth_tries: int = 0  # UAC: INVITEs sent with credentials (one per fresh challenge)
    #: UAC: the offer our INVITE is sent again with, once, after a 488/415 to it
    fallback_sdp: bytes | None = None

    def set_state(self, new: CallState) -> None:
        old = self.state
        if new is old:
            return
        if new not in self.TRANSITIONS[old]:
            raise LocalProtocolError(f"call {self.call_id}: no transition {old} -> {new}")
        self.state = new
        log.info("call %s: %s -> %s", self.call_id, old, new)

    @property
    def offer_pending(self) -> bool:
        """An offer/answer exchange is open in either direction."""
        return (
            self.pending_server is not None
            or (self.pending_client is not None and bool(self.pending_client.request.body))
            or (self.ack_wait is not None and self.ack_wait.offer_in_2xx)
        )
