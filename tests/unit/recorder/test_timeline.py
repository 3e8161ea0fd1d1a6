"""The recording's clock (recorder/timeline.py): gaps filled, tracks on one clock."""

from __future__ import annotations

from recorder.timeline import FRAME, TICKS_PER_FRAME, Frame, Timeline

FILL = b"\xf8\xff\xfe"
T0 = 1000.0


def frames_of(frames: list[Frame], ssrc: int) -> list[tuple[int, bytes, bool]]:
    return [(f.index, p, filled) for f in frames for t, p, filled in f.payloads
            if t.ssrc == ssrc]


def feed(tl: Timeline, ssrc: int, first: int, count: int, *, ts0: int = 5000,
         skip: set[int] | None = None, start_at: float = T0) -> None:
    """``count`` 20 ms packets of ``ssrc`` arriving on time from frame ``first``."""
    for i in range(count):
        if skip and i in skip:
            continue
        now = start_at + (first + i) * FRAME + 0.001
        tl.on_packet(ssrc, (ts0 + i * TICKS_PER_FRAME) & 0xFFFFFFFF, bytes([i % 256]) * 20,
                     now)


def test_a_steady_stream_is_given_frame_by_frame() -> None:
    tl = Timeline(T0, FILL, delay=0.1)
    feed(tl, 1, 0, 100)
    out = tl.finish(T0 + 100 * FRAME)
    got = frames_of(out, 1)
    assert [i for i, _, _ in got] == list(range(100))
    assert not any(filled for _, _, filled in got)
    assert tl.duration() == 100 * FRAME


def test_dtx_and_loss_gaps_are_filled_to_wall_clock_duration() -> None:
    tl = Timeline(T0, FILL, delay=0.1)
    # 50 frames, then DTX for 30 frames (the timestamp advances, no packets), then 20 more,
    # with two packets lost
    feed(tl, 7, 0, 50)
    feed(tl, 7, 80, 20, ts0=5000 + 80 * TICKS_PER_FRAME, skip={3, 4})
    got = frames_of(tl.finish(T0 + 100 * FRAME), 7)
    assert len(got) == 100  # 2 s of wall clock: 100 frames
    filled = [i for i, _, f in got if f]
    assert filled == [*range(50, 80), 83, 84]
    assert all(p == FILL for i, p, f in got if f)


def test_late_joiner_starts_at_its_arrival_on_the_same_clock() -> None:
    tl = Timeline(T0, FILL, delay=0.1)
    feed(tl, 1, 0, 150)
    feed(tl, 2, 60, 90, ts0=123456)  # joins 1.2 s in, its own timestamps
    out = tl.finish(T0 + 150 * FRAME)
    a, b = frames_of(out, 1), frames_of(out, 2)
    assert len(a) == 150 and len(b) == 90
    assert b[0][0] == 60 and b[-1][0] == a[-1][0] == 149  # both end on the same frame
    assert tl.tracks[2].first_frame == 60 and tl.tracks[2].number == 2


def test_a_speaker_who_stops_sending_is_filled_to_the_end() -> None:
    """A muted browser sends nothing: its track still covers the recording to its end."""
    tl = Timeline(T0, FILL, delay=0.1)
    feed(tl, 1, 0, 200)
    feed(tl, 2, 0, 50, ts0=1)  # mutes after 1 s, never comes back
    got = frames_of(tl.finish(T0 + 200 * FRAME), 2)
    assert len(got) == 200 and sum(1 for *_, f in got if f) == 150


def test_timestamp_jump_after_mute_is_re_anchored_at_arrival() -> None:
    """Sending resumes 2 s later with a timestamp 10 s ahead: placed at its arrival."""
    tl = Timeline(T0, FILL, delay=0.1, resync=0.5)
    feed(tl, 3, 0, 50)
    feed(tl, 3, 150, 50, ts0=5000 + 550 * TICKS_PER_FRAME)
    got = frames_of(tl.finish(T0 + 200 * FRAME), 3)
    assert len(got) == 200
    real = [i for i, _, f in got if not f]
    assert real[:50] == list(range(50)) and real[50] == 150 and real[-1] == 199
    assert tl.tracks[3].resyncs == 1


