"""UserAgent under loss and delay: 2xx retransmission until the ACK, no ACK at all, a lossy
network, and many calls leaving nothing behind."""

from __future__ import annotations

import itertools
import random

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
    ringing_only,
    wait,
)

from gateway.sip.errors import RemoteProtocolError
from gateway.sip.events import CallAnswered, CallConfirmed, CallEnded, CallEvent, IncomingCall
from gateway.sip.loop import LoopNetwork
from gateway.sip.peer import Peer


def is_ack(data: bytes) -> bool:
    return data.startswith(b"ACK ")


def test_lost_ack_200_is_retransmitted_and_acked_again() -> None:
    _, net = network(delay=0.01)
    a, b = App(net, A), App(net, B, answering)
    dropped: list[bytes] = []

    def drop_first_ack(data: bytes, source: Peer, dest: Peer) -> bool:
        if is_ack(data) and not dropped:
            dropped.append(data)
            return True
        return False

    net.drop_filter = drop_first_ack
    call_id = a.ua.call(B, "sip:conf@10.0.0.2", "sip:alice@10.0.0.1", offer_sdp("10.0.0.1"))
    assert wait(net, lambda: b.has(CallConfirmed), 10)
    oks = [t for t in net.sent(B, b"SIP/2.0 200") if b"INVITE" in t.data.split(b"CSeq:")[1][:20]]
    assert len(oks) == 2  # the first and one retransmission at T1
    assert oks[1].at - oks[0].at == pytest.approx(0.5)
    acks = net.sent(A, b"ACK")
    assert len(acks) == 2 and acks[0].data == acks[1].data  # the same ACK again
    assert len(a.of(CallAnswered)) == 1  # the retransmitted 200 is not a new answer
    assert b.of(CallConfirmed) == [CallConfirmed(call_id, None)]
    net.run_for(40)
    assert len(net.sent(B, b"SIP/2.0 200")) == 2  # the retransmissions stopped


def test_no_ack_ends_the_call_with_bye_after_64_t1() -> None:
    _, net = network(delay=0.01)
    a, b = App(net, A), App(net, B, answering)
    net.drop_filter = lambda data, source, dest: is_ack(data)
    call_id = a.ua.call(B, "sip:conf@10.0.0.2", "sip:alice@10.0.0.1", offer_sdp("10.0.0.1"))
    assert wait(net, lambda: b.has(CallEnded), 60)
    assert b.of(CallEnded) == [CallEnded(call_id, "no ACK", None)]
    assert not b.has(CallConfirmed)
    oks = [t.at for t in net.sent(B, b"SIP/2.0 200")]
    gaps = [round(later - earlier, 2) for earlier, later in itertools.pairwise(oks)]
    assert gaps[:5] == [0.5, 1.0, 2.0, 4.0, 4.0]  # T1 doubling, capped at T2
    bye = net.sent(B, b"BYE")[0]
    assert bye.at == pytest.approx(oks[0] + 32, abs=0.05)  # 64*T1
    assert wait(net, lambda: a.has(CallEnded), 10)
    assert a.of(CallEnded) == [CallEnded(call_id, "bye", None)]
    net.run_for(60)
    assert b.ua.stats()["sessions"] == a.ua.stats()["sessions"] == 0


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_thirty_percent_loss_and_delay_still_completes(seed: int) -> None:
    _, net = network(seed=seed, loss=0.3, delay=0.05, jitter=0.1)
    a, b = App(net, A), App(net, B, answering)
    call_id = a.ua.call(B, "sip:conf@10.0.0.2", "sip:alice@10.0.0.1", offer_sdp("10.0.0.1"))
    assert wait(net, lambda: a.has(CallAnswered) and b.has(CallConfirmed), 60)
    (a if seed % 2 else b).ua.hangup(call_id)
    assert wait(net, lambda: a.has(CallEnded) and b.has(CallEnded), 60)
    reasons = {e.reason for e in [*a.of(CallEnded), *b.of(CallEnded)] if isinstance(e, CallEnded)}
    assert reasons == {"hangup", "bye"}
    lost = [t for t in net.log if t.fate == "lost"]
    assert lost  # the network really lost messages
    net.run_for(60)
    assert a.ua.stats()["transactions"] == b.ua.stats()["transactions"] == 0


