"""The SIP transaction layer (RFC 3261 section 17): matching, routing, timers, events.

``TransactionLayer`` sits between the transport (bytes in and out, done by the caller) and
the transaction user (``next_event()``). It

- matches requests to server transactions (17.2.3: branch with the magic cookie + sent-by +
  method, ACK to its INVITE; the RFC 2543 fallback on Request-URI, tags, Call-ID, CSeq and
  top Via) and responses to client transactions (17.1.3: branch + CSeq method);
- absorbs retransmitted requests (the transaction resends its last response);
- answers CANCEL itself (200 and ``CancelReceived`` when it matches a live INVITE server
  transaction, 481 otherwise); only INVITE transactions can be cancelled here;
- stamps ``received``/``rport`` into the top Via of every request as it arrives (RFC 3261
  18.2.1, RFC 3581) and sends responses to ``response_destination()``;
- keeps every timer deadline in one heap: ``get_timer()`` is the earliest, ``handle_timer()``
  fires all that are due.

Design choices: INVITE transactions use RFC 6026's Accepted state (timers L and M), so 2xx
retransmissions reach the TU as ``ResponseReceived`` until timer M; afterwards they are
``StrayResponse``. The INVITE server transaction sends 100 Trying after ``trying_delay``
(200 ms) unless the TU responded first. Retransmitting a 2xx until the ACK is the TU's job:
call ``send_response(txn, same 2xx, now)`` while the transaction is Accepted (64*T1, the
same window as RFC 3261 13.3.1.4; ``timers.RetransmitSchedule`` gives the times).
"""

from __future__ import annotations

import logging
import secrets
from collections import OrderedDict, deque
from collections.abc import Hashable

from .errors import LocalProtocolError, RemoteProtocolError
from .headers import Via, split_list
from .message import Headers, SipRequest, SipResponse, make_response
from .peer import DEFAULT_PORTS, Peer
from .timers import TimerHeap, TimerSettings
from .transaction import (
    MAGIC_COOKIE,
    AckReceived,
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    StrayResponse,
    Transaction,
    TransactionEvent,
    TransactionTimeout,
    TxnState,
    new_branch,
)
from .transaction_client import (
    ClientTransaction,
    InviteClientTransaction,
    NonInviteClientTransaction,
)
from .transaction_server import (
    InviteServerTransaction,
    NonInviteServerTransaction,
    ServerTransaction,
)

__all__ = [
    "AckReceived",
    "CancelReceived",
    "ClientTransaction",
    "RequestReceived",
    "ResponseReceived",
    "ServerTransaction",
    "StrayResponse",
    "TransactionEvent",
    "TransactionLayer",
    "TransactionTimeout",
    "TxnState",
    "new_branch",
]

log = logging.getLogger(__name__)

DEFAULT_TIMERS = TimerSettings()
# Completed non-INVITE server transactions kept at most (about 1 KB each: key, state and
# the response's bytes). A flood of OPTIONS at 5,000/s would otherwise hold 160,000 of them
# for timer J's 32 s.
DEFAULT_MAX_FINISHED = 20_000


class _Hooks:
    """The layer as its transactions see it (``transaction.TransactionHooks``)."""

    __slots__ = ("_layer",)

    def __init__(self, layer: TransactionLayer) -> None:
        self._layer = layer

    @property
    def settings(self) -> TimerSettings:
        return self._layer.settings

    def transmit(self, data: bytes, dest: Peer) -> None:
        self._layer._out.append((data, dest))

    def emit(self, event: TransactionEvent) -> None:
        self._layer._events.append(event)

    def arm(self, txn: Transaction, timer: str, at: float) -> None:
        self._layer._timers.schedule((txn, timer), at)

    def disarm(self, txn: Transaction, timer: str) -> None:
        self._layer._timers.cancel((txn, timer))

    def terminated(self, txn: Transaction) -> None:
        self._layer._forget(txn)

    def completed(self, txn: Transaction) -> None:
        self._layer._completed(txn)


