"""Call events the UserAgent hands to the application (frozen, slots; pulled with
`UserAgent.next_event()`). `call_id` is the SIP Call-ID of the call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from .message import SipRequest, SipResponse
from .peer import Peer

__all__ = [
    "CallAnswered",
    "CallConfirmed",
    "CallEnded",
    "CallEvent",
    "CallProgress",
    "IncomingCall",
    "InfoReceived",
    "OfferReceived",
    "RequestAnswered",
    "RequestTimedOut",
]


@dataclass(frozen=True, slots=True)
class IncomingCall:
    """A new INVITE: answer with ringing()/answer()/reject(). `offer` is None when the INVITE
    had no SDP: the SDP given to answer() is then an offer and the answer comes with the ACK
    (CallConfirmed.answer)."""

    call_id: str
    request: SipRequest
    source: Peer
    offer: bytes | None


@dataclass(frozen=True, slots=True)
class CallAnswered:
    """UAC side: a 2xx arrived (the UserAgent has sent the ACK). `answer` is its SDP."""

    call_id: str
    answer: bytes | None


@dataclass(frozen=True, slots=True)
class CallConfirmed:
    """The ACK for our 2xx arrived. `answer` is set when our 2xx carried the offer (an INVITE
    or re-INVITE without SDP) and the ACK brought the answer."""

    call_id: str
    answer: bytes | None


@dataclass(frozen=True, slots=True)
class OfferReceived:
    """A re-INVITE or UPDATE with an SDP offer (e.g. hold or unhold): reply with
    answer_offer() (or reject(call_id, 488) to keep the old session)."""

    call_id: str
    offer: bytes


@dataclass(frozen=True, slots=True)
class InfoReceived:
    """An INFO in the dialog (already answered with 200), e.g. application/dtmf-relay."""

    call_id: str
    content_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class CallEnded:
    """The call is over and the UserAgent has forgotten it. Emitted once per call, whoever
    ended it: reason is "bye" (remote BYE), "hangup" (our BYE finished), "cancelled",
    "rejected" (a final non-2xx either way, `status` set), "timeout", "no ACK",
    "session timer expired", ..."""

    call_id: str
    reason: str
    status: int | None = None


@dataclass(frozen=True, slots=True)
class CallProgress:
    """UAC side: a provisional response (180 Ringing, 183 Session Progress) to our INVITE.
    `early_media`: it carried SDP (the application decides whether to listen; dial-out
    does not)."""

    call_id: str
    status: int
    early_media: bool = False


@dataclass(frozen=True, slots=True)
class OfferRetried:
    """UAC side: our INVITE's offer was refused (`status` 488 or 415) and the INVITE went
    again, same Call-ID and a new CSeq, with the fallback offer given to `call()` (plain
    RTP/AVP after an RTP/SAVP offer); `offer` is what was sent."""

    call_id: str
    status: int
    offer: bytes


@dataclass(frozen=True, slots=True)
class RegisterReceived:
    """A REGISTER to us (only when `UaCore.accept_register` says so; else 405). The app
    answers it with `UserAgent.answer_register(key, status, ...)`, at once."""

    call_id: str
    key: str
    request: SipRequest
    source: Peer


@dataclass(frozen=True, slots=True)
class RequestAnswered:
    """A final response to a request sent outside any call (`UserAgent.register`).
    `call_id` is the request's Call-ID (a registration's, not a call's)."""

    call_id: str
    response: SipResponse


@dataclass(frozen=True, slots=True)
class RequestTimedOut:
    """No final response to a request sent outside any call (timer F, or the transport)."""

    call_id: str
    cseq: int | None = None  # the request's CSeq (a registration ignores a stale one)


CallEvent: TypeAlias = (
    IncomingCall | CallAnswered | CallConfirmed | OfferReceived | InfoReceived | CallEnded
    | CallProgress | OfferRetried | RegisterReceived | RequestAnswered | RequestTimedOut
)
