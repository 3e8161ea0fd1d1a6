"""Finished transactions hold nothing heavy, and their number is capped (issue 13: an
OPTIONS flood of 5,000/s held 150,000 finished transactions, 1 GB). Over the loop transport,
with a fake clock; no sockets."""

from __future__ import annotations

import pytest
from test_useragent_harness import (
    RAW,
    A,
    App,
    B,
    RawPeer,
    answering,
    network,
    offer_sdp,
    raw_request,
)

from gateway.sip.errors import LocalProtocolError
from gateway.sip.events import CallEnded, IncomingCall
from gateway.sip.layer import RequestReceived, TransactionLayer, TxnState
from gateway.sip.loop import FakeClock, LoopNetwork, build_request
from gateway.sip.message import make_response
from gateway.sip.peer import Peer

FLOODER = Peer("udp", "10.0.0.66", 5060)


def options(n: int, sender: Peer = FLOODER) -> bytes:
    return build_request("OPTIONS", sender, f"sip:{n}@{B.host}", branch=f"z9hG4bK-flood-{n}",
                         call_id=f"flood-{n}").serialize()


def test_an_options_flood_keeps_at_most_max_finished_transactions() -> None:
    clock = FakeClock()
    net = LoopNetwork(clock, keep_log=False)
    gateway = App(net, B, max_finished_transactions=100)
    for n in range(2000):  # 2,000 OPTIONS in 2 s: timer J would keep them all for 32 s
        net.send(options(n), FLOODER, B)
        net.run_for(0.001)
    stats = gateway.ua.transaction_stats()
    assert len(gateway.ua._layer) <= 101
    assert gateway.ua.stats()["transactions"] <= 101
    assert stats["transactions_finished"] == 100
    assert stats["transactions_forgotten"] == 1900
    net.run_for(40.0)
    assert gateway.ua.stats()["transactions"] == 0
    assert gateway.ua.transaction_stats()["transactions_finished"] == 0


def test_a_recent_retransmission_is_still_absorbed_under_the_cap() -> None:
    clock = FakeClock()
    net = LoopNetwork(clock)
    App(net, B, max_finished_transactions=10)
    for n in range(30):
        net.send(options(n), FLOODER, B)
    net.run_for(0.1)
    answers = net.sent(source=B, startswith=b"SIP/2.0 200")
    assert len(answers) == 30
    net.send(options(29), FLOODER, B)  # the newest: the same bytes again, no new transaction
    net.run_for(0.1)
    again = net.sent(source=B, startswith=b"SIP/2.0 200")
    assert len(again) == 31 and again[-1].data == answers[-1].data


def test_a_completed_non_invite_releases_its_parsed_request_and_response() -> None:
    layer = TransactionLayer()
    layer.receive(build_request("OPTIONS", A), A, 0.0)
    event = layer.next_event()
    assert isinstance(event, RequestReceived)
    txn = event.txn
    layer.send_response(txn, make_response(event.request, 200, to_tag="t1"), 0.0)
    assert txn.state is TxnState.COMPLETED
    assert txn.last_response is None and (txn.status, txn.to_tag) == (200, "t1")
    with pytest.raises(LocalProtocolError):
        _ = txn.request
    layer.datagrams_to_send()
    layer.receive(build_request("OPTIONS", A), A, 1.0)  # a retransmission: the same bytes
    [(data, _)] = layer.datagrams_to_send()
    assert data.startswith(b"SIP/2.0 200") and b"tag=t1" in data


def test_an_invite_rejected_releases_its_request_and_still_matches_the_ack() -> None:
    layer = TransactionLayer(trying_delay=0)
    invite = build_request("INVITE", A, branch="z9hG4bK-inv")
    layer.receive(invite, A, 0.0)
    event = layer.next_event()
    assert isinstance(event, RequestReceived)
    txn = event.txn
    layer.send_response(txn, make_response(invite, 486, to_tag="busy"), 0.0)
    assert txn.last_response is None and txn.status == 486
    layer.receive(build_request("ACK", A, branch="z9hG4bK-inv", to_tag="busy"), A, 0.1)
    assert txn.state is TxnState.CONFIRMED
    assert layer.next_event() is None  # absorbed, not handed to the TU


