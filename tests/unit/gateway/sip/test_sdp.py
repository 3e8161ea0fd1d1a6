"""SDP parse/serialize round trips and RFC 3264 audio offer/answer."""

from __future__ import annotations

import pytest

from gateway.sip.errors import RemoteProtocolError
from gateway.sip.sdp import (
    AudioNegotiation,
    SessionDescription,
    answer_direction,
    build_answer,
    build_offer,
    codec_spec,
    negotiate_audio,
)

# An Asterisk-style offer: static PCMU/PCMA, telephone-event 101, ptime, a=maxptime.
ASTERISK_OFFER = (
    b"v=0\r\n"
    b"o=- 1385064120 1385064120 IN IP4 192.0.2.10\r\n"
    b"s=Asterisk\r\n"
    b"c=IN IP4 192.0.2.10\r\n"
    b"t=0 0\r\n"
    b"m=audio 17360 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
    b"a=ptime:20\r\n"
    b"a=maxptime:150\r\n"
    b"a=sendrecv\r\n"
)

# A softphone offer: opus first, PCMA only by static type (no rtpmap), a video line.
SOFTPHONE_OFFER = (
    b"v=0\r\n"
    b"o=alice 2890844526 2890844527 IN IP4 198.51.100.7\r\n"
    b"s=Talk\r\n"
    b"c=IN IP4 198.51.100.7\r\n"
    b"b=AS:380\r\n"
    b"t=0 0\r\n"
    b"a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics\r\n"
    b"m=audio 7078 RTP/AVP 96 8 97\r\n"
    b"a=rtpmap:96 opus/48000/2\r\n"
    b"a=fmtp:96 useinbandfec=1\r\n"
    b"a=rtpmap:97 telephone-event/8000\r\n"
    b"a=rtcp-fb:* trr-int 1000\r\n"
    b"m=video 9078 RTP/AVP 103\r\n"
    b"a=rtpmap:103 VP8/90000\r\n"
    b"a=recvonly\r\n"
)


@pytest.mark.parametrize("data", [ASTERISK_OFFER, SOFTPHONE_OFFER])
def test_round_trip_of_captured_sdp(data: bytes) -> None:
    assert SessionDescription.parse(data).serialize() == data


def test_parse_fields() -> None:
    sd = SessionDescription.parse(ASTERISK_OFFER)
    assert sd.origin.session_version == 1385064120
    assert sd.connection is not None and sd.connection.host == "192.0.2.10"
    audio = sd.media[0]
    assert (audio.media, audio.port, audio.proto, audio.formats) == (
        "audio", 17360, "RTP/AVP", ["0", "8", "101"])
    assert audio.rtpmap[101].encoding == "telephone-event"
    assert audio.fmtp[101] == "0-16"
    assert audio.ptime == 20
    assert audio.direction == "sendrecv"
    assert audio.attribute("maxptime") == "150"
    soft = SessionDescription.parse(SOFTPHONE_OFFER)
    assert soft.media[0].codec_of(8) == ("PCMA", 8000, 1)  # static, no rtpmap
    assert soft.media[1].direction == "recvonly"
    assert soft.direction_of(soft.media[0]) == "sendrecv"


