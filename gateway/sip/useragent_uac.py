"""The UserAgent's client half: responses to our requests (INVITE with early dialogs, ACK for
2xx, CANCEL, BYE, INFO), transaction timeouts and the RFC 4028 refreshes we send."""

from __future__ import annotations

import logging
import secrets

from .dialog import Dialog
from .digest import answer_challenge, pick_challenge
from .events import CallAnswered, CallProgress, OfferRetried, RequestAnswered, RequestTimedOut
from .headers import CSeq
from .layer import ClientTransaction, ServerTransaction
from .message import Headers, SipRequest, SipResponse
from .session import CallState, InviteSession, SessionTimer, supports, timer_from_response
from .useragent_core import ALLOW
from .useragent_uas import SDP, UaServer, peer_methods

__all__ = ["UaClient"]

log = logging.getLogger(__name__)

MAX_422_RETRIES = 2
#: INVITEs we send with credentials: the first answer, and one more after a stale nonce
MAX_AUTH_TRIES = 2


def _min_se_of(response: SipResponse, floor: int) -> int:
    value = (response.headers.get("Min-SE") or "").split(";", 1)[0].strip()
    return max(int(value), floor) if value.isdigit() and len(value) <= 10 else floor


class UaClient(UaServer):
    """Responses, timeouts, CANCEL and the session refreshes we send."""

    # --- responses -------------------------------------------------------------------------

    def _on_response(self, txn: ClientTransaction, response: SipResponse) -> None:
        if txn in self._outside:
            if response.status >= 200:
                self._outside.discard(txn)
                self._emit(RequestAnswered(response.call_id, response))
            return
        session = self._calls.get(response.call_id)
        if session is None:
            log.debug("call %s: %d to %s for no call", response.call_id, response.status,
                      txn.method)
            return
        status = response.status
        if txn is session.invite_client:
            self._on_invite_response(session, txn, response)
        elif txn is session.pending_client:
            self._on_refresh_response(session, txn, response)
        elif txn is session.bye:
            if status >= 200:
                self._finish(session, *session.end_reason)
        elif txn.method == "INVITE" and 200 <= status < 300:
            self._reack(session, response)  # a retransmitted 2xx to an earlier re-INVITE
        elif txn.method == "INFO" and status == 481:
            self._finish(session, "dialog gone", 481)
        elif txn.method == "INFO" and status == 408:
            self._terminate(session, "timeout", 408)

    def _reack(self, session: InviteSession, response: SipResponse) -> None:
        dialog = session.dialog
        ack = session.ack
        if (
            dialog is not None and ack is not None
            and response.to_tag == dialog.remote_tag
            and ack.cseq.number == response.cseq.number
        ):
            self._send_ack(session, ack.cseq.number, resend=True)
        else:
            log.info("call %s: 2xx to INVITE %d we cannot ACK (another fork?)",
                     session.call_id, response.cseq.number)

    def _on_stray(self, response: SipResponse) -> None:
        session = self._calls.get(response.call_id)
        if (
            session is not None and response.cseq.method == "INVITE"
            and 200 <= response.status < 300
        ):
            self._reack(session, response)
        else:
            log.debug("call %s: stray %d to %s dropped", response.call_id, response.status,
                      response.cseq.method)

    def _on_invite_response(
        self, session: InviteSession, txn: ClientTransaction, response: SipResponse
    ) -> None:
        status = response.status
        if status < 200:
            if session.state is not CallState.CALLING:
                return
            session.got_provisional = True
            if status > 100 and response.to_tag and session.dialog is None:
                session.dialog = Dialog.create_uac(session.invite, response, txn.peer.transport)
                self._register_dialog(session)
            if session.cancel_requested:
                self._send_cancel(session)
            elif status > 100:
                self._emit(CallProgress(session.call_id, status, bool(response.body)))
            return
        if status >= 300:
            if session.state is not CallState.CALLING:
                return
            if status in (401, 407) and self._answer_invite_challenge(session, response):
                return
            if status in (415, 488) and session.fallback_sdp is not None \
                    and not session.cancel_requested:
                self._retry_offer(session, status)
                return
            if status == 422 and session.retries < MAX_422_RETRIES and not session.cancel_requested:
                session.retries += 1
                self._retry_invite(session, _min_se_of(response, self.settings.min_se))
                return
            cancelled = session.cancel_requested and status == 487
            self._finish(session, "cancelled" if cancelled else "rejected", status)
            return
        if session.state is not CallState.CALLING:
            self._reack(session, response)
            return
        dialog = session.dialog
        if dialog is not None and dialog.remote_tag == response.to_tag:
            dialog.confirm(response)
        else:
            if dialog is not None and self._dialogs.get(dialog.id) is session:
                del self._dialogs[dialog.id]
            dialog = session.dialog = Dialog.create_uac(
                session.invite, response, txn.peer.transport
            )
            self._register_dialog(session)
        session.peer_methods = peer_methods(response)
        session.peer_timer = supports(response, "timer")
        session.remote_sdp = response.body or None
        session.retries = 0
        self._send_ack(session, session.invite.cseq.number)
        session.set_state(CallState.CONFIRMED)
        if session.cancel_requested:  # the 2xx crossed our CANCEL (or came before it could go)
            self._terminate(session, "hangup", report_now=False)
            return
        self._emit(CallAnswered(session.call_id, response.body or None))
        self._start_session_timer(
            session, timer_from_response(response, self.settings.session_expires)
        )

    def _send_cancel(self, session: InviteSession) -> None:
        """CANCEL our INVITE (RFC 3261 9.1): same branch, Request-URI, Call-ID, From, To."""
        txn = session.invite_client
        if session.cancel_sent or txn is None or not session.got_provisional:
            return
        session.cancel_sent = True
        invite = session.invite
        headers = Headers()
        headers.add("Via", str(invite.top_via))
        for route in invite.headers.get_all("Route"):
            headers.add("Route", route)
        headers.add("Max-Forwards", "70")
        headers.add("From", str(invite.from_addr))
        headers.add("To", str(invite.to_addr))
        headers.add("Call-ID", invite.call_id)
        headers.add("CSeq", str(CSeq(invite.cseq.number, "CANCEL")))
        headers.add("User-Agent", self.settings.user_agent)
        log.info("call %s: sending CANCEL", session.call_id)
        self._layer.send_request(SipRequest("CANCEL", invite.uri, headers), txn.peer, self._now)

    def _answer_invite_challenge(self, session: InviteSession, response: SipResponse) -> bool:
        """A 401/407 to our INVITE: the same INVITE again (new CSeq and branch) with digest
        credentials, when we have them, once per fresh challenge (a second one only when
        the nonce was stale). False: the challenge ends the call (a refusal)."""
        credentials = session.credentials
        if credentials is None or session.cancel_requested:
            return False
        header = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
        challenge = pick_challenge(response.headers.get_all(header))
        if challenge is None:
            log.info("call %s: %d without a usable challenge", session.call_id, response.status)
            return False
        if session.auth_tries >= MAX_AUTH_TRIES or (session.auth_tries and not challenge.stale):
            log.warning("call %s: credentials refused (%d)", session.call_id, response.status)
            return False
        session.auth_tries += 1
        old = session.invite
        username, password = credentials
        authorization = answer_challenge(challenge, username, password, "INVITE", str(old.uri))
        headers = old.headers.copy()
        headers.set("Via", str(self._via(session.peer.transport)))
        headers.set("CSeq", str(CSeq(old.cseq.number + 1, "INVITE")))
        headers.set("Authorization" if response.status == 401 else "Proxy-Authorization",
                    authorization)
        invite = SipRequest("INVITE", old.uri, headers, old.body)
        log.info("call %s: %d, answering the challenge (%s)", session.call_id,
                 response.status, challenge.algorithm)
        session.invite = invite
        session.got_provisional = False
        session.invite_client = self._layer.send_request(invite, session.peer, self._now)
        return True

    def _retry_offer(self, session: InviteSession, status: int) -> None:
        """A 488/415 to our offer: the INVITE again (new CSeq and branch, same Call-ID, From
        and To) with the fallback offer, once. An early dialog a provisional made is gone
        with the refused INVITE: the new one makes its own."""
        fallback, session.fallback_sdp = session.fallback_sdp, None
        assert fallback is not None
        old = session.invite
        if session.dialog is not None:
            if self._dialogs.get(session.dialog.id) is session:
                del self._dialogs[session.dialog.id]
            session.dialog = None
        body = self._next_sdp(session, fallback)
        headers = old.headers.copy()
        headers.set("Via", str(self._via(session.peer.transport)))
        headers.set("CSeq", str(CSeq(old.cseq.number + 1, "INVITE")))
        invite = SipRequest("INVITE", old.uri, headers, body)
        log.info("call %s: %d to our offer, sending the fallback offer", session.call_id,
                 status)
        session.invite = invite
        session.got_provisional = False
        session.invite_client = self._layer.send_request(invite, session.peer, self._now)
        self._emit(OfferRetried(session.call_id, status, body))

    def _retry_invite(self, session: InviteSession, interval: int) -> None:
        """422 Session Interval Too Small: the same INVITE with a larger interval (new CSeq)."""
        old = session.invite
        headers = old.headers.copy()
        dest = session.peer
        headers.set("Via", str(self._via(dest.transport)))
        headers.set("CSeq", str(CSeq(old.cseq.number + 1, "INVITE")))
        headers.set("Session-Expires", str(interval))
        headers.set("Min-SE", str(interval))
        invite = SipRequest("INVITE", old.uri, headers, old.body)
        log.info("call %s: 422, retrying INVITE with Session-Expires %d", session.call_id,
                 interval)
        session.invite = invite
        session.got_provisional = False
        session.invite_client = self._layer.send_request(invite, dest, self._now)

    # --- session refreshes we send (RFC 4028 section 7.4) ----------------------------------

    def _send_refresh(self, session: InviteSession) -> None:
        if session.state is not CallState.CONFIRMED:
            return
        if session.offer_pending or session.pending_client or session.ack_wait:
            self._arm(session, "refresh", self._now + 1 + secrets.randbelow(100) / 100)
            return
        timer = session.timer
        interval = timer.interval if timer is not None else self.settings.session_expires
        extra = [
            ("Session-Expires", f"{interval};refresher=uac"),
            ("Min-SE", str(max(self.settings.min_se, 90))),
            ("Supported", "timer"),
            ("Allow", ALLOW),
        ]
        if "UPDATE" in session.peer_methods:
            session.pending_client = self._send_in_dialog(session, "UPDATE", extra=extra)
        else:
            body = session.local_sdp or b""
            session.pending_client = self._send_in_dialog(
                session, "INVITE", body=body, content_type=SDP if body else None, extra=extra
            )

    def _on_refresh_response(
        self, session: InviteSession, txn: ClientTransaction, response: SipResponse
    ) -> None:
        status = response.status
        if status < 200:
            return
        session.pending_client = None
        interval = session.timer.interval if session.timer else self.settings.session_expires
        if status < 300:
            assert session.dialog is not None
            if txn.method == "INVITE":
                self._send_ack(session, txn.request.cseq.number)
                session.dialog.refresh_target(response)
                if response.body:
                    session.remote_sdp = response.body
            session.retries = 0
            self._start_session_timer(session, timer_from_response(response, interval))
            return
        log.info("call %s: session refresh (%s) got %d", session.call_id, txn.method, status)
        if status == 491:  # glare: RFC 3261 14.1 back-off
            wait = (2.1 + secrets.randbelow(190) / 100) if session.role == "uac" else (
                secrets.randbelow(200) / 100)
            self._arm(session, "refresh", self._now + wait)
        elif status == 422 and session.retries < MAX_422_RETRIES:
            session.retries += 1
            session.timer = SessionTimer(max(interval, _min_se_of(response, 90)), True)
            self._send_refresh(session)
        elif status in (408, 481):
            self._terminate(session, "session refresh failed", status)
        elif txn.method == "UPDATE" and status in (405, 501):
            session.peer_methods = session.peer_methods - {"UPDATE"}
            self._send_refresh(session)
        else:
            self._arm(session, "refresh", self._now + max(1.0, interval / 8))

    # --- timeouts and our own timers -----------------------------------------------------------

    def _on_timeout(self, txn: ClientTransaction | ServerTransaction) -> None:
        if isinstance(txn, ClientTransaction) and txn in self._outside:
            self._outside.discard(txn)
            self._emit(RequestTimedOut(txn.call_id, txn.request.cseq.number))
            return
        session = self._calls.get(txn.call_id)
        if session is None or isinstance(txn, ServerTransaction):
            return  # timer H: the call already ended with our non-2xx
        if txn is session.invite_client and session.state is CallState.CALLING:
            self._finish(session, "cancelled" if session.cancel_requested else "timeout", 408)
        elif txn is session.bye:
            self._finish(session, *session.end_reason)
        elif txn is session.pending_client:
            session.pending_client = None
            self._terminate(session, "session refresh failed", 408)
        elif txn.method == "INFO":
            self._terminate(session, "timeout", 408)

    def _on_timer(self, session: InviteSession, kind: str) -> None:
        if kind == "2xx":
            self._on_2xx_timer(session)
        elif kind == "refresh":
            self._send_refresh(session)
        elif kind == "expire":
            log.warning("call %s: no session refresh within %ss", session.call_id,
                        session.timer.interval if session.timer else "?")
            self._terminate(session, "session timer expired")
