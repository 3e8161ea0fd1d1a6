"""Forwarder: receive policies ("all", "audio", "none") and groups, in routing and in
receive_sources()."""

from __future__ import annotations

import pytest
from aiortc.rtp import RtcpPacket, RtcpPsfbPacket, RtpPacket
from fwd_helpers import Room, audio, is_rtcp, vp8

from bridge.api import MediaSource
from bridge.forwarder import ForwarderSettings


def video_room(n: int, **settings: object) -> Room:
    room = Room(n, ForwarderSettings(**settings), video=True)  # type: ignore[arg-type]
    room.take()
    return room


def everyone_sends(room: Room, seq: int, video: bool = True) -> None:
    """Every endpoint sends one audio packet and (video rooms) one VP8 key frame packet."""
    for i, e in enumerate(room.ids):
        room.fwd.on_rtp(e, audio(1000 + i, seq), room.now)
        if video:
            room.fwd.on_rtp(e, vp8(2000 + i, seq, keyframe=True), room.now)


def received(room: Room) -> dict[str, set[int]]:
    """Drain; receiver -> SSRCs of the RTP it got."""
    got: dict[str, set[int]] = {e: set() for e in room.ids}
    for e, d in room.take():
        if not is_rtcp(d):
            got[e].add(RtpPacket.parse(d).ssrc)
    return got


def plis_to(sent: list[tuple[str, bytes]], endpoint_id: str) -> list[int]:
    return [p.media_ssrc for e, d in sent if e == endpoint_id and is_rtcp(d)
            for p in RtcpPacket.parse(d) if isinstance(p, RtcpPsfbPacket) and p.fmt == 1]


def receive_ssrcs(room: Room, endpoint_id: str) -> set[int]:
    return {rs.ssrc for rs in room.fwd.receive_sources(endpoint_id)}


def test_default_is_everything_as_before() -> None:
    room = video_room(3)
    everyone_sends(room, 1)
    got = received(room)
    assert got["e0"] == {1001, 1002, 2001, 2002}
    assert receive_ssrcs(room, "e0") == {1001, 1002, 2001, 2002}


def test_receive_none_gets_nothing_and_still_sends() -> None:
    room = video_room(3)
    room.fwd.set_receive("e2", "none", None)
    everyone_sends(room, 1)
    got = received(room)
    assert got["e2"] == set()
    assert got["e0"] == {1001, 1002, 2001, 2002}  # e2's own sources still go out
    assert got["e1"] == {1000, 1002, 2000, 2002}
    assert room.fwd.receive_sources("e2") == ()
    assert receive_ssrcs(room, "e0") == {1001, 1002, 2001, 2002}


def test_receive_none_asks_no_key_frames() -> None:
    room = Room(2, ForwarderSettings(keyframe_interval=0.3))  # audio only so far
    room.fwd.set_receive("e1", "none", None)
    room.take()
    room.fwd.set_sources("e0", (MediaSource("e0", "audio", 1000),
                                MediaSource("e0", "video", 2000, video_type="camera")))
    room.now += 1.0
    room.fwd.on_rtp("e0", vp8(2000, 1, keyframe=False), room.now)  # a delta frame
    room.fwd.on_rtcp("e1", bytes(RtcpPsfbPacket(fmt=1, ssrc=77, media_ssrc=2000)), room.now)
    sent = room.take()
    assert plis_to(sent, "e0") == []
    assert [e for e, d in sent if not is_rtcp(d)] == []
    # the same with "all": the new receiver's projection asks the sender for a key frame
    room.now += 1.0
    room.fwd.set_receive("e1", "all", None)
    assert plis_to(room.take(), "e0") == [2000]


def test_receive_audio_gets_only_audio() -> None:
    room = video_room(3, keyframe_interval=0.3)
    room.fwd.set_receive("e0", "audio", None)
    room.now += 1.0
    everyone_sends(room, 1)
    got = received(room)
    assert got["e0"] == {1001, 1002}
    assert got["e1"] == {1000, 1002, 2000, 2002}
    assert receive_ssrcs(room, "e0") == {1001, 1002}
    room.now += 1.0
    room.fwd.on_rtcp("e0", bytes(RtcpPsfbPacket(fmt=1, ssrc=77, media_ssrc=2001)), room.now)
    assert plis_to(room.take(), "e1") == []  # not its stream any more