def test_lf_only_and_rejected_media_line() -> None:
    text = b"v=0\no=- 1 2 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\nm=audio 0 RTP/AVP 0\n"
    sd = SessionDescription.parse(text)
    assert sd.media[0].rejected
    assert sd.first_media("audio") is None
    assert sd.serialize() == text.replace(b"\n", b"\r\n")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello",
        b"v=1\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\n",
        b"v=0\r\ns=-\r\n",  # no o=
        b"v=0\r\no=- 1 x IN IP4 1.2.3.4\r\ns=-\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nm=audio x RTP/AVP 0\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nm=audio 5\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nm=audio 5 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n",
        b"\xff\xfe",
    ],
)
def test_garbage_raises_remote_protocol_error(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        SessionDescription.parse(data)


@pytest.mark.parametrize(
    ("offered", "local", "expected"),
    [
        ("sendrecv", "sendrecv", "sendrecv"),
        ("sendonly", "sendrecv", "recvonly"),
        ("recvonly", "sendrecv", "sendonly"),
        ("inactive", "sendrecv", "inactive"),
        ("sendrecv", "sendonly", "sendonly"),
        ("sendonly", "sendonly", "inactive"),
        ("sendrecv", "inactive", "inactive"),
    ],
)
def test_answer_direction(offered: str, local: str, expected: str) -> None:
    assert answer_direction(offered, local) == expected


def test_negotiate_prefers_our_order_and_finds_dtmf() -> None:
    offer = SessionDescription.parse(ASTERISK_OFFER)
    got = negotiate_audio(offer, ["PCMA/8000", "PCMU/8000", "telephone-event/8000"])
    assert isinstance(got, AudioNegotiation)
    assert (got.codec.name, got.payload_type, got.dtmf_payload_type) == ("PCMA", 8, 101)
    assert got.remote_address == ("192.0.2.10", 17360)
    assert not got.on_hold
    # Without telephone-event in the list, no DTMF payload type.
    no_dtmf = negotiate_audio(offer, ["PCMU"])
    assert no_dtmf is not None and no_dtmf.dtmf_payload_type is None


def test_negotiate_static_type_without_rtpmap_and_dynamic_dtmf() -> None:
    offer = SessionDescription.parse(SOFTPHONE_OFFER)
    got = negotiate_audio(offer)  # defaults: PCMU, PCMA, telephone-event/8000
    assert got is not None
    assert (got.codec.name, got.payload_type, got.dtmf_payload_type) == ("PCMA", 8, 97)
    opus = negotiate_audio(offer, ["opus/48000/2", "PCMU"])
    assert opus is not None and opus.payload_type == 96 and opus.fmtp == "useinbandfec=1"


def test_no_common_codec_is_none() -> None:
    offer = SessionDescription.parse(
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n"
        b"m=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n"
    )
    assert negotiate_audio(offer) is None
    assert build_answer(offer, "10.0.0.2", 20000) is None


def test_hold_detection_both_styles() -> None:
    base = SessionDescription.parse(ASTERISK_OFFER)
    base.media[0].direction = "sendonly"
    got = negotiate_audio(base)
    assert got is not None and got.on_hold and got.direction == "sendonly"
    old_style = SessionDescription.parse(ASTERISK_OFFER.replace(b"c=IN IP4 192.0.2.10",
                                                                b"c=IN IP4 0.0.0.0"))
    got = negotiate_audio(old_style)
    assert got is not None and got.on_hold


def test_build_answer_rejects_other_lines_and_answers_direction() -> None:
    offer = SessionDescription.parse(SOFTPHONE_OFFER)
    offer.media[0].direction = "sendonly"
    result = build_answer(offer, "10.0.0.2", 20000, session_id="77", session_version=3)
    assert result is not None
    answer, negotiation = result
    assert negotiation.codec.name == "PCMA"
    assert [m.port for m in answer.media] == [20000, 0]  # video rejected
    assert answer.media[1].media == "video" and answer.media[1].formats == ["103"]
    audio = answer.media[0]
    assert audio.formats == ["8", "97"]
    assert audio.rtpmap[97].encoding == "telephone-event"
    assert audio.direction == "recvonly"
    assert answer.origin.session_id == "77" and answer.origin.session_version == 3
    # The answer is itself valid SDP that negotiates back to the same codec.
    again = SessionDescription.parse(answer.serialize())
    back = negotiate_audio(again)
    assert back is not None and back.remote_address == ("10.0.0.2", 20000)


def test_build_offer_and_answer_loop() -> None:
    offer = build_offer("10.0.0.1", 30000, ["PCMU/8000", "opus/48000/2", "telephone-event/8000"],
                        session_id="5", session_version=1)
    audio = offer.media[0]
    assert audio.formats == ["0", "96", "101"]
    assert str(audio.rtpmap[96]) == "opus/48000/2"
    parsed = SessionDescription.parse(offer.serialize())
    assert parsed.serialize() == offer.serialize()
    result = build_answer(parsed, "10.0.0.2", 40000, ["opus/48000/2", "PCMU/8000"])
    assert result is not None
    assert result[1].codec.name == "opus" and result[1].payload_type == 96


def test_codec_spec_names() -> None:
    assert codec_spec("pcmu").static_pt == 0
    assert codec_spec("PCMA/8000").static_pt == 8
    assert codec_spec("G722").static_pt == 9
    assert codec_spec("AMR/8000").static_pt is None
    with pytest.raises(ValueError):
        codec_spec("AMR")
