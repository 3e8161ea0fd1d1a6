"""The transaction layer: matching (17.1.3, 17.2.3 and RFC 2543), CANCEL, rport/received,
stray responses, timers for thousands of transactions."""

from __future__ import annotations

from gateway.sip.layer import (
    AckReceived,
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    ServerTransaction,
    StrayResponse,
    TransactionEvent,
    TransactionLayer,
    TxnState,
)
from gateway.sip.loop import build_request
from gateway.sip.message import SipRequest, SipResponse, make_response
from gateway.sip.parser import parse_message
from gateway.sip.peer import Peer

PHONE = Peer("udp", "10.0.0.2", 5060)


def drain(layer: TransactionLayer) -> list[TransactionEvent]:
    out: list[TransactionEvent] = []
    while (event := layer.next_event()) is not None:
        out.append(event)
    return out


def sent(layer: TransactionLayer) -> list[tuple[SipResponse | SipRequest, Peer]]:
    return [(parse_message(data), dest) for data, dest in layer.datagrams_to_send()]


def open_txn(
    layer: TransactionLayer, request: SipRequest, source: Peer = PHONE
) -> ServerTransaction:
    layer.receive(request, source, 0.0)
    [event] = drain(layer)
    assert isinstance(event, RequestReceived)
    return event.txn


def test_branch_sent_by_and_method_make_the_server_key() -> None:
    layer = TransactionLayer()
    open_txn(layer, build_request("INVITE", PHONE, branch="z9hG4bK-a"))
    # same branch from another sent-by: another transaction
    other = Peer("udp", "10.0.0.3", 5060)
    open_txn(layer, build_request("INVITE", other, branch="z9hG4bK-a"), source=other)
    # same branch and sent-by, another method: another transaction
    open_txn(layer, build_request("OPTIONS", PHONE, branch="z9hG4bK-a"))
    assert len(layer) == 3
    # a copy of the first INVITE is a retransmission
    layer.receive(build_request("INVITE", PHONE, branch="z9hG4bK-a"), PHONE, 0.1)
    assert drain(layer) == [] and len(layer) == 3


def test_ack_matching_no_transaction_is_handed_to_the_tu() -> None:
    layer = TransactionLayer()
    ack = build_request("ACK", PHONE, branch="z9hG4bK-new", to_tag="t")
    layer.receive(ack, PHONE, 0.0)
    assert drain(layer) == [AckReceived(ack, PHONE)]
    assert len(layer) == 0


def test_cancel_gets_200_and_cancel_received_then_tu_sends_487() -> None:
    layer = TransactionLayer()
    invite = build_request("INVITE", PHONE)
    txn = open_txn(layer, invite)
    layer.send_response(txn, make_response(invite, 180, to_tag="uas"), 0.0)
    layer.datagrams_to_send()
    cancel = build_request("CANCEL", PHONE, branch=invite.top_via.branch)
    layer.receive(cancel, PHONE, 1.0)
    assert drain(layer) == [CancelReceived(txn, cancel)]
    [(ok, dest)] = sent(layer)
    assert isinstance(ok, SipResponse)
    assert (ok.status, ok.cseq.method, ok.to_tag, dest) == (200, "CANCEL", "uas", PHONE)
    # a retransmitted CANCEL gets the same 200, no second event
    layer.receive(build_request("CANCEL", PHONE, branch=invite.top_via.branch), PHONE, 1.2)
    assert [m.status for m, _ in sent(layer)] == [200]  # type: ignore[union-attr]
    assert drain(layer) == []
    layer.send_response(txn, make_response(invite, 487, to_tag="uas"), 1.3)
    [(terminated, _)] = sent(layer)
    assert isinstance(terminated, SipResponse) and terminated.status == 487
    layer.receive(build_request("ACK", PHONE, to_tag="uas"), PHONE, 1.4)
    assert txn.state is TxnState.CONFIRMED
    assert drain(layer) == []


