"""The pure parts of the conference benchmarks (tests/bench/conference_peers.py and
conference_load.py): the synthetic browser's SDP answer against the server's own offer
writer and answer parser, the phone's SIP messages against the server's SIP parser, and the
timelines that turn received packets back into the audio a peer played. No sockets."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from bridge.api import (
    DtlsFingerprint,
    EndpointAllocation,
    IceCandidate,
    MediaSource,
    ReceiveSource,
    TransportDescription,
)
from focus.sdp import ReceiveSlots, build_offer, parse_answer
from gateway.media.codecs import codec_by_name
from gateway.sip.parser import parse_message

REPO = Path(__file__).resolve().parents[3]
if str(REPO) not in sys.path:  # the benchmarks are not an installed package
    sys.path.insert(0, str(REPO))

from tests.bench.conference_load import build_answer, parse_offer  # noqa: E402
from tests.bench.conference_peers import (  # noqa: E402
    Program,
    Received,
    SipUac,
    _parse_sip,
    phone_codec,
    rebuild,
    sdp_media,
    timeline,
)

FINGERPRINT = ":".join(["AB"] * 32)
ALLOCATION = EndpointAllocation(
    conference_id="room", endpoint_id="b1",
    transport=TransportDescription(
        ice_ufrag="Abcd", ice_pwd="0123456789abcdefghijklmn",
        fingerprints=(DtlsFingerprint("sha-256", FINGERPRINT),), setup="actpass",
        candidates=(IceCandidate("1", 1, "udp", 2130706431, "127.0.0.1", 40000, "host"),)),
    payload_types=(), header_extensions=(),
)  # fmt: skip
PHONE = ReceiveSource(MediaSource("p2-x", "audio", 1111, None, None, "p2-x", "t"), 5001)
GONE = ReceiveSource(MediaSource("b3-y", "audio", 2222, None, None, "b3-y", "t2"), 5002)


def server_offer() -> str:
    """An offer as the server writes it: own slots, r1 active (a phone), r2 inactive."""
    slots = ReceiveSlots()
    slots.assign([PHONE, GONE])
    return build_offer(ALLOCATION, slots.assign([PHONE]), session_id=1, version=2)


# -- SDP: the synthetic browser's answer ---------------------------------------------------------


def test_parse_offer_reads_the_servers_offer() -> None:
    offer = parse_offer(server_offer())
    assert [(s.mid, s.kind, s.direction) for s in offer.sections] == [
        ("a0", "audio", "recvonly"), ("v0", "video", "recvonly"), ("s0", "video", "recvonly"),
        ("r1", "audio", "sendonly"), ("r2", "audio", "inactive")]  # fmt: skip
    assert (offer.ice_ufrag, offer.ice_pwd) == ("Abcd", "0123456789abcdefghijklmn")
    assert offer.fingerprints == [("sha-256", FINGERPRINT)]
    assert offer.candidates == ["1 1 udp 2130706431 127.0.0.1 40000 typ host"]
    assert offer.level_id == 1 and not offer.ice_lite
    assert any(line.startswith("a=rtpmap:111 opus/48000/2") for line in
               offer.sections[0].codec_lines)


def test_answer_is_read_by_the_server_as_one_audio_source() -> None:
    offer = parse_offer(server_offer())
    sdp = build_answer(offer, ufrag="wxyz", pwd="p" * 24, fingerprints=[("sha-256", "CD:" * 31
                       + "CD")], candidates=["7 1 udp 2130706431 127.0.0.1 5555 typ host"],
                       ssrc=424242, cname="load-3")  # fmt: skip
    parsed = parse_answer(sdp, "b9")
    assert parsed.mids == ("a0", "v0", "s0", "r1", "r2")
    assert [(s.kind, s.ssrc, s.endpoint_id) for s in parsed.sources] == [("audio", 424242, "b9")]
    t = parsed.transport
    assert (t.ice_ufrag, t.ice_pwd, t.setup) == ("wxyz", "p" * 24, "active")
    assert [(c.host, c.port) for c in t.candidates] == [("127.0.0.1", 5555)]
    directions = [line for line in sdp.split("\r\n")
                  if line in ("a=sendonly", "a=recvonly", "a=inactive")]
    assert directions == ["a=sendonly", "a=inactive", "a=inactive", "a=recvonly", "a=inactive"]
    assert "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level" in sdp


# -- the phone's SIP ------------------------------------------------------------------------------


def test_invite_parses_with_the_servers_sip_parser() -> None:
    uac = SipUac(("127.0.0.1", 5060), "bench-phone", "quality-pcmu", "v=0\r\n")
    uac.port = 40400
    request = parse_message(uac._request("INVITE", "sip:bench@127.0.0.1:5060", 1, "v=0\r\n",
                                         ("X-Room-Name: quality-pcmu",)))
    assert request.method == "INVITE" and request.headers.get("X-Room-Name") == "quality-pcmu"
    assert request.from_tag == uac.tag and request.body == b"v=0\r\n"
    assert request.top_via.port == 40400


def test_response_and_sdp_answer() -> None:
    data = (b"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP 127.0.0.1:1\r\nt: <sip:bench@h>;tag=xyz\r\n"
            b"CSeq: 1 INVITE\r\nl: 99\r\n\r\nv=0\r\nc=IN IP4 127.0.0.1\r\n"
            b"m=audio 20002 RTP/AVP 9 101\r\n")
    start, headers, body = _parse_sip(data)
    assert start == "SIP/2.0 200 OK" and headers["to"] == ["<sip:bench@h>;tag=xyz"]
    assert sdp_media(body) == ("127.0.0.1", 20002, [9, 101])


# -- programs and timelines ------------------------------------------------------------------------


def test_program_plays_a_clip_once_then_silence() -> None:
    program = Program(8000)
    assert not program.next_frame(0.0).any() and program.started is None
    program.play(np.full(200, 1000, dtype=np.int16))  # 1.25 frames: padded to 2
    first, second, third = (program.next_frame(t) for t in (1.0, 1.02, 1.04))
    assert program.started == 1.0
    assert (first == 1000).all() and (second[:40] == 1000).all() and not second[40:].any()
    assert not third.any() and not program.playing


def test_timeline_places_frames_by_media_time_whatever_their_arrival() -> None:
    frames = [(10.0 + 0.02 * i + jitter, 0.02 * i, np.full(160, i + 1, dtype=np.int16))
              for i, jitter in enumerate((0.0, 0.015, 0.003, 0.030))]
    out = timeline(frames, 8000, 10.0, 10.1)
    assert out.size == 800
    assert [int(out[160 * i]) for i in range(5)] == [1, 2, 3, 4, 0]


def test_rebuild_conceals_lost_packets_and_keeps_silent_gaps() -> None:
    codec = codec_by_name("PCMU")
    t = np.arange(160 * 12)
    voice = (8000 * np.sin(2 * np.pi * 200 * t / 8000)).astype(np.int16)
    packets = [Received(5.0 + 0.02 * i, 100 + i, 1000 + 160 * i,
                        codec.encode(voice[160 * i:160 * (i + 1)]))
               for i in range(12) if i != 6]  # seq 106 lost on the way
    packets.append(packets[2])                # and one duplicate
    # a talk pause: the next packet's timestamp jumps 5 frames, its sequence number does not
    packets.append(Received(5.4, 112, 1000 + 160 * 17, codec.encode(voice[:160])))
    out = rebuild(packets, phone_codec("PCMU"), 5.0, 5.5)
    frame = [np.abs(out[160 * i:160 * (i + 1)].astype(int)).max() for i in range(25)]
    assert frame[5] > 4000 and frame[6] > 2000   # the lost frame is concealed, not silent
    assert frame[7] > 4000
    assert max(frame[12:17]) == 0                 # the pause stays silent
    assert frame[17] > 4000
    decoded = codec.decode(codec.encode(voice[:160]))
    assert np.array_equal(out[:160], decoded)


@pytest.mark.parametrize("codec", ["PCMU", "G722"])
def test_phone_codec_frames(codec: str) -> None:
    c = phone_codec(codec)
    assert c.frame_samples == c.sample_rate // 50 and c.ts_step == c.clock_rate // 50
    payload = c.encode(np.zeros(c.frame_samples, dtype=np.int16))
    assert c.decode(payload).size == c.frame_samples
