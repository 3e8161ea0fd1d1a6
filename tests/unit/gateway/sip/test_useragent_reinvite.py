"""UserAgent inside a dialog, driven by a scripted peer: re-INVITE hold/unhold, re-INVITE
without SDP, UPDATE, glare (491/500), out-of-order CSeq, route sets."""

from __future__ import annotations

from test_useragent_harness import (
    RAW,
    App,
    B,
    Policy,
    RawPeer,
    answer_for,
    answering,
    network,
    offer_sdp,
    raw_request,
    wait,
)

from gateway.sip.events import CallConfirmed, CallEnded, CallEvent, OfferReceived
from gateway.sip.loop import LoopNetwork
from gateway.sip.message import SipResponse, make_response
from gateway.sip.sdp import SessionDescription

CALL = "dlg-call-1"


def offer_with(direction: str, version: int) -> bytes:
    sd = SessionDescription.parse(offer_sdp(RAW.host, 4000, version))
    sd.media[0].direction = direction
    return sd.serialize()


class Scripted:
    """A call from the scripted peer to the gateway (B), set up and ACKed."""

    def __init__(self, policy: Policy | None = answering, extra: tuple[str, ...] = (),
                 **settings: object) -> None:
        self.clock, self.net = network()
        self.b = App(self.net, B, policy, **settings)
        self.raw = RawPeer(self.net)
        self.raw.send(raw_request("INVITE", CALL, body=offer_sdp(RAW.host), extra=extra))
        assert wait(self.net, lambda: bool(self.raw.responses("INVITE", 200)), 5)
        self.ok = self.raw.responses("INVITE", 200)[0]
        self.tag = self.ok.to_tag
        self.ack(1)
        assert wait(self.net, lambda: self.b.has(CallConfirmed), 5)
        self.cseq = 1

    @property
    def network(self) -> LoopNetwork:
        return self.net

    def ack(self, cseq: int, body: bytes = b"") -> None:
        self.raw.send(raw_request("ACK", CALL, cseq=cseq, to_tag=self.tag,
                                  branch=f"z9hG4bK-ack-{cseq}", body=body))

    def send(self, method: str, body: bytes = b"", extra: tuple[str, ...] = (),
             cseq: int | None = None) -> int:
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        self.raw.send(raw_request(method, CALL, cseq=cseq, to_tag=self.tag, body=body,
                                  extra=extra))
        return cseq

    def final(self, method: str, cseq: int) -> SipResponse:
        def got() -> bool:
            return any(r.cseq.number == cseq and r.status >= 200
                       for r in self.raw.responses(method))
        assert wait(self.net, got, 5), (method, cseq)
        return next(r for r in self.raw.responses(method)
                    if r.cseq.number == cseq and r.status >= 200)


def test_reinvite_hold_and_unhold() -> None:
    s = Scripted()
    hold = offer_with("sendonly", 2)
    cseq = s.send("INVITE", hold)
    ok = s.final("INVITE", cseq)
    assert ok.status == 200
    assert s.b.of(OfferReceived) == [OfferReceived(CALL, hold)]
    answer = SessionDescription.parse(ok.body)
    assert answer.media[0].direction == "recvonly"
    assert answer.origin.session_version == 2
    s.ack(cseq)
    unhold = offer_with("sendrecv", 3)
    cseq = s.send("INVITE", unhold)
    ok = s.final("INVITE", cseq)
    s.ack(cseq)
    answer = SessionDescription.parse(ok.body)
    assert answer.media[0].direction == "sendrecv"
    # The app answered with version 2 again but different SDP: the UA moved it on.
    assert answer.origin.session_version == 3
    s.net.run_for(40)
    assert len(s.raw.responses("INVITE", 200)) == 3  # no retransmissions after the ACKs
    assert s.b.ua.calls() == 1 and not s.b.has(CallEnded)


def test_reinvite_without_sdp_gets_our_offer_and_ack_answer() -> None:
    s = Scripted()
    first = SessionDescription.parse(s.ok.body)
    cseq = s.send("INVITE")
    ok = s.final("INVITE", cseq)
    offer = SessionDescription.parse(ok.body)
    assert offer.origin.session_version == first.origin.session_version + 1
    assert offer.media[0].port == first.media[0].port
    answer = answer_for(ok.body, RAW.host, 4000)
    s.ack(cseq, answer)
    assert wait(s.net, lambda: len(s.b.of(CallConfirmed)) == 2, 5)
    assert s.b.of(CallConfirmed)[1] == CallConfirmed(CALL, answer)


def test_update_with_and_without_sdp() -> None:
    s = Scripted()
    hold = offer_with("inactive", 2)
    cseq = s.send("UPDATE", hold)
    ok = s.final("UPDATE", cseq)
    assert ok.status == 200
    assert SessionDescription.parse(ok.body).media[0].direction == "inactive"
    assert ok.headers.get("Contact") == "<sip:10.0.0.2:5060>"
    cseq = s.send("UPDATE")
    ok = s.final("UPDATE", cseq)
    assert ok.status == 200 and not ok.body
    assert ok.headers.get("Session-Expires") == "1800;refresher=uas"


