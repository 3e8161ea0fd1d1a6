"""UserAgent: whole calls between two user agents over the loop network, and what it answers
to requests it does not take (OPTIONS, 405, 501, 481, 420, 483, 422, 415, garbage)."""

from __future__ import annotations

import pytest
from test_useragent_harness import (
    RAW,
    A,
    App,
    B,
    RawPeer,
    answer_for,
    answering,
    network,
    offer_sdp,
    raw_request,
    ringing_only,
    wait,
)

from gateway.sip.errors import LocalProtocolError
from gateway.sip.events import (
    CallAnswered,
    CallConfirmed,
    CallEnded,
    IncomingCall,
    InfoReceived,
)
from gateway.sip.loop import LoopNetwork
from gateway.sip.message import make_response
from gateway.sip.peer import Peer
from gateway.sip.sdp import SessionDescription


def setup_call(answer: bool = True) -> tuple[LoopNetwork, App, App, str]:
    _, net = network(delay=0.01)
    a = App(net, A)
    b = App(net, B, answering if answer else ringing_only)
    call_id = a.ua.call(B, "sip:conf@10.0.0.2", "\"Alice\" <sip:alice@10.0.0.1>",
                        offer_sdp("10.0.0.1"))
    return net, a, b, call_id


def test_call_answered_confirmed_and_ended_by_caller() -> None:
    net, a, b, call_id = setup_call()
    assert wait(net, lambda: b.has(CallConfirmed), 5)
    incoming = b.of(IncomingCall)[0]
    assert isinstance(incoming, IncomingCall) and incoming.call_id == call_id
    assert incoming.offer == offer_sdp("10.0.0.1") and incoming.source == A
    answered = a.of(CallAnswered)[0]
    assert isinstance(answered, CallAnswered) and answered.answer is not None
    media = SessionDescription.parse(answered.answer).media[0]
    assert media.port == 5000 and media.formats[0] == "0"
    assert b.of(CallConfirmed) == [CallConfirmed(call_id, None)]
    assert a.ua.calls() == b.ua.calls() == 1
    a.ua.hangup(call_id)
    assert a.ua.calls() == 1  # until the BYE is answered
    assert wait(net, lambda: a.has(CallEnded) and b.has(CallEnded), 5)
    assert b.of(CallEnded) == [CallEnded(call_id, "bye", None)]
    assert a.of(CallEnded) == [CallEnded(call_id, "hangup", None)]
    assert a.ua.calls() == b.ua.calls() == 0


def test_callee_hangs_up() -> None:
    net, a, b, call_id = setup_call()
    assert wait(net, lambda: b.has(CallConfirmed), 5)
    b.ua.hangup(call_id)
    assert wait(net, lambda: a.has(CallEnded) and b.has(CallEnded), 5)
    assert a.of(CallEnded) == [CallEnded(call_id, "bye", None)]
    assert b.of(CallEnded) == [CallEnded(call_id, "hangup", None)]


def test_info_both_ways() -> None:
    net, a, b, call_id = setup_call()
    assert wait(net, lambda: b.has(CallConfirmed), 5)
    a.ua.send_info(call_id, "application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n")
    b.ua.send_info(call_id, "application/dtmf", b"7")
    assert wait(net, lambda: a.has(InfoReceived) and b.has(InfoReceived), 5)
    assert b.of(InfoReceived) == [
        InfoReceived(call_id, "application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n")]
    assert a.of(InfoReceived) == [InfoReceived(call_id, "application/dtmf", b"7")]
    assert a.ua.calls() == 1 and not a.has(CallEnded)


def test_cancel_while_ringing() -> None:
    net, a, b, call_id = setup_call(answer=False)
    assert wait(net, lambda: bool(b.of(IncomingCall)), 5)
    net.run_for(1)  # the 180 reaches the caller
    a.ua.hangup(call_id)
    assert wait(net, lambda: a.has(CallEnded) and b.has(CallEnded), 5)
    assert b.of(CallEnded) == [CallEnded(call_id, "cancelled", 487)]
    assert a.of(CallEnded) == [CallEnded(call_id, "cancelled", 487)]
    assert a.ua.calls() == b.ua.calls() == 0


def test_hangup_before_any_response_waits_for_a_provisional() -> None:
    _, net = network(delay=0.05)
    a, b = App(net, A), App(net, B)  # b never answers: only the automatic 100 Trying
    call_id = a.ua.call(B, "sip:conf@10.0.0.2", "sip:alice@10.0.0.1", offer_sdp("10.0.0.1"))
    a.ua.hangup(call_id)  # nothing heard yet: CANCEL must wait (RFC 3261 9.1)
    net.flush()
    assert not net.sent(A, b"CANCEL")
    assert wait(net, lambda: a.has(CallEnded) and b.has(CallEnded), 10)
    cancel_at = net.sent(A, b"CANCEL")[0].at
    trying_at = net.sent(B, b"SIP/2.0 100")[0].at
    assert cancel_at >= trying_at
    assert a.of(CallEnded) == [CallEnded(call_id, "cancelled", 487)]


