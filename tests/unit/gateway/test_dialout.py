"""Dial-out without sockets: the toll-fraud guard (pick_trunk), the DTMF string, and the
DialOut state machine with a fake clock (ringing timeout, withdrawal, status mapping, 183
early media ignored, DTMF after the answer)."""

from __future__ import annotations

import pytest

from dialplan.trunks import parse_trunk
from gateway.dialout import (
    FIRST_DIGIT_DELAY,
    DialOut,
    DialRefused,
    outcome_of,
    parse_dtmf,
    pick_trunk,
)


def trunk(name: str, *destinations: str) -> object:
    return parse_trunk({"name": name, "address": "127.0.0.1:5080",
                        "allowed_destinations": list(destinations)})


def dial(timeout: float = 30.0, dtmf: str = "") -> DialOut:
    return DialOut(id="c1", room="standup", number="+15550199", trunk="carrier",
                   started=100.0, ringing_timeout=timeout, dtmf=dtmf)


# -- the toll-fraud guard -----------------------------------------------------------------

def test_named_trunk_must_allow_the_destination() -> None:
    carrier = trunk("carrier", "+1555")
    chosen, number = pick_trunk([carrier], "+15550199", "carrier", "")
    assert chosen is carrier and number == "+15550199"
    with pytest.raises(DialRefused) as refused:
        pick_trunk([carrier], "+882123456", "carrier", "")  # a premium-rate satellite range
    assert refused.value.status == 403 and "allowed_destinations" in refused.value.reason


def test_an_empty_list_allows_nothing_and_plus_allows_everything() -> None:
    closed, open_ = trunk("closed"), trunk("open", "+")
    with pytest.raises(DialRefused) as refused:
        pick_trunk([closed], "+15550199", "closed", "")
    assert refused.value.status == 403
    assert pick_trunk([open_], "+4420790000", "open", "")[0] is open_


def test_numbers_are_normalised_with_the_default_country_before_matching() -> None:
    uk = trunk("uk", "+4420")
    assert pick_trunk([uk], "020 7946 0000", None, "44") == (uk, "+442079460000")
    # without a default country a national number is refused, never prefixed blindly
    with pytest.raises(DialRefused) as refused:
        pick_trunk([uk], "02079460000", None, "")
    assert refused.value.status == 400
    # and a national number normalised into another country does not match
    with pytest.raises(DialRefused) as refused:
        pick_trunk([uk], "02079460000", None, "1")
    assert refused.value.status in (400, 403)


def test_trunk_optional_only_when_exactly_one_fits() -> None:
    us, uk, world = trunk("us", "+1"), trunk("uk", "+44"), trunk("world", "+")
    assert pick_trunk([us, uk], "+15550199", None, "")[0] is us
    with pytest.raises(DialRefused) as refused:
        pick_trunk([us, uk], "+33140000000", None, "")
    assert refused.value.status == 403
    with pytest.raises(DialRefused) as refused:
        pick_trunk([us, world], "+15550199", None, "")
    assert refused.value.status == 400 and "us" in refused.value.reason
    with pytest.raises(DialRefused) as refused:
        pick_trunk([us], "+15550199", "nosuch", "")
    assert refused.value.status == 404


def test_dtmf_strings() -> None:
    assert parse_dtmf("1234#,,*9a") == "1234#,,*9A"
    for bad in ("12x", "1" * 65, "1;2"):
        with pytest.raises(ValueError):
            parse_dtmf(bad)


# -- the state machine --------------------------------------------------------------------

def test_ringing_then_answered() -> None:
    d = dial()
    assert d.state == "dialing" and d.participant_state == "calling"
    assert d.on_provisional(180, 101.0)
    assert d.state == "ringing" and d.participant_state == "ringing"
    assert not d.on_provisional(180, 101.5)  # once
    d.on_answered(105.0)
    assert d.state == "connected" and d.participant_state == "in-meeting"
    assert d.get_timer() is None  # no DTMF: nothing due; the ringing timeout is gone
    assert not d.cancel_due(200.0)
    d.on_ended(None, 300.0, "bye")
    assert (d.state, d.participant_state, d.reason) == ("ended", "ended", "bye")


def test_183_is_ringing_and_nothing_else() -> None:
    d = dial()
    assert d.on_provisional(183, 101.0)
    assert d.state == "ringing" and d.answered_at is None
    assert not d.on_provisional(100, 101.0)  # 100 Trying is no ringing


def test_ringing_timeout_cancels_once_and_ends_as_no_answer() -> None:
    d = dial(timeout=30.0)
    d.on_provisional(180, 101.0)
    assert d.get_timer() == 130.0
    assert not d.cancel_due(129.9)
    assert d.cancel_due(130.0)
    assert not d.cancel_due(131.0)  # one CANCEL
    assert d.get_timer() is None
    d.on_ended(487, 130.2)  # the 487 to our CANCEL
    assert (d.state, d.participant_state, d.reason) == ("ended", "no-answer", "no answer")


def test_timeout_counts_from_the_invite_not_from_ringing() -> None:
    d = dial(timeout=20.0)
    d.on_provisional(180, 119.0)
    assert d.cancel_due(120.0)


def test_withdrawn_while_ringing_is_cancelled() -> None:
    d = dial()
    d.on_provisional(180, 101.0)
    d.withdraw(102.0)
    assert d.get_timer() is None
    d.on_ended(487, 102.1)
    assert (d.participant_state, d.reason) == ("cancelled", "cancelled")


@pytest.mark.parametrize(("status", "state", "reason"), [
    (486, "busy", "busy"),
    (600, "busy", "busy"),
    (603, "busy", "declined"),
    (404, "failed", "number not found (404)"),
    (484, "failed", "number not found (484)"),
    (480, "no-answer", "no answer"),
    (408, "no-answer", "no answer"),
    (503, "failed", "SIP 503"),
    (407, "failed", "refused by the trunk (407)"),
    (488, "failed", "media not acceptable (488)"),
])
def test_final_status_mapping(status: int, state: str, reason: str) -> None:
    d = dial()
    d.on_provisional(180, 101.0)
    d.on_ended(status, 102.0, "rejected")
    assert (d.state, d.participant_state, d.reason) == ("ended", state, reason)
    assert outcome_of(status, False, False) == (state, reason)


def test_dtmf_after_the_answer_with_pauses() -> None:
    d = dial(dtmf="12,,#")
    d.on_answered(200.0)
    first = 200.0 + FIRST_DIGIT_DELAY
    assert d.get_timer() == first
    assert d.digits_due(first - 0.01) == ""
    assert d.digits_due(first) == "1"
    assert d.digits_due(first + 0.25) == "2"
    assert d.digits_due(first + 1.0) == ""  # the two-second pause
    assert d.digits_due(first + 2.5) == "#"
    assert d.get_timer() is None


def test_dtmf_is_not_sent_before_the_answer_nor_after_the_end() -> None:
    d = dial(dtmf="123")
    assert d.digits_due(1000.0) == ""
    d.on_answered(200.0)
    d.on_ended(None, 200.5, "bye")
    assert d.digits_due(1000.0) == ""
