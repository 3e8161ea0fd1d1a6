"""Server transactions (RFC 3261 17.2, RFC 6026) driven through the layer with a hand clock."""

from __future__ import annotations

import pytest

from gateway.sip.errors import LocalProtocolError
from gateway.sip.layer import (
    AckReceived,
    RequestReceived,
    ServerTransaction,
    TransactionLayer,
    TransactionTimeout,
    TxnState,
)
from gateway.sip.loop import build_request
from gateway.sip.message import SipRequest, SipResponse, make_response
from gateway.sip.parser import parse_message
from gateway.sip.peer import Peer

PHONE = Peer("udp", "10.0.0.2", 5060)
PHONE_TCP = Peer("tcp", "10.0.0.2", 41000)


def run_to(layer: TransactionLayer, until: float) -> list[tuple[float, bytes]]:
    """Fire timers up to ``until``; (time, data) of what was sent."""
    sent: list[tuple[float, bytes]] = []
    for _ in range(10_000):
        at = layer.get_timer()
        if at is None or at > until:
            break
        layer.handle_timer(at)
        sent += [(at, data) for data, _ in layer.datagrams_to_send()]
    return sent


def statuses(datagrams: list[tuple[bytes, Peer]]) -> list[int]:
    out = []
    for data, _ in datagrams:
        message = parse_message(data)
        assert isinstance(message, SipResponse)
        out.append(message.status)
    return out


def open_txn(layer: TransactionLayer, request: SipRequest, source: Peer = PHONE,
             now: float = 0.0) -> ServerTransaction:
    layer.receive(request, source, now)
    event = layer.next_event()
    assert isinstance(event, RequestReceived)
    assert event.request is request and event.source == source
    assert layer.next_event() is None
    return event.txn


def ack_for(invite: SipRequest, to_tag: str, branch: str | None = None) -> SipRequest:
    return build_request("ACK", PHONE, branch=branch or invite.top_via.branch, to_tag=to_tag)


def test_invite_gets_100_trying_after_200ms_when_tu_is_silent() -> None:
    layer = TransactionLayer()
    txn = open_txn(layer, build_request("INVITE", PHONE))
    assert txn.state is TxnState.PROCEEDING
    assert layer.datagrams_to_send() == []
    [(at, data)] = run_to(layer, 1.0)
    assert at == pytest.approx(0.2)
    trying = parse_message(data)
    assert isinstance(trying, SipResponse) and trying.status == 100
    assert trying.to_tag is None


def test_no_100_when_tu_answers_first_and_immediate_100_option() -> None:
    layer = TransactionLayer()
    invite = build_request("INVITE", PHONE)
    txn = open_txn(layer, invite)
    layer.send_response(txn, make_response(invite, 180, to_tag="t"), 0.05)
    assert statuses(layer.datagrams_to_send()) == [180]
    assert run_to(layer, 1.0) == []
    eager = TransactionLayer(trying_delay=0)
    open_txn(eager, build_request("INVITE", PHONE))
    assert statuses(eager.datagrams_to_send()) == [100]


def test_invite_retransmission_resends_last_provisional_and_is_absorbed() -> None:
    layer = TransactionLayer()
    invite = build_request("INVITE", PHONE)
    txn = open_txn(layer, invite)
    layer.receive(build_request("INVITE", PHONE), PHONE, 0.1)  # before any response: 100
    assert statuses(layer.datagrams_to_send()) == [100]
    layer.send_response(txn, make_response(invite, 180, to_tag="t"), 0.3)
    layer.datagrams_to_send()
    layer.receive(build_request("INVITE", PHONE), PHONE, 0.6)
    assert statuses(layer.datagrams_to_send()) == [180]
    assert layer.next_event() is None
    assert len(layer) == 1


def test_invite_non_2xx_retransmitted_on_timer_g_until_timer_h() -> None:
    layer = TransactionLayer()
    invite = build_request("INVITE", PHONE)
    txn = open_txn(layer, invite)
    layer.send_response(txn, make_response(invite, 486, to_tag="t"), 0.0)
    assert statuses(layer.datagrams_to_send()) == [486]
    assert txn.state is TxnState.COMPLETED
    sent = run_to(layer, 31.99)
    assert [at for at, _ in sent] == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    # a retransmitted INVITE gets the final response again
    layer.receive(build_request("INVITE", PHONE), PHONE, 31.9)
    assert statuses(layer.datagrams_to_send()) == [486]
    run_to(layer, 32.0)  # timer H = 64*T1
    assert layer.next_event() == TransactionTimeout(txn)
    assert len(layer) == 0


def test_ack_confirms_absorbs_and_timer_i_ends() -> None:
    layer = TransactionLayer()
    invite = build_request("INVITE", PHONE)
    txn = open_txn(layer, invite)
    layer.send_response(txn, make_response(invite, 603, to_tag="t"), 0.0)
    layer.datagrams_to_send()
    layer.receive(ack_for(invite, "t"), PHONE, 0.7)
    assert txn.state is TxnState.CONFIRMED
    layer.receive(ack_for(invite, "t"), PHONE, 0.8)  # retransmitted ACK
    layer.receive(build_request("INVITE", PHONE), PHONE, 0.9)  # late INVITE copy
    assert layer.next_event() is None
    assert run_to(layer, 5.6) == []  # no more G retransmissions
    assert len(layer) == 1
    run_to(layer, 5.7)  # timer I = T4
    assert len(layer) == 0


