"""SIP transactions (RFC 3261 section 17, with RFC 6026's Accepted state): shared parts.

A transaction is a sans-I/O state machine. It never owns a socket or a clock: it talks to
its transaction layer through :class:`TransactionHooks` (send bytes, emit an event, arm or
disarm a named timer, report that it ended). The four state machines live in
``transaction_client.py`` (INVITE and non-INVITE client) and ``transaction_server.py``
(INVITE and non-INVITE server); every state change goes through
:meth:`Transaction._set_state`, checked against the class's ``TRANSITIONS`` table.

Events handed to the transaction user (TU) are defined here and re-exported by
``layer.py``.
"""

from __future__ import annotations

import enum
import logging
import secrets
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol, TypeAlias

from .errors import LocalProtocolError
from .message import SipRequest, SipResponse
from .peer import Peer
from .timers import TimerSettings

if TYPE_CHECKING:
    from .transaction_client import ClientTransaction
    from .transaction_server import ServerTransaction

__all__ = [
    "MAGIC_COOKIE",
    "AckReceived",
    "CancelReceived",
    "RequestReceived",
    "ResponseReceived",
    "StrayResponse",
    "Transaction",
    "TransactionEvent",
    "TransactionHooks",
    "TransactionTimeout",
    "TxnState",
    "new_branch",
]

log = logging.getLogger(__name__)

MAGIC_COOKIE = "z9hG4bK"


def new_branch() -> str:
    """A fresh RFC 3261 branch parameter (magic cookie + 96 random bits)."""
    return MAGIC_COOKIE + secrets.token_hex(12)


class TxnState(enum.Enum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"  # RFC 6026
    TERMINATED = "Terminated"

    def __str__(self) -> str:
        return self.value


# --- events handed to the TU (frozen, slots) -------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request (not a retransmission, not ACK, not CANCEL) opened a server transaction."""

    txn: ServerTransaction
    request: SipRequest
    source: Peer


@dataclass(frozen=True, slots=True)
class AckReceived:
    """An ACK that matched no transaction (the ACK for a 2xx), or reached an INVITE server
    transaction in the Accepted state."""

    request: SipRequest
    source: Peer


@dataclass(frozen=True, slots=True)
class CancelReceived:
    """A CANCEL matched a live INVITE server transaction that has not sent a final response.

    The layer has already answered the CANCEL with 200; the TU sends 487 on ``txn``.
    """

    txn: ServerTransaction
    cancel: SipRequest


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response for a client transaction (every 1xx, the final response, and for INVITE
    every 2xx that arrives while the transaction is Accepted: retransmissions and forks)."""

    txn: ClientTransaction
    response: SipResponse


@dataclass(frozen=True, slots=True)
class StrayResponse:
    """A response that matched no client transaction (e.g. a 2xx retransmission after the
    INVITE client transaction ended)."""

    response: SipResponse
    source: Peer


@dataclass(frozen=True, slots=True)
class TransactionTimeout:
    """Timer B, F or H fired (or a CANCELled INVITE got no final response in 64*T1)."""

    txn: ClientTransaction | ServerTransaction


TransactionEvent: TypeAlias = (
    RequestReceived
    | AckReceived
    | CancelReceived
    | ResponseReceived
    | StrayResponse
    | TransactionTimeout
)


class TransactionHooks(Protocol):
    """What a transaction needs from its layer (implemented inside ``layer.py``)."""

    @property
    def settings(self) -> TimerSettings: ...

    def transmit(self, data: bytes, dest: Peer) -> None: ...

    def emit(self, event: TransactionEvent) -> None: ...

    def arm(self, txn: Transaction, timer: str, at: float) -> None: ...

    def disarm(self, txn: Transaction, timer: str) -> None: ...

    def terminated(self, txn: Transaction) -> None: ...

    def completed(self, txn: Transaction) -> None: ...


class Transaction:
    """Shared state of the four transaction kinds.

    ``request`` is the request that created the transaction; ``peer`` the transport
    address at the other end (destination of a client transaction, where responses of a
    server transaction go). ``key`` is the matching key the layer filed it under.
    ``status`` and ``to_tag`` are those of the last response sent or received.

    A server transaction that has sent a final response it will only retransmit (any
    final answer to a non-INVITE, a 300-699 to an INVITE) lets go of the parsed request and
    response (``release()``): it keeps its key, state, status, To tag and the response's
    bytes, which is all that absorbing retransmissions takes. ``request`` then raises.
    """

    TRANSITIONS: ClassVar[dict[TxnState, frozenset[TxnState]]] = {}
    INITIAL: ClassVar[TxnState] = TxnState.TRYING
    is_invite: ClassVar[bool] = False

    def __init__(
        self, request: SipRequest, peer: Peer, hooks: TransactionHooks, key: Hashable
    ) -> None:
        self._request: SipRequest | None = request
        self.peer = peer
        self.key = key
        self.method = request.method
        self.branch = request.top_via.branch or ""
        self.call_id = request.call_id
        self.state = self.INITIAL
        self.last_response: SipResponse | None = None
        self.status: int | None = None
        self.to_tag: str | None = None
        self._hooks = hooks
        self._settings = hooks.settings
        self._armed: set[str] = set()

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.method} {self.branch} {self.state} "
            f"call {self.call_id}>"
        )

    @property
    def request(self) -> SipRequest:
        """The request that created the transaction (gone once ``release()`` ran)."""
        if self._request is None:
            raise LocalProtocolError(f"{self!r}: finished, its request is released")
        return self._request

    def release(self) -> None:
        """Let go of the parsed request and response (the transaction only retransmits)."""
        self._request = None
        self.last_response = None

    @property
    def terminated(self) -> bool:
        return self.state is TxnState.TERMINATED

    def on_timer(self, timer: str, now: float) -> None:
        """A timer armed by this transaction is due (called by the layer)."""
        raise NotImplementedError

    # --- helpers for the state machines ----------------------------------------------

    def _record(self, response: SipResponse) -> None:
        self.last_response = response
        self.status = response.status
        self.to_tag = response.to_tag

    def _set_state(self, new: TxnState) -> None:
        old = self.state
        if new is old:
            return
        if new not in self.TRANSITIONS.get(old, frozenset()):
            raise LocalProtocolError(f"{type(self).__name__}: no transition {old} -> {new}")
        self.state = new
        log.debug("call %s: %s %s %s: %s -> %s", self.call_id, type(self).__name__,
                  self.method, self.branch, old, new)
        if new is TxnState.TERMINATED:
            for timer in self._armed:
                self._hooks.disarm(self, timer)
            self._armed.clear()
            self._hooks.terminated(self)

    def _arm(self, timer: str, at: float) -> None:
        self._armed.add(timer)
        self._hooks.arm(self, timer, at)

    def _disarm(self, *timers: str) -> None:
        for timer in timers:
            if timer in self._armed:
                self._armed.discard(timer)
                self._hooks.disarm(self, timer)

    def _fired(self, timer: str) -> None:
        self._armed.discard(timer)

    def _terminate(self) -> None:
        self._set_state(TxnState.TERMINATED)

    def forget(self) -> None:
        """End now, without its remaining timers (the layer drops it early under a flood)."""
        if not self.terminated:
            self._terminate()
