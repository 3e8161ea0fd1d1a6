"""Client transactions (RFC 3261 17.1, RFC 6026) driven through the layer with a hand clock."""

from __future__ import annotations

import pytest

from gateway.sip.errors import LocalProtocolError
from gateway.sip.layer import (
    ResponseReceived,
    StrayResponse,
    TransactionLayer,
    TransactionTimeout,
    TxnState,
)
from gateway.sip.loop import build_request
from gateway.sip.message import SipRequest, SipResponse, make_response
from gateway.sip.parser import parse_message
from gateway.sip.peer import Peer
from gateway.sip.timers import TimerSettings

ME = Peer("udp", "10.0.0.1", 5060)
THEM = Peer("udp", "10.0.0.2", 5060)
ME_TCP = Peer("tcp", "10.0.0.1", 5060)
THEM_TCP = Peer("tcp", "10.0.0.2", 5060)


def run_to(layer: TransactionLayer, until: float) -> list[float]:
    """Fire timers up to ``until``; the times at which something was sent."""
    sent: list[float] = []
    for _ in range(10_000):
        at = layer.get_timer()
        if at is None or at > until:
            break
        layer.handle_timer(at)
        sent += [at] * len(layer.datagrams_to_send())
    return sent


def events(layer: TransactionLayer) -> list[object]:
    out: list[object] = []
    while (event := layer.next_event()) is not None:
        out.append(event)
    return out


def respond(request: SipRequest, status: int, tag: str | None = "uas-1") -> SipResponse:
    wire = make_response(request, status, to_tag=tag if status > 100 else None).serialize()
    response = parse_message(wire)
    assert isinstance(response, SipResponse)
    return response


def test_invite_retransmits_on_timer_a_and_times_out_on_timer_b() -> None:
    layer = TransactionLayer()
    invite = build_request("INVITE", ME)
    txn = layer.send_request(invite, THEM, 0.0)
    first = layer.datagrams_to_send()
    assert first == [(invite.serialize(), THEM)]
    assert txn.state is TxnState.CALLING
    sent = run_to(layer, 31.9)
    assert sent == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]  # A doubles without a T2 cap
    assert events(layer) == []
    layer.handle_timer(32.0)  # timer B = 64*T1
    assert events(layer) == [TransactionTimeout(txn)]
    assert txn.state is TxnState.TERMINATED
    assert len(layer) == 0
    assert layer.get_timer() is None


def test_invite_provisional_stops_retransmission_and_timer_b() -> None:
    layer = TransactionLayer()
    invite = build_request("INVITE", ME)
    txn = layer.send_request(invite, THEM, 0.0)
    layer.datagrams_to_send()
    ringing = respond(invite, 180)
    layer.receive(ringing, THEM, 0.2)
    assert events(layer) == [ResponseReceived(txn, ringing)]
    assert txn.state is TxnState.PROCEEDING
    assert run_to(layer, 100.0) == []
    assert events(layer) == []
    assert len(layer) == 1


def test_invite_non_2xx_is_acked_by_the_transaction_and_retransmissions_reacked() -> None:
    layer = TransactionLayer()
    invite = build_request("INVITE", ME, extra={"Route": "<sip:proxy.example;lr>"})
    txn = layer.send_request(invite, THEM, 0.0)
    layer.datagrams_to_send()
    busy = respond(invite, 486, tag="busy-tag")
    layer.receive(busy, THEM, 0.1)
    assert events(layer) == [ResponseReceived(txn, busy)]
    assert txn.state is TxnState.COMPLETED
    [(data, dest)] = layer.datagrams_to_send()
    assert dest == THEM
    ack = parse_message(data)
    assert isinstance(ack, SipRequest)
    assert ack.method == "ACK"
    assert str(ack.uri) == str(invite.uri)
    assert ack.top_via.branch == invite.top_via.branch
    assert len(ack.vias) == 1
    assert ack.to_tag == "busy-tag"
    assert ack.from_tag == invite.from_tag
    assert ack.call_id == invite.call_id
    assert (ack.cseq.number, ack.cseq.method) == (invite.cseq.number, "ACK")
    assert ack.headers.get_all("Route") == ["<sip:proxy.example;lr>"]
    # a retransmitted 486: the ACK again, nothing for the TU
    layer.receive(busy, THEM, 1.0)
    assert layer.datagrams_to_send() == [(data, THEM)]
    assert events(layer) == []
    # timer D (32 s over UDP) ends it
    run_to(layer, 32.0)
    assert len(layer) == 1
    run_to(layer, 32.2)
    assert len(layer) == 0
    assert txn.state is TxnState.TERMINATED


def test_invite_2xx_accepted_state_passes_retransmissions_then_stray() -> None:
    layer = TransactionLayer()
    invite = build_request("INVITE", ME)
    txn = layer.send_request(invite, THEM, 0.0)
    layer.datagrams_to_send()
    ok = respond(invite, 200)
    layer.receive(ok, THEM, 0.1)
    assert txn.state is TxnState.ACCEPTED
    assert layer.datagrams_to_send() == []  # the ACK for 2xx is the TU's
    layer.receive(ok, THEM, 0.6)
    forked = respond(invite, 200, tag="fork-2")
    layer.receive(forked, THEM, 0.7)
    assert events(layer) == [
        ResponseReceived(txn, ok), ResponseReceived(txn, ok), ResponseReceived(txn, forked),
    ]
    layer.receive(respond(invite, 486), THEM, 0.8)  # a non-2xx in Accepted is dropped
    assert events(layer) == []
    run_to(layer, 0.1 + 32.0)  # timer M
    assert len(layer) == 0
    layer.receive(ok, THEM, 40.0)
    assert events(layer) == [StrayResponse(ok, THEM)]


