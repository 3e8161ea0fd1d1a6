"""The INVITE session record and the RFC 4028 negotiation rules (pure functions)."""

from __future__ import annotations

import pytest

from gateway.sip.errors import LocalProtocolError, RemoteProtocolError
from gateway.sip.message import SipRequest, SipResponse, make_response
from gateway.sip.parser import parse_message
from gateway.sip.peer import Peer
from gateway.sip.session import (
    CallState,
    InviteSession,
    SessionTimer,
    negotiate_uas_timer,
    parse_session_expires,
    supports,
    timer_from_response,
)


def request(*extra: str) -> SipRequest:
    lines = [
        "INVITE sip:conf@10.0.0.2 SIP/2.0",
        "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-1",
        "From: <sip:a@10.0.0.1>;tag=a",
        "To: <sip:conf@10.0.0.2>",
        "Call-ID: st-1",
        "CSeq: 1 INVITE",
        "Contact: <sip:a@10.0.0.1>",
        *extra,
        "Content-Length: 0",
    ]
    message = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(message, SipRequest)
    return message


@pytest.mark.parametrize(
    ("extra", "ours", "header", "require", "interval", "we_refresh"),
    [
        # The caller asks and supports timer without naming a refresher: it refreshes.
        (("Session-Expires: 600", "Supported: timer"), 1800, "600;refresher=uac", True, 600,
         False),
        # A long interval is brought down to ours.
        (("Session-Expires: 7200", "Supported: timer"), 1800, "1800;refresher=uac", True, 1800,
         False),
        # The caller names us.
        (("Session-Expires: 600;refresher=uas", "Supported: timer"), 1800, "600;refresher=uas",
         True, 600, True),
        # A Session-Expires from a caller that does not support timer: we refresh.
        (("Session-Expires: 600;refresher=uac",), 1800, "600;refresher=uas", False, 600, True),
        # Supported but no Session-Expires: we impose ours and refresh.
        (("Supported: timer",), 1800, "1800;refresher=uas", True, 1800, True),
        # Nothing at all: we still impose ours (RFC 4028 section 9).
        ((), 300, "300;refresher=uas", False, 300, True),
        # The caller's Min-SE raises our interval.
        (("Supported: timer", "Min-SE: 900"), 300, "900;refresher=uas", True, 900, True),
    ],
)
def test_negotiate_uas_timer(extra: tuple[str, ...], ours: int, header: str, require: bool,
                             interval: int, we_refresh: bool) -> None:
    offer = negotiate_uas_timer(request(*extra), ours, 90)
    assert offer.reject_min_se is None
    headers = dict(offer.headers)
    assert headers["Session-Expires"] == header
    assert ("Require" in headers) is require
    assert offer.timer == SessionTimer(interval, we_refresh)


def test_negotiate_rejects_small_intervals_and_can_be_off() -> None:
    assert negotiate_uas_timer(request("Session-Expires: 60"), 1800, 90).reject_min_se == 90
    assert negotiate_uas_timer(request("Session-Expires: 100"), 1800, 120).reject_min_se == 120
    off = negotiate_uas_timer(request("Supported: timer"), 0, 90)
    assert off.timer is None and off.headers == () and off.reject_min_se is None


@pytest.mark.parametrize("value", ["abc", "", "90;refresher=me", "-5"])
def test_bad_session_expires(value: str) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_session_expires(value)


def test_parse_session_expires_and_supports() -> None:
    assert parse_session_expires("1800") == (1800, None)
    assert parse_session_expires(" 90 ; refresher=UAS") == (90, "uas")
    assert supports(request("Supported: 100rel, timer"), "timer")
    assert supports(request("k: timer"), "timer")  # compact form
    assert not supports(request("Supported: 100rel"), "timer")


def response(*headers: tuple[str, str]) -> SipResponse:
    ok = make_response(request(), 200, to_tag="b")
    for name, value in headers:
        ok.headers.add(name, value)
    return ok


def test_timer_from_response() -> None:
    assert timer_from_response(response(("Session-Expires", "120;refresher=uac")), 1800) == \
        SessionTimer(120, True)
    assert timer_from_response(response(("Session-Expires", "120;refresher=uas")), 1800) == \
        SessionTimer(120, False)
    assert timer_from_response(response(), 1800) == SessionTimer(1800, True)
    assert timer_from_response(response(), 0) is None


def test_session_timer_deadlines() -> None:
    timer = SessionTimer(90, False)
    assert timer.refresh_at(10) == 55
    assert timer.expire_at(10) == 70  # 90 - min(32, 30)
    assert SessionTimer(1800, False).expire_at(0) == 1768  # 1800 - 32


def test_session_state_transitions_are_checked() -> None:
    session = InviteSession("c", "uas", "t", request(), Peer("udp", "10.0.0.1", 5060),
                            CallState.INCOMING)
    session.set_state(CallState.ANSWERED)
    session.set_state(CallState.CONFIRMED)
    with pytest.raises(LocalProtocolError):
        session.set_state(CallState.INCOMING)
    session.set_state(CallState.TERMINATING)
    session.set_state(CallState.ENDED)
    with pytest.raises(LocalProtocolError):
        session.set_state(CallState.CONFIRMED)