def test_invite_2xx_accepted_absorbs_retransmissions_and_hands_acks_up() -> None:
    layer = TransactionLayer()
    invite = build_request("INVITE", PHONE)
    txn = open_txn(layer, invite)
    ok = make_response(invite, 200, to_tag="t")
    layer.send_response(txn, ok, 0.1)
    assert statuses(layer.datagrams_to_send()) == [200]
    assert txn.state is TxnState.ACCEPTED
    layer.receive(build_request("INVITE", PHONE), PHONE, 0.5)
    assert layer.datagrams_to_send() == []  # 2xx retransmission is the TU's job
    layer.send_response(txn, ok, 0.6)  # ... which it does through the transaction
    assert statuses(layer.datagrams_to_send()) == [200]
    ack = ack_for(invite, "t", branch="z9hG4bK-ack-for-2xx")
    layer.receive(ack, PHONE, 0.7)
    assert layer.next_event() == AckReceived(ack, PHONE)
    with pytest.raises(LocalProtocolError):
        layer.send_response(txn, make_response(invite, 500, to_tag="t"), 0.8)
    run_to(layer, 0.1 + 32.0)  # timer L
    assert len(layer) == 0
    layer.send_response(txn, ok, 33.0)  # a late 2xx retransmission still goes out
    assert statuses(layer.datagrams_to_send()) == [200]


def test_ack_for_2xx_reusing_the_invite_branch_still_reaches_the_tu() -> None:
    layer = TransactionLayer()
    invite = build_request("INVITE", PHONE)
    txn = open_txn(layer, invite)
    layer.send_response(txn, make_response(invite, 200, to_tag="t"), 0.1)
    ack = ack_for(invite, "t")  # same branch as the INVITE (RFC 2543 habit)
    layer.receive(ack, PHONE, 0.2)
    assert layer.next_event() == AckReceived(ack, PHONE)
    assert txn.state is TxnState.ACCEPTED


def test_invite_over_tcp_no_timer_g_and_ack_ends_at_once() -> None:
    layer = TransactionLayer()
    invite = build_request("INVITE", PHONE_TCP)
    txn = open_txn(layer, invite, source=PHONE_TCP)
    layer.send_response(txn, make_response(invite, 486, to_tag="t"), 0.0)
    [(_, dest)] = layer.datagrams_to_send()
    assert dest == PHONE_TCP  # back over the same connection
    assert run_to(layer, 31.0) == []
    layer.receive(build_request("ACK", PHONE_TCP, to_tag="t"), PHONE_TCP, 1.0)
    assert txn.state is TxnState.TERMINATED
    assert len(layer) == 0


def test_non_invite_server_absorbs_retransmissions_and_timer_j_ends() -> None:
    layer = TransactionLayer()
    options = build_request("OPTIONS", PHONE)
    txn = open_txn(layer, options)
    assert txn.state is TxnState.TRYING
    layer.receive(build_request("OPTIONS", PHONE), PHONE, 0.5)  # Trying: discarded
    assert layer.datagrams_to_send() == []
    layer.send_response(txn, make_response(options, 100), 0.6)
    layer.datagrams_to_send()
    layer.receive(build_request("OPTIONS", PHONE), PHONE, 1.0)  # Proceeding: the 100 again
    assert statuses(layer.datagrams_to_send()) == [100]
    layer.send_response(txn, make_response(options, 200, to_tag="t"), 1.1)
    layer.receive(build_request("OPTIONS", PHONE), PHONE, 1.5)
    assert statuses(layer.datagrams_to_send()) == [200, 200]
    assert txn.state is TxnState.COMPLETED
    with pytest.raises(LocalProtocolError):
        layer.send_response(txn, make_response(options, 500, to_tag="t"), 1.6)
    assert layer.next_event() is None
    run_to(layer, 33.0)
    assert len(layer) == 1
    run_to(layer, 33.1)  # timer J = 64*T1 after the final response
    assert len(layer) == 0


def test_non_invite_over_tcp_ends_with_the_final_response() -> None:
    layer = TransactionLayer()
    options = build_request("OPTIONS", PHONE_TCP)
    txn = open_txn(layer, options, source=PHONE_TCP)
    layer.send_response(txn, make_response(options, 200, to_tag="t"), 0.0)
    assert txn.state is TxnState.TERMINATED
    assert len(layer) == 0


def test_unanswered_non_invite_is_dropped_after_64_t1() -> None:
    layer = TransactionLayer()
    options = build_request("OPTIONS", PHONE)
    txn = open_txn(layer, options)
    run_to(layer, 32.0)
    assert txn.terminated and len(layer) == 0
    layer.send_response(txn, make_response(options, 200, to_tag="t"), 40.0)  # logged, dropped
    assert layer.datagrams_to_send() == []


def test_response_on_a_foreign_transaction_is_a_local_error() -> None:
    ours, theirs = TransactionLayer(), TransactionLayer()
    options = build_request("OPTIONS", PHONE)
    txn = open_txn(theirs, options)
    with pytest.raises(LocalProtocolError):
        ours.send_response(txn, make_response(options, 200, to_tag="t"), 0.0)