class TransactionLayer:
    """All client and server transactions of one user agent."""

    def __init__(
        self, timers: TimerSettings = DEFAULT_TIMERS, *, trying_delay: float = 0.2,
        max_finished: int = DEFAULT_MAX_FINISHED,
    ) -> None:
        """``max_finished``: completed non-INVITE server transactions kept for absorbing
        retransmissions (timer J); beyond it the oldest are forgotten early."""
        if max_finished < 1:
            raise LocalProtocolError("max_finished must be at least 1")
        self.settings = timers
        self.trying_delay = trying_delay
        self.max_finished = max_finished
        self.forgotten_early = 0
        self._client: dict[Hashable, ClientTransaction] = {}
        self._server: dict[Hashable, ServerTransaction] = {}
        self._finished: OrderedDict[Hashable, ServerTransaction] = OrderedDict()
        self._timers: TimerHeap[tuple[Transaction, str]] = TimerHeap()
        self._out: list[tuple[bytes, Peer]] = []
        self._events: deque[TransactionEvent] = deque()
        self._hooks = _Hooks(self)

    # --- input ---------------------------------------------------------------------------

    def receive(self, message: SipRequest | SipResponse, source: Peer, now: float) -> None:
        """A parsed message arrived from ``source``. Malformed essentials are logged and
        the message dropped (requests get a 400 when they can be answered)."""
        try:
            if isinstance(message, SipResponse):
                self._receive_response(message, source, now)
            else:
                self._receive_request(message, source, now)
        except RemoteProtocolError as exc:
            log.info("dropping message from %s: %s", source, exc)
            if isinstance(message, SipRequest) and message.method != "ACK":
                self._reject_malformed(message, source, exc)

    def handle_timer(self, now: float) -> None:
        """Fire every timer that is due at ``now``."""
        timers = self._timers
        while (due := timers.pop_due(now)) is not None:
            txn, timer = due
            if not txn.terminated:
                txn.on_timer(timer, now)

    # --- output --------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """The earliest deadline of any transaction, or None."""
        return self._timers.next_deadline()

    def datagrams_to_send(self) -> list[tuple[bytes, Peer]]:
        """Serialized messages and where they go; drains."""
        out, self._out = self._out, []
        return out

    def next_event(self) -> TransactionEvent | None:
        """The next event for the TU, or None; drains one."""
        return self._events.popleft() if self._events else None

    def __len__(self) -> int:
        """Live transactions (client and server)."""
        return len(self._client) + len(self._server)

    @property
    def finished(self) -> int:
        """Completed non-INVITE server transactions waiting for timer J."""
        return len(self._finished)

    # --- the TU's calls ------------------------------------------------------------------

    def send_request(self, request: SipRequest, dest: Peer, now: float) -> ClientTransaction:
        """Start a client transaction. The TU puts the top Via in (its sent-by); a missing
        branch is generated. A CANCEL must carry its INVITE's branch (RFC 3261 9.1)."""
        if request.method == "ACK":
            raise LocalProtocolError("ACK has no client transaction: use send_stateless()")
        if not request.headers.get_all("Via"):
            raise LocalProtocolError("request without Via")
        via = request.top_via
        if not via.branch:
            via.params["branch"] = new_branch()
            _replace_top_via(request, via)
        key = (via.branch, request.method)
        if key in self._client:
            raise LocalProtocolError(f"a {request.method} transaction with branch "
                                     f"{via.branch} is already live")
        txn: ClientTransaction
        if request.method == "INVITE":
            txn = InviteClientTransaction(request, dest, self._hooks, key)
        else:
            txn = NonInviteClientTransaction(request, dest, self._hooks, key)
        self._client[key] = txn
        txn.start(now)
        if request.method == "CANCEL":
            invite = self._client.get((via.branch, "INVITE"))
            if invite is not None:
                invite.cancel_sent(now)
        return txn

    def send_response(self, txn: ServerTransaction, response: SipResponse, now: float) -> None:
        """Respond on a server transaction. After it ended, a 2xx to INVITE is still sent
        (a late retransmission by the TU); anything else is logged and dropped."""
        if txn.terminated:
            if txn.is_invite and 200 <= response.status < 300:
                self._out.append((response.serialize(), txn.peer))
            else:
                log.warning("call %s: %d on ended %s transaction dropped", txn.call_id,
                            response.status, txn.method)
            return
        if self._server.get(txn.key) is not txn:
            raise LocalProtocolError("transaction does not belong to this layer")
        txn.send_response(response, now)

    def send_stateless(self, message: SipRequest | SipResponse, dest: Peer) -> None:
        """Send outside any transaction (the ACK for a 2xx, a 2xx retransmission...)."""
        self._out.append((message.serialize(), dest))

    def send_raw(self, data: bytes, dest: Peer) -> None:
        """Send bytes that are already serialized (e.g. ``parser.best_effort_response``)."""
        self._out.append((data, dest))

    def response_destination(self, request: SipRequest, source: Peer) -> Peer:
        """Where responses to ``request`` go (RFC 3261 18.2.2, RFC 3581).

        Reliable transports: back to ``source`` (the same connection). Otherwise ``maddr``,
        then ``received`` (or the source address) with the ``rport`` (or source port) when
        the top Via asked for rport, then ``received`` or sent-by with the sent-by port.
        """
        if source.reliable:
            return source
        via = request.top_via
        default = DEFAULT_PORTS.get(source.transport, 5060)
        maddr = via.params.get("maddr")
        if maddr:
            return Peer(source.transport, _unbracket(maddr), via.port or default)
        if "rport" in via.params:
            host = via.received or source.host
            return Peer(source.transport, _unbracket(host), via.rport or source.port)
        host = via.received or via.host
        return Peer(source.transport, _unbracket(host), via.port or default)

    # --- internals -----------------------------------------------------------------------

    def _receive_response(self, response: SipResponse, source: Peer, now: float) -> None:
        via = response.top_via
        txn = self._client.get((via.branch, response.cseq.method))
        if txn is None:
            log.debug("call %s: stray %d from %s", response.call_id, response.status, source)
            self._events.append(StrayResponse(response, source))
            return
        txn.receive_response(response, now)

    def _receive_request(self, request: SipRequest, source: Peer, now: float) -> None:
        _stamp_via(request, source)
        method = request.method
        if method == "ACK":
            invite = self._match_ack(request)
            if invite is None:
                self._events.append(AckReceived(request, source))
            else:
                invite.receive_request(request, source, now)
            return
        key = _server_key(request, method)
        existing = self._server.get(key)
        if existing is not None:
            existing.receive_request(request, source, now)  # a retransmission
            return
        if request.cseq.method != method:
            raise RemoteProtocolError("CSeq method does not match the request method")
        dest = self.response_destination(request, source)
        txn: ServerTransaction
        if method == "INVITE":
            txn = InviteServerTransaction(request, source, dest, self._hooks, key,
                                          self.trying_delay)
        else:
            txn = NonInviteServerTransaction(request, source, dest, self._hooks, key)
        self._server[key] = txn
        txn.start(now)
        if method == "CANCEL":
            self._handle_cancel(txn, request, now)
        else:
            self._events.append(RequestReceived(txn, request, source))

    def _handle_cancel(self, cancel_txn: ServerTransaction, cancel: SipRequest,
                       now: float) -> None:
        target = self._server.get(_server_key(cancel, "INVITE"))
        if target is None or target.terminated:
            log.info("call %s: CANCEL matches no transaction", cancel.call_id)
            cancel_txn.send_response(make_response(cancel, 481, to_tag=_new_tag()), now)
            return
        tag = target.to_tag if target.status is not None else None
        cancel_txn.send_response(make_response(cancel, 200, to_tag=tag or _new_tag()), now)
        if target.state is TxnState.PROCEEDING:
            self._events.append(CancelReceived(target, cancel))

    def _match_ack(self, ack: SipRequest) -> ServerTransaction | None:
        branch = ack.top_via.branch
        if branch and branch.startswith(MAGIC_COOKIE):
            txn = self._server.get(_server_key(ack, "INVITE"))
            return txn if txn is not None and txn.is_invite else None
        # RFC 2543: the ACK carries the To tag of our response; the INVITE had none (or the
        # same one, inside a dialog).
        txn = self._server.get(_server_key(ack, "INVITE", to_tag=None))
        if txn is not None and txn.is_invite and txn.status is not None \
                and txn.to_tag == ack.to_tag:
            return txn
        if ack.to_tag is not None:
            txn = self._server.get(_server_key(ack, "INVITE"))
            if txn is not None and txn.is_invite:
                return txn
        return None

    def _reject_malformed(self, request: SipRequest, source: Peer,
                          exc: RemoteProtocolError) -> None:
        try:
            response = make_response(request, exc.status, to_tag=_new_tag())
            dest = self.response_destination(request, source)
        except (RemoteProtocolError, LocalProtocolError):
            return  # not even Via/From/To/Call-ID/CSeq: nothing to answer
        self._out.append((response.serialize(), dest))

    def _forget(self, txn: Transaction) -> None:
        table: dict[Hashable, ClientTransaction] | dict[Hashable, ServerTransaction]
        table = self._client if isinstance(txn, ClientTransaction) else self._server
        if table.get(txn.key) is txn:
            del table[txn.key]
        if self._finished.get(txn.key) is txn:
            del self._finished[txn.key]

    def _completed(self, txn: Transaction) -> None:
        if not isinstance(txn, ServerTransaction) or self._server.get(txn.key) is not txn:
            return
        self._finished[txn.key] = txn
        while len(self._finished) > self.max_finished:
            _, oldest = self._finished.popitem(last=False)
            self.forgotten_early += 1
            oldest.forget()


