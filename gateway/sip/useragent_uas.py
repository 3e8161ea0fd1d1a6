"""The UserAgent's server half: requests we receive (RFC 3261 sections 8.2, 12.2.2, 13.3,
14.2, 15; RFC 3311 UPDATE; RFC 6086 INFO; RFC 4028 as UAS), the ACK and CANCEL."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable

from .dialog import Dialog, DialogId
from .errors import RemoteProtocolError
from .events import CallConfirmed, IncomingCall, InfoReceived, OfferReceived, RegisterReceived
from .layer import ServerTransaction
from .message import SipMessage, SipRequest
from .peer import Peer
from .session import (
    AckWait,
    CallState,
    InviteSession,
    TimerOffer,
    negotiate_uas_timer,
    supports,
)
from .timers import RetransmitSchedule
from .useragent_core import (
    ALLOW,
    ALLOWED_METHODS,
    KNOWN_UNSUPPORTED,
    SUPPORTED_OPTIONS,
    UaCore,
    unanswered,
)

__all__ = ["UaServer", "peer_methods"]

log = logging.getLogger(__name__)

SDP = "application/sdp"


URI_SCHEMES = frozenset({"sip", "sips", "tel"})
MAX_PENDING_REGISTERS = 1000  # REGISTERs handed to the app and not answered yet


def peer_methods(message: SipMessage) -> frozenset[str]:
    """The methods a peer's Allow header lists (upper case)."""
    return frozenset(m.strip().upper() for m in message.headers.get_all("Allow") if m.strip())


def _retry_after() -> tuple[str, str]:
    return ("Retry-After", str(secrets.randbelow(10) + 1))


