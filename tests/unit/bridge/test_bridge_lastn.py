"""Last-N: ranking, and the forwarder switching video with the dominant speaker."""

from __future__ import annotations

from aiortc.rtp import RtcpPsfbPacket, RtpPacket
from fwd_helpers import Room, is_rtcp, vp8

from bridge.api import DominantSpeakerChanged, MediaSource
from bridge.forwarder import ForwarderSettings
from bridge.lastn import effective_last_n, select_video_senders


def test_ranking_recent_speakers_first_then_join_order() -> None:
    cameras = ["a", "b", "c", "d", "e"]
    assert select_video_senders("a", 2, ["d", "a", "x"], cameras) == {"d", "b"}
    assert select_video_senders("a", 3, [], cameras) == {"b", "c", "d"}
    assert select_video_senders("a", -1, ["e"], cameras) == {"b", "c", "d", "e"}
    assert select_video_senders("a", 0, ["e"], cameras) == frozenset()
    assert select_video_senders("z", 10, [], cameras) == set(cameras)


def test_effective_last_n() -> None:
    assert effective_last_n(20, -1) == 20
    assert effective_last_n(20, 3) == 3
    assert effective_last_n(2, 5) == 2
    assert effective_last_n(-1, 4) == 4
    assert effective_last_n(-1, -1) == -1


class Video:
    """VP8 senders' sequence numbers, and what reached one receiver."""

    def __init__(self, room: Room) -> None:
        self.room = room
        self.seq = {"e0": 100, "e1": 5000, "e2": 60000}

    def send(self, sender: str, keyframe: bool = False) -> None:
        self.seq[sender] += 1
        index = self.room.ids.index(sender)
        self.room.fwd.on_rtp(sender, vp8(2000 + index, self.seq[sender], keyframe),
                             self.room.now)

    def plis_to(self, sent: list[tuple[str, bytes]], endpoint_id: str) -> int:
        return sum(1 for e, d in sent if e == endpoint_id and is_rtcp(d) and d[1] == 206)


def video_for(sent: list[tuple[str, bytes]], receiver: str) -> list[RtpPacket]:
    return [RtpPacket.parse(d) for e, d in sent
            if e == receiver and not is_rtcp(d) and d[1] & 0x7F == 96]


def test_last_n_follows_the_dominant_speaker_with_keyframes_and_continuous_seq() -> None:
    room = Room(3, ForwarderSettings(last_n=1), video=True)
    v = Video(room)
    room.take()
    # Nobody spoke yet: e1 gets the first camera that joined, e0, from a key frame on.
    v.send("e0")
    v.send("e2")
    sent = room.take()
    assert video_for(sent, "e1") == []
    assert v.plis_to(sent, "e0") == 1  # asked for a key frame for its new receivers
    v.send("e0", keyframe=True)
    v.send("e0")
    v.send("e2", keyframe=True)
    sent = room.take()
    got = video_for(sent, "e1")
    assert [(p.ssrc, p.sequence_number) for p in got] == [(2000, 102), (2000, 103)]

    # e2 speaks and takes the floor: e1 switches to e2's camera.
    room.speak("e2", level=20, seconds=1.0)
    events = [e for e in room.events() if isinstance(e, DominantSpeakerChanged)]
    assert [e.endpoint_id for e in events] == ["e2"]
    sent = room.take()
    assert v.plis_to(sent, "e2") >= 1
    v.send("e0")
    v.send("e2")  # not a key frame: held back from e1
    sent = room.take()
    assert video_for(sent, "e1") == []
    v.send("e2", keyframe=True)
    v.send("e2")
    sent = room.take()
    assert [(p.ssrc, p.sequence_number) for p in video_for(sent, "e1")] == [
        (2002, 60004), (2002, 60005)]  # first time: the sender's numbers

    # e0 speaks for long enough: back to e0, whose stream continues at 104 for e1.
    for _ in range(5):
        v.send("e0")  # e1 does not get these
    room.speak("e0", level=5, seconds=2.5)
    events = [e for e in room.events() if isinstance(e, DominantSpeakerChanged)]
    assert [(e.endpoint_id, e.previous) for e in events] == [("e0", ("e2",))]
    room.take()
    v.send("e0")
    v.send("e0", keyframe=True)
    v.send("e0")
    sent = room.take()
    got = video_for(sent, "e1")
    assert [(p.ssrc, p.sequence_number) for p in got] == [(2000, 104), (2000, 105)]
    assert v.seq["e0"] == 112  # the sender skipped 8 numbers that e1 never sees as loss


def test_pli_to_a_switched_in_sender_is_rate_limited() -> None:
    room = Room(2, ForwarderSettings(keyframe_interval=0.3), video=True)
    v = Video(room)
    room.take()
    for _ in range(10):  # 10 non-key packets in 100 ms: one PLI
        room.now += 0.01
        v.send("e0")
    sent = room.take()
    plis = [RtcpPsfbPacket.parse(d[4:], 1) for e, d in sent if e == "e0" and is_rtcp(d)]
    assert [p.media_ssrc for p in plis] == [2000]
    room.now += 0.3
    v.send("e0")
    assert v.plis_to(room.take(), "e0") == 1


def test_screen_share_is_forwarded_whatever_last_n() -> None:
    room = Room(3, ForwarderSettings(last_n=0), video=True)
    room.fwd.set_sources("e0", (MediaSource("e0", "audio", 1000),
                                MediaSource("e0", "video", 2000, video_type="screen")))
    room.take()
    room.fwd.on_rtp("e0", vp8(2000, 1, keyframe=True), room.now)
    room.fwd.on_rtp("e2", vp8(2002, 1, keyframe=True), room.now)  # a camera: last-N 0
    sent = room.take()
    assert sorted(e for e, d in sent if not is_rtcp(d)) == ["e1", "e2"]
    assert all(d[8:12] == b"\x00\x00\x07\xd0" for e, d in sent if not is_rtcp(d))


def test_endpoint_last_n_wish_applies() -> None:
    room = Room(3, video=True)
    room.fwd.set_last_n("e1", 0)
    room.take()
    room.fwd.on_rtp("e0", vp8(2000, 1, keyframe=True), room.now)
    assert sorted(e for e, d in room.take() if not is_rtcp(d)) == ["e2"]
    room.fwd.set_last_n("e1", -1)
    room.fwd.on_rtp("e0", vp8(2000, 2, keyframe=True), room.now)
    assert sorted(e for e, d in room.take() if not is_rtcp(d)) == ["e1", "e2"]
