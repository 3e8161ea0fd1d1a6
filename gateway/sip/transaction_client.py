"""Client transactions: INVITE (RFC 3261 17.1.1 + RFC 6026) and non-INVITE (17.1.2).

INVITE client: Calling -> Proceeding -> Completed (non-2xx: the transaction sends the ACK
with the same branch and the response's To tag; timer D absorbs retransmissions) or
Accepted (2xx: RFC 6026 timer M; every 2xx arriving meanwhile, retransmission or fork,
reaches the TU as ResponseReceived and the TU sends its own ACK for it). Timer A
retransmits the INVITE over UDP, timer B times it out in Calling. After a CANCEL for it
was sent, an INVITE that gets no final response in 64*T1 is ended (RFC 3261 9.1).

Non-INVITE client: Trying -> Proceeding -> Completed; timer E retransmits (UDP), F times
out, K absorbs response retransmissions.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from typing import ClassVar

from .message import Headers, SipRequest, SipResponse
from .peer import Peer
from .transaction import (
    ResponseReceived,
    Transaction,
    TransactionHooks,
    TransactionTimeout,
    TxnState,
)

__all__ = ["ClientTransaction", "InviteClientTransaction", "NonInviteClientTransaction"]

log = logging.getLogger(__name__)

S = TxnState


class ClientTransaction(Transaction):
    """A request we sent and the responses it gets. ``peer`` is where it went."""

    def __init__(
        self, request: SipRequest, dest: Peer, hooks: TransactionHooks, key: Hashable
    ) -> None:
        super().__init__(request, dest, hooks, key)
        self._data = request.serialize()
        self._interval = self._settings.t1

    def start(self, now: float) -> None:
        """Send the request and arm the timers (called once by the layer)."""
        raise NotImplementedError

    def receive_response(self, response: SipResponse, now: float) -> None:
        """A response matched this transaction (17.1.3)."""
        raise NotImplementedError

    def cancel_sent(self, now: float) -> None:
        """The TU sent a CANCEL for this request (only INVITE cares)."""

    def _retransmit(self) -> None:
        self._hooks.transmit(self._data, self.peer)


class InviteClientTransaction(ClientTransaction):
    TRANSITIONS: ClassVar[dict[TxnState, frozenset[TxnState]]] = {
        S.CALLING: frozenset({S.PROCEEDING, S.COMPLETED, S.ACCEPTED, S.TERMINATED}),
        S.PROCEEDING: frozenset({S.COMPLETED, S.ACCEPTED, S.TERMINATED}),
        S.COMPLETED: frozenset({S.TERMINATED}),
        S.ACCEPTED: frozenset({S.TERMINATED}),
    }
    INITIAL: ClassVar[TxnState] = S.CALLING
    is_invite: ClassVar[bool] = True

    def __init__(
        self, request: SipRequest, dest: Peer, hooks: TransactionHooks, key: Hashable
    ) -> None:
        super().__init__(request, dest, hooks, key)
        self._ack: bytes | None = None

    def start(self, now: float) -> None:
        self._retransmit()
        if not self.peer.reliable:
            self._interval = self._settings.timer_a
            self._arm("A", now + self._interval)
        self._arm("B", now + self._settings.timer_b)

    def cancel_sent(self, now: float) -> None:
        if self.state in (S.CALLING, S.PROCEEDING):
            self._arm("cancel", now + 64 * self._settings.t1)

    def receive_response(self, response: SipResponse, now: float) -> None:
        status, state = response.status, self.state
        if status < 200:
            if state in (S.CALLING, S.PROCEEDING):
                self._disarm("A", "B")
                self._set_state(S.PROCEEDING)
                self._record(response)
                self._hooks.emit(ResponseReceived(self, response))
        elif status < 300:
            if state in (S.CALLING, S.PROCEEDING):
                self._disarm("A", "B", "cancel")
                self._set_state(S.ACCEPTED)
                self._arm("M", now + self._settings.timer_m)
                self._record(response)
                self._hooks.emit(ResponseReceived(self, response))
            elif state is S.ACCEPTED:
                self._record(response)
                self._hooks.emit(ResponseReceived(self, response))
        elif state in (S.CALLING, S.PROCEEDING):
            self._disarm("A", "B", "cancel")
            self._set_state(S.COMPLETED)
            self._record(response)
            self._ack = build_ack(self.request, response).serialize()
            self._hooks.transmit(self._ack, self.peer)
            self._hooks.emit(ResponseReceived(self, response))
            if self.peer.reliable:
                self._terminate()
            else:
                self._arm("D", now + self._settings.timer_d)
        elif state is S.COMPLETED and self._ack is not None:
            self._hooks.transmit(self._ack, self.peer)  # retransmitted final: ACK again
        else:
            log.debug("call %s: INVITE %s: %d ignored in %s", self.call_id, self.branch,
                      status, state)

    def on_timer(self, timer: str, now: float) -> None:
        self._fired(timer)
        state = self.state
        if timer == "A" and state is S.CALLING:
            self._retransmit()
            self._interval *= 2
            self._arm("A", now + self._interval)
        elif timer == "B" and state is S.CALLING:
            log.info("call %s: INVITE %s timed out (timer B)", self.call_id, self.branch)
            self._hooks.emit(TransactionTimeout(self))
            self._terminate()
        elif timer == "cancel" and state in (S.CALLING, S.PROCEEDING):
            log.info("call %s: CANCELled INVITE %s got no final response", self.call_id,
                     self.branch)
            self._hooks.emit(TransactionTimeout(self))
            self._terminate()
        elif (timer == "D" and state is S.COMPLETED) or (timer == "M" and state is S.ACCEPTED):
            self._terminate()


class NonInviteClientTransaction(ClientTransaction):
    TRANSITIONS: ClassVar[dict[TxnState, frozenset[TxnState]]] = {
        S.TRYING: frozenset({S.PROCEEDING, S.COMPLETED, S.TERMINATED}),
        S.PROCEEDING: frozenset({S.COMPLETED, S.TERMINATED}),
        S.COMPLETED: frozenset({S.TERMINATED}),
    }
    INITIAL: ClassVar[TxnState] = S.TRYING

    def start(self, now: float) -> None:
        self._retransmit()
        if not self.peer.reliable:
            self._interval = self._settings.timer_e
            self._arm("E", now + self._interval)
        self._arm("F", now + self._settings.timer_f)

    def receive_response(self, response: SipResponse, now: float) -> None:
        state = self.state
        if state not in (S.TRYING, S.PROCEEDING):
            return  # Completed: response retransmissions are absorbed
        self._record(response)
        if response.status < 200:
            self._set_state(S.PROCEEDING)
            self._hooks.emit(ResponseReceived(self, response))
            return
        self._disarm("E", "F")
        self._set_state(S.COMPLETED)
        self._hooks.emit(ResponseReceived(self, response))
        if self.peer.reliable:
            self._terminate()
        else:
            self._arm("K", now + self._settings.timer_k)

    def on_timer(self, timer: str, now: float) -> None:
        self._fired(timer)
        state = self.state
        if timer == "E" and state in (S.TRYING, S.PROCEEDING):
            self._retransmit()
            t2 = self._settings.t2
            self._interval = t2 if state is S.PROCEEDING else min(2 * self._interval, t2)
            self._arm("E", now + self._interval)
        elif timer == "F" and state in (S.TRYING, S.PROCEEDING):
            log.info("call %s: %s %s timed out (timer F)", self.call_id, self.method,
                     self.branch)
            self._hooks.emit(TransactionTimeout(self))
            self._terminate()
        elif timer == "K" and state is S.COMPLETED:
            self._terminate()


def build_ack(invite: SipRequest, response: SipResponse) -> SipRequest:
    """The ACK for a non-2xx final response (RFC 3261 17.1.1.3): same Request-URI, Call-ID,
    From, CSeq number and top Via as the INVITE, To from the response, Route copied."""
    headers = Headers()
    headers.add("Via", str(invite.top_via))
    for route in invite.headers.get_all("Route"):
        headers.add("Route", route)
    headers.add("Max-Forwards", "70")
    headers.add("From", invite.headers.get("From") or "")
    headers.add("To", response.headers.get("To") or "")
    headers.add("Call-ID", invite.call_id)
    headers.add("CSeq", f"{invite.cseq.number} ACK")
    return SipRequest(method="ACK", uri=invite.uri, headers=headers)
