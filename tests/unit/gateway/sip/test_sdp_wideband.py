"""Offer/answer with G.722 and Opus: our preference wins, dynamic types and DTMF rates."""

from __future__ import annotations

from gateway.sip.sdp import (
    SessionDescription,
    build_answer,
    build_offer,
    negotiate_audio,
    parse_fmtp,
)

WIDEBAND = ["opus/48000/2", "G722/8000", "PCMU/8000", "PCMA/8000", "telephone-event/8000"]


def offer(formats: str, *lines: str) -> SessionDescription:
    text = "\r\n".join([
        "v=0", "o=- 1 1 IN IP4 192.0.2.20", "s=-", "c=IN IP4 192.0.2.20", "t=0 0",
        f"m=audio 4000 RTP/AVP {formats}", *lines, "a=sendrecv", "",
    ])
    return SessionDescription.parse(text.encode())


# A desk phone: G.711 first, then G.722 and Opus (on its own dynamic type), DTMF at 8000.
DESK_PHONE = offer(
    "0 8 9 107 101",
    "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000", "a=rtpmap:9 G722/8000",
    "a=rtpmap:107 opus/48000/2",
    "a=fmtp:107 maxplaybackrate=16000;sprop-maxcapturerate=16000;maxaveragebitrate=24000",
    "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15", "a=ptime:20",
)


def test_our_preference_wins_over_the_offerers_order() -> None:
    got = negotiate_audio(DESK_PHONE, WIDEBAND)
    assert got is not None
    assert got.codec.name == "opus" and got.payload_type == 107
    assert got.dtmf_payload_type == 101 and got.dtmf_clock_rate == 8000
    assert parse_fmtp(got.fmtp) == {"maxplaybackrate": "16000",
                                    "sprop-maxcapturerate": "16000",
                                    "maxaveragebitrate": "24000"}
    # without opus on our list, G.722 beats the phone's first choice (PCMU)
    g722 = negotiate_audio(DESK_PHONE, WIDEBAND[1:])
    assert g722 is not None and g722.codec.name == "G722" and g722.payload_type == 9
    # and a narrowband list still picks G.711 as before
    narrow = negotiate_audio(DESK_PHONE, ["PCMA/8000", "PCMU/8000", "telephone-event/8000"])
    assert narrow is not None and narrow.codec.name == "PCMA"


def test_answer_uses_the_phones_dynamic_type_and_our_fmtp() -> None:
    built = build_answer(DESK_PHONE, "10.0.0.5", 30000, WIDEBAND, session_id="9")
    assert built is not None
    answer, negotiation = built
    audio = answer.media[0]
    assert audio.formats == ["107", "101"]
    assert str(audio.rtpmap[107]) == "opus/48000/2"
    assert audio.fmtp[107] == "useinbandfec=1"            # ours, not the phone's echoed
    assert str(audio.rtpmap[101]) == "telephone-event/8000" and audio.fmtp[101] == "0-15"
    text = answer.serialize().decode()
    assert "a=rtpmap:107 opus/48000/2\r\na=fmtp:107 useinbandfec=1\r\n" in text
    assert "maxplaybackrate" not in text
    assert negotiation.fmtp is not None and "maxplaybackrate" in negotiation.fmtp
    # the phone reading our answer finds opus on its own payload type
    back = negotiate_audio(SessionDescription.parse(answer.serialize()), WIDEBAND)
    assert back is not None and back.codec.name == "opus" and back.payload_type == 107


def test_g722_by_static_type_without_rtpmap() -> None:
    bare = offer("9 0", "a=rtpmap:0 PCMU/8000")
    built = build_answer(bare, "10.0.0.5", 30000, WIDEBAND)
    assert built is not None
    answer, negotiation = built
    assert negotiation.codec.name == "G722" and negotiation.payload_type == 9
    assert negotiation.dtmf_payload_type is None
    assert answer.media[0].formats == ["9"]
    assert str(answer.media[0].rtpmap[9]) == "G722/8000"


def test_telephone_event_at_the_codecs_rate_is_preferred_when_both_are_offered() -> None:
    browser_like = offer(
        "111 0 110 126",
        "a=rtpmap:111 opus/48000/2", "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:110 telephone-event/48000", "a=rtpmap:126 telephone-event/8000",
    )
    both = [*WIDEBAND, "telephone-event/48000"]
    got = negotiate_audio(browser_like, both)
    assert got is not None and got.codec.name == "opus"
    assert (got.dtmf_payload_type, got.dtmf_clock_rate) == (110, 48000)
    built = build_answer(browser_like, "10.0.0.5", 30000, both)
    assert built is not None
    assert str(built[0].media[0].rtpmap[110]) == "telephone-event/48000"
    # with only telephone-event/8000 on our list, opus still gets DTMF (at 8000)
    got = negotiate_audio(browser_like, WIDEBAND)
    assert got is not None and (got.dtmf_payload_type, got.dtmf_clock_rate) == (126, 8000)
    # PCMU picks the 8000 one even when 48000 comes first on our list
    pcmu = negotiate_audio(browser_like, ["PCMU/8000", "telephone-event/48000",
                                          "telephone-event/8000"])
    assert pcmu is not None and (pcmu.dtmf_payload_type, pcmu.dtmf_clock_rate) == (126, 8000)


def test_opus_without_channel_count_is_accepted() -> None:
    sloppy = offer("98 0", "a=rtpmap:98 opus/48000", "a=rtpmap:0 PCMU/8000")
    built = build_answer(sloppy, "10.0.0.5", 30000, WIDEBAND)
    assert built is not None
    assert built[1].codec.name == "opus" and built[1].payload_type == 98
    assert str(built[0].media[0].rtpmap[98]) == "opus/48000/2"


def test_offer_lists_the_wideband_codecs_in_order() -> None:
    ours = build_offer("10.0.0.5", 30000, WIDEBAND, session_id="3")
    audio = ours.media[0]
    assert audio.formats == ["96", "9", "0", "8", "101"]
    assert str(audio.rtpmap[96]) == "opus/48000/2" and audio.fmtp[96] == "useinbandfec=1"
    assert str(audio.rtpmap[9]) == "G722/8000" and str(audio.rtpmap[101]).startswith(
        "telephone-event/8000")
    # a G.722-only phone answers: we find G.722 in its answer
    phone_answer = offer("9 101", "a=rtpmap:9 G722/8000", "a=rtpmap:101 telephone-event/8000")
    got = negotiate_audio(phone_answer, WIDEBAND)
    assert got is not None and got.codec.name == "G722" and got.dtmf_payload_type == 101


def test_parse_fmtp() -> None:
    assert parse_fmtp(None) == {}
    assert parse_fmtp("useinbandfec=1; Stereo=0 ;;0-15") == {
        "useinbandfec": "1", "stereo": "0", "0-15": ""}
