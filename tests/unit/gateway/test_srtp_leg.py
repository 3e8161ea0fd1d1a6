"""SDES-SRTP policy on phone legs without sockets (gateway/srtp_leg.py): what an offer gets
by the trunk's media_encryption and the signalling's transport, what we offer through a
trunk, which answers we take, and re-offers on an SRTP leg."""

from __future__ import annotations

import pytest

from dialplan.trunks import TrunkRecord, parse_trunk
from gateway.media.sdes import Encryption, SdesError, new_crypto
from gateway.sip.sdp import SessionDescription, build_offer
from gateway.srtp_leg import (
    add_crypto,
    answer_keys,
    crypto_values,
    decide_inbound,
    encryption_for,
    offer_for,
    rekey,
)

SUITE80, SUITE32 = "AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"


def offer(profile: str = "RTP/AVP", *cryptos: str) -> SessionDescription:
    sdp = build_offer("192.0.2.10", 4000, ["PCMU/8000"], session_id="1")
    sdp.media[0].proto = profile
    sdp.media[0].attributes.extend(("crypto", c) for c in cryptos)
    return SessionDescription.parse(sdp.serialize())


def crypto_line(tag: int = 1, suite: str = SUITE80) -> str:
    return new_crypto(tag, suite).value()


def trunk(policy: str, transport: str = "tls") -> TrunkRecord:
    return parse_trunk({"name": "t", "address": "127.0.0.1", "transport": transport,
                        "media_encryption": policy})


def test_no_trunk_is_optional() -> None:
    assert encryption_for(None) is Encryption.OPTIONAL
    assert encryption_for(trunk("required")) is Encryption.REQUIRED


@pytest.mark.parametrize(("profile", "with_crypto", "policy", "secure", "outcome"), [
    # SRTP keys over plain UDP/TCP: never accepted
    ("RTP/SAVP", True, Encryption.OPTIONAL, False, 488),
    ("RTP/SAVP", True, Encryption.REQUIRED, False, 488),
    ("RTP/AVP", True, Encryption.OPTIONAL, False, "plain"),  # answered without crypto
    ("RTP/AVP", False, Encryption.REQUIRED, False, 488),
    # over TLS
    ("RTP/SAVP", True, Encryption.OPTIONAL, True, "srtp"),
    ("RTP/SAVP", True, Encryption.REQUIRED, True, "srtp"),
    ("RTP/AVP", False, Encryption.OPTIONAL, True, "plain"),
    ("RTP/AVP", False, Encryption.REQUIRED, True, 488),
    ("RTP/SAVP", False, Encryption.OPTIONAL, True, 488),  # SAVP without a key
    # off: plain only
    ("RTP/SAVP", True, Encryption.OFF, True, 488),
    ("RTP/AVP", True, Encryption.OFF, True, "plain"),
])
def test_inbound_decisions(profile: str, with_crypto: bool, policy: Encryption, secure: bool,
                           outcome: object) -> None:
    lines = (crypto_line(),) if with_crypto else ()
    decision = decide_inbound(offer(profile, *lines), 0, policy, secure)
    if outcome == 488:
        assert decision.reject == 488 and decision.ours is None
    elif outcome == "plain":
        assert decision.reject is None and decision.ours is None
    else:
        assert decision.ours is not None and decision.theirs is not None
        assert decision.ours.key_salt != decision.theirs.key_salt  # our own fresh key


def test_the_strongest_usable_suite_is_chosen() -> None:
    decision = decide_inbound(offer("RTP/SAVP", crypto_line(1, SUITE32), crypto_line(2, SUITE80)),
                              0, Encryption.OPTIONAL, True)
    assert decision.ours is not None and (decision.ours.tag, decision.ours.suite) == (2, SUITE80)


def test_offers_through_a_trunk() -> None:
    assert offer_for(trunk("off")) is None
    assert offer_for(trunk("optional", "udp")) is None  # no keys over plain UDP
    with pytest.raises(SdesError):
        offer_for(trunk("required", "udp"))
    ours = offer_for(trunk("required"))
    assert ours is not None and [c.suite for c in ours] == [SUITE80, SUITE32]
    sdp = build_offer("192.0.2.1", 5000, ["PCMU/8000"])
    add_crypto(sdp, ours, "RTP/SAVP")
    parsed = SessionDescription.parse(sdp.serialize())
    assert parsed.media[0].proto == "RTP/SAVP" and len(crypto_values(parsed.media[0])) == 2


def answer(profile: str, *cryptos: str) -> SessionDescription:
    return offer(profile, *cryptos)


def test_answers_to_our_offer() -> None:
    ours = offer_for(trunk("optional"))
    assert ours is not None
    theirs = new_crypto(2, SUITE32)
    leg = answer_keys(answer("RTP/SAVP", theirs.value()), ours, Encryption.OPTIONAL)
    assert leg is not None and leg.ours is ours[1] and leg.theirs.key_salt == theirs.key_salt
    # a tag we did not offer, a suite that does not match the tag
    for bad in (new_crypto(7, SUITE80), new_crypto(1, SUITE32)):
        with pytest.raises(SdesError):
            answer_keys(answer("RTP/SAVP", bad.value()), ours, Encryption.OPTIONAL)
    # no crypto: plain only when optional and the answer says RTP/AVP
    assert answer_keys(answer("RTP/AVP"), ours, Encryption.OPTIONAL) is None
    with pytest.raises(SdesError):
        answer_keys(answer("RTP/AVP"), ours, Encryption.REQUIRED)
    with pytest.raises(SdesError):
        answer_keys(answer("RTP/SAVP"), ours, Encryption.OPTIONAL)
    # keys in the answer to a plain offer
    with pytest.raises(SdesError):
        answer_keys(answer("RTP/SAVP", theirs.value()), None, Encryption.OPTIONAL)
    assert answer_keys(answer("RTP/AVP"), None, Encryption.OFF) is None


def test_reoffers_keep_srtp_and_our_key() -> None:
    first = decide_inbound(offer("RTP/SAVP", crypto_line()), 0, Encryption.OPTIONAL, True)
    assert first.ours is not None and first.theirs is not None
    from gateway.srtp_leg import LegSrtp

    leg = LegSrtp(first.ours, first.theirs)
    new_key = crypto_line(3)
    again = rekey(leg, offer("RTP/SAVP", new_key), 0, Encryption.OPTIONAL, True)
    assert again is not None and again.ours.key_salt == leg.ours.key_salt
    assert again.ours.tag == 3 and again.theirs.value() == new_key
    assert rekey(leg, offer("RTP/AVP"), 0, Encryption.OPTIONAL, True) is None  # to plain: no
    assert rekey(leg, offer("RTP/SAVP", crypto_line(1, SUITE32)), 0, Encryption.OPTIONAL,
                 True) is None  # another suite