def test_screen_share_is_not_audio() -> None:
    room = Room(2)
    room.fwd.set_receive("e1", "audio", None)
    room.fwd.set_sources("e0", (MediaSource("e0", "audio", 1000),
                                MediaSource("e0", "video", 2000, video_type="screen")))
    assert receive_ssrcs(room, "e1") == {1000}
    room.take()
    room.fwd.on_rtp("e0", vp8(2000, 1, keyframe=True), room.now)
    assert received(room)["e1"] == set()


def test_same_group_gets_nothing_from_each_other() -> None:
    room = video_room(4)
    room.fwd.set_receive("e0", None, "gw")
    room.fwd.set_receive("e1", None, "gw")
    room.fwd.set_receive("e2", None, "other")
    everyone_sends(room, 1)
    got = received(room)
    assert got["e0"] == {1002, 1003, 2002, 2003}
    assert got["e1"] == {1002, 1003, 2002, 2003}
    assert got["e2"] == {1000, 1001, 1003, 2000, 2001, 2003}
    assert got["e3"] == {1000, 1001, 1002, 2000, 2001, 2002}
    assert receive_ssrcs(room, "e0") == {1002, 1003, 2002, 2003}
    assert receive_ssrcs(room, "e3") == {1000, 1001, 1002, 2000, 2001, 2002}


def test_none_leaves_a_value_and_empty_group_leaves_the_group() -> None:
    room = Room(3)
    room.fwd.set_receive("e0", "audio", "gw")
    room.fwd.set_receive("e1", None, "gw")
    assert receive_ssrcs(room, "e0") == {1002}
    room.fwd.set_receive("e0", None, "")  # keeps "audio", leaves the group
    assert receive_ssrcs(room, "e0") == {1001, 1002}
    room.fwd.set_receive("e0", "none", None)  # keeps no group
    room.fwd.set_receive("e0", "all", None)
    assert receive_ssrcs(room, "e0") == {1001, 1002}
    assert receive_ssrcs(room, "e1") == {1000, 1002}


def test_unknown_policy_is_refused_and_unknown_endpoint_ignored() -> None:
    room = Room(2)
    with pytest.raises(ValueError, match="receive policy"):
        room.fwd.set_receive("e0", "video", None)  # type: ignore[arg-type]
    room.fwd.set_receive("nobody", "none", "gw")
    assert receive_ssrcs(room, "e0") == {1001}


def test_projections_detach_and_resume_with_continuous_sequence_numbers() -> None:
    room = Room(2)
    projections = room.fwd.stats()["projections"]
    for seq in range(1, 4):
        room.fwd.on_rtp("e0", audio(1000, seq), room.now)
    room.fwd.set_receive("e1", "none", None)
    assert room.fwd.stats()["projections"] == projections - 1
    for seq in range(4, 9):
        room.fwd.on_rtp("e0", audio(1000, seq), room.now)
    room.fwd.set_receive("e1", "audio", None)
    for seq in range(9, 11):
        room.fwd.on_rtp("e0", audio(1000, seq), room.now)
    seqs = [p.sequence_number for p in room.rtp_for("e1", 1000)]
    assert seqs == [1, 2, 3, 4, 5]  # 9 and 10 renumbered after the pause


def test_gateway_shape_callers_and_mixer() -> None:
    """Two phone callers (send-only) and the gateway's room mixer (audio of the others)
    share a group; two browsers get everyone's audio, the mixer only the browsers'."""
    room = Room(5)  # e0 e1: browsers; e2 e3: callers; e4: the mixer
    for caller in ("e2", "e3"):
        room.fwd.set_receive(caller, "none", "gw:room")
    room.fwd.set_receive("e4", "audio", "gw:room")
    room.fwd.set_sources("e4", ())  # the mixer sends nothing
    everyone_sends(room, 1, video=False)
    got = received(room)
    assert got == {"e0": {1001, 1002, 1003}, "e1": {1000, 1002, 1003}, "e2": set(),
                   "e3": set(), "e4": {1000, 1001}}
    assert receive_ssrcs(room, "e4") == {1000, 1001}
    assert receive_ssrcs(room, "e2") == set()


def test_last_n_skips_cameras_of_the_same_group() -> None:
    """A receiver's last-N slots go to cameras it may get, not to its group's."""
    room = video_room(3, last_n=1)
    room.fwd.set_receive("e0", None, "g")
    room.fwd.set_receive("e1", None, "g")  # e1 joined before e2: it would take the slot
    room.take()
    everyone_sends(room, 1)
    assert received(room)["e0"] == {1002, 2002}
