"""The loop network, and two transaction layers talking over it with loss, delay and
duplication (the RFC 3261 timer values are checked on the fake clock)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gateway.sip.layer import (
    AckReceived,
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    TransactionEvent,
    TransactionTimeout,
    TxnState,
)
from gateway.sip.loop import FakeClock, LayerNode, LoopNetwork, build_request
from gateway.sip.message import SipResponse, make_response
from gateway.sip.peer import Peer

A = Peer("udp", "10.0.0.1", 5060)
B = Peer("udp", "10.0.0.2", 5060)


class Echo:
    """A bare SansIoNode: sends every datagram back to where it came from."""

    def __init__(self) -> None:
        self.received: list[tuple[float, bytes, Peer]] = []
        self.out: list[tuple[bytes, Peer]] = []

    def receive_data(self, data: bytes, source: Peer, now: float) -> None:
        self.received.append((now, data, source))
        if not data.startswith(b"echo:"):
            self.out.append((b"echo:" + data, source))

    def handle_timer(self, now: float) -> None:
        pass

    def get_timer(self) -> float | None:
        return None

    def datagrams_to_send(self) -> list[tuple[bytes, Peer]]:
        out, self.out = self.out, []
        return out


def uas(final: int = 200, ringing: bool = True) -> Callable[[LayerNode, TransactionEvent, float],
                                                          None]:
    """A TU that answers every request at once (INVITE: 180 then ``final``)."""

    def on_event(node: LayerNode, event: TransactionEvent, now: float) -> None:
        if isinstance(event, RequestReceived):
            request = event.request
            if request.method == "INVITE" and ringing:
                node.layer.send_response(event.txn, make_response(request, 180, to_tag="b"), now)
            if request.method != "INVITE" or final:
                node.layer.send_response(event.txn, make_response(request, final, to_tag="b"),
                                         now)
        elif isinstance(event, CancelReceived):
            response = make_response(event.txn.request, 487, to_tag="b")
            node.layer.send_response(event.txn, response, now)

    return on_event


def uac_acks_2xx(node: LayerNode, event: TransactionEvent, now: float) -> None:
    """A TU that sends the ACK for a 2xx (a new branch, outside any transaction)."""
    if (
        isinstance(event, ResponseReceived)
        and event.txn.method == "INVITE"
        and 200 <= event.response.status < 300
    ):
        ack = build_request("ACK", A, branch="z9hG4bK-ack-2xx", to_tag=event.response.to_tag)
        node.layer.send_stateless(ack, event.txn.peer)


def pair(**network: float) -> tuple[FakeClock, LoopNetwork, LayerNode, LayerNode]:
    clock = FakeClock()
    net = LoopNetwork(clock, seed=int(network.pop("seed", 1)), **network)
    a, b = LayerNode(on_event=uac_acks_2xx), LayerNode(on_event=uas())
    net.add(A, a)
    net.add(B, b)
    return clock, net, a, b


# --- the network itself --------------------------------------------------------------------


def test_fake_clock() -> None:
    clock = FakeClock(10.0)
    assert clock.advance(2.5) == 12.5
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_delivery_delay_and_source_address() -> None:
    clock = FakeClock()
    net = LoopNetwork(clock, delay=0.05)
    echo = Echo()
    net.add(B, echo)
    net.send(b"ping", A, B)
    assert net.run_until(lambda: bool(echo.received), max_time=1.0)
    assert echo.received == [(0.05, b"ping", A)]
    assert net.sent(source=B)[0].data == b"echo:ping"


def test_loss_duplicates_and_unreachable_are_logged() -> None:
    clock = FakeClock()
    net = LoopNetwork(clock, seed=7, loss=0.5, duplicate=0.5)
    echo = Echo()
    net.add(B, echo)
    for i in range(200):
        net.send(b"x%d" % i, A, B)
    net.send(b"nowhere", A, Peer("udp", "10.9.9.9", 5060))
    net.run_for(1.0)
    fates = [t.fate for t in net.sent(source=A)]
    assert fates.count("unreachable") == 1
    lost, dup = fates.count("lost"), fates.count("duplicated")
    assert 70 < lost < 130 and 30 < dup < 80
    assert len(echo.received) == 200 - lost + dup


def test_streams_are_never_lost_and_keep_their_order() -> None:
    clock = FakeClock()
    net = LoopNetwork(clock, loss=1.0, duplicate=1.0, delay=0.01, jitter=0.5)
    echo = Echo()
    net.add(B, echo)
    tcp_b = Peer("tcp", B.host, B.port)
    for i in range(20):
        net.send(b"s%d" % i, A, tcp_b)
    net.run_for(2.0)
    assert [d for _, d, _ in echo.received] == [b"s%d" % i for i in range(20)]
    assert {s.transport for _, _, s in echo.received} == {"tcp"}


def test_run_until_is_bounded_by_time_and_steps() -> None:
    clock = FakeClock()
    net = LoopNetwork(clock, delay=10.0)
    net.add(B, Echo())
    net.send(b"late", A, B)
    assert not net.run_until(lambda: False, max_time=5.0)
    assert clock.now == 5.0
    assert not net.run_until(lambda: False, max_time=100.0, max_steps=0)


# --- two transaction layers ----------------------------------------------------------------


def test_invite_200_ack_round_trip() -> None:
    clock, net, a, b = pair(delay=0.02)
    txn = a.layer.send_request(build_request("INVITE", A), B, clock.now)
    assert net.run_until(lambda: bool(b.of_type(AckReceived)), max_time=5.0)
    assert [r.response.status for r in a.of_type(ResponseReceived)] == [180, 200]
    assert txn.state is TxnState.ACCEPTED
    assert len(b.of_type(RequestReceived)) == 1
    assert clock.now == pytest.approx(0.06)
    net.run_for(40.0)  # timers L and M
    assert len(a.layer) == 0 and len(b.layer) == 0
    assert a.of_type(TransactionTimeout) == [] and b.of_type(TransactionTimeout) == []


def test_non_invite_completes_through_50_percent_loss() -> None:
    clock, net, a, b = pair(loss=0.5, delay=0.01, seed=3)
    txn = a.layer.send_request(build_request("OPTIONS", A), B, clock.now)
    assert net.run_until(lambda: txn.state is not TxnState.TRYING, max_time=32.0)
    assert txn.last_response is not None and txn.last_response.status == 200
    assert len(net.sent(source=A, startswith=b"OPTIONS")) > 1  # it took retransmissions
    assert len(b.of_type(RequestReceived)) == 1  # copies absorbed by the server transaction


def test_many_non_invites_under_loss_complete_or_time_out_at_64_t1() -> None:
    _clock, net, a, b = pair(loss=0.5, delay=0.01, seed=11)
    txns = [
        a.layer.send_request(build_request("OPTIONS", A, branch=f"z9hG4bK-{i}"), B, 0.0)
        for i in range(40)
    ]
    net.run_for(60.0)
    done = [t for t in txns if t.last_response is not None]
    assert len(done) >= 34
    timeouts = a.of_type(TransactionTimeout)
    assert len(done) + len(timeouts) == 40
    assert all(at == 32.0 for at, e in a.events if isinstance(e, TransactionTimeout))
    assert len(b.of_type(RequestReceived)) >= len(done)
    net.run_for(40.0)
    assert len(a.layer) == 0 and len(b.layer) == 0


def test_timer_b_and_f_fire_at_64_t1_when_nobody_answers() -> None:
    clock = FakeClock(100.0)
    net = LoopNetwork(clock)
    a = LayerNode()
    net.add(A, a)
    invite = a.layer.send_request(build_request("INVITE", A), B, clock.now)
    options = a.layer.send_request(build_request("OPTIONS", A, branch="z9hG4bK-o"), B, clock.now)
    assert net.run_until(lambda: len(a.of_type(TransactionTimeout)) == 2, max_time=200.0)
    assert a.events == [(132.0, TransactionTimeout(invite)), (132.0, TransactionTimeout(options))]
    assert len(net.sent(source=A, startswith=b"INVITE")) == 7  # 0, .5, 1.5 ... 31.5
    assert len(net.sent(source=A, startswith=b"OPTIONS")) == 11


def test_timer_h_fires_when_acks_are_lost_and_ack_is_absorbed_otherwise() -> None:
    clock, net, a, b = pair(delay=0.01)
    b.on_event = uas(final=486)
    net.drop_filter = lambda data, src, dst: data.startswith(b"ACK")
    a.layer.send_request(build_request("INVITE", A), B, clock.now)
    assert net.run_until(lambda: bool(b.of_type(TransactionTimeout)), max_time=100.0)
    [(at, _)] = [(t, e) for t, e in b.events if isinstance(e, TransactionTimeout)]
    assert at == pytest.approx(0.01 + 32.0)  # timer H from the 486
    assert len(net.sent(source=B, startswith=b"SIP/2.0 486")) == 11  # timer G copies
    # the same exchange with ACKs delivered: absorbed by the server transaction
    clock, net, a, b = pair(delay=0.01)
    b.on_event = uas(final=486)
    a.layer.send_request(build_request("INVITE", A), B, clock.now)
    net.run_for(1.0)
    assert len(net.sent(source=A, startswith=b"ACK")) == 1
    assert b.of_type(AckReceived) == [] and b.of_type(TransactionTimeout) == []
    net.run_for(40.0)
    assert len(net.sent(source=B, startswith=b"SIP/2.0 486")) == 1
    assert len(a.layer) == 0 and len(b.layer) == 0


def test_cancel_flow() -> None:
    clock, net, a, b = pair(delay=0.01)
    b.on_event = uas(final=0)  # rings, never answers
    invite = build_request("INVITE", A, branch="z9hG4bK-inv")
    txn = a.layer.send_request(invite, B, clock.now)
    net.run_for(1.0)
    cancel_txn = a.layer.send_request(build_request("CANCEL", A, branch="z9hG4bK-inv"), B,
                                      clock.now)
    assert net.run_until(lambda: txn.state is TxnState.COMPLETED, max_time=5.0)
    assert len(b.of_type(CancelReceived)) == 1
    assert cancel_txn.last_response is not None and cancel_txn.last_response.status == 200
    statuses = [r.response.status for r in a.of_type(ResponseReceived)]
    assert sorted(statuses) == [180, 200, 487]
    net.run_for(40.0)
    assert len(a.layer) == 0 and len(b.layer) == 0
    assert b.of_type(TransactionTimeout) == []


def test_rfc2543_retransmissions_are_absorbed_over_the_wire() -> None:
    _clock, net, _a, b = pair(delay=0.01, duplicate=1.0)
    b.on_event = None  # the TU stays silent: copies must not reach it
    old = build_request("INVITE", A, branch=None, call_id="legacy").serialize()
    for _ in range(3):
        net.send(old, A, B)
        net.run_for(0.5)
    assert len(b.of_type(RequestReceived)) == 1
    trying = net.sent(source=B, startswith=b"SIP/2.0 100")
    assert len(trying) >= 1


def test_rport_lets_responses_reach_a_natted_client() -> None:
    for rport, reached in ((True, True), (False, False)):
        _clock, net, _a, b = pair(delay=0.01)
        wrong_port = Peer("udp", "192.168.1.20", 5999)  # what the client thinks it is
        request = build_request("OPTIONS", wrong_port, rport=rport)
        net.send(request.serialize(), A, B)
        net.run_for(1.0)
        fates = [t.fate for t in net.sent(source=B)]
        assert fates == (["delivered"] if reached else ["unreachable"])
        answered = [e for e in b.of_type(RequestReceived)]
        assert answered[0].request.top_via.received == A.host


def test_duplicated_messages_reach_the_tu_once() -> None:
    clock, net, a, b = pair(delay=0.01, duplicate=1.0, jitter=0.02)
    a.layer.send_request(build_request("INVITE", A), B, clock.now)
    assert net.run_until(lambda: bool(b.of_type(AckReceived)), max_time=5.0)
    net.run_for(1.0)
    assert len(b.of_type(RequestReceived)) == 1
    oks = [r for r in a.of_type(ResponseReceived) if r.response.status == 200]
    assert len(oks) == 2  # Accepted: the duplicate 2xx reaches the TU (it re-ACKs)
    assert all(isinstance(r.response, SipResponse) for r in oks)
