"""What failed is logged at WARNING (issue 15), routine endings stay at INFO: the gateway's
SDP refusals, the ACK without an answer and the RTP timeout; a trunk registration going to
"failed"; a dial-out that failed against one that ended normally; a browser endpoint that
failed against one whose browser closed DTLS. Each method runs on a stand-in for its owner
(the methods use a few attributes of it), without sockets."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any, cast

import pytest

from bridge.endpoint import Endpoint
from gateway.dialout import DialOut
from gateway.dialout_calls import DialOutCalls
from gateway.service import Gateway
from gateway.settings import CODECS
from gateway.sip.events import CallConfirmed, IncomingCall
from gateway.sip.registration import Registration, RegistrationSettings

SDP_PCMU = (b"v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n"
            b"m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")


def levels(caplog: pytest.LogCaptureFixture, text: str) -> list[int]:
    return [r.levelno for r in caplog.records if text in r.getMessage()]


class Owner(SimpleNamespace):
    """The attributes the methods under test use, recording what they did."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(ended=[], rejected=[], **kwargs)
        self._end = lambda call, reason: self.ended.append((call.call_id, reason))
        self._reject = lambda call_id, status, reason: self.rejected.append(status)
        self._flush = lambda: None


def test_refused_sdp_offers_are_warnings(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    owner = Owner()
    parse = cast(Any, Gateway._parse_offer)
    garbage = IncomingCall("c-bad", cast(Any, None), cast(Any, None), b"\xff not sdp")
    assert parse(owner, garbage, CODECS) == (False, None)
    g729 = SDP_PCMU.replace(b"RTP/AVP 0", b"RTP/AVP 18").replace(b"0 PCMU", b"18 G729")
    assert parse(owner, IncomingCall("c-g729", cast(Any, None), cast(Any, None), g729),
                 CODECS) == (False, None)
    assert owner.rejected == [488, 488]
    assert levels(caplog, "c-bad: unparseable SDP offer") == [logging.WARNING]
    assert levels(caplog, "c-g729: no common audio codec") == [logging.WARNING]
    ok, offer = parse(owner, IncomingCall("c-ok", cast(Any, None), cast(Any, None), SDP_PCMU),
                      CODECS)
    assert ok and offer is not None and not levels(caplog, "c-ok")


def test_an_ack_without_a_usable_answer_and_no_rtp_are_warnings(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    owner = Owner(_negotiate_answer=lambda call_id, answer, codecs: None,
                  settings=SimpleNamespace(media_timeout=30.0))
    call = SimpleNamespace(call_id="c-ack", offered_in_200=True, extra={})
    cast(Any, Gateway._confirmed)(owner, call, CallConfirmed("c-ack", b"junk"), 1.0)
    assert owner.ended == [("c-ack", "no SDP answer")]
    assert levels(caplog, "c-ack: the ACK had no usable SDP answer") == [logging.WARNING]
    cast(Any, Gateway._on_media_timeout)(owner, SimpleNamespace(call_id="c-quiet"))
    assert owner.ended[-1] == ("c-quiet", "media timeout")
    assert levels(caplog, "c-quiet: no RTP for 30 s: hanging up") == [logging.WARNING]


def test_a_registration_going_to_failed_is_a_warning_without_the_password(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    reg = Registration(RegistrationSettings(
        name="carrier", addresses=(("192.0.2.1", 5060),), username="sb",
        password="s3cret-pw", domain="carrier.example", expires=120), rng=lambda: 0.5)
    reg.start(0.0)
    assert reg.next_attempt() is not None
    reg.on_response(200, 0.0, granted=100)
    assert levels(caplog, "registration registering -> registered") == [logging.INFO]
    reg.handle_timer(reg.get_timer() or 0.0)
    assert reg.next_attempt() is not None
    reg.on_response(403, 70.0)
    assert reg.state == "failed"
    assert levels(caplog, "trunk carrier: registration registered -> failed") \
        == [logging.WARNING]
    assert all("s3cret-pw" not in r.getMessage() for r in caplog.records)


def _dial(outcome: int | None, answered: bool) -> DialOut:
    dial = DialOut(id="d1", room="standup", number="+15550199", trunk="carrier",
                   started=100.0, ringing_timeout=30.0, dtmf="")
    if answered:
        dial.on_answered(101.0)
    dial.on_ended(outcome, 102.0, "hangup")
    return dial


@pytest.mark.parametrize(("status", "answered", "level"), [
    (503, False, logging.WARNING),  # failed: SIP 503
    (404, False, logging.WARNING),  # failed: no such number
    (486, False, logging.INFO),     # busy: routine
    (None, True, logging.INFO),     # in the meeting, then hung up: routine
])
def test_a_failed_dial_out_is_a_warning_a_busy_or_finished_one_is_not(
        caplog: pytest.LogCaptureFixture, status: int | None, answered: bool,
        level: int) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    dial = _dial(status, answered)

    def gone(pid: str) -> None:
        raise KeyError(pid)

    owner = SimpleNamespace(
        _dial_by_call={"c-out": (dial, "p1")}, _dial_calls={}, callee_memory=None,
        _dial_watch={}, _dial_timers={}, _time=lambda: 103.0, focus=SimpleNamespace(get=gone))
    cast(Any, DialOutCalls._dialout_cleanup)(owner, SimpleNamespace(call_id="c-out"), "bye")
    assert levels(caplog, "dial-out d1: ended:") == [level]
    assert all("15550199" not in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(("reason", "level"), [
    ("not connected within 15 s", logging.WARNING),
    ("no packets for 15 s", logging.WARNING),
    ("DTLS failed", logging.WARNING),
    ("DTLS closed", logging.INFO),  # the browser closed its side: a tab closed
])
def test_a_failed_browser_endpoint_is_a_warning(caplog: pytest.LogCaptureFixture,
                                                reason: str, level: int) -> None:
    caplog.set_level(logging.DEBUG)
    failed: list[str] = []
    endpoint = Endpoint(
        cast(Any, SimpleNamespace(conference_id="conf", endpoint_id="ep1")),
        cast(Any, SimpleNamespace(on_closed=None)), timeout=15.0, now=0.0,
        on_connected=lambda e: None, on_failed=lambda e, why: failed.append(why))
    endpoint.fail(reason)
    assert failed == [reason]
    assert levels(caplog, f"endpoint conf/ep1 failed: {reason}") == [level]
