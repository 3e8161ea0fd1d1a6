"""SRTP "optional" on dial-out: a 488/415 to our RTP/SAVP offer calls again once with plain
RTP/AVP, as the same call (same record, same participant) and under the same ringing
timeout; "required" (and a plain offer) never falls back."""

from __future__ import annotations

from dialplan.trunks import TrunkRecord, parse_trunk
from gateway.dialout import DialOut
from gateway.media.sdes import offer as sdes_offer
from gateway.sip.sdp import SessionDescription, build_offer
from gateway.srtp_leg import answer_keys, encryption_for, plain_fallback


def dial(fallback: bool = True, timeout: float = 30.0) -> DialOut:
    return DialOut(id="c1", room="standup", number="+15550199", trunk="carrier",
                   started=100.0, ringing_timeout=timeout, plain_fallback=fallback)


def trunk(policy: str, transport: str = "tls") -> TrunkRecord:
    return parse_trunk({"name": "carrier", "address": "192.0.2.1", "transport": transport,
                        "media_encryption": policy})


def test_only_optional_with_srtp_offered_falls_back() -> None:
    keys = sdes_offer()
    assert plain_fallback(trunk("optional"), keys)
    assert not plain_fallback(trunk("required"), keys)
    assert not plain_fallback(trunk("off"), keys)
    assert not plain_fallback(trunk("optional"), None)
    assert not plain_fallback(trunk("optional"), [])


def test_one_plain_retry_keeps_the_call_and_its_ringing_timeout() -> None:
    d = dial(timeout=30.0)
    assert d.on_provisional(180, 101.0)
    assert d.on_offer_retried(488, 102.0)
    assert d.fell_back and d.state == "ringing" and d.participant_state == "ringing"
    assert d.get_timer() == 130.0  # still from the first INVITE
    assert not d.on_offer_retried(488, 103.0)  # once
    assert d.cancel_due(130.0)
    d.on_ended(487, 130.1)
    assert (d.state, d.participant_state) == ("ended", "no-answer")
    assert d.as_json()["srtp_fallback"] is True


def test_the_plain_call_is_answered_as_any_other() -> None:
    d = dial()
    assert d.on_offer_retried(415, 101.0)
    d.on_answered(104.0)
    assert (d.state, d.participant_state) == ("connected", "in-meeting")


def test_a_refusal_of_the_plain_offer_ends_it_with_that_status() -> None:
    d = dial()
    assert d.on_offer_retried(488, 101.0)
    d.on_ended(488, 101.5)
    assert (d.state, d.participant_state, d.reason) == (
        "ended", "failed", "media not acceptable (488)")


def test_no_fallback_without_permission_nor_for_other_statuses() -> None:
    assert not dial(fallback=False).on_offer_retried(488, 101.0)
    d = dial()
    assert not d.on_offer_retried(486, 101.0)
    d.withdraw(101.0)
    d.on_ended(487, 101.2)
    assert not d.on_offer_retried(488, 101.3)  # over


def test_the_plain_answer_is_accepted_as_plain_rtp_once_no_keys_are_pending() -> None:
    plain = SessionDescription.parse(build_offer("192.0.2.2", 6000, ["PCMU/8000"]).serialize())
    policy = encryption_for(trunk("optional"))
    assert answer_keys(plain, None, policy) is None  # after the retry: srtp_offer is None