def settle(net: LoopNetwork, *apps: App) -> None:
    net.run_for(120)
    for app in apps:
        assert app.ua.get_timer() is None
        assert app.ua.stats() == {"calls": 0, "sessions": 0, "dialogs": 0, "transactions": 0,
                                  "timers": 0, "malformed": 0, "errors": 0}


def call_ids_of(app: App, kind: type[CallEvent]) -> set[str]:
    return {e.call_id for e in app.of(kind)}


def test_two_hundred_calls_leave_nothing_behind() -> None:
    _, net = network(seed=7, loss=0.05, delay=0.02, jitter=0.02)
    rng = random.Random(7)
    a = App(net, A)
    b = App(net, B, ringing_only)
    call_ids: list[str] = []
    for batch in range(20):
        ids = [
            a.ua.call(B, "sip:conf@10.0.0.2", "sip:alice@10.0.0.1", offer_sdp("10.0.0.1"))
            for _ in range(10)
        ]
        call_ids += ids
        wanted = set(call_ids)
        assert wait(net, lambda: call_ids_of(b, IncomingCall) >= wanted, 60)  # noqa: B023
        net.run_for(1)
        for call_id in ids:
            fate = rng.choice(["answer", "answer", "reject", "cancel"])
            if fate == "reject":
                b.ua.reject(call_id, 486)
            elif fate == "cancel":
                a.ua.hangup(call_id)
            else:
                b.ua.answer(call_id, offer_sdp("10.0.0.2", 5000 + batch))
        net.run_for(2)
        for call_id in set(ids) - call_ids_of(a, CallEnded):
            rng.choice([a, b]).ua.hangup(call_id)  # whatever state the call is in
        assert wait(net, lambda: a.ua.calls() == 0 and b.ua.calls() == 0, 60), batch
    ended_a = [e.call_id for e in a.of(CallEnded)]
    ended_b = [e.call_id for e in b.of(CallEnded)]
    assert sorted(ended_a) == sorted(call_ids) == sorted(ended_b)  # exactly one each
    settle(net, a, b)


def test_app_never_answers_ringing_calls_until_the_caller_gives_up() -> None:
    _, net = network(delay=0.01)
    a, b = App(net, A), App(net, B, ringing_only)
    call_id = a.ua.call(B, "sip:conf@10.0.0.2", "sip:alice@10.0.0.1", offer_sdp("10.0.0.1"))
    net.run_for(5)
    a.ua.hangup(call_id)
    assert wait(net, lambda: a.ua.calls() == 0 and b.ua.calls() == 0, 60)
    settle(net, a, b)


def test_mutated_messages_never_raise_or_leak() -> None:
    rng = random.Random(3)
    _, net = network(delay=0.01)

    def careful(app: App, event: CallEvent) -> None:  # an app that rejects bad offers
        try:
            answering(app, event)
        except (RemoteProtocolError, AssertionError):
            app.ua.reject(event.call_id, 488)

    b = App(net, B, careful)
    raw = RawPeer(net)
    seeds = [
        raw_request("INVITE", "f1", body=offer_sdp(RAW.host),
                    extra=("Session-Expires: 90;refresher=uac", "Supported: timer")),
        raw_request("ACK", "f1", to_tag="x", branch="z9hG4bK-a"),
        raw_request("BYE", "f1", cseq=2, to_tag="x"),
        raw_request("UPDATE", "f1", cseq=3, to_tag="x", body=offer_sdp(RAW.host)),
        raw_request("INVITE", "f1", cseq=4, to_tag="x", body=offer_sdp(RAW.host)),
        raw_request("OPTIONS", "f2"),
        raw_request("CANCEL", "f1"),
    ]
    tokens = [b";", b",", b"<", b">", b"\r\n", b" ", b"0", b"tag=", b"9999999999", b"sip:",
              b"\x00", b"=", b'"', b"\xff"]
    for i in range(2000):
        data = bytearray(rng.choice(seeds))
        pos = rng.randrange(len(data))
        if rng.random() < 0.5:
            del data[pos:pos + rng.randint(1, 10)]
        else:
            data[pos:pos] = rng.choice(tokens)
        raw.send(bytes(data))
        if i % 50 == 0:
            net.run_for(1)
    net.run_for(200)
    stats = b.ua.stats()
    assert stats["errors"] == 0 and stats["malformed"] > 0
    assert {k: v for k, v in stats.items() if k not in ("malformed",)} == {
        "calls": 0, "sessions": 0, "dialogs": 0, "transactions": 0, "timers": 0, "errors": 0}