def test_invite_over_tcp_never_retransmits_and_ends_at_once_after_non_2xx() -> None:
    layer = TransactionLayer()
    invite = build_request("INVITE", ME_TCP)
    txn = layer.send_request(invite, THEM_TCP, 0.0)
    assert len(layer.datagrams_to_send()) == 1
    assert run_to(layer, 31.0) == []
    layer.receive(respond(invite, 404), THEM_TCP, 1.0)
    assert len(layer.datagrams_to_send()) == 1  # the ACK
    assert txn.state is TxnState.TERMINATED  # timer D = 0
    assert len(layer) == 0


def test_invite_over_tcp_still_times_out() -> None:
    layer = TransactionLayer()
    txn = layer.send_request(build_request("INVITE", ME_TCP), THEM_TCP, 0.0)
    layer.datagrams_to_send()
    assert run_to(layer, 40.0) == []
    assert events(layer) == [TransactionTimeout(txn)]


def test_cancelled_invite_without_final_response_ends_after_64_t1() -> None:
    layer = TransactionLayer()
    invite = build_request("INVITE", ME)
    txn = layer.send_request(invite, THEM, 0.0)
    layer.receive(respond(invite, 180), THEM, 0.1)
    events(layer)
    cancel = build_request("CANCEL", ME, branch=invite.top_via.branch)
    cancel_txn = layer.send_request(cancel, THEM, 5.0)
    cancel_ok = respond(cancel, 200)
    layer.receive(cancel_ok, THEM, 5.1)
    assert events(layer) == [ResponseReceived(cancel_txn, cancel_ok)]
    run_to(layer, 36.9)
    assert txn.state is TxnState.PROCEEDING
    run_to(layer, 37.0)
    assert events(layer) == [TransactionTimeout(txn)]
    run_to(layer, 100.0)
    assert len(layer) == 0


def test_non_invite_timer_e_caps_at_t2_and_f_times_out() -> None:
    layer = TransactionLayer()
    txn = layer.send_request(build_request("OPTIONS", ME), THEM, 0.0)
    layer.datagrams_to_send()
    assert txn.state is TxnState.TRYING
    sent = run_to(layer, 31.99)
    assert sent == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    run_to(layer, 32.0)
    assert events(layer) == [TransactionTimeout(txn)]
    assert len(layer) == 0


def test_non_invite_proceeding_retransmits_every_t2_then_completes_with_timer_k() -> None:
    layer = TransactionLayer()
    bye = build_request("BYE", ME, to_tag="uas-1")
    txn = layer.send_request(bye, THEM, 0.0)
    layer.datagrams_to_send()
    layer.receive(respond(bye, 100), THEM, 0.2)
    assert txn.state is TxnState.PROCEEDING
    assert run_to(layer, 9.0) == [0.5, 4.5, 8.5]
    ok = respond(bye, 200)
    layer.receive(ok, THEM, 9.0)
    assert txn.state is TxnState.COMPLETED
    layer.receive(ok, THEM, 9.5)  # absorbed
    assert [type(e) for e in events(layer)] == [ResponseReceived, ResponseReceived]
    assert run_to(layer, 13.9) == []
    assert len(layer) == 1
    run_to(layer, 14.0)  # timer K = T4
    assert len(layer) == 0


def test_non_invite_over_tcp_ends_on_final_response() -> None:
    layer = TransactionLayer()
    options = build_request("OPTIONS", ME_TCP)
    txn = layer.send_request(options, THEM_TCP, 0.0)
    layer.receive(respond(options, 200), THEM_TCP, 0.1)
    assert txn.state is TxnState.TERMINATED
    assert len(layer) == 0


def test_custom_t1_scales_timers() -> None:
    layer = TransactionLayer(TimerSettings(t1=0.1, t2=0.4))
    layer.send_request(build_request("MESSAGE", ME), THEM, 0.0)
    layer.datagrams_to_send()
    assert run_to(layer, 2.0) == pytest.approx([0.1, 0.3, 0.7, 1.1, 1.5, 1.9])
    run_to(layer, 6.4)
    assert len(layer) == 0


def test_send_request_misuse_is_a_local_error() -> None:
    layer = TransactionLayer()
    with pytest.raises(LocalProtocolError):
        layer.send_request(build_request("ACK", ME), THEM, 0.0)
    options = build_request("OPTIONS", ME)
    layer.send_request(options, THEM, 0.0)
    with pytest.raises(LocalProtocolError):
        layer.send_request(build_request("OPTIONS", ME), THEM, 0.0)  # same branch, live


def test_missing_branch_is_generated() -> None:
    layer = TransactionLayer()
    options = build_request("OPTIONS", ME, branch=None)
    txn = layer.send_request(options, THEM, 0.0)
    [(data, _)] = layer.datagrams_to_send()
    sent = parse_message(data)
    assert isinstance(sent, SipRequest)
    assert txn.branch.startswith("z9hG4bK")
    assert sent.top_via.branch == txn.branch
    layer.receive(respond(sent, 200), THEM, 0.1)
    assert isinstance(layer.next_event(), ResponseReceived)
