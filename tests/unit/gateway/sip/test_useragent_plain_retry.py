"""UserAgent as the UAC of a dial-out with SRTP "optional": a 488 or 415 to our RTP/SAVP
offer sends the INVITE once more with the fallback offer (same Call-ID, From tag and To,
a new CSeq), reported as OfferRetried; a second refusal ends the call; without a fallback
the refusal ends it at once; a CANCEL asked for before the refusal is not undone."""

from __future__ import annotations

from test_useragent_harness import A, App, B, answer_for, network, offer_sdp, ringing_only, wait

from gateway.sip.events import (
    CallAnswered,
    CallEnded,
    CallEvent,
    CallProgress,
    IncomingCall,
    OfferRetried,
)
from gateway.sip.loop import LoopNetwork

SAVP = offer_sdp("10.0.0.1").replace(b"RTP/AVP", b"RTP/SAVP")
PLAIN = offer_sdp("10.0.0.1")


def plain_only(net: LoopNetwork, status: int = 488, ring_first: bool = False) -> App:
    """A callee without SRTP: `status` to an RTP/SAVP offer, answers a plain one."""

    def policy(app: App, event: CallEvent) -> None:
        if not isinstance(event, IncomingCall):
            return
        assert event.offer is not None
        if b"RTP/SAVP" in event.offer:
            if ring_first:
                app.ua.ringing(event.call_id)
            app.ua.reject(event.call_id, status)
            return
        app.ua.ringing(event.call_id)
        app.ua.answer(event.call_id, answer_for(event.offer, app.addr.host))

    return App(net, B, policy)


def test_a_488_to_srtp_sends_the_plain_offer_once_and_the_call_is_answered() -> None:
    _, net = network(delay=0.01)
    a = App(net, A)
    b = plain_only(net)
    call_id = a.ua.call(B, "sip:+15550199@10.0.0.2", "<sip:+15550100@10.0.0.2>", SAVP,
                        fallback_sdp=PLAIN)
    assert wait(net, lambda: a.has(CallAnswered), 5)
    retried = a.of(OfferRetried)
    assert len(retried) == 1 and retried[0].call_id == call_id and retried[0].status == 488
    assert b"RTP/AVP" in retried[0].offer and b"RTP/SAVP" not in retried[0].offer
    invites = [e.request for e in b.of(IncomingCall)]
    assert len(invites) == 2
    first, second = invites
    assert first.call_id == second.call_id == call_id
    assert first.from_tag == second.from_tag
    assert (first.cseq.number, second.cseq.number) == (1, 2)
    assert first.top_via.branch != second.top_via.branch
    assert not a.has(CallEnded)


def test_415_falls_back_too_even_after_ringing() -> None:
    _, net = network(delay=0.01)
    a = App(net, A)
    plain_only(net, status=415, ring_first=True)
    a.ua.call(B, "sip:+15550199@10.0.0.2", "<sip:x@10.0.0.2>", SAVP, fallback_sdp=PLAIN)
    assert wait(net, lambda: a.has(CallAnswered), 5)
    assert [e.status for e in a.of(OfferRetried)] == [415]


def test_only_once_a_second_refusal_ends_the_call() -> None:
    _, net = network(delay=0.01)
    a = App(net, A)

    def refuse_all(app: App, event: CallEvent) -> None:
        if isinstance(event, IncomingCall):
            app.ua.reject(event.call_id, 488)

    b = App(net, B, refuse_all)
    call_id = a.ua.call(B, "sip:+15550199@10.0.0.2", "<sip:x@10.0.0.2>", SAVP,
                        fallback_sdp=PLAIN)
    assert wait(net, lambda: a.has(CallEnded), 5)
    assert a.of(CallEnded) == [CallEnded(call_id, "rejected", 488)]
    assert len(a.of(OfferRetried)) == 1 and len(b.of(IncomingCall)) == 2
    assert a.ua.calls() == 0


def test_without_a_fallback_488_ends_the_call_at_once() -> None:
    _, net = network(delay=0.01)
    a = App(net, A)
    b = plain_only(net)
    call_id = a.ua.call(B, "sip:+15550199@10.0.0.2", "<sip:x@10.0.0.2>", SAVP)
    assert wait(net, lambda: a.has(CallEnded), 5)
    assert a.of(CallEnded) == [CallEnded(call_id, "rejected", 488)]
    assert not a.has(OfferRetried) and len(b.of(IncomingCall)) == 1


def test_other_refusals_do_not_fall_back() -> None:
    _, net = network(delay=0.01)
    a = App(net, A)

    def busy(app: App, event: CallEvent) -> None:
        if isinstance(event, IncomingCall):
            app.ua.reject(event.call_id, 486)

    App(net, B, busy)
    call_id = a.ua.call(B, "sip:+15550199@10.0.0.2", "<sip:x@10.0.0.2>", SAVP,
                        fallback_sdp=PLAIN)
    assert wait(net, lambda: a.has(CallEnded), 5)
    assert a.of(CallEnded) == [CallEnded(call_id, "rejected", 486)]
    assert not a.has(OfferRetried)


def test_cancelled_while_ringing_is_not_called_again() -> None:
    _, net = network(delay=0.01)
    a = App(net, A)
    b = App(net, B, ringing_only)
    call_id = a.ua.call(B, "sip:+15550199@10.0.0.2", "<sip:x@10.0.0.2>", SAVP,
                        fallback_sdp=PLAIN)
    assert wait(net, lambda: a.has(CallProgress), 5)
    a.ua.hangup(call_id)
    assert wait(net, lambda: a.has(CallEnded), 5)
    assert a.of(CallEnded) == [CallEnded(call_id, "cancelled", 487)]
    assert not a.has(OfferRetried) and len(b.of(IncomingCall)) == 1