def test_rejecting_a_reoffer_keeps_the_call() -> None:
    def refuse(app: App, event: CallEvent) -> None:
        if isinstance(event, OfferReceived):
            app.ua.reject(event.call_id, 488)
        else:
            answering(app, event)

    s = Scripted(refuse)
    cseq = s.send("INVITE", offer_with("sendrecv", 2))
    assert s.final("INVITE", cseq).status == 488
    s.net.run_for(5)
    assert s.b.ua.calls() == 1
    cseq = s.send("BYE")
    assert s.final("BYE", cseq).status == 200
    assert s.b.of(CallEnded) == [CallEnded(CALL, "bye", None)]


def test_second_reinvite_while_one_is_pending_gets_500_retry_after() -> None:
    s = Scripted()
    s.b.policy = None  # from now on the app does not answer offers by itself
    first = s.send("INVITE", offer_with("sendonly", 2))
    assert wait(s.net, lambda: s.b.has(OfferReceived), 5)
    second = s.send("INVITE", offer_with("sendrecv", 3))
    busy = s.final("INVITE", second)
    assert busy.status == 500 and busy.headers.get("Retry-After") is not None
    s.b.ua.answer_offer(CALL, answer_for(offer_with("sendonly", 2), B.host, 5000, 2))
    assert s.final("INVITE", first).status == 200


def test_out_of_order_cseq_gets_500() -> None:
    s = Scripted()
    s.send("INFO", cseq=10)
    assert s.final("INFO", 10).status == 200
    s.send("INFO", cseq=5)
    assert s.final("INFO", 5).status == 500


def test_bye_with_wrong_tags_is_481_and_call_survives() -> None:
    s = Scripted()
    s.raw.send(raw_request("BYE", CALL, cseq=2, to_tag="wrong"))
    assert wait(s.net, lambda: bool(s.raw.responses("BYE")), 5)
    assert s.raw.responses("BYE")[0].status == 481
    assert s.b.ua.calls() == 1


def test_loose_route_set_from_record_route() -> None:
    route = (f"Record-Route: <sip:{RAW.host}:{RAW.port};lr>, <sip:proxy.example.com;lr>",)
    s = Scripted(extra=route)
    assert s.ok.headers.get_all("Record-Route") == [f"<sip:{RAW.host}:{RAW.port};lr>",
                                                    "<sip:proxy.example.com;lr>"]
    s.b.ua.hangup(CALL)
    assert wait(s.net, lambda: bool(s.raw.requests("BYE")), 5)
    bye = s.raw.requests("BYE")[0]
    assert str(bye.uri) == f"sip:raw@{RAW.host}:{RAW.port}"  # the remote target
    assert bye.headers.get_all("Route") == [f"<sip:{RAW.host}:{RAW.port};lr>",
                                            "<sip:proxy.example.com;lr>"]
    assert bye.to_tag == "rawtag" and bye.from_tag == s.tag
    assert bye.cseq.method == "BYE"


def test_strict_route_puts_the_first_route_in_the_request_uri() -> None:
    s = Scripted(extra=(f"Record-Route: <sip:{RAW.host}:{RAW.port}>",))
    s.b.ua.hangup(CALL)
    assert wait(s.net, lambda: bool(s.raw.requests("BYE")), 5)
    bye = s.raw.requests("BYE")[0]
    assert str(bye.uri) == f"sip:{RAW.host}:{RAW.port}"
    assert bye.headers.get_all("Route") == [f"<sip:raw@{RAW.host}:{RAW.port}>"]


def test_reinvite_glare_with_our_refresh_gets_491() -> None:
    # We impose a 90 s session timer and refresh (by re-INVITE: no Allow from the peer).
    s = Scripted(session_expires=90)
    assert s.ok.headers.get("Session-Expires") == "90;refresher=uas"
    assert wait(s.net, lambda: bool(s.raw.requests("INVITE")), 50)
    refresh = s.raw.requests("INVITE")[0]
    assert s.net.clock.now >= 45
    assert refresh.body == s.ok.body  # the same SDP, same version: a pure refresh
    assert refresh.headers.get("Session-Expires") == "90;refresher=uac"
    cseq = s.send("INVITE", offer_with("sendonly", 2))
    assert s.final("INVITE", cseq).status == 491
    # Now answer the refresh: the UA ACKs it.
    ok = make_response(refresh, 200, to_tag=None)
    ok.headers.add("Contact", f"<sip:raw@{RAW.host}:{RAW.port}>")
    ok.headers.add("Session-Expires", "90;refresher=uac")
    s.raw.send(ok.serialize())
    assert wait(s.net, lambda: len(s.raw.requests("ACK")) == 1, 5)
    assert s.raw.requests("ACK")[0].cseq.number == refresh.cseq.number
    assert s.b.ua.calls() == 1