@pytest.mark.parametrize("status", [486, 603])
def test_callee_rejects(status: int) -> None:
    net, a, b, call_id = setup_call(answer=False)
    assert wait(net, lambda: bool(b.of(IncomingCall)), 5)
    b.ua.reject(call_id, status)
    assert wait(net, lambda: a.has(CallEnded), 5)
    assert a.of(CallEnded) == [CallEnded(call_id, "rejected", status)]
    assert b.of(CallEnded) == [CallEnded(call_id, "rejected", status)]
    net.run_for(40)
    assert a.ua.stats()["transactions"] == b.ua.stats()["transactions"] == 0


def test_callee_hangup_before_answer_is_480() -> None:
    net, a, b, call_id = setup_call(answer=False)
    assert wait(net, lambda: bool(b.of(IncomingCall)), 5)
    b.ua.hangup(call_id)
    assert wait(net, lambda: a.has(CallEnded), 5)
    assert a.of(CallEnded) == [CallEnded(call_id, "rejected", 480)]


def test_actions_on_finished_call_are_ignored_and_misuse_raises() -> None:
    net, _, b, call_id = setup_call()
    assert wait(net, lambda: b.has(CallConfirmed), 5)
    with pytest.raises(LocalProtocolError):
        b.ua.answer(call_id, b"v=0")  # already answered
    with pytest.raises(LocalProtocolError):
        b.ua.answer_offer(call_id, b"v=0")  # no offer pending
    with pytest.raises(LocalProtocolError):
        b.ua.reject(call_id, 200)
    b.ua.hangup("no-such-call")  # a race with the end of a call: logged, not raised
    b.ua.answer("no-such-call", b"")


def test_invite_without_sdp_offer_in_200_answer_in_ack() -> None:
    _, net = network()
    b = App(net, B, answering)
    raw = RawPeer(net)
    raw.send(raw_request("INVITE"))
    assert wait(net, lambda: bool(raw.responses("INVITE", 200)), 5)
    ok = raw.responses("INVITE", 200)[0]
    offer = SessionDescription.parse(ok.body)  # the gateway's offer
    assert offer.media[0].port == 6000
    assert ok.headers.get("Contact") == "<sip:10.0.0.2:5060>"
    answer = answer_for(ok.body, RAW.host, 7000)
    raw.send(raw_request("ACK", to_tag=ok.to_tag, branch="z9hG4bK-ack1", body=answer))
    assert wait(net, lambda: b.has(CallConfirmed), 5)
    assert b.of(CallConfirmed) == [CallConfirmed("raw-call-1", answer)]
    incoming = b.of(IncomingCall)[0]
    assert isinstance(incoming, IncomingCall) and incoming.offer is None


def test_options_outside_and_inside_a_dialog() -> None:
    _, net = network()
    App(net, B, answering)
    raw = RawPeer(net)
    raw.send(raw_request("OPTIONS", "opt-1"))
    assert wait(net, lambda: bool(raw.responses("OPTIONS")), 5)
    ok = raw.responses("OPTIONS")[0]
    assert ok.status == 200 and ok.to_tag
    assert ok.headers.get_all("Allow") == ["INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO",
                                           "UPDATE"]
    assert "application/dtmf-relay" in ok.headers.get_all("Accept")
    assert ok.headers.get_all("Supported") == ["timer"]
    raw.send(raw_request("INVITE", "opt-2", body=offer_sdp(RAW.host)))
    assert wait(net, lambda: bool(raw.responses("INVITE", 200)), 5)
    tag = raw.responses("INVITE", 200)[0].to_tag
    raw.send(raw_request("OPTIONS", "opt-2", cseq=2, to_tag=tag))
    assert wait(net, lambda: len(raw.responses("OPTIONS")) == 2, 5)
    assert raw.responses("OPTIONS")[1].status == 200
    assert raw.responses("OPTIONS")[1].to_tag == tag