def test_reordered_packets_find_their_place_and_late_ones_are_dropped() -> None:
    tl = Timeline(T0, FILL, delay=0.1)
    tl.on_packet(1, 0, b"a", T0 + 0.001)
    tl.on_packet(1, 2 * TICKS_PER_FRAME, b"c", T0 + 0.041)
    tl.on_packet(1, TICKS_PER_FRAME, b"b", T0 + 0.045)  # reordered, within the delay
    tl.on_packet(1, TICKS_PER_FRAME, b"b", T0 + 0.046)  # duplicate
    out = tl.advance(T0 + 0.2)
    assert [p for _, p, _ in frames_of(out, 1)][:3] == [b"a", b"b", b"c"]
    tl.on_packet(1, 3 * TICKS_PER_FRAME, b"d", T0 + 0.25)  # frame 3 was given out already
    assert tl.tracks[1].late == 2


def test_advance_gives_frames_up_to_the_delay_and_tracks_stay_in_step() -> None:
    tl = Timeline(T0, FILL, delay=0.2)
    feed(tl, 1, 0, 10)
    out = tl.advance(T0 + 1.0)
    assert out[0].index == 0 and out[-1].index == 39  # 1.0 - 0.2 s: 40 frames
    assert tl.advance(T0 + 1.0) == []
    assert tl.finish(T0 + 1.0)[-1].index == 49
    assert tl.on_packet(1, 0, b"x", T0 + 2) is None  # finished


def test_timestamp_wraparound_keeps_counting() -> None:
    tl = Timeline(T0, FILL, delay=0.1)
    feed(tl, 9, 0, 100, ts0=0xFFFFFFFF - 20 * TICKS_PER_FRAME)
    got = frames_of(tl.finish(T0 + 100 * FRAME), 9)
    assert len(got) == 100 and not any(f for *_, f in got)


def test_too_many_tracks_are_dropped_and_counted() -> None:
    tl = Timeline(T0, FILL, max_tracks=2)
    for ssrc in (1, 2, 3):
        tl.on_packet(ssrc, 0, b"x", T0)
    assert set(tl.tracks) == {1, 2} and tl.dropped == 1


def test_a_sender_whose_clock_fell_behind_is_re_anchored_after_a_few_late_packets() -> None:
    # The sender stalls for 15 frames (0.3 s: more than the delay, less than the resync) and
    # goes on with timestamps as if no time had passed: every packet's place by timestamp
    # is a frame already given out. A few are dropped, then the track is anchored again.
    tl = Timeline(T0, FILL, delay=0.1)
    feed(tl, 1, 0, 50)
    tl.advance(T0 + 50 * FRAME)
    out: list[Frame] = []
    for i in range(50):
        now = T0 + (65 + i) * FRAME + 0.001
        tl.on_packet(1, 5000 + (50 + i) * TICKS_PER_FRAME, b"x" * 20, now)
        out += tl.advance(now)
    out += tl.finish(T0 + 116 * FRAME)
    track = tl.tracks[1]
    assert track.late == 2 and track.resyncs == 1
    tail = frames_of(out, 1)
    assert [p for _, p, filled in tail if not filled][-40:] == [b"x" * 20] * 40


def test_levels_travel_with_their_frames_and_fillers_are_silent() -> None:
    tl = Timeline(T0, FILL, delay=0.1)
    tl.on_packet(1, 0, b"a", T0 + 0.001, 30)
    tl.on_packet(2, 0, b"b", T0 + 0.001)  # no level in the packet
    tl.on_packet(1, TICKS_PER_FRAME, b"c", T0 + 0.021, 90)
    out = tl.finish(T0 + 0.04)
    assert [f.levels for f in out] == [(30, -1), (90, 127)]
