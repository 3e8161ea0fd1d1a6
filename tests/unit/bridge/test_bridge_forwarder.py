"""Forwarder: fan-out, dropping, forced mute, rewriting towards receivers, cleanup."""

from __future__ import annotations

import logging
import struct

import pytest
from aiortc.rtp import RtpPacket
from fwd_helpers import MID_ID, TWCC_ID, Room, audio, is_rtcp, rtp

from bridge.api import DominantSpeakerChanged, MediaSource
from bridge.forwarder import Forwarder, ForwarderSettings
from bridge.levels import audio_level
from bridge.rtp import extension_value


def rtp_sent(room: Room) -> list[tuple[str, bytes]]:
    return [(e, d) for e, d in room.take() if not is_rtcp(d)]


@pytest.mark.parametrize("n", [3, 10])
def test_audio_fans_out_to_every_other_endpoint(n: int) -> None:
    room = Room(n)
    packet = audio(1000, 7, level=40)
    room.fwd.on_rtp("e0", packet, 1.0)
    sent = rtp_sent(room)
    assert sorted(e for e, _ in sent) == sorted(room.ids[1:])
    for _, data in sent:
        assert data == packet  # no rewriting needed: same seq, no transport-cc
    stats = room.fwd.stats()
    assert stats["packets_in"] == 1 and stats["packets_out"] == n - 1


def test_room_of_ten_everyone_hears_everyone() -> None:
    room = Room(10)
    for i, e in enumerate(room.ids):
        room.fwd.on_rtp(e, audio(1000 + i, 1), 1.0)
    sent = rtp_sent(room)
    assert len(sent) == 90
    got: dict[str, set[int]] = {}
    for e, d in sent:
        got.setdefault(e, set()).add(struct.unpack_from("!I", d, 8)[0])
    for i, e in enumerate(room.ids):
        assert got[e] == {1000 + j for j in range(10)} - {1000 + i}


def test_undeclared_ssrc_is_dropped_counted_and_logged_once(
        caplog: pytest.LogCaptureFixture) -> None:
    room = Room(3)
    with caplog.at_level(logging.WARNING, logger="bridge.forwarder"):
        for seq in range(5):
            room.fwd.on_rtp("e0", audio(4242, seq), 1.0)
    assert rtp_sent(room) == []
    assert room.fwd.stats()["dropped_unknown_ssrc"] == 5
    assert room.fwd.stats()["packets_dropped"] == 5
    assert sum("4242" in r.getMessage() for r in caplog.records) == 1


def test_another_endpoints_ssrc_is_not_accepted() -> None:
    room = Room(3)
    room.fwd.on_rtp("e1", audio(1000, 1), 1.0)  # e0's SSRC, sent by e1
    assert rtp_sent(room) == []
    assert room.fwd.stats()["dropped_unknown_ssrc"] == 1


def test_packets_of_unknown_endpoints_and_garbage_are_dropped() -> None:
    room = Room(2)
    room.fwd.on_rtp("nobody", audio(1000, 1), 1.0)
    room.fwd.on_rtp("e0", b"\x80\x6f\x00", 1.0)
    room.fwd.on_rtp("e0", b"\x40" + audio(1000, 1)[1:], 1.0)  # version 1
    assert rtp_sent(room) == []
    stats = room.fwd.stats()
    assert stats["dropped_unknown_endpoint"] == 1 and stats["rtp_malformed"] == 2


def test_forced_off_audio_is_dropped_and_resumes_with_continuous_seq() -> None:
    room = Room(3)
    for seq in range(1, 4):
        room.fwd.on_rtp("e0", audio(1000, seq), 1.0)
    room.take()
    room.fwd.set_audio_forced_off("e0", True)
    for seq in range(4, 54):
        room.fwd.on_rtp("e0", audio(1000, seq), 1.0)
        room.fwd.on_rtp("e1", audio(1001, seq), 1.0)  # others are not affected
    sent = rtp_sent(room)
    assert all(struct.unpack_from("!I", d, 8)[0] == 1001 for _, d in sent)
    assert len(sent) == 100
    assert room.fwd.stats()["dropped_forced_off"] == 50
    room.fwd.set_audio_forced_off("e0", False)
    for seq in range(54, 57):
        room.fwd.on_rtp("e0", audio(1000, seq), 1.0)
    sent = rtp_sent(room)
    for receiver in ("e1", "e2"):
        packets = [RtpPacket.parse(d) for e, d in sent if e == receiver]
        assert [p.sequence_number for p in packets] == [4, 5, 6]  # no gap of 50 seen
        assert [p.timestamp for p in packets] == [960 * s for s in (54, 55, 56)]  # sender's


