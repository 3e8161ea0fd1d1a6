"""VoiceUplink.stop/start: nothing computed or sent while stopped; a start goes on sanely."""

from __future__ import annotations

from gateway.browser_audio import parse_rtp
from gateway.uplink import LEVEL_SILENT, TICKS_PER_FRAME, VoiceUplink
from tests.unit.gateway.test_uplink import Encoder, Link, tone


def headers(link: Link) -> list[tuple[int, int, bool]]:
    out = []
    for packet in link.sent:
        parsed = parse_rtp(packet, 1)
        assert parsed is not None
        out.append((parsed[1], parsed[2], parsed[3]))
    return out


def test_an_uplink_made_stopped_ignores_frames_until_started() -> None:
    link, encoder = Link(), Encoder()
    up = VoiceUplink("p1", 7, link, encoder, stopped_at=10.0)
    assert not up.running and up.encoder is None
    up.on_frame(tone(8000), True)
    assert link.sent == [] and encoder.frames == 0 and up.timestamp == 0
    up.start(10.5, encoder)  # 25 frames after it was made
    up.on_frame(tone(8000), True)
    up.on_frame(tone(8000), True)
    assert headers(link) == [(0, 25 * TICKS_PER_FRAME, True), (1, 26 * TICKS_PER_FRAME, False)]
    assert up.starts == 1


def test_stop_drops_the_encoder_and_start_continues_with_a_marked_talkspurt() -> None:
    link = Link()
    up = VoiceUplink("p1", 7, link, Encoder(), initial_seq=65535, initial_ts=2**32 - 960)
    up.on_frame(tone(8000), True)
    up.stop(1.0)
    assert up.encoder is None and not up.sending and up.level == LEVEL_SILENT
    up.stop(1.5)  # already stopped: the first stop's time counts
    up.on_frame(tone(8000), True)  # (the tap is off then; ignored anyway)
    fresh = Encoder()
    up.start(1.2, fresh)  # 10 frames later
    up.start(5.0, Encoder())  # already running: nothing
    up.on_frame(tone(8000), True)
    assert headers(link) == [(65535, 2**32 - 960, True), (0, 10 * TICKS_PER_FRAME, True)]
    assert up.encoder is fresh and fresh.frames == 1


def test_a_passthrough_phone_sends_nothing_while_stopped_and_reanchors_after() -> None:
    link = Link()
    up = VoiceUplink("p1", 7, link, None)
    up.on_frame(tone(8000, 320), True)
    up.on_phone_packet(b"a", 5000, False)
    up.stop(2.0)
    up.on_phone_packet(b"b", 5960, False)
    assert len(link.sent) == 1
    up.start(3.0, None)  # 50 frames later
    up.on_frame(tone(8000, 320), True)
    up.on_phone_packet(b"c", 100000, False)
    # (the phone's packets are placed after the frame the tap gave: 1, then 1 + 50 + 1)
    assert headers(link) == [(0, TICKS_PER_FRAME, True), (1, 52 * TICKS_PER_FRAME, True)]


def test_a_closed_uplink_does_not_start() -> None:
    up = VoiceUplink("p1", 7, Link(), None, stopped_at=0.0)
    up.close()
    up.start(1.0, Encoder())
    assert not up.running