@pytest.mark.parametrize(
    ("request_bytes", "status", "header", "value"),
    [
        (raw_request("REGISTER", "r1"), 405, "Allow", "INVITE"),
        (raw_request("SUBSCRIBE", "r2"), 405, "Allow", "INVITE"),
        (raw_request("MESSAGE", "r3"), 405, "Allow", "INVITE"),
        (raw_request("FROBNICATE", "r4"), 501, "Allow", "INVITE"),
        (raw_request("BYE", "r5", to_tag="nosuch"), 481, None, None),
        (raw_request("INFO", "r6", to_tag="nosuch"), 481, None, None),
        (raw_request("BYE", "r7"), 481, None, None),
        (raw_request("INVITE", "r8", extra=("Require: 100rel, timer",)), 420, "Unsupported",
         "100rel"),
        (raw_request("INVITE", "r9", max_forwards=0), 483, None, None),
        (raw_request("OPTIONS", "r10", max_forwards=0), 483, None, None),
        (raw_request("INVITE", "r11", extra=("Session-Expires: 30", "Supported: timer")), 422,
         "Min-SE", "90"),
        (raw_request("INVITE", "r12", contact=False), 400, None, None),
    ],
)
def test_requests_we_refuse(request_bytes: bytes, status: int, header: str | None,
                            value: str | None) -> None:
    _, net = network()
    b = App(net, B, answering)
    raw = RawPeer(net)
    raw.send(request_bytes)
    assert wait(net, lambda: any(r.status >= 200 for r in raw.responses()), 5)
    final = next(r for r in raw.responses() if r.status >= 200)
    assert final.status == status
    if header is not None:
        assert value in final.headers.get_all(header)
    assert not b.events and b.ua.calls() == 0
    net.run_for(40)
    assert b.ua.stats() | {"malformed": 0} == {
        "calls": 0, "sessions": 0, "dialogs": 0, "transactions": 0, "timers": 0,
        "malformed": 0, "errors": 0}


def test_415_for_a_body_that_is_not_sdp() -> None:
    _, net = network()
    App(net, B, answering)
    raw = RawPeer(net)
    data = raw_request("INVITE", "ct-1", body=b"hello").replace(
        b"Content-Type: application/sdp", b"Content-Type: text/plain")
    raw.send(data)
    assert wait(net, lambda: bool(raw.responses("INVITE", 415)), 5)
    assert raw.responses("INVITE", 415)[0].headers.get("Accept") == "application/sdp"


def test_malformed_input_is_answered_or_dropped_never_raised() -> None:
    _, net = network()
    b = App(net, B, answering)
    raw = RawPeer(net)
    raw.send(b"\x00\xff garbage")  # nothing to salvage: dropped
    raw.send(b"\r\n\r\n")  # a keep-alive
    bad_cseq = raw_request("INVITE", "bad-1").replace(b"Max-Forwards: 70", b"Max-Forwards: x")
    raw.send(bad_cseq)
    raw.send(raw_request("INVITE", "bad-2").replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1))
    raw.send(b"SIP/2.0 200 OK\r\nVia: nonsense\r\n\r\n")  # a broken response: dropped
    net.run_for(5)
    statuses = sorted(r.status for r in raw.responses())
    assert statuses == [400, 505]
    assert b.ua.stats()["malformed"] >= 3
    assert b.ua.stats()["errors"] == 0
    assert not b.events


def test_retransmitted_invite_is_absorbed_and_merged_invite_gets_482() -> None:
    _, net = network()
    b = App(net, B)  # the app does not answer
    raw = RawPeer(net)
    invite = raw_request("INVITE", "dup-1", body=offer_sdp(RAW.host))
    raw.send(invite)
    raw.send(invite)
    raw.send(raw_request("INVITE", "dup-1", branch="z9hG4bK-other", body=offer_sdp(RAW.host)))
    net.run_for(1)
    assert len(b.of(IncomingCall)) == 1
    assert {r.status for r in raw.responses() if r.status >= 200} == {482}


def test_calls_over_tcp_use_the_tcp_contact() -> None:
    _, net = network(delay=0.01)
    a, b = App(net, A), App(net, B, answering)
    dest = Peer("tcp", B.host, B.port)
    call_id = a.ua.call(dest, "sip:conf@10.0.0.2;transport=tcp", "sip:alice@10.0.0.1",
                        offer_sdp("10.0.0.1"))
    assert wait(net, lambda: b.has(CallConfirmed), 5)
    invite = net.sent(A, b"INVITE")[0]
    assert invite.dest.transport == "tcp"
    assert b"Via: SIP/2.0/TCP 10.0.0.1:5060" in invite.data
    assert b"Contact: <sip:10.0.0.1:5060;transport=tcp>" in invite.data
    a.ua.hangup(call_id)
    assert wait(net, lambda: b.has(CallEnded), 5)
    assert net.sent(A, b"BYE")[0].dest.transport == "tcp"


