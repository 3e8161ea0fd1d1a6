"""UserAgent as the UAC of a dial-out: digest answers to 407/401 on the INVITE (once per
fresh challenge; a refused password ends the call), provisional responses reported as
CallProgress, CANCEL while ringing, and rejections ending the call with their status."""

from __future__ import annotations

from test_useragent_harness import A, App, B, answer_for, network, offer_sdp, ringing_only, wait

from gateway.sip.digest import DigestServer, parse_credentials
from gateway.sip.events import CallAnswered, CallEnded, CallEvent, CallProgress, IncomingCall
from gateway.sip.loop import LoopNetwork

PASSWORD = "carrier-pw-1"


def carrier(net: LoopNetwork, *, status: int = 407, answer: bool = True) -> tuple[App, list[str]]:
    """A UAS that challenges every INVITE without good credentials (407 or 401), then
    rings and answers. The list records the credentials' user names it saw."""
    server = DigestServer(realm="carrier.test")
    seen: list[str] = []
    header = "Proxy-Authenticate" if status == 407 else "WWW-Authenticate"
    asked = "Proxy-Authorization" if status == 407 else "Authorization"

    def policy(app: App, event: CallEvent) -> None:
        if not isinstance(event, IncomingCall):
            return
        value = event.request.headers.get(asked)
        creds = parse_credentials(value) if value else None
        if creds is not None:
            seen.append(creds.username)
        if creds is None or server.verify(creds, PASSWORD, "INVITE", event.source.host,
                                          net.clock.now) != "ok":
            app.ua.reject(event.call_id, status, headers=[
                (header, c) for c in server.challenges(net.clock.now, event.source.host)])
            return
        app.ua.ringing(event.call_id)
        if answer:
            assert event.offer is not None
            app.ua.answer(event.call_id, answer_for(event.offer, app.addr.host))

    return App(net, B, policy), seen


def test_invite_answers_a_407_with_digest_and_the_call_is_answered() -> None:
    _, net = network(delay=0.01)
    a = App(net, A)
    b, seen = carrier(net)
    call_id = a.ua.call(B, "sip:+15550199@10.0.0.2", "<sip:+15550100@10.0.0.2>",
                        offer_sdp("10.0.0.1"), credentials=("sb", PASSWORD))
    assert wait(net, lambda: a.has(CallAnswered), 5)
    assert seen == ["sb"]
    assert a.of(CallProgress) == [CallProgress(call_id, 180, False)]
    assert len(b.of(IncomingCall)) == 2  # challenged, then with credentials


def test_invite_answers_a_401_too() -> None:
    _, net = network(delay=0.01)
    a = App(net, A)
    carrier(net, status=401)
    a.ua.call(B, "sip:+15550199@10.0.0.2", "<sip:+15550100@10.0.0.2>",
              offer_sdp("10.0.0.1"), credentials=("sb", PASSWORD))
    assert wait(net, lambda: a.has(CallAnswered), 5)


def test_a_wrong_password_is_answered_once_then_the_call_ends_with_407() -> None:
    _, net = network(delay=0.01)
    a = App(net, A)
    _, seen = carrier(net)
    call_id = a.ua.call(B, "sip:+15550199@10.0.0.2", "<sip:+15550100@10.0.0.2>",
                        offer_sdp("10.0.0.1"), credentials=("sb", "wrong"))
    assert wait(net, lambda: a.has(CallEnded), 5)
    assert a.of(CallEnded) == [CallEnded(call_id, "rejected", 407)]
    assert seen == ["sb"]  # one answer, no hammering
    assert a.ua.calls() == 0


def test_without_credentials_a_challenge_ends_the_call() -> None:
    _, net = network(delay=0.01)
    a = App(net, A)
    carrier(net)
    call_id = a.ua.call(B, "sip:+15550199@10.0.0.2", "<sip:x@10.0.0.1>", offer_sdp("10.0.0.1"))
    assert wait(net, lambda: a.has(CallEnded), 5)
    assert a.of(CallEnded) == [CallEnded(call_id, "rejected", 407)]


def test_cancel_while_ringing_after_digest() -> None:
    _, net = network(delay=0.01)
    a = App(net, A)
    b, _ = carrier(net, answer=False)
    call_id = a.ua.call(B, "sip:+15550199@10.0.0.2", "<sip:+15550100@10.0.0.2>",
                        offer_sdp("10.0.0.1"), credentials=("sb", PASSWORD))
    assert wait(net, lambda: a.has(CallProgress), 5)
    a.ua.hangup(call_id)
    assert wait(net, lambda: a.has(CallEnded) and b.has(CallEnded), 5)
    assert a.of(CallEnded) == [CallEnded(call_id, "cancelled", 487)]
    assert a.ua.calls() == b.ua.calls() == 0


def test_busy_ends_the_call_with_486() -> None:
    _, net = network(delay=0.01)
    a = App(net, A)

    def busy(app: App, event: CallEvent) -> None:
        if isinstance(event, IncomingCall):
            app.ua.reject(event.call_id, 486)

    App(net, B, busy)
    call_id = a.ua.call(B, "sip:+15550199@10.0.0.2", "<sip:x@10.0.0.1>", offer_sdp("10.0.0.1"))
    assert wait(net, lambda: a.has(CallEnded), 5)
    assert a.of(CallEnded) == [CallEnded(call_id, "rejected", 486)]
    assert not a.has(CallProgress)


def test_ringing_is_reported_once_per_provisional() -> None:
    _, net = network(delay=0.01)
    a = App(net, A)
    App(net, B, ringing_only)
    call_id = a.ua.call(B, "sip:+15550199@10.0.0.2", "<sip:x@10.0.0.1>", offer_sdp("10.0.0.1"))
    assert wait(net, lambda: a.has(CallProgress), 5)
    assert a.of(CallProgress) == [CallProgress(call_id, 180, False)]
