"""A trunk's codecs apply both ways (issue 16): our dial-out offer and our answer to its
inbound calls (and re-offers) use the trunk's list; a call that matched no trunk, or a trunk
without a list, negotiates every codec we have."""

from __future__ import annotations

from dialplan.trunks import parse_trunk
from gateway.call import PhoneCall
from gateway.call_media import call_codecs
from gateway.settings import CODECS, trunk_codecs
from gateway.sip.peer import Peer
from gateway.sip.sdp import SessionDescription, build_answer, negotiate_audio

PCMA_ONLY = parse_trunk({"name": "pbx", "address": "192.0.2.1",
                         "allowed_addresses": ["192.0.2.0/24"], "codecs": ["pcma"]})
ANY = parse_trunk({"name": "any", "address": "192.0.2.2"})


def offer(*payloads: tuple[int, str]) -> SessionDescription:
    lines = ["v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0",
             "m=audio 4000 RTP/AVP " + " ".join(str(pt) for pt, _ in payloads)]
    lines += [f"a=rtpmap:{pt} {name}" for pt, name in payloads]
    return SessionDescription.parse(("\r\n".join(lines) + "\r\n").encode())


FULL = offer((111, "opus/48000/2"), (9, "G722/8000"), (0, "PCMU/8000"), (8, "PCMA/8000"),
             (101, "telephone-event/8000"))


def call_through(trunk: object) -> PhoneCall:
    call = PhoneCall(call_id="c1", leg_id="leg1", caller="2001", name="2001",
                     source=Peer("udp", "192.0.2.1", 5060), route_room=None)
    call.extra["trunk"] = trunk
    return call


def test_a_trunk_limits_the_codecs_in_our_preference_order() -> None:
    assert trunk_codecs(PCMA_ONLY) == ["PCMA/8000", "telephone-event/8000"]
    assert trunk_codecs(ANY) == CODECS
    assert trunk_codecs(None) == CODECS
    both = parse_trunk({"name": "two", "address": "192.0.2.3", "codecs": ["PCMU", "OPUS"]})
    assert trunk_codecs(both) == ["opus/48000/2", "PCMU/8000", "telephone-event/8000"]


def test_an_inbound_call_through_the_trunk_answers_with_its_codec_only() -> None:
    codecs = call_codecs(call_through(PCMA_ONLY))
    negotiation = negotiate_audio(FULL, codecs)
    assert negotiation is not None and negotiation.codec.name.upper() == "PCMA"
    built = build_answer(FULL, "192.0.2.9", 5000, codecs)
    assert built is not None
    answer = built[0].serialize().decode()
    assert "m=audio 5000 RTP/AVP 8 101" in answer
    assert "opus" not in answer and "PCMU" not in answer and "G722" not in answer


def test_an_offer_without_the_trunks_codec_has_nothing_in_common() -> None:
    codecs = call_codecs(call_through(PCMA_ONLY))
    assert negotiate_audio(offer((0, "PCMU/8000")), codecs) is None  # the gateway sends 488
    assert build_answer(offer((0, "PCMU/8000")), "192.0.2.9", 5000, codecs) is None


def test_calls_without_a_trunk_keep_every_codec() -> None:
    for trunk in (None, ANY, "not a trunk"):
        negotiation = negotiate_audio(FULL, call_codecs(call_through(trunk)))
        assert negotiation is not None and negotiation.codec.name.lower() == "opus"
