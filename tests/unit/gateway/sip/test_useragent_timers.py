"""RFC 4028 session timers in the UserAgent: negotiation, refreshes that keep a call alive,
and calls ended when the peer stops refreshing."""

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
    wait,
)
from test_useragent_reinvite import CALL, Scripted

from gateway.sip.events import CallAnswered, CallConfirmed, CallEnded


def test_peer_refresher_that_stops_refreshing_gets_bye() -> None:
    s = Scripted(extra=("Session-Expires: 90;refresher=uac", "Supported: timer"))
    assert s.ok.headers.get("Session-Expires") == "90;refresher=uac"
    assert s.ok.headers.get_all("Require") == ["timer"]
    answered_at = s.raw.responses("INVITE", 200)[0]
    assert answered_at is not None
    start = s.net.clock.now
    assert wait(s.net, lambda: s.b.has(CallEnded), 120)
    # expiry minus min(32, 90/3) = 60 s after the 200
    assert s.net.clock.now - start == pytest.approx(60, abs=0.1)
    assert s.b.of(CallEnded) == [CallEnded(CALL, "session timer expired", None)]
    assert s.b.ua.calls() == 0  # CallEnded is out at once, not after the BYE times out
    s.net.run_for(1)
    assert len({bye.cseq.number for bye in s.raw.requests("BYE")}) == 1  # one BYE (resent)


def test_peer_refreshes_keep_the_call_alive() -> None:
    s = Scripted(extra=("Session-Expires: 90;refresher=uac", "Supported: timer"))
    for _ in range(8):  # 8 refreshes, 45 s apart: 6 minutes
        s.net.run_for(45)
        cseq = s.send("UPDATE", extra=("Session-Expires: 90;refresher=uac", "Supported: timer"))
        ok = s.final("UPDATE", cseq)
        assert ok.status == 200 and ok.headers.get("Session-Expires") == "90;refresher=uac"
    assert not s.b.has(CallEnded) and s.b.ua.calls() == 1
    s.net.run_for(61)
    assert s.b.of(CallEnded) == [CallEnded(CALL, "session timer expired", None)]


def test_we_impose_a_timer_and_refresh_when_the_peer_has_none() -> None:
    s = Scripted(session_expires=120)
    assert s.ok.headers.get("Session-Expires") == "120;refresher=uas"
    assert "timer" not in s.ok.headers.get_all("Require")  # the peer did not say Supported
    assert wait(s.net, lambda: bool(s.raw.requests("INVITE")), 70)
    assert s.net.clock.now == pytest.approx(60, abs=0.1)


def test_small_session_expires_is_422_with_our_min_se() -> None:
    _, net = network()
    App(net, B, answering, min_se=300)
    raw = RawPeer(net)
    raw.send(raw_request("INVITE", "se-1", body=offer_sdp(RAW.host),
                         extra=("Session-Expires: 120", "Supported: timer")))
    assert wait(net, lambda: bool(raw.responses("INVITE", 422)), 5)
    assert raw.responses("INVITE", 422)[0].headers.get("Min-SE") == "300"


def test_uac_retries_after_422_with_the_larger_interval() -> None:
    _, net = network(delay=0.01)
    a = App(net, A, session_expires=90)
    b = App(net, B, answering, min_se=300)
    call_id = a.ua.call(B, "sip:conf@10.0.0.2", "sip:alice@10.0.0.1", offer_sdp("10.0.0.1"))
    assert wait(net, lambda: a.has(CallAnswered) and b.has(CallConfirmed), 10)
    invites = net.sent(A, b"INVITE")
    assert len(invites) == 2
    assert b"Session-Expires: 300" in invites[1].data and b"CSeq: 2 INVITE" in invites[1].data
    assert a.ua.calls() == 1 and call_id


def test_two_user_agents_refresh_with_update_and_survive_ten_minutes() -> None:
    _, net = network(delay=0.01)
    a = App(net, A, session_expires=90)
    b = App(net, B, answering, session_expires=90)
    call_id = a.ua.call(B, "sip:conf@10.0.0.2", "sip:alice@10.0.0.1", offer_sdp("10.0.0.1"))
    assert wait(net, lambda: b.has(CallConfirmed), 5)
    ok = next(t for t in net.sent(B, b"SIP/2.0 200") if b"INVITE" in t.data)
    assert b"Session-Expires: 90;refresher=uac" in ok.data  # the caller supports timer
    net.run_for(600)
    assert not a.has(CallEnded) and not b.has(CallEnded)
    updates = net.sent(A, b"UPDATE")
    assert 12 <= len(updates) <= 14  # every 45 s
    assert not net.sent(B, b"UPDATE") and not net.sent(B, b"INVITE")
    # The caller vanishes: the callee notices at expiry - 30 s.
    net.drop_filter = lambda data, source, dest: source.host == A.host
    gone_at = net.clock.now
    assert wait(net, lambda: b.has(CallEnded), 120)
    assert b.of(CallEnded) == [CallEnded(call_id, "session timer expired", None)]
    assert net.clock.now - gone_at <= 60.1
    assert wait(net, lambda: a.has(CallEnded), 120)
    assert a.of(CallEnded) == [CallEnded(call_id, "bye", None)]  # the callee's BYE got through
    net.run_for(120)
    for app in (a, b):
        assert app.ua.stats()["sessions"] == 0 and app.ua.get_timer() is None


def test_refresher_uas_requested_by_the_caller() -> None:
    s = Scripted(extra=("Session-Expires: 100;refresher=uas", "Supported: timer",
                        "Allow: INVITE, ACK, BYE, CANCEL, UPDATE"))
    assert s.ok.headers.get("Session-Expires") == "100;refresher=uas"
    assert wait(s.net, lambda: bool(s.raw.requests("UPDATE")), 60)
    update = s.raw.requests("UPDATE")[0]
    assert update.headers.get("Session-Expires") == "100;refresher=uac"
    assert update.headers.get("Contact") is not None and not update.body
    assert s.net.clock.now == pytest.approx(50, abs=0.1)


def test_update_refresh_timeout_ends_the_call_with_bye() -> None:
    s = Scripted(extra=("Session-Expires: 100;refresher=uas", "Supported: timer",
                        "Allow: INVITE, ACK, BYE, CANCEL, UPDATE"))
    # The scripted peer never answers the UPDATE: after 64*T1 the call is over.
    assert wait(s.net, lambda: s.b.has(CallEnded), 120)
    assert s.b.of(CallEnded) == [CallEnded(CALL, "session refresh failed", 408)]
    assert s.net.clock.now == pytest.approx(50 + 32, abs=0.1)
    s.net.run_for(1)
    assert len({bye.cseq.number for bye in s.raw.requests("BYE")}) == 1  # one BYE (resent)
