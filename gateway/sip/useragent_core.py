"""What every part of the UserAgent shares: settings, the tables of calls and dialogs, one
timer heap, message builders and the end-of-call paths.

The UserAgent is split by layer into a chain of classes: `UaCore` (this file), `UaServer`
(requests we receive, `useragent_uas.py`), `UaClient` (responses to our requests and the
session timers, `useragent_uac.py`) and `UserAgent` (the public API, `useragent.py`).
"""

from __future__ import annotations

import logging
import secrets
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .dialog import DialogId, DialogState, secure_request
from .errors import LocalProtocolError, RemoteProtocolError
from .events import CallEnded, CallEvent
from .headers import Via
from .layer import ClientTransaction, ServerTransaction, TransactionLayer, new_branch
from .message import SipRequest, SipResponse, make_response
from .sdp import SessionDescription
from .session import CallState, InviteSession, SessionTimer
from .timers import TimerHeap, TimerSettings
from .uri import NameAddr, SipUri

__all__ = ["ACCEPT", "ALLOW", "SUPPORTED", "UaCore", "UaSettings"]

log = logging.getLogger(__name__)

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE"
ALLOWED_METHODS = frozenset(m.strip() for m in ALLOW.split(","))
ACCEPT = "application/sdp, application/dtmf-relay, application/dtmf"
SUPPORTED = "timer"
SUPPORTED_OPTIONS = frozenset({"timer"})
# Methods we know and do not implement: 405 with Allow (anything else unknown: 501).
KNOWN_UNSUPPORTED = frozenset(
    {"REGISTER", "SUBSCRIBE", "NOTIFY", "MESSAGE", "REFER", "PUBLISH", "PRACK"}
)
TIMER_KINDS = ("2xx", "refresh", "expire")


@dataclass(frozen=True, slots=True)
class UaSettings:
    local: dict[str, tuple[str, int]]  # transport -> announced (host, port) for Via/Contact
    user_agent: str = "Switchboard"
    session_expires: int = 1800  # our session interval; <= 0: no timer unless asked for
    min_se: int = 90
    timers: TimerSettings = field(default_factory=TimerSettings)
    #: completed non-INVITE server transactions kept at most (the oldest go first)
    max_finished_transactions: int = 20_000


