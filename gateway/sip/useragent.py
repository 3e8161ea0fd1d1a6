"""The SIP user agent core: a sans-I/O node that turns bytes into call events.

`UserAgent` parses what arrives (answering what does not parse with 400/505/513 when it can),
runs the transaction layer, keeps dialogs and INVITE sessions and hands the application
`CallEvent`s (`next_event()`). The application acts through `ringing`, `answer`, `reject`,
`hangup`, `answer_offer`, `send_info` and `call`. Those methods take effect at the time of
the last input (`receive_data`/`handle_timer`), or at `now=` when given.

Every call ends with exactly one `CallEnded`, whoever ended it; after it the UserAgent keeps
nothing of the call (the transaction layer's own transactions linger for their RFC timers).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable

from .errors import LocalProtocolError, RemoteProtocolError
from .events import (
    CallAnswered,
    CallConfirmed,
    CallEnded,
    CallEvent,
    IncomingCall,
    InfoReceived,
    OfferReceived,
)
from .headers import CSeq
from .layer import (
    AckReceived,
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    StrayResponse,
    TransactionEvent,
    TransactionTimeout,
)
from .message import Headers, SipRequest
from .parser import best_effort_response, parse_message
from .peer import Peer
from .session import CallState, InviteSession
from .uri import NameAddr, SipUri
from .useragent_core import ALLOW, UaSettings, unanswered
from .useragent_uac import UaClient
from .useragent_uas import SDP

__all__ = [
    "CallAnswered",
    "CallConfirmed",
    "CallEnded",
    "CallEvent",
    "IncomingCall",
    "InfoReceived",
    "OfferReceived",
    "UaSettings",
    "UserAgent",
]

log = logging.getLogger(__name__)


class UserAgent(UaClient):
    """A SIP user agent (UAS for dial-in, UAC for tests and dial-out) as a SansIoNode."""

    # --- SansIoNode ------------------------------------------------------------------------

    def receive_data(self, data: bytes, source: Peer, now: float) -> None:
        """A datagram (or one framed stream message) from `source`. Never raises."""
        self._now = now
        try:
            message = parse_message(data)
        except RemoteProtocolError as exc:
            self._counters["malformed"] += 1
            reply = best_effort_response(data, exc.status, exc.reason) if data.strip() else None
            if reply is not None:
                log.info("answering %d to an unparseable request from %s: %s", exc.status,
                         source, exc.reason)
                self._layer.send_raw(reply, source)
            elif data.strip():
                log.info("dropping an unparseable message from %s: %s", source, exc.reason)
            return
        except Exception:
            self._counters["errors"] += 1
            log.exception("parser failed on a message from %s", source)
            return
        try:
            self._layer.receive(message, source, now)
        except Exception:
            self._counters["errors"] += 1
            log.exception("call %s: transaction layer failed on a message from %s",
                          _call_id(message.headers), source)
        self._drain()

    def handle_timer(self, now: float) -> None:
        """Fire what is due at `now`: the layer's timers, then ours. Never raises."""
        self._now = now
        try:
            self._layer.handle_timer(now)
        except Exception:
            self._counters["errors"] += 1
            log.exception("transaction layer timer failed")
        self._drain()
        while (key := self._timers.pop_due(now)) is not None:
            call_id, kind = key
            session = self._calls.get(call_id)
            if session is None:
                continue
            try:
                self._on_timer(session, kind)
            except Exception:
                self._counters["errors"] += 1
                log.exception("call %s: %s timer failed", call_id, kind)
            self._drain()

    def get_timer(self) -> float | None:
        layer, ours = self._layer.get_timer(), self._timers.next_deadline()
        if layer is None:
            return ours
        return layer if ours is None else min(layer, ours)

    def datagrams_to_send(self) -> list[tuple[bytes, Peer]]:
        return self._layer.datagrams_to_send()

    def next_event(self) -> CallEvent | None:
        return self._events.popleft() if self._events else None

    def calls(self) -> int:
        """Live calls (those whose CallEnded has not been emitted)."""
        return sum(1 for session in self._calls.values() if not session.ended_reported)

    def stats(self) -> dict[str, int]:
        """Counters for /api/stats and leak tests."""
        return {
            "calls": self.calls(),
            "sessions": len(self._calls),
            "dialogs": len(self._dialogs),
            "transactions": len(self._layer),
            "timers": len(self._timers),
            **self._counters,
        }

    def transaction_stats(self) -> dict[str, int]:
        """Completed non-INVITE server transactions held, and those forgotten early."""
        return {"transactions_finished": self._layer.finished,
                "transactions_forgotten": self._layer.forgotten_early}

    def _drain(self) -> None:
        while (event := self._layer.next_event()) is not None:
            try:
                self._dispatch(event)
            except Exception:
                self._counters["errors"] += 1
                log.exception("call %s: failed handling %s", _event_call_id(event),
                              type(event).__name__)
                if isinstance(event, RequestReceived) and unanswered(event.txn):
                    self._layer.send_response(
                        event.txn, self._response(event.request, 500), self._now)

    def _dispatch(self, event: TransactionEvent) -> None:
        if isinstance(event, RequestReceived):
            self._on_request(event.txn, event.request, event.source)
        elif isinstance(event, ResponseReceived):
            self._on_response(event.txn, event.response)
        elif isinstance(event, AckReceived):
            self._on_ack(event.request)
        elif isinstance(event, CancelReceived):
            self._on_cancel(event.txn, event.cancel)
        elif isinstance(event, StrayResponse):
            self._on_stray(event.response)
        else:
            self._on_timeout(event.txn)

    # --- the application's actions --------------------------------------------------------

    def _session(self, call_id: str, action: str, now: float | None) -> InviteSession | None:
        if now is not None:
            self._now = now
        session = self._calls.get(call_id)
        if session is None or session.ended_reported:
            # Not an error: the call may have ended while the application decided.
            log.info("call %s: %s ignored, the call is over", call_id, action)
            return None
        return session

    def ringing(self, call_id: str, *, now: float | None = None) -> None:
        """180 Ringing on an incoming call."""
        session = self._session(call_id, "ringing", now)
        if session is None:
            return
        txn = session.invite_server
        if session.state is not CallState.INCOMING or txn is None:
            raise LocalProtocolError(f"call {call_id}: ringing() in state {session.state}")
        self._reply(txn, 180, session)

    def answer(self, call_id: str, sdp: bytes, *, now: float | None = None) -> None:
        """200 with SDP, retransmitted until the ACK. When the INVITE had no offer, `sdp` is
        our offer and CallConfirmed brings the answer."""
        session = self._session(call_id, "answer", now)
        if session is None:
            return
        txn = session.invite_server
        if session.state is not CallState.INCOMING or txn is None or session.dialog is None:
            raise LocalProtocolError(f"call {call_id}: answer() in state {session.state}")
        if not sdp:
            raise LocalProtocolError(f"call {call_id}: answer() needs SDP")
        session.invite_server = None
        session.dialog.confirm()
        session.set_state(CallState.ANSWERED)
        self._accept_invite(session, txn, sdp, offer_in_2xx=not session.invite.body)

    def reject(
        self, call_id: str, status: int, reason: str | None = None, *, now: float | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        """A final non-2xx to the incoming INVITE (the call ends), or to a pending re-INVITE
        or UPDATE offer (the call goes on with the old session, e.g. 488). ``headers`` are
        added to the response (e.g. Retry-After)."""
        if not 300 <= status <= 699:
            raise LocalProtocolError(f"reject() needs a 3xx-6xx status, not {status}")
        session = self._session(call_id, "reject", now)
        if session is None:
            return
        if session.state is CallState.INCOMING and session.invite_server is not None:
            self._reply(session.invite_server, status, session, reason, headers)
            session.invite_server = None
            self._finish(session, "rejected", status)
        elif session.pending_server is not None:
            self._reply(session.pending_server, status, session, reason, headers)
            session.pending_server = None
            session.timer_offer = None
        else:
            raise LocalProtocolError(f"call {call_id}: nothing to reject in {session.state}")

    def hangup(self, call_id: str, *, now: float | None = None) -> None:
        """End the call as its state allows: 480 before answering, CANCEL while calling, BYE
        once the dialog is confirmed (after the ACK, if it is still awaited). CallEnded follows
        when that is done."""
        session = self._session(call_id, "hangup", now)
        if session is None:
            return
        state = session.state
        if state is CallState.INCOMING:
            if session.invite_server is not None:
                self._reply(session.invite_server, 480, session)
                session.invite_server = None
            self._finish(session, "hangup", 480)
        elif state is CallState.CALLING:
            session.cancel_requested = True
            self._send_cancel(session)
        elif state is CallState.ANSWERED:
            session.hangup_after_ack = True
        elif state is CallState.CONFIRMED:
            self._terminate(session, "hangup", report_now=False)

    def drop_unacknowledged(self, call_id: str, *, now: float | None = None) -> bool:
        """End an answered call whose ACK has not come, now rather than after 64*T1: stop
        retransmitting the 200 and send BYE (as when the ACK never comes, RFC 3261
        13.3.1.4). CallEnded follows at once. False (nothing done) in any other state."""
        session = self._session(call_id, "drop_unacknowledged", now)
        if session is None or session.state is not CallState.ANSWERED \
                or session.ack_wait is None:
            return False
        log.info("call %s: no ACK yet; ending the call to free its media port", call_id)
        session.ack_wait = None
        self._terminate(session, "no ACK")
        return True

    def answer_offer(self, call_id: str, sdp: bytes, *, now: float | None = None) -> None:
        """The answer to the offer of an OfferReceived (re-INVITE or UPDATE)."""
        session = self._session(call_id, "answer_offer", now)
        if session is None:
            return
        txn = session.pending_server
        if txn is None:
            raise LocalProtocolError(f"call {call_id}: answer_offer() with no offer pending")
        if not sdp:
            raise LocalProtocolError(f"call {call_id}: answer_offer() needs SDP")
        session.pending_server = None
        if txn.method == "UPDATE":
            self._answer_update(session, txn, sdp)
        else:
            self._accept_invite(session, txn, sdp, offer_in_2xx=False)

    def send_info(
        self, call_id: str, content_type: str, body: bytes, *, now: float | None = None
    ) -> None:
        """INFO in the dialog (e.g. application/dtmf-relay)."""
        session = self._session(call_id, "send_info", now)
        if session is None:
            return
        if session.state not in (CallState.ANSWERED, CallState.CONFIRMED):
            raise LocalProtocolError(f"call {call_id}: send_info() in state {session.state}")
        self._send_in_dialog(session, "INFO", body=body, content_type=content_type)

    def call(
        self,
        dest: Peer,
        request_uri: str,
        from_uri: str,
        sdp: bytes,
        headers: dict[str, str] | None = None,
        *,
        now: float | None = None,
        credentials: tuple[str, str] | None = None,
        call_id: str | None = None,
        fallback_sdp: bytes | None = None,
        to_uri: str | None = None,
    ) -> str:
        """Send an INVITE with `sdp` as the offer to `dest`; returns the new Call-ID (the
        given `call_id`, a fresh one otherwise). `credentials` (username, password) answer a
        401/407 challenge to it (digest); provisional responses come as CallProgress.
        `fallback_sdp`: a 488 or 415 to the INVITE sends it again once with this offer
        instead (same Call-ID, new CSeq: RFC 3261 8.1.3.5), reported as OfferRetried.
        `to_uri`: the To header's URI when it is not the Request-URI (a call to a PBX's
        registered Contact names the number dialled in To)."""
        if now is not None:
            self._now = now
        if not sdp:
            raise LocalProtocolError("call() needs an SDP offer")
        try:
            uri = SipUri.parse(request_uri)
            from_addr = NameAddr.parse(from_uri)
            to = NameAddr(SipUri.parse(to_uri)) if to_uri else NameAddr(uri)
        except RemoteProtocolError as exc:
            raise LocalProtocolError(f"call(): {exc.reason}") from None
        call_id = call_id or secrets.token_hex(16)
        local_tag = secrets.token_hex(8)
        from_addr.params["tag"] = local_tag
        fields = Headers()
        fields.add("Via", str(self._via(dest.transport)))
        fields.add("Max-Forwards", "70")
        fields.add("From", str(from_addr))
        fields.add("To", str(to))
        fields.add("Call-ID", call_id)
        fields.add("CSeq", str(CSeq(1, "INVITE")))
        fields.add("Contact", str(self._contact(dest.transport, uri.scheme == "sips")))
        fields.add("Allow", ALLOW)
        fields.add("Supported", "timer")
        if self.settings.session_expires > 0:
            fields.add("Session-Expires", str(self.settings.session_expires))
            fields.add("Min-SE", str(max(self.settings.min_se, 90)))
        fields.add("User-Agent", self.settings.user_agent)
        for name, value in (headers or {}).items():
            fields.add(name, value)
        fields.add("Content-Type", SDP)
        invite = SipRequest("INVITE", uri, fields, sdp)
        session = InviteSession(
            call_id=call_id,
            role="uac",
            local_tag=local_tag,
            invite=invite,
            peer=dest,
            state=CallState.CALLING,
            credentials=credentials,
            fallback_sdp=fallback_sdp,
        )
        self._next_sdp(session, sdp)
        self._calls[call_id] = session
        log.info("call %s: INVITE to %s (%s)", call_id, request_uri, dest)
        session.invite_client = self._layer.send_request(invite, dest, self._now)
        return call_id


    def register(
        self,
        dest: Peer,
        request_uri: str,
        aor: str,
        contact_user: str,
        *,
        call_id: str,
        from_tag: str,
        cseq: int,
        expires: int,
        headers: Iterable[tuple[str, str]] = (),
        now: float | None = None,
    ) -> None:
        """Send a REGISTER for `aor` with our Contact (user `contact_user`) to `dest`; its
        final response comes back as RequestAnswered (or RequestTimedOut) with `call_id`.
        The caller keeps `call_id`, `from_tag` and `cseq` across refreshes (RFC 3261 10.2)."""
        if now is not None:
            self._now = now
        try:
            uri = SipUri.parse(request_uri)
            address = NameAddr.parse(aor)
        except RemoteProtocolError as exc:
            raise LocalProtocolError(f"register(): {exc.reason}") from None
        contact = self._contact(dest.transport, uri.scheme == "sips")
        contact.uri.user = contact_user
        fields = Headers()
        fields.add("Via", str(self._via(dest.transport)))
        fields.add("Max-Forwards", "70")
        fields.add("From", f"{address};tag={from_tag}")
        fields.add("To", str(address))
        fields.add("Call-ID", call_id)
        fields.add("CSeq", str(CSeq(cseq, "REGISTER")))
        fields.add("Contact", str(contact))
        fields.add("Expires", str(expires))
        fields.add("Allow", ALLOW)
        fields.add("User-Agent", self.settings.user_agent)
        for name, value in headers:
            fields.add(name, value)
        request = SipRequest("REGISTER", uri, fields, b"")
        log.info("registration %s: REGISTER %s to %s (expires %d)", call_id, aor, dest,
                 expires)
        self._outside.add(self._layer.send_request(request, dest, self._now))


def _call_id(headers: Headers) -> str:
    return headers.get("Call-ID") or "?"


def _event_call_id(event: TransactionEvent) -> str:
    if isinstance(event, RequestReceived | AckReceived):
        return event.request.call_id
    if isinstance(event, CancelReceived | TransactionTimeout):
        return event.txn.call_id
    return event.response.call_id