def test_cancel_after_final_response_gets_200_without_event() -> None:
    layer = TransactionLayer()
    invite = build_request("INVITE", PHONE)
    txn = open_txn(layer, invite)
    layer.send_response(txn, make_response(invite, 200, to_tag="uas"), 0.0)
    layer.datagrams_to_send()
    layer.receive(build_request("CANCEL", PHONE), PHONE, 0.5)
    assert [m.status for m, _ in sent(layer)] == [200]  # type: ignore[union-attr]
    assert drain(layer) == []


def test_cancel_matching_nothing_gets_481() -> None:
    layer = TransactionLayer()
    layer.receive(build_request("CANCEL", PHONE, branch="z9hG4bK-nothing"), PHONE, 0.0)
    [(response, dest)] = sent(layer)
    assert isinstance(response, SipResponse)
    assert (response.status, dest) == (481, PHONE)
    assert response.to_tag
    assert drain(layer) == []
    layer.handle_timer(40.0)
    assert len(layer) == 0


def test_rfc2543_matching_without_magic_cookie() -> None:
    layer = TransactionLayer()
    old = Peer("udp", "10.0.0.7", 5060)

    def req(method: str, **kw: object) -> SipRequest:
        return build_request(method, old, branch=None, call_id="old-1", **kw)  # type: ignore[arg-type]

    invite = req("INVITE")
    txn = open_txn(layer, invite, source=old)
    layer.receive(req("INVITE"), old, 0.1)  # retransmission: absorbed
    assert drain(layer) == []
    open_txn(layer, req("INVITE", cseq=2), source=old)  # another CSeq: a new transaction
    open_txn(layer, req("INVITE", from_tag="other"), source=old)  # another From tag
    assert len(layer) == 3
    # CANCEL matches the first INVITE (To tag, From tag, Call-ID, CSeq number, top Via)
    cancel = req("CANCEL")
    layer.receive(cancel, old, 0.2)
    assert drain(layer) == [CancelReceived(txn, cancel)]
    layer.datagrams_to_send()
    layer.send_response(txn, make_response(invite, 487, to_tag="ours"), 0.3)
    layer.datagrams_to_send()
    # ACK with our To tag matches the INVITE transaction; with another tag it does not
    stranger = req("ACK", to_tag="someone-else")
    layer.receive(stranger, old, 0.4)
    assert drain(layer) == [AckReceived(stranger, old)]
    layer.receive(req("ACK", to_tag="ours"), old, 0.5)
    assert drain(layer) == []
    assert txn.state is TxnState.CONFIRMED


def test_rport_and_received_are_stamped_and_responses_follow_them() -> None:
    layer = TransactionLayer()
    behind_nat = Peer("udp", "203.0.113.5", 40123)
    invite = build_request("INVITE", Peer("udp", "192.168.1.20", 5060), rport=True)
    txn = open_txn(layer, invite, source=behind_nat)
    via = txn.request.top_via
    assert (via.received, via.rport) == ("203.0.113.5", 40123)
    assert txn.peer == behind_nat
    layer.send_response(txn, make_response(txn.request, 180, to_tag="t"), 0.0)
    [(ringing, dest)] = sent(layer)
    assert dest == behind_nat
    assert "received=203.0.113.5" in str(ringing.top_via)
    assert ringing.top_via.rport == 40123


def test_received_without_rport_uses_the_via_port() -> None:
    layer = TransactionLayer()
    request = build_request("OPTIONS", Peer("udp", "phone.example.com", 5070))
    txn = open_txn(layer, request, source=Peer("udp", "198.51.100.9", 6000))
    assert txn.request.top_via.received == "198.51.100.9"
    assert txn.request.top_via.rport is None
    assert txn.peer == Peer("udp", "198.51.100.9", 5070)


def test_no_received_when_source_matches_sent_by() -> None:
    layer = TransactionLayer()
    txn = open_txn(layer, build_request("OPTIONS", PHONE))
    assert "received" not in txn.request.top_via.params
    assert txn.peer == PHONE


