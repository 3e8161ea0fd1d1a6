"""Server transactions: INVITE (RFC 3261 17.2.1 + RFC 6026) and non-INVITE (17.2.2).

INVITE server: Proceeding -> Completed (TU sent 300-699: timer G retransmits it over UDP
until the ACK, timer H gives up) -> Confirmed (ACK; timer I absorbs ACK retransmissions),
or Proceeding -> Accepted (TU sent 2xx: RFC 6026 timer L; INVITE retransmissions are
absorbed, 2xx retransmissions passed in by the TU are sent, an ACK reaching it is handed to
the TU). Retransmitting the 2xx until the ACK is the TU's job (RFC 3261 13.3.1.4; see
``timers.RetransmitSchedule``). The transaction sends 100 Trying itself when the TU has
not responded within ``trying_delay`` (200 ms by default, 17.2.1).

Non-INVITE server: Trying -> Proceeding -> Completed (timer J absorbs retransmissions).
A request the TU never answers is dropped after 64*T1 (the client gave up by then: timer F).

Once Completed or Accepted, a transaction lets go of the parsed request and response
(``Transaction.release``), keeping the bytes it may resend: a flood must not keep them for
32 s. Completed non-INVITE ones report to the layer, which caps how many it keeps.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from typing import ClassVar

from .errors import LocalProtocolError
from .message import SipRequest, SipResponse, make_response
from .peer import Peer
from .transaction import (
    AckReceived,
    Transaction,
    TransactionHooks,
    TransactionTimeout,
    TxnState,
)

__all__ = ["InviteServerTransaction", "NonInviteServerTransaction", "ServerTransaction"]

log = logging.getLogger(__name__)

S = TxnState


class ServerTransaction(Transaction):
    """A request we received. ``peer`` is where its responses go (``response_destination``);
    ``source`` is where the request came from."""

    def __init__(
        self,
        request: SipRequest,
        source: Peer,
        response_peer: Peer,
        hooks: TransactionHooks,
        key: Hashable,
    ) -> None:
        super().__init__(request, response_peer, hooks, key)
        self.source = source
        self._last_data: bytes | None = None
        self._interval = self._settings.t1

    def start(self, now: float) -> None:
        """Arm the initial timers (called once by the layer)."""

    def receive_request(self, request: SipRequest, source: Peer, now: float) -> None:
        """A retransmission of the request (or, for INVITE, an ACK) matched this transaction."""
        raise NotImplementedError

    def send_response(self, response: SipResponse, now: float) -> None:
        """The TU responds (called through ``TransactionLayer.send_response``)."""
        raise NotImplementedError

    def _send(self, response: SipResponse) -> None:
        self._record(response)
        self._last_data = response.serialize()
        self._hooks.transmit(self._last_data, self.peer)

    def _resend(self) -> None:
        if self._last_data is not None:
            self._hooks.transmit(self._last_data, self.peer)


class InviteServerTransaction(ServerTransaction):
    TRANSITIONS: ClassVar[dict[TxnState, frozenset[TxnState]]] = {
        S.PROCEEDING: frozenset({S.COMPLETED, S.ACCEPTED, S.TERMINATED}),
        S.COMPLETED: frozenset({S.CONFIRMED, S.TERMINATED}),
        S.CONFIRMED: frozenset({S.TERMINATED}),
        S.ACCEPTED: frozenset({S.TERMINATED}),
    }
    INITIAL: ClassVar[TxnState] = S.PROCEEDING
    is_invite: ClassVar[bool] = True

    def __init__(
        self,
        request: SipRequest,
        source: Peer,
        response_peer: Peer,
        hooks: TransactionHooks,
        key: Hashable,
        trying_delay: float = 0.2,
    ) -> None:
        super().__init__(request, source, response_peer, hooks, key)
        self._trying_delay = trying_delay

    def start(self, now: float) -> None:
        if self._trying_delay <= 0:
            self._send_trying()
        else:
            self._arm("trying", now + self._trying_delay)

    def _send_trying(self) -> None:
        trying = make_response(self.request, 100)
        timestamp = self.request.headers.get("Timestamp")
        if timestamp is not None:
            trying.headers.add("Timestamp", timestamp)  # RFC 3261 8.2.6.1
        self._send(trying)

    def send_response(self, response: SipResponse, now: float) -> None:
        status, state = response.status, self.state
        if state is S.PROCEEDING:
            self._disarm("trying")
            self._send(response)
            if status < 200:
                return
            if status < 300:
                self._set_state(S.ACCEPTED)
                # Accepted absorbs INVITE retransmissions without answering them, and the
                # TU keeps its own 2xx for retransmitting: nothing parsed is needed any more.
                self.release()
                self._last_data = None
                self._arm("L", now + self._settings.timer_l)
                return
            self._set_state(S.COMPLETED)
            self.release()  # only the bytes are resent (timer G), the ACK matched by key
            if not self.peer.reliable:
                self._interval = self._settings.timer_g
                self._arm("G", now + self._interval)
            self._arm("H", now + self._settings.timer_h)
        elif state is S.ACCEPTED and 200 <= status < 300:
            # the TU retransmitting its 2xx (RFC 6026 7.1): sent, not kept
            self.status, self.to_tag = response.status, response.to_tag
            self._hooks.transmit(response.serialize(), self.peer)
        else:
            raise LocalProtocolError(f"cannot send {status} on INVITE transaction in {state}")

    def receive_request(self, request: SipRequest, source: Peer, now: float) -> None:
        state = self.state
        if request.method == "ACK":
            if state is S.COMPLETED:
                self._disarm("G", "H")
                self._set_state(S.CONFIRMED)
                if self.peer.reliable:
                    self._terminate()
                else:
                    self._arm("I", now + self._settings.timer_i)
            elif state is S.ACCEPTED:
                self._hooks.emit(AckReceived(request, source))
            # Confirmed: ACK retransmissions are absorbed
            return
        if state is S.PROCEEDING:
            if self._last_data is None:
                self._disarm("trying")
                self._send_trying()  # a retransmission means the 200 ms are long gone
            else:
                self._resend()
        elif state is S.COMPLETED:
            self._resend()
        # Accepted / Confirmed: INVITE retransmissions are absorbed

    def on_timer(self, timer: str, now: float) -> None:
        self._fired(timer)
        state = self.state
        if timer == "trying" and state is S.PROCEEDING and self._last_data is None:
            self._send_trying()
        elif timer == "G" and state is S.COMPLETED:
            self._resend()
            self._interval = min(2 * self._interval, self._settings.t2)
            self._arm("G", now + self._interval)
        elif timer == "H" and state is S.COMPLETED:
            log.info("call %s: no ACK for %s (timer H)", self.call_id, self.status)
            self._hooks.emit(TransactionTimeout(self))
            self._terminate()
        elif (timer == "I" and state is S.CONFIRMED) or (timer == "L" and state is S.ACCEPTED):
            self._terminate()


class NonInviteServerTransaction(ServerTransaction):
    TRANSITIONS: ClassVar[dict[TxnState, frozenset[TxnState]]] = {
        S.TRYING: frozenset({S.PROCEEDING, S.COMPLETED, S.TERMINATED}),
        S.PROCEEDING: frozenset({S.COMPLETED, S.TERMINATED}),
        S.COMPLETED: frozenset({S.TERMINATED}),
    }
    INITIAL: ClassVar[TxnState] = S.TRYING

    def start(self, now: float) -> None:
        # Not in RFC 3261: a request the TU never answers would otherwise live forever.
        self._arm("unanswered", now + 64 * self._settings.t1)

    def send_response(self, response: SipResponse, now: float) -> None:
        status, state = response.status, self.state
        if state not in (S.TRYING, S.PROCEEDING):
            raise LocalProtocolError(f"cannot send {status} on {self.method} transaction "
                                     f"in {state}")
        self._send(response)
        if status < 200:
            self._set_state(S.PROCEEDING)
            return
        self._disarm("unanswered")
        self._set_state(S.COMPLETED)
        if self.peer.reliable:
            self._terminate()
        else:
            self.release()
            self._arm("J", now + self._settings.timer_j)
            self._hooks.completed(self)  # the layer may forget it early under a flood

    def receive_request(self, request: SipRequest, source: Peer, now: float) -> None:
        if self.state in (S.PROCEEDING, S.COMPLETED):
            self._resend()
        # Trying: the TU has not answered yet; the retransmission is discarded

    def on_timer(self, timer: str, now: float) -> None:
        self._fired(timer)
        state = self.state
        if timer == "J" and state is S.COMPLETED:
            self._terminate()
        elif timer == "unanswered" and state in (S.TRYING, S.PROCEEDING):
            log.warning("call %s: %s %s never answered by the TU; dropped", self.call_id,
                        self.method, self.branch)
            self._terminate()