class UaServer(UaCore):
    """Incoming requests: validation, new calls, in-dialog requests, ACK and CANCEL."""

    def _on_request(self, txn: ServerTransaction, request: SipRequest, source: Peer) -> None:
        try:
            self._handle_request(txn, request, source)
        except RemoteProtocolError as exc:
            log.info("call %s: bad %s from %s: %s", txn.call_id, request.method, source, exc)
            if unanswered(txn):
                self._reply(txn, exc.status if 400 <= exc.status < 700 else 400)

    def _handle_request(self, txn: ServerTransaction, request: SipRequest, source: Peer) -> None:
        method = request.method
        log.info("call %s: %s from %s", txn.call_id, method, source)
        max_forwards = request.max_forwards
        if max_forwards is not None and max_forwards <= 0:
            self._reply(txn, 483)
            return
        if method == "REGISTER" and self.accept_register is not None \
                and DialogId.of_request(request) is None and self.accept_register():
            self._on_register(txn, request, source)
            return
        if method not in ALLOWED_METHODS:
            status = 405 if method in KNOWN_UNSUPPORTED else 501
            self._reply(txn, status, headers=[("Allow", ALLOW)])
            return
        if request.uri.scheme not in URI_SCHEMES:
            self._reply(txn, 416)  # RFC 3261 8.2.2.1
            return
        required = [o.strip() for o in request.headers.get_all("Require") if o.strip()]
        unsupported = [o for o in required if o.lower() not in SUPPORTED_OPTIONS]
        if unsupported:
            self._reply(txn, 420, headers=[("Unsupported", ", ".join(unsupported))])
            return
        dialog_id = DialogId.of_request(request)
        if dialog_id is not None:
            session = self._dialogs.get(dialog_id)
            if session is None:
                self._reply(txn, 481)
            else:
                self._in_dialog(session, txn, request)
        elif method == "INVITE":
            self._new_call(txn, request, source)
        elif method == "OPTIONS":
            self._reply(txn, 200, headers=self._capabilities())
        else:  # BYE, INFO, UPDATE outside any dialog
            self._reply(txn, 481)

    def _on_register(self, txn: ServerTransaction, request: SipRequest, source: Peer) -> None:
        if request.uri.scheme not in ("sip", "sips"):
            self._reply(txn, 416)
            return
        if len(self._registers) >= MAX_PENDING_REGISTERS:
            self._reply(txn, 503, headers=[("Retry-After", "5")])
            return
        key = secrets.token_hex(8)
        self._registers[key] = txn
        self._emit(RegisterReceived(request.call_id, key, request, source))

    def answer_register(self, key: str, status: int, reason: str | None = None,
                        headers: Iterable[tuple[str, str]] = (), *,
                        now: float | None = None) -> None:
        """The final response to a RegisterReceived (unknown or answered keys: ignored)."""
        if now is not None:
            self._now = now
        txn = self._registers.pop(key, None)
        if txn is not None and unanswered(txn):
            self._reply(txn, status, reason=reason, headers=headers)

    def _check_body(self, txn: ServerTransaction, request: SipRequest) -> bool:
        """Only SDP bodies in INVITE/UPDATE: anything else gets 415 (False)."""
        if request.body and request.content_type != SDP:
            self._reply(txn, 415, headers=[("Accept", SDP)])
            return False
        return True

    def _timer_offer(self, txn: ServerTransaction, request: SipRequest) -> TimerOffer | None:
        """Negotiate the session timer; None when we answered 422."""
        offer = negotiate_uas_timer(
            request, self.settings.session_expires, self.settings.min_se
        )
        if offer.reject_min_se is not None:
            self._reply(txn, 422, headers=[("Min-SE", str(offer.reject_min_se))])
            return None
        return offer

    def _new_call(self, txn: ServerTransaction, request: SipRequest, source: Peer) -> None:
        call_id = request.call_id
        if call_id in self._calls:
            self._reply(txn, 482)  # a merged request, or a Call-ID we already use (8.2.2.2)
            return
        if not self._check_body(txn, request):
            return
        timer_offer = self._timer_offer(txn, request)
        if timer_offer is None:
            return
        local_tag = secrets.token_hex(8)
        dialog = Dialog.create_uas(request, local_tag, source.transport, source)
        session = InviteSession(
            call_id=call_id,
            role="uas",
            local_tag=local_tag,
            invite=request,
            peer=source,
            state=CallState.INCOMING,
            dialog=dialog,
            invite_server=txn,
            remote_sdp=request.body or None,
            timer_offer=timer_offer,
            peer_methods=peer_methods(request),
            peer_timer=supports(request, "timer"),
        )
        self._calls[call_id] = session
        self._register_dialog(session)
        self._emit(IncomingCall(call_id, request, source, request.body or None))

    # --- requests inside a dialog ------------------------------------------------------------

    def _in_dialog(
        self, session: InviteSession, txn: ServerTransaction, request: SipRequest
    ) -> None:
        dialog = session.dialog
        assert dialog is not None
        if not dialog.accept_remote_cseq(request):
            self._reply(txn, 500, session, "Out of order CSeq")
            return
        method = request.method
        if method == "BYE":
            self._reply(txn, 200, session)
            if session.state is CallState.TERMINATING:
                self._finish(session, *session.end_reason)  # the BYEs crossed
            else:
                self._finish(session, "bye")
        elif session.state is CallState.TERMINATING:
            self._reply(txn, 481, session)
        elif method == "INVITE":
            self._on_reinvite(session, txn, request)
        elif method == "UPDATE":
            self._on_update(session, txn, request)
        elif method == "INFO":
            self._reply(txn, 200, session)
            self._emit(InfoReceived(session.call_id, request.content_type or "", request.body))
        elif method == "OPTIONS":
            self._reply(txn, 200, session, headers=self._capabilities())
        else:
            self._reply(txn, 405, session, headers=[("Allow", ALLOW)])

    def _on_reinvite(
        self, session: InviteSession, txn: ServerTransaction, request: SipRequest
    ) -> None:
        if session.state is not CallState.CONFIRMED or session.pending_server is not None:
            # An INVITE of theirs is still open (14.2): 500 with Retry-After.
            self._reply(txn, 500, session, headers=[_retry_after()])
            return
        if session.offer_pending or session.ack_wait is not None:
            self._reply(txn, 491, session)  # glare with our own offer
            return
        if not self._check_body(txn, request):
            return
        timer_offer = self._timer_offer(txn, request)
        if timer_offer is None:
            return
        assert session.dialog is not None
        session.dialog.refresh_target(request)
        session.peer_methods = peer_methods(request) or session.peer_methods
        session.timer_offer = timer_offer
        if request.body:
            session.pending_server = txn
            self._emit(OfferReceived(session.call_id, request.body))
            return
        # No SDP: we offer (our last SDP, new version) and the ACK brings the answer.
        self._accept_invite(session, txn, self._reoffer(session) or b"", offer_in_2xx=True)

    def _on_update(
        self, session: InviteSession, txn: ServerTransaction, request: SipRequest
    ) -> None:
        if session.pending_server is not None:
            self._reply(txn, 500, session, headers=[_retry_after()])
            return
        has_offer = bool(request.body)
        if has_offer and (session.offer_pending or session.state is CallState.INCOMING):
            self._reply(txn, 491, session)
            return
        if not self._check_body(txn, request):
            return
        timer_offer = self._timer_offer(txn, request)
        if timer_offer is None:
            return
        assert session.dialog is not None
        session.dialog.refresh_target(request)
        if has_offer:
            session.pending_server = txn
            session.timer_offer = timer_offer
            self._emit(OfferReceived(session.call_id, request.body))
            return
        if session.state is CallState.CONFIRMED:
            self._reply(txn, 200, session, headers=[*self._capabilities(), *timer_offer.headers])
            self._start_session_timer(session, timer_offer.timer)
        else:
            self._reply(txn, 200, session, headers=self._capabilities())

    # --- our answers: 2xx to INVITE (retransmitted until the ACK) and to UPDATE ---------------

    def _accept_invite(
        self, session: InviteSession, txn: ServerTransaction, sdp: bytes, offer_in_2xx: bool
    ) -> None:
        timer_offer = session.timer_offer or TimerOffer()
        session.timer_offer = None
        body = self._next_sdp(session, sdp) if sdp else b""
        request = txn.request  # the transaction lets go of it once the 2xx is sent
        response = self._response(
            request, 200, session, headers=[*self._capabilities(), *timer_offer.headers]
        )
        if body:
            response.headers.add("Content-Type", SDP)
            response.body = body
        log.info("call %s: 200 to INVITE %d%s", session.call_id, request.cseq.number,
                 " (offer)" if offer_in_2xx else "")
        self._layer.send_response(txn, response, self._now)
        schedule = RetransmitSchedule(self.settings.timers, self._now)
        session.ack_wait = AckWait(txn, response, request.cseq.number, schedule, offer_in_2xx)
        self._arm(session, "2xx", schedule.deadline if txn.peer.reliable else schedule.next_at)
        if not offer_in_2xx:
            session.remote_sdp = request.body or session.remote_sdp
        self._start_session_timer(session, timer_offer.timer)

    def _answer_update(self, session: InviteSession, txn: ServerTransaction, sdp: bytes) -> None:
        timer_offer = session.timer_offer or TimerOffer()
        session.timer_offer = None
        body = self._next_sdp(session, sdp)
        offer = txn.request.body
        self._reply(txn, 200, session, headers=[*self._capabilities(), *timer_offer.headers],
                    body=body, content_type=SDP)
        session.remote_sdp = offer
        self._start_session_timer(session, timer_offer.timer)

    def _on_2xx_timer(self, session: InviteSession) -> None:
        wait = session.ack_wait
        if wait is None:
            return
        if wait.schedule.fired(self._now):
            log.debug("call %s: retransmitting 200 to INVITE %d", session.call_id, wait.cseq)
            self._layer.send_response(wait.txn, wait.response, self._now)
            self._arm(session, "2xx", wait.schedule.next_at)
            return
        log.warning("call %s: no ACK for our 200 in %.0fs", session.call_id,
                    64 * self.settings.timers.t1)
        session.ack_wait = None
        self._terminate(session, "no ACK")

    def _on_ack(self, request: SipRequest) -> None:
        dialog_id = DialogId.of_request(request)
        session = self._dialogs.get(dialog_id) if dialog_id is not None else None
        wait = session.ack_wait if session is not None else None
        if session is None or wait is None or request.cseq.number != wait.cseq:
            log.debug("call %s: ACK matches nothing waiting (retransmission?)", request.call_id)
            return
        session.ack_wait = None
        self._disarm(session, "2xx")
        answer = request.body if request.body and request.content_type == SDP else None
        if wait.offer_in_2xx:
            if answer is None:
                log.warning("call %s: ACK without the answer to our offer", session.call_id)
                if session.state is CallState.ANSWERED:
                    session.set_state(CallState.CONFIRMED)
                    self._terminate(session, "no answer in ACK")
                return
            session.remote_sdp = answer
        if session.state is CallState.ANSWERED:
            session.set_state(CallState.CONFIRMED)
            self._emit(CallConfirmed(session.call_id, answer if wait.offer_in_2xx else None))
            if session.hangup_after_ack:
                self._terminate(session, "hangup", report_now=False)
        elif wait.offer_in_2xx:
            self._emit(CallConfirmed(session.call_id, answer))

    def _on_cancel(self, txn: ServerTransaction, cancel: SipRequest) -> None:
        session = self._calls.get(txn.call_id)
        if session is None:
            return
        if session.invite_server is txn and session.state is CallState.INCOMING:
            self._reply(txn, 487, session)
            session.invite_server = None
            self._finish(session, "cancelled", 487)
        elif session.pending_server is txn:
            self._reply(txn, 487, session)
            session.pending_server = None
            session.timer_offer = None