def test_response_destination_rules() -> None:
    layer = TransactionLayer()
    tcp_source = Peer("tcp", "10.0.0.2", 50999)
    request = build_request("OPTIONS", Peer("tcp", "10.0.0.2", 5060))
    assert layer.response_destination(request, tcp_source) == tcp_source
    maddr = build_request("OPTIONS", PHONE, extra={})
    maddr.headers.set("Via", "SIP/2.0/UDP 10.0.0.2:5062;branch=z9hG4bK-m;maddr=10.9.9.9")
    assert layer.response_destination(maddr, PHONE) == Peer("udp", "10.9.9.9", 5062)
    plain = build_request("OPTIONS", Peer("udp", "10.0.0.2", 5070))
    assert layer.response_destination(plain, PHONE) == Peer("udp", "10.0.0.2", 5070)
    rport = build_request("OPTIONS", Peer("udp", "10.0.0.2", 5070), rport=True)
    assert layer.response_destination(rport, Peer("udp", "10.0.0.8", 7777)) == Peer(
        "udp", "10.0.0.8", 7777
    )


def test_responses_match_by_branch_and_cseq_method_else_stray() -> None:
    layer = TransactionLayer()
    me = Peer("udp", "10.0.0.1", 5060)
    invite = build_request("INVITE", me, branch="z9hG4bK-x")
    txn = layer.send_request(invite, PHONE, 0.0)
    cancel_txn = layer.send_request(build_request("CANCEL", me, branch="z9hG4bK-x"), PHONE, 1.0)
    cancel_ok = make_response(cancel_txn.request, 200, to_tag="t")
    layer.receive(cancel_ok, PHONE, 1.1)
    terminated = make_response(invite, 487, to_tag="t")
    layer.receive(terminated, PHONE, 1.2)
    assert drain(layer) == [
        ResponseReceived(cancel_txn, cancel_ok), ResponseReceived(txn, terminated),
    ]
    stray = make_response(build_request("INVITE", me, branch="z9hG4bK-unknown"), 200, to_tag="u")
    layer.receive(stray, PHONE, 1.3)
    assert drain(layer) == [StrayResponse(stray, PHONE)]


def test_request_without_essentials_is_dropped_not_raised() -> None:
    layer = TransactionLayer()
    request = build_request("OPTIONS", PHONE)
    request.headers.set("CSeq", "not a cseq")
    layer.receive(request, PHONE, 0.0)  # answered with 400 when possible, never raises
    assert drain(layer) == [] and len(layer) == 0
    response = make_response(build_request("OPTIONS", PHONE), 200, to_tag="t")
    response.headers.remove("Via")
    layer.receive(response, PHONE, 0.0)
    assert drain(layer) == []


def test_thousands_of_transactions_leave_nothing_behind() -> None:
    layer = TransactionLayer()
    me = Peer("udp", "10.0.0.1", 5060)
    count = 3000
    for i in range(count):
        now = i * 0.002  # 500 per second
        invite = build_request("INVITE", PHONE, branch=f"z9hG4bK-in-{i}", call_id=f"in-{i}")
        layer.receive(invite, PHONE, now)
        event = layer.next_event()
        assert isinstance(event, RequestReceived)
        layer.send_response(event.txn, make_response(invite, 486, to_tag="t"), now)
        layer.receive(build_request("ACK", PHONE, branch=f"z9hG4bK-in-{i}", call_id=f"in-{i}",
                                    to_tag="t"), PHONE, now + 0.001)
        out = build_request("OPTIONS", me, branch=f"z9hG4bK-out-{i}", call_id=f"out-{i}")
        layer.send_request(out, PHONE, now)
        layer.receive(make_response(out, 200, to_tag="t"), PHONE, now + 0.001)
        layer.handle_timer(now + 0.001)
        assert [type(e) for e in drain(layer)] == [ResponseReceived]
    layer.datagrams_to_send()
    # only the transactions of the last T4 = 5 s (timers I and K) are still live
    assert 2 * 2500 - 10 <= len(layer) <= 2 * 2500 + 10
    assert layer.get_timer() is not None
    layer.handle_timer(count * 0.002 + 10.0)  # past every timer I and K
    assert len(layer) == 0
    assert layer.get_timer() is None
    assert drain(layer) == []