def test_the_cap_leaves_invite_transactions_alone() -> None:
    clock = FakeClock()
    net = LoopNetwork(clock, keep_log=False)
    gateway = App(net, B, policy=lambda app, event: None, max_finished_transactions=5)
    caller = Peer("udp", "10.0.0.77", 5060)
    for n in range(20):
        invite = build_request("INVITE", caller, f"sip:{n}@{B.host}", branch=f"z9hG4bK-i{n}",
                               call_id=f"inv-{n}")
        net.send(invite.serialize(), caller, B)
    for n in range(50):
        net.send(options(n), FLOODER, B)
    net.run_for(0.5)
    assert gateway.ua.stats()["transactions"] == 20 + 5


def test_an_unacked_call_can_be_ended_at_once_to_free_its_port() -> None:
    clock, net = network()
    gateway = App(net, B, policy=answering)
    raw = RawPeer(net)
    raw.send(raw_request("INVITE", "unacked", body=offer_sdp(RAW.host)))
    net.run_for(0.1)
    assert raw.responses("INVITE", 200) and gateway.ua.calls() == 1
    assert gateway.ua.drop_unacknowledged("unacked", now=clock.now)
    net.run_for(0.1)
    assert raw.requests("BYE")  # the dialog is ended with a BYE, not left for 32 s
    ended = gateway.of(CallEnded)
    assert [(e.call_id, e.reason) for e in ended] == [("unacked", "no ACK")]
    assert not gateway.ua.drop_unacknowledged("unacked", now=clock.now)  # over: no-op


def test_an_acked_call_is_not_dropped_as_unacked() -> None:
    clock, net = network()
    gateway = App(net, B, policy=answering)
    raw = RawPeer(net)
    raw.send(raw_request("INVITE", "acked", body=offer_sdp(RAW.host)))
    net.run_for(0.1)
    [ok] = raw.responses("INVITE", 200)
    raw.send(raw_request("ACK", "acked", to_tag=ok.to_tag, branch="z9hG4bK-ack-acked"))
    net.run_for(0.1)
    assert not gateway.ua.drop_unacknowledged("acked", now=clock.now)
    assert gateway.ua.calls() == 1 and not raw.requests("BYE")


def test_reject_carries_extra_headers() -> None:
    _clock, net = network()
    gateway = App(net, B, policy=lambda app, event: app.ua.reject(
        event.call_id, 503, headers=[("Retry-After", "10")])
        if isinstance(event, IncomingCall) else None)
    raw = RawPeer(net)
    raw.send(raw_request("INVITE", "refused", body=offer_sdp(RAW.host)))
    net.run_for(0.1)
    [refusal] = raw.responses("INVITE", 503)
    assert refusal.headers.get("Retry-After") == "10"
    assert gateway.ua.calls() == 0


def test_an_accepted_invite_keeps_nothing_parsed_and_still_absorbs_and_retransmits() -> None:
    layer = TransactionLayer(trying_delay=0)
    invite = build_request("INVITE", A, branch="z9hG4bK-ok")
    layer.receive(invite, A, 0.0)
    event = layer.next_event()
    assert isinstance(event, RequestReceived)
    txn = event.txn
    ok = make_response(invite, 200, to_tag="ok1")
    layer.send_response(txn, ok, 0.0)
    assert txn.state is TxnState.ACCEPTED
    assert txn.last_response is None and (txn.status, txn.to_tag) == (200, "ok1")
    layer.datagrams_to_send()
    layer.receive(build_request("INVITE", A, branch="z9hG4bK-ok"), A, 0.2)  # absorbed
    assert layer.datagrams_to_send() == [] and layer.next_event() is None
    layer.send_response(txn, ok, 0.5)  # the TU retransmitting its 2xx
    [(data, _)] = layer.datagrams_to_send()
    assert data.startswith(b"SIP/2.0 200") and txn.last_response is None
