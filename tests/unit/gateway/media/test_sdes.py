"""SDES (RFC 4568) parsing, the offer/answer decision and keys that really key SRTP."""

from __future__ import annotations

import base64
import struct

import pytest

from gateway.media.sdes import (
    Crypto,
    Encryption,
    SdesError,
    decide,
    new_crypto,
    offer,
    parse_crypto,
    srtp_sessions,
)

RFC_EXAMPLE = "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32"


def test_the_rfc_4568_example_parses_and_round_trips() -> None:
    c = parse_crypto(RFC_EXAMPLE)
    assert (c.tag, c.suite, c.lifetime, c.mki) == (1, "AES_CM_128_HMAC_SHA1_80", "2^20", (1, 32))
    assert c.key_salt == base64.b64decode("PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR")
    assert parse_crypto(c.value()) == c
    assert "PS1uQ" not in repr(c) and "PS1uQ" not in str(c)  # never the key in a log line


@pytest.mark.parametrize("value", [
    "1 AES_CM_256_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",  # suite
    "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0m",  # short key
    "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVB!",  # base64
    "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR UNENCRYPTED_SRTP",
    "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR;"
    "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",  # two keys
    "1 AES_CM_128_HMAC_SHA1_80 uri:https://example.org/key",  # not inline
    "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|later",
    "x AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",  # tag
    "",
])
def test_what_cannot_be_used_is_refused_without_the_key_in_the_message(value: str) -> None:
    with pytest.raises(SdesError) as info:
        parse_crypto(value)
    assert "PS1uQ" not in str(info.value)


def offered(*suites: str) -> list[str]:
    return [new_crypto(tag, suite).value() for tag, suite in enumerate(suites, start=3)]


def test_decisions() -> None:
    both = offered("AES_CM_128_HMAC_SHA1_32", "AES_CM_128_HMAC_SHA1_80")
    tls, udp = {"secure_signalling": True}, {"secure_signalling": False}
    # SRTP over TLS, the stronger suite chosen, its tag kept, our own fresh key
    d = decide("RTP/SAVP", both, Encryption.OPTIONAL, **tls)
    assert d.reject is None and d.theirs is not None and d.ours is not None
    assert (d.ours.tag, d.ours.suite) == (4, "AES_CM_128_HMAC_SHA1_80")
    assert d.ours.key_salt != d.theirs.key_salt
    # best-effort SRTP (RTP/AVP with a=crypto) is taken over TLS, ignored otherwise
    assert decide("RTP/AVP", both, Encryption.OPTIONAL, **tls).ours is not None
    plain = decide("RTP/AVP", both, Encryption.OPTIONAL, **udp)
    assert plain.reject is None and plain.ours is None
    # keys over plain signalling are no secret: SAVP refused, and required refuses anything
    assert decide("RTP/SAVP", both, Encryption.OPTIONAL, **udp).reject == 488
    assert decide("RTP/AVP", [], Encryption.REQUIRED, **udp).reject == 488
    # policy off: plain RTP only
    assert decide("RTP/SAVP", both, Encryption.OFF, **tls).reject == 488
    assert decide("RTP/AVP", both, Encryption.OFF, **tls).ours is None
    # required over TLS without a usable key; an MKI-only offer is no usable key
    assert decide("RTP/AVP", [], Encryption.REQUIRED, **tls).reject == 488
    d = decide("RTP/SAVP", [RFC_EXAMPLE], Encryption.REQUIRED, **tls)
    assert d.reject == 488 and "MKI" in d.reason


def test_the_keys_exchanged_key_srtp_both_ways() -> None:
    """Offerer and answerer each protect with their own key and unprotect with the other's."""
    ours_offer = offer()
    d = decide("RTP/SAVP", [c.value() for c in ours_offer], Encryption.REQUIRED,
               secure_signalling=True)
    assert d.ours is not None and d.theirs is not None
    offer_tx, offer_rx = srtp_sessions(next(c for c in ours_offer if c.tag == d.theirs.tag),
                                       d.ours)
    answer_tx, answer_rx = srtp_sessions(d.ours, d.theirs)
    rtp = struct.pack("!BBHII", 0x80, 0, 7, 1600, 0x1234) + bytes(range(160))
    protected = offer_tx.protect(rtp)
    assert protected != rtp and len(protected) == len(rtp) + 10  # the 80-bit tag
    assert answer_rx.unprotect(protected) == rtp
    back = answer_tx.protect(rtp)
    assert offer_rx.unprotect(back) == rtp
    tampered = bytearray(protected)
    tampered[20] ^= 1
    with pytest.raises(Exception):  # noqa: B017 - pylibsrtp raises its own Error
        answer_rx.unprotect(bytes(tampered))
    with pytest.raises(SdesError):
        srtp_sessions(new_crypto(1, "AES_CM_128_HMAC_SHA1_80"),
                      Crypto(1, "AES_CM_128_HMAC_SHA1_32", bytes(30)))