_UNMATCHED = object()


def _server_key(request: SipRequest, method: str, to_tag: object = _UNMATCHED) -> Hashable:
    """The matching key of 17.2.3 for ``request`` taken as a ``method`` request."""
    via = request.top_via
    branch = via.branch
    if branch and branch.startswith(MAGIC_COOKIE):
        port = via.port or DEFAULT_PORTS.get(via.transport.lower(), 5060)
        return (branch, via.host.lower(), port, method)
    # RFC 2543: Request-URI, To tag, From tag, Call-ID, CSeq number and top Via.
    tag = request.to_tag if to_tag is _UNMATCHED else to_tag
    via_params = tuple(sorted(
        (name, value) for name, value in via.params.items() if name not in ("received", "rport")
    ))
    return (
        "rfc2543", str(request.uri), tag, request.from_tag, request.call_id,
        request.cseq.number, method, via.transport, via.host.lower(), via.port, via_params,
    )


def _stamp_via(request: SipRequest, source: Peer) -> None:
    """Add ``received`` (and fill ``rport``) to the top Via (RFC 3261 18.2.1, RFC 3581)."""
    via = request.top_via
    wants_rport = "rport" in via.params
    if not wants_rport and _unbracket(via.host) == source.host:
        return
    via.params["received"] = source.host
    if wants_rport:
        via.params["rport"] = str(source.port)
    _replace_top_via(request, via)


def _replace_top_via(request: SipRequest, via: Via) -> None:
    """Rewrite the first Via value in place (other fields keep their order and form)."""
    items = request.headers.items()
    for i, (name, value) in enumerate(items):
        if name == "Via":
            items[i] = (name, ", ".join([str(via), *split_list(value)[1:]]))
            break
    request.headers = Headers(items)


def _unbracket(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _new_tag() -> str:
    return secrets.token_hex(6)