def test_both_sides_hang_up_at_once() -> None:
    net, a, b, call_id = setup_call()
    assert wait(net, lambda: b.has(CallConfirmed), 5)
    a.ua.hangup(call_id)
    b.ua.hangup(call_id)
    assert wait(net, lambda: a.ua.calls() == 0 and b.ua.calls() == 0, 40)
    assert [e.reason for e in a.of(CallEnded) if isinstance(e, CallEnded)] == ["hangup"]
    assert [e.reason for e in b.of(CallEnded) if isinstance(e, CallEnded)] == ["hangup"]
    net.run_for(40)
    assert a.ua.stats()["sessions"] == b.ua.stats()["sessions"] == 0


def test_callee_hangup_before_the_ack_sends_bye_after_it() -> None:
    _, net = network(delay=0.5)
    a, b = App(net, A), App(net, B)
    call_id = a.ua.call(B, "sip:conf@10.0.0.2", "sip:alice@10.0.0.1", offer_sdp("10.0.0.1"))
    assert wait(net, lambda: b.has(IncomingCall), 5)
    b.ua.answer(call_id, answer_for(offer_sdp("10.0.0.1"), B.host))
    b.ua.hangup(call_id)  # the ACK is still 1 s away: the BYE waits for it (RFC 3261 15)
    assert wait(net, lambda: a.has(CallEnded) and b.has(CallEnded), 10)
    ack_at = net.sent(A, b"ACK")[0].at
    bye = net.sent(B, b"BYE")[0]
    assert bye.at >= ack_at + 0.5
    assert b.of(CallConfirmed) and b.of(CallEnded) == [CallEnded(call_id, "hangup", None)]


def test_answer_crossing_cancel_is_acked_and_byed() -> None:
    _, net = network(delay=0.2)
    a, b = App(net, A), App(net, B, ringing_only)
    call_id = a.ua.call(B, "sip:conf@10.0.0.2", "sip:alice@10.0.0.1", offer_sdp("10.0.0.1"))
    assert wait(net, lambda: b.has(IncomingCall), 5)
    net.run_for(0.5)  # the 180 has arrived
    a.ua.hangup(call_id)  # CANCEL leaves...
    b.ua.answer(call_id, answer_for(offer_sdp("10.0.0.1"), B.host))  # ...as the 200 does
    assert wait(net, lambda: a.ua.calls() == 0 and b.ua.calls() == 0, 40)
    assert not a.has(CallAnswered)
    assert a.of(CallEnded) == [CallEnded(call_id, "hangup", None)]
    assert b.of(CallEnded) == [CallEnded(call_id, "bye", None)]
    assert net.sent(A, b"CANCEL") and net.sent(A, b"ACK") and net.sent(A, b"BYE")


def test_uac_early_dialog_and_late_2xx_retransmission_is_acked_again() -> None:
    _, net = network()
    a = App(net, A)
    raw = RawPeer(net)
    call_id = a.ua.call(RAW, "sip:raw@10.0.0.9:5070", "sip:alice@10.0.0.1",
                        offer_sdp("10.0.0.1"))
    net.flush()
    assert wait(net, lambda: bool(raw.requests("INVITE")), 1)
    invite = raw.requests("INVITE")[0]
    assert invite.headers.get("Session-Expires") == "1800"
    assert invite.headers.get_all("Supported") == ["timer"]
    ringing = make_response(invite, 180, to_tag="callee")
    ringing.headers.add("Contact", f"<sip:raw@{RAW.host}:{RAW.port}>")
    raw.send(ringing.serialize(), A)
    ok = make_response(invite, 200, to_tag="callee")
    ok.headers.add("Contact", f"<sip:raw@{RAW.host}:{RAW.port}>")
    ok.headers.add("Content-Type", "application/sdp")
    ok.body = answer_for(invite.body, RAW.host)
    raw.send(ok.serialize(), A)
    assert wait(net, lambda: a.has(CallAnswered) and bool(raw.requests("ACK")), 5)
    ack = raw.requests("ACK")[0]
    assert ack.cseq.number == 1 and ack.to_tag == "callee" and str(ack.uri).startswith("sip:raw@")
    net.run_for(40)  # the INVITE client transaction is gone (timer M)
    raw.send(ok.serialize(), A)  # a late retransmission: a StrayResponse, ACKed again
    assert wait(net, lambda: len(raw.requests("ACK")) == 2, 5)
    assert raw.requests("ACK")[1].serialize() == ack.serialize()
    assert len(a.of(CallAnswered)) == 1
    # The callee ends the call from its side of our dialog.
    bye = raw_request("BYE", call_id, cseq=1, from_tag="callee", to_tag=invite.from_tag,
                      via=RAW)
    raw.send(bye, A)
    assert wait(net, lambda: a.has(CallEnded), 5)
    assert a.of(CallEnded) == [CallEnded(call_id, "bye", None)]