def test_forced_off_audio_does_not_feed_the_dominant_speaker() -> None:
    room = Room(3)
    room.fwd.set_audio_forced_off("e1", True)
    room.speak("e1", level=10, seconds=3.0)
    assert not [e for e in room.events() if isinstance(e, DominantSpeakerChanged)]


def test_transport_cc_rewritten_with_a_counter_per_receiver() -> None:
    room = Room(3)
    for seq in range(1, 4):  # senders' own transport-wide numbers are far apart
        room.fwd.on_rtp("e0", audio(1000, seq, twcc=500 + seq), 1.0)
        room.fwd.on_rtp("e2", audio(1002, seq, twcc=9000 + seq), 1.0)
    got = [struct.unpack("!H", extension_value(d, TWCC_ID) or b"")[0]
           for e, d in rtp_sent(room) if e == "e1"]
    assert got == [1, 2, 3, 4, 5, 6]


def test_mid_extension_is_blanked_level_kept() -> None:
    room = Room(2)
    packet = audio(1000, 1, level=33, twcc=5, mid=b"a0")
    room.fwd.on_rtp("e0", packet, 1.0)
    (_, data), = rtp_sent(room)
    assert len(data) == len(packet)
    assert extension_value(data, MID_ID) is None
    assert audio_level(data, 1) == 33
    assert data[-40:] == packet[-40:]


def test_receive_sources_lists_every_other_endpoints_sources() -> None:
    room = Room(3, video=True)
    got = room.fwd.receive_sources("e1")
    assert [(r.source.endpoint_id, r.ssrc, r.rtx_ssrc) for r in got] == [
        ("e0", 1000, None), ("e0", 2000, 3000), ("e2", 1002, None), ("e2", 2002, 3002)]


def test_ssrc_already_used_by_another_endpoint_is_refused() -> None:
    room = Room(2)
    room.fwd.set_sources("e1", (MediaSource("e1", "audio", 1000),
                                MediaSource("e1", "audio", 1111)))
    assert [r.ssrc for r in room.fwd.receive_sources("e0")] == [1111]
    room.fwd.on_rtp("e1", audio(1111, 1), 1.0)
    assert [e for e, _ in rtp_sent(room)] == ["e0"]


def test_sources_removed_stop_being_forwarded() -> None:
    room = Room(2)
    room.fwd.set_sources("e0", ())
    room.fwd.on_rtp("e0", audio(1000, 1), 1.0)
    assert rtp_sent(room) == []
    assert room.fwd.stats()["sources"] == 1


def test_remove_endpoint_leaves_nothing_behind() -> None:
    room = Room(4, video=True)
    room.speak("e1", level=20, seconds=1.0)
    for seq in range(5):
        room.fwd.on_rtp("e2", rtp(2002, seq, pt=96, payload=b"\x10\x00\x00" + b"x" * 20),
                        room.now)
    room.fwd.on_rtcp("e0", b"\x81\xc9\x00\x01" + b"\x00" * 4, room.now)
    assert room.fwd.stats()["projections"] > 0
    for e in room.ids:
        room.fwd.remove_endpoint(e)
    stats = room.fwd.stats()
    for key in ("endpoints", "sources", "rtx_sources", "projections", "history_packets",
                "twcc_pending", "speakers"):
        assert stats[key] == 0, key
    assert room.fwd.get_timer() is None
    assert room.fwd.receive_sources("e0") == ()


def test_removing_the_dominant_speaker_hands_over() -> None:
    room = Room(3)
    room.speak("e1", level=20, seconds=1.0)
    room.speak("e2", level=10, seconds=3.0)
    room.events()
    room.fwd.remove_endpoint("e2")
    events = [e for e in room.events() if isinstance(e, DominantSpeakerChanged)]
    assert [(e.endpoint_id, e.previous) for e in events] == [("e1", ())]


def test_get_timer_asks_for_a_first_call_then_keeps_deadlines() -> None:
    sent: list[tuple[str, bytes]] = []
    fwd = Forwarder("c", ForwarderSettings(), lambda e, d: sent.append((e, d)))
    assert fwd.get_timer() is None
    fwd.add_endpoint("a")
    assert fwd.get_timer() == 0.0
    fwd.handle_timer(50.0)
    when = fwd.get_timer()
    assert when is not None and 50.0 < when <= 50.1 + 1e-9