class UaCore:
    """State and helpers shared by the server and client halves of the UserAgent."""

    def __init__(self, settings: UaSettings) -> None:
        if not settings.local:
            raise LocalProtocolError("UaSettings.local needs at least one transport")
        self.settings = settings
        self._layer = TransactionLayer(settings.timers,
                                       max_finished=settings.max_finished_transactions)
        self._calls: dict[str, InviteSession] = {}
        #: client transactions of requests outside any call (REGISTER): their final
        #: response or timeout becomes a RequestAnswered / RequestTimedOut event
        self._outside: set[ClientTransaction] = set()
        self._dialogs: dict[DialogId, InviteSession] = {}
        self._events: deque[CallEvent] = deque()
        self._timers: TimerHeap[tuple[str, str]] = TimerHeap()
        self._now = 0.0
        self._counters: dict[str, int] = {"malformed": 0, "errors": 0}
        #: whether a REGISTER to us goes to the app (RegisterReceived) rather than 405: a
        #: trunk whose PBX registers to us (gateway/registrar.py); None: never
        self.accept_register: Callable[[], bool] | None = None
        self._registers: dict[str, ServerTransaction] = {}  # RegisterReceived.key -> txn

    # --- building messages ---------------------------------------------------------------

    def _local(self, transport: str) -> tuple[str, int]:
        """Our announced (host, port) for a transport; IPv6 hosts in brackets. A transport
        without its own entry uses the first one configured (the same port, usually)."""
        local = self.settings.local.get(transport.lower())
        if local is None:
            local = next(iter(self.settings.local.values()))
        host, port = local
        return (f"[{host}]" if ":" in host and not host.startswith("[") else host, port)

    def _via(self, transport: str) -> Via:
        host, port = self._local(transport)
        return Via(transport.upper(), host, port, {"branch": new_branch(), "rport": None})

    def _contact(self, transport: str, secure: bool = False) -> NameAddr:
        """Our Contact for `transport`. `secure` (the request URI or the dialog is sips:
        RFC 3261 8.1.1.8, 12.1.1): a sips: URI, whose scheme already says TLS (RFC 5630
        deprecates transport=tls on it)."""
        host, port = self._local(transport)
        params: dict[str, str | None] = {}
        kind = transport.lower()
        if kind != "udp" and not (secure and kind == "tls"):
            params["transport"] = kind
        return NameAddr(SipUri("sips" if secure else "sip", host=host, port=port,
                               params=params))

    def _response(
        self,
        request: SipRequest,
        status: int,
        session: InviteSession | None = None,
        reason: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> SipResponse:
        """A response with our To tag (the call's, or a fresh one outside a call)."""
        tag = session.local_tag if session is not None else secrets.token_hex(8)
        response = make_response(request, status, reason, to_tag=tag)
        response.headers.add("Server", self.settings.user_agent)
        if session is not None and 100 < status < 300 and request.method in ("INVITE", "UPDATE"):
            secure = secure_request(request) or (session.dialog is not None
                                                 and session.dialog.secure)
            response.headers.add("Contact", str(self._contact(session.peer.transport, secure)))
        for name, value in headers:
            response.headers.add(name, value)
        return response

    def _capabilities(self) -> list[tuple[str, str]]:
        return [("Allow", ALLOW), ("Accept", ACCEPT), ("Supported", SUPPORTED)]

    def _reply(
        self,
        txn: ServerTransaction,
        status: int,
        session: InviteSession | None = None,
        reason: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> None:
        response = self._response(txn.request, status, session, reason, headers)
        if body:
            response.headers.add("Content-Type", content_type or "application/sdp")
            response.body = body
        log.info("call %s: %d to %s", txn.call_id, status, txn.method)
        self._layer.send_response(txn, response, self._now)

    def _send_in_dialog(
        self,
        session: InviteSession,
        method: str,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        extra: Iterable[tuple[str, str]] = (),
    ) -> ClientTransaction:
        """Send a request in the call's dialog (route set, remote target, next CSeq)."""
        dialog = session.dialog
        if dialog is None:
            raise LocalProtocolError(f"call {session.call_id}: no dialog for {method}")
        dest = dialog.next_hop()
        contact = self._contact(dest.transport, dialog.secure) \
            if method in ("INVITE", "UPDATE") else None
        request = dialog.create_request(
            method,
            self._via(dest.transport),
            contact=contact,
            body=body,
            content_type=content_type,
            extra=[("User-Agent", self.settings.user_agent), *extra],
        )
        log.info("call %s: sending %s %d to %s", session.call_id, method,
                 request.cseq.number, dest)
        return self._layer.send_request(request, dest, self._now)

    def _send_ack(self, session: InviteSession, cseq: int, resend: bool = False) -> None:
        """The ACK for a 2xx to our INVITE: its own transaction-less request (13.2.2.4)."""
        dialog = session.dialog
        if dialog is None:
            return
        if resend and session.ack is not None and session.ack.cseq.number == cseq:
            ack = session.ack
        else:
            dest = dialog.next_hop()
            ack = dialog.create_request(
                "ACK", self._via(dest.transport), cseq=cseq,
                extra=[("User-Agent", self.settings.user_agent)],
            )
            session.ack, session.ack_dest = ack, dest
        assert session.ack_dest is not None
        log.debug("call %s: ACK %d to %s", session.call_id, cseq, session.ack_dest)
        self._layer.send_stateless(ack, session.ack_dest)

    def _next_sdp(self, session: InviteSession, sdp: bytes) -> bytes:
        """Keep o= versions increasing: SDP that differs from what we sent last gets a higher
        version than any we sent (RFC 3264 section 8). Unparseable SDP is sent as is."""
        try:
            parsed = SessionDescription.parse(sdp)
        except RemoteProtocolError:
            return sdp
        version = parsed.origin.session_version
        if version <= session.sdp_version and sdp != session.local_sdp:
            parsed.origin.session_version = session.sdp_version + 1
            sdp = parsed.serialize()
        session.sdp_version = max(session.sdp_version, parsed.origin.session_version)
        session.local_sdp = sdp
        return sdp

    def _reoffer(self, session: InviteSession) -> bytes | None:
        """An offer for a re-INVITE without SDP: our last SDP, sendrecv, with a new version."""
        if session.local_sdp is None:
            return None
        try:
            parsed = SessionDescription.parse(session.local_sdp)
        except RemoteProtocolError:
            return session.local_sdp
        for media in parsed.media:
            if not media.rejected:
                media.direction = "sendrecv"
        parsed.direction = None
        parsed.origin.session_version = max(session.sdp_version, 0) + 1
        session.sdp_version = parsed.origin.session_version
        session.local_sdp = parsed.serialize()
        return session.local_sdp

    # --- timers ----------------------------------------------------------------------------

    def _arm(self, session: InviteSession, kind: str, at: float) -> None:
        self._timers.schedule((session.call_id, kind), at)

    def _disarm(self, session: InviteSession, *kinds: str) -> None:
        for kind in kinds or TIMER_KINDS:
            self._timers.cancel((session.call_id, kind))

    def _start_session_timer(self, session: InviteSession, timer: SessionTimer | None) -> None:
        """(Re)start the session timer after a successful refresh (or the first 2xx)."""
        session.timer = timer
        self._disarm(session, "refresh", "expire")
        if timer is None:
            return
        if timer.we_refresh:
            self._arm(session, "refresh", timer.refresh_at(self._now))
        else:
            self._arm(session, "expire", timer.expire_at(self._now))
        log.debug("call %s: session timer %ds, %s refresh", session.call_id, timer.interval,
                  "we" if timer.we_refresh else "they")

    # --- the calls table and the ends of calls ----------------------------------------------

    def _register_dialog(self, session: InviteSession) -> None:
        if session.dialog is not None:
            self._dialogs[session.dialog.id] = session

    def _emit(self, event: CallEvent) -> None:
        self._events.append(event)

    def _report_end(self, session: InviteSession, reason: str, status: int | None) -> None:
        if not session.ended_reported:
            session.ended_reported = True
            log.info("call %s: ended (%s%s)", session.call_id, reason,
                     f", {status}" if status is not None else "")
            self._emit(CallEnded(session.call_id, reason, status))

    def _finish(self, session: InviteSession, reason: str, status: int | None = None) -> None:
        """Forget the call: timers, dialog, table entry; report CallEnded (once)."""
        self._disarm(session)
        session.ack_wait = None
        for txn in (session.pending_server, session.invite_server):
            if txn is not None and unanswered(txn):
                self._reply(txn, 487, session)
        session.pending_server = session.invite_server = None
        session.pending_client = None
        if self._calls.get(session.call_id) is session:
            del self._calls[session.call_id]
        if session.dialog is not None and self._dialogs.get(session.dialog.id) is session:
            del self._dialogs[session.dialog.id]
        session.set_state(CallState.ENDED)
        self._report_end(session, reason, status)

    def _terminate(
        self, session: InviteSession, reason: str, status: int | None = None,
        report_now: bool = True,
    ) -> None:
        """End a call from our side: BYE when there is a confirmed dialog, else just forget.

        report_now: CallEnded now (the UserAgent decided: no ACK, session timer...); else when
        the BYE completes (the application hung up).
        """
        if session.state in (CallState.TERMINATING, CallState.ENDED):
            return
        dialog = session.dialog
        if dialog is None or dialog.state is not DialogState.CONFIRMED:
            self._finish(session, reason, status)
            return
        self._disarm(session)
        session.ack_wait = None
        if session.pending_server is not None and unanswered(session.pending_server):
            self._reply(session.pending_server, 487, session)
        session.pending_server = None
        session.end_reason = (reason, status)
        session.set_state(CallState.TERMINATING)
        session.bye = self._send_in_dialog(session, "BYE")
        if report_now:
            self._report_end(session, reason, status)


def unanswered(txn: ServerTransaction) -> bool:
    """The server transaction has not sent a final response (and can still send one)."""
    return not txn.terminated and (txn.status is None or txn.status < 200)
