"""The server's offers (what Chromium needs) and the browser's answers (captured Chromium 156
answers, and a Firefox-style one with bundle-only m-lines and session-level fingerprint)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.api import (
    DtlsFingerprint,
    EndpointAllocation,
    IceCandidate,
    MediaSource,
    PayloadType,
    ReceiveSource,
    TransportDescription,
)
from focus.sdp import (
    ReceiveSlots,
    SdpError,
    build_offer,
    parse_answer,
    tracks_json,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "sdp"


def fixture(name: str) -> str:
    text = (FIXTURES / name).read_text()
    return text.replace("\r\n", "\n").replace("\n", "\r\n")  # SDP lines end in CRLF


ALLOCATION = EndpointAllocation(
    conference_id="room", endpoint_id="b1",
    transport=TransportDescription(
        ice_ufrag="Abcd", ice_pwd="0123456789abcdefghijklmn",
        fingerprints=(DtlsFingerprint("sha-256", ":".join(["AB"] * 32)),), setup="actpass",
        candidates=(IceCandidate("1", 1, "udp", 2130706431, "127.0.0.1", 40000, "host"),)),
    payload_types=(), header_extensions=(),
)  # fmt: skip
AUDIO = ReceiveSource(MediaSource("b2-x", "audio", 1111, None, None, "s", "t"), 5001)
CAMERA = ReceiveSource(MediaSource("b2-x", "video", 2222, 2223, "camera", "s", "t2"), 5002, 5003)
SCREEN = ReceiveSource(MediaSource("b3-y", "video", 3333, 3334, "screen", "s", "t3"), 5004, 5005)
CAMERA4 = ReceiveSource(MediaSource("b4-z", "video", 4444, 4445, "camera", "s", "t4"), 5006, 5007)


def sections(sdp: str) -> list[list[str]]:
    """The offer split into [session, m-line 1, m-line 2, ...] lines."""
    assert sdp.endswith("\r\n") and "\n" not in sdp.replace("\r\n", "")
    out: list[list[str]] = [[]]
    for line in sdp.split("\r\n")[:-1]:
        if line.startswith("m="):
            out.append([])
        out[-1].append(line)
    return out


def attr(section: list[str], name: str) -> list[str]:
    return [line.split(":", 1)[1] for line in section if line.startswith(f"a={name}:")]


# -- the offer -------------------------------------------------------------------------------


def test_offer_has_what_chromium_needs() -> None:
    slots = ReceiveSlots().assign([AUDIO, CAMERA, SCREEN])
    sdp = build_offer(ALLOCATION, slots, session_id=42, version=1)
    session, *media = sections(sdp)
    assert session[:4] == ["v=0", "o=- 42 1 IN IP4 127.0.0.1", "s=-", "t=0 0"]
    assert "a=group:BUNDLE a0 v0 s0 r1 r2 r3" in session
    assert "a=msid-semantic: WMS *" in session
    assert [attr(m, "mid")[0] for m in media] == ["a0", "v0", "s0", "r1", "r2", "r3"]
    directions = [next(x for x in m if x in ("a=recvonly", "a=sendonly", "a=inactive"))
                  for m in media]  # fmt: skip
    assert directions == ["a=recvonly"] * 3 + ["a=sendonly"] * 3
    for m in media:
        assert m[0].split()[2] == "UDP/TLS/RTP/SAVPF"
        assert m[0].split()[1] == "40000" and "c=IN IP4 127.0.0.1" in m
        assert "a=rtcp-mux" in m
        assert attr(m, "setup") == ["actpass"]
        assert attr(m, "ice-ufrag") == ["Abcd"] and attr(m, "ice-pwd") == [
            "0123456789abcdefghijklmn"]  # fmt: skip
        assert attr(m, "fingerprint") == ["sha-256 " + ":".join(["AB"] * 32)]
        assert attr(m, "candidate") == ["1 1 udp 2130706431 127.0.0.1 40000 typ host"]
        assert "a=end-of-candidates" in m
    audio, video = media[0], media[1]
    assert audio[0].startswith("m=audio") and audio[0].split()[3:] == ["111"]
    assert attr(audio, "rtpmap") == ["111 opus/48000/2"]
    assert attr(audio, "fmtp") == ["111 minptime=10;useinbandfec=1"]
    assert attr(audio, "extmap") == [
        "1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
        "4 urn:ietf:params:rtp-hdrext:sdes:mid"]  # fmt: skip
    assert video[0].split()[3:] == ["96", "97", "102", "103"]
    assert attr(video, "rtpmap") == ["96 VP8/90000", "97 rtx/90000", "102 H264/90000",
                                     "103 rtx/90000"]  # fmt: skip
    assert attr(video, "fmtp") == [
        "97 apt=96",
        "102 profile-level-id=42e01f;packetization-mode=1;level-asymmetry-allowed=1",
        "103 apt=102"]  # fmt: skip
    for pt in ("96", "102"):
        assert [f.split(" ", 1)[1] for f in attr(video, "rtcp-fb") if f.startswith(pt)] == [
            "nack", "nack pli", "ccm fir", "goog-remb", "transport-cc"]  # fmt: skip
    assert [e.split()[0] for e in attr(video, "extmap")] == ["3", "4"]  # no audio level
    # receive m-lines say whose source they carry
    r2 = media[4]
    assert attr(r2, "msid") == ["b2-x b2-x-camera-5002"]
    assert attr(r2, "ssrc-group") == ["FID 5002 5003"]
    assert attr(r2, "ssrc") == ["5002 cname:b2-x", "5002 msid:b2-x b2-x-camera-5002",
                                "5003 cname:b2-x", "5003 msid:b2-x b2-x-camera-5002"]
    assert attr(media[3], "ssrc") == ["5001 cname:b2-x", "5001 msid:b2-x b2-x-audio-5001"]
    for own in media[:3]:
        assert not attr(own, "ssrc") and not attr(own, "msid")


def test_offer_is_the_one_chromium_156_accepted() -> None:
    """The exact offer a real Chromium 156 took (with the answer in the fixtures); a change
    of shape must be checked against a browser again, then this fixture updated."""
    slots = ReceiveSlots().assign([AUDIO, CAMERA, SCREEN])
    assert build_offer(ALLOCATION, slots, session_id=42, version=1) == \
        fixture("chromium156_offer.sdp")  # fmt: skip


def test_offer_uses_the_bridge_payload_types_and_ice_lite() -> None:
    allocation = EndpointAllocation(
        conference_id="c", endpoint_id="e",
        transport=TransportDescription("uf12", "p" * 22, (DtlsFingerprint("sha-256", "AA"),),
                                       "actpass", (), ice_lite=True),
        payload_types=(PayloadType(109, "opus", 48000, 2), PayloadType(100, "VP8", 90000)),
        header_extensions=(),
    )  # fmt: skip
    session, *media = sections(build_offer(allocation, (), session_id=1, version=7))
    assert "a=ice-lite" in session and "o=- 1 7 IN IP4 127.0.0.1" in session
    assert media[0][0] == "m=audio 9 UDP/TLS/RTP/SAVPF 109" and "c=IN IP4 0.0.0.0" in media[0]
    assert media[1][0] == "m=video 9 UDP/TLS/RTP/SAVPF 100"
    assert not attr(media[0], "candidate")


def test_tracks_map_active_slots_only() -> None:
    slots = ReceiveSlots()
    slots.assign([AUDIO, SCREEN])
    assert tracks_json(slots.assign([AUDIO])) == {
        "r1": {"participant": "b2-x", "kind": "audio", "video_type": None}}  # fmt: skip
    assert tracks_json(slots.assign([AUDIO, SCREEN])) == {
        "r1": {"participant": "b2-x", "kind": "audio", "video_type": None},
        "r2": {"participant": "b3-y", "kind": "video", "video_type": "screen"}}  # fmt: skip


# -- receive slots -----------------------------------------------------------------------------


def mids(slots: tuple[object, ...]) -> list[tuple[str, str | None]]:
    out = []
    for s in slots:
        source = getattr(s, "source", None)
        out.append((getattr(s, "mid", ""), None if source is None else source.source.endpoint_id
                    + ":" + str(source.source.ssrc)))  # fmt: skip
    return out


def test_slots_are_stable_and_reused_one_offer_later() -> None:
    slots = ReceiveSlots()
    assert mids(slots.assign([AUDIO, CAMERA, SCREEN])) == [
        ("r1", "b2-x:1111"), ("r2", "b2-x:2222"), ("r3", "b3-y:3333")]  # fmt: skip
    # order of the bridge's list does not move anything
    assert mids(slots.assign([SCREEN, CAMERA, AUDIO])) == mids(slots.slots)
    # the screen goes, a camera arrives in the same offer: a new m-line, r3 inactive
    assert mids(slots.assign([AUDIO, CAMERA, CAMERA4])) == [
        ("r1", "b2-x:1111"), ("r2", "b2-x:2222"), ("r3", None), ("r4", "b4-z:4444")]  # fmt: skip
    # a video source arriving later reuses the inactive video m-line; audio never does
    audio5 = ReceiveSource(MediaSource("b5", "audio", 5555), 5010)
    screen5 = ReceiveSource(MediaSource("b5", "video", 5556, None, "screen"), 5011)
    assert mids(slots.assign([AUDIO, CAMERA, CAMERA4, audio5, screen5])) == [
        ("r1", "b2-x:1111"), ("r2", "b2-x:2222"), ("r3", "b5:5556"), ("r4", "b4-z:4444"),
        ("r5", "b5:5555")]  # fmt: skip
    # everything leaves: every slot stays, inactive
    assert mids(slots.assign([])) == [(f"r{i}", None) for i in range(1, 6)]


def test_a_new_receive_ssrc_for_the_same_source_updates_the_slot() -> None:
    slots = ReceiveSlots()
    slots.assign([CAMERA])
    moved = ReceiveSource(CAMERA.source, 6000, 6001)
    assert slots.differs([moved]) and not slots.differs([CAMERA])
    (slot,) = slots.assign([moved])
    assert slot.mid == "r1" and slot.source == moved


def test_differs() -> None:
    slots = ReceiveSlots()
    assert not slots.differs([])
    assert slots.differs([AUDIO])
    slots.assign([AUDIO, CAMERA])
    assert not slots.differs([CAMERA, AUDIO, AUDIO])
    assert slots.differs([AUDIO])


# -- answers -----------------------------------------------------------------------------------


def test_chromium_answer() -> None:
    answer = parse_answer(fixture("chromium156_answer.sdp"), "b1")
    assert answer.mids == ("a0", "v0", "s0", "r1", "r2", "r3")
    t = answer.transport
    assert (t.ice_ufrag, t.ice_pwd, t.setup) == ("jolE", "TJsa1XKbLC1rPrktmJYSLsym", "active")
    assert t.fingerprints == (DtlsFingerprint(
        "sha-256", "AD:49:B9:6E:BE:54:B1:58:3A:9F:4B:7A:E3:43:ED:1F:25:C4:D3:30:2D:4D:87:99:"
        "8A:CF:88:D5:D9:85:8D:9F"),)  # fmt: skip
    # the TCP candidate is left out: the bridge is UDP only
    assert t.candidates == (IceCandidate("1576791896", 1, "udp", 2122260223, "127.0.0.1",
                                         48424, "host"),)  # fmt: skip
    assert answer.sources == (
        MediaSource("b1", "audio", 2710421219, None, None, "",
                    "17d66d46-71e1-4e4f-8aa1-863ca545a257"),
        MediaSource("b1", "video", 4161352494, 1460254441, "camera", "",
                    "f90d7af1-a68f-4999-a771-58407878ca11"),
        MediaSource("b1", "video", 2594509377, 3589115342, "screen", "",
                    "666037bd-43a3-4d94-81fd-3fe50b12107a"),
    )  # fmt: skip


def test_chromium_answer_to_a_later_offer_keeps_the_sources() -> None:
    first = parse_answer(fixture("chromium156_answer.sdp"), "b1")
    later = parse_answer(fixture("chromium156_answer_r3.sdp"), "b1")
    assert later.sources == first.sources and later.transport == first.transport


def test_firefox_style_answer() -> None:
    answer = parse_answer(fixture("firefox_style_answer.sdp"), "b7")
    t = answer.transport
    assert t.fingerprints[0].value.startswith("3C:8E:41")  # session level
    assert [(c.host, c.type, c.related_address, c.related_port) for c in t.candidates] == [
        ("192.168.1.20", "host", None, None), ("fe80::1c2f:3aff:fe4b:9d01", "host", None, None),
        ("203.0.113.7", "srflx", "192.168.1.20", 51234)]  # fmt: skip
    # v0 has port 0 but is bundle-only: it sends; s0 is inactive
    assert [(s.kind, s.video_type, s.ssrc, s.rtx_ssrc) for s in answer.sources] == [
        ("audio", None, 1111111111, None), ("video", "camera", 2222222222, 2222222223)]
    assert answer.sources[1].stream_id == "{0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0}"


def edit(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new)


CHROME = fixture("chromium156_answer.sdp")


@pytest.mark.parametrize(
    ("sdp", "message"),
    [
        ("", "v=0"),
        ("hello", "v=0"),
        (edit(CHROME, "a=ice-ufrag:jolE", "a=ice-ufrag:j"), "ice-ufrag"),
        (edit(CHROME, "a=ice-ufrag:jolE", "a=ice-ufrag:jo lE"), "ice-ufrag"),
        (CHROME.replace("a=ice-pwd:TJsa1XKbLC1rPrktmJYSLsym", "a=ice-pwd:short"), "ice-pwd"),
        (CHROME.replace("a=fingerprint:sha-256 AD:", "a=fingerprint:md5 AD:"), "fingerprint"),
        (CHROME.replace("a=fingerprint:sha-256 AD:", "a=fingerprint:sha-256 ZZ:"),
         "fingerprint"),
        (CHROME.replace("a=setup:active", "a=setup:actpass"), "setup"),
        (CHROME.replace("a=mid:r3", "a=mid:r2"), "unique"),
        (edit(CHROME, "m=audio 48424", "m=video 48424"), "a0"),
        (edit(CHROME, "a=ssrc:2710421219 cname", "a=ssrc:0 cname"), "ssrc"),
        (edit(CHROME, "a=ssrc:2710421219 cname", "a=ssrc:99999999999 cname"), "ssrc"),
        (edit(CHROME, "a=ssrc:2710421219 cname", "a=ssrc:4161352494 cname"), "same ssrc"),
        (edit(CHROME, "a=candidate:1576791896 1 udp 2122260223 127.0.0.1 48424 typ host",
              "a=candidate:1576791896 1 udp 2122260223 127.0.0.1 48424 host"), "candidate"),
        (edit(CHROME, "127.0.0.1 48424 typ host", "127.0.0.1 x typ host"), "candidate"),
        (edit(CHROME, "127.0.0.1 48424 typ host", "<script> 48424 typ host"), "candidate"),
        (edit(CHROME, "m=audio 48424 UDP/TLS/RTP/SAVPF 111", "m=audio"), "m-line"),
        (edit(CHROME, "s=-", "garbage"), "line 3"),
    ],
)  # fmt: skip
def test_bad_answers(sdp: str, message: str) -> None:
    with pytest.raises(SdpError) as info:
        parse_answer(sdp, "b1")
    assert message in str(info.value)


def test_inactive_or_rejected_slots_send_nothing() -> None:
    inactive = CHROME.replace("a=sendonly", "a=inactive", 1)  # a0's direction
    answer = parse_answer(inactive, "b1")
    assert [s.video_type for s in answer.sources] == ["camera", "screen"]
    # no ssrc lines: nothing the bridge could route, so no source
    bare = "\r\n".join(line for line in CHROME.split("\r\n")
                       if not line.startswith("a=ssrc:2710421219"))  # fmt: skip
    assert [s.kind for s in parse_answer(bare, "b1").sources] == ["video", "video"]
