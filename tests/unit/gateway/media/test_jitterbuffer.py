"""JitterBuffer with a fake clock: order, loss, jitter, duplicates, wrap, resync, depth."""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np

from gateway.media.jitterbuffer import QUIET_PEAK, FrameKind, JitterBuffer, JitterFrame
from gateway.media.rtp import RtpPacket

SSRC = 0x1234


def frame_payload(k: int, size: int = 160) -> bytes:
    """Payload that tells which 20 ms frame (by sample index) it holds."""
    return bytes((k * 7 + i) & 0xFF for i in range(size))


def packet(k: int, ts0: int = 1000, seq0: int = 100, marker: bool = False,
           ssrc: int = SSRC) -> RtpPacket:
    return RtpPacket(payload_type=0, sequence_number=(seq0 + k) & 0xFFFF,
                     timestamp=(ts0 + 160 * k) & 0xFFFFFFFF, ssrc=ssrc, marker=marker,
                     payload=frame_payload(k))


class Sim:
    """Packets k = 0, 1, ... sent at 20 ms * k; arrival = send + delay(k) (None = lost).
    The buffer is popped every 20 ms, 5 ms after a send instant."""

    def __init__(self, jb: JitterBuffer, count: int, delay: dict[int, float | None] | None = None,
                 base_delay: float = 0.030, ts0: int = 1000, seq0: int = 100,
                 quiet: Callable[[int], bool] | None = None) -> None:
        """``quiet(k)``: whether frame k decodes to a quiet frame, told to the buffer after
        every pop (None: the buffer is never told)."""
        self.jb = jb
        self.quiet = quiet
        self.arrivals: list[tuple[float, int]] = []
        delay = delay or {}
        for k in range(count):
            d = delay.get(k, 0.0)
            if d is None:
                continue
            self.arrivals.append((base_delay + 0.020 * k + d, k))
        self.arrivals.sort()
        self.ts0 = ts0
        self.seq0 = seq0
        self.frames: list[JitterFrame] = []
        self.targets: list[float] = []           # target depth at every pop

    def run(self, until: float) -> list[JitterFrame]:
        i = 0
        tick = 0.005
        while tick < until:
            while i < len(self.arrivals) and self.arrivals[i][0] <= tick:
                t, k = self.arrivals[i]
                self.jb.put(packet(k, ts0=self.ts0, seq0=self.seq0), t)
                i += 1
            frame = self.jb.pop(tick)
            self.frames.append(frame)
            if self.quiet is not None:
                k = ((frame.timestamp - self.ts0) & 0xFFFFFFFF) // 160
                loud = frame.kind is FrameKind.AUDIO and not self.quiet(k)
                self.jb.played(LOUD if loud else QUIET)
            self.targets.append(self.jb.target_ms)
            tick += 0.020
        return self.frames


LOUD = np.full(160, QUIET_PEAK + 1, dtype=np.int16)
QUIET = np.full(160, -QUIET_PEAK, dtype=np.int16)


def audio_indexes(frames: list[JitterFrame], ts0: int = 1000) -> list[int]:
    return [((f.timestamp - ts0) & 0xFFFFFFFF) // 160 for f in frames
            if f.kind is FrameKind.AUDIO]


def test_in_order_stream_plays_every_frame_once_after_prefetch() -> None:
    jb = JitterBuffer()
    frames = Sim(jb, 100).run(2.5)
    assert frames[0].kind is FrameKind.EMPTY               # prefetch
    played = [f for f in frames if f.kind is FrameKind.AUDIO]
    assert audio_indexes(frames) == list(range(100))
    assert all(f.payload == frame_payload(k) for k, f in enumerate(played))
    assert played[0].marker and not any(f.marker for f in played[1:])
    assert jb.stats.lost == jb.stats.late == 0
    assert jb.stats.underruns == 1                         # the end of the stream
    assert jb.stats.played == 100
    # after the last frame: concealment for 60 ms, then silence
    after = [f.kind for f in frames[frames.index(played[-1]) + 1 :]]
    assert after[:4] == [FrameKind.LOST] * 3 + [FrameKind.EMPTY]
    assert set(after[3:]) == {FrameKind.EMPTY}


def test_reordering_is_repaired() -> None:
    jb = JitterBuffer()
    # every 10th packet comes 30 ms late (behind its successor)
    delay: dict[int, float | None] = {k: 0.030 for k in range(5, 100, 10)}
    frames = Sim(jb, 100, delay).run(3.0)
    assert audio_indexes(frames) == list(range(100))
    assert jb.stats.lost == 0 and jb.stats.late == 0


def test_loss_gives_lost_frames_in_place() -> None:
    jb = JitterBuffer()
    delay: dict[int, float | None] = {20: None, 40: None, 41: None}
    frames = Sim(jb, 60, delay).run(2.0)
    played = audio_indexes(frames)
    assert played == [k for k in range(60) if k not in (20, 40, 41)]
    seq = [f for f in frames if f.kind is not FrameKind.EMPTY]
    # frame 20 is concealed in place: the depth (40 ms) had 21 when 20 was due
    assert [f.kind for f in seq[19:22]] == [FrameKind.AUDIO, FrameKind.LOST, FrameKind.AUDIO]
    assert audio_indexes(seq[19:22]) == [19, 21]
    # two in a row: the buffer runs dry first (underrun), then conceals both
    between = seq[seq.index(next(f for f in seq if audio_indexes([f]) == [39])) + 1 :]
    gap = [f.kind for f in between[: between.index(next(f for f in between
                                                         if f.kind is FrameKind.AUDIO))]]
    assert gap == [FrameKind.LOST] * 3
    assert jb.stats.lost == 3 and jb.stats.underruns == 2     # 40 ran dry; end of stream


def test_duplicates_are_counted_and_dropped() -> None:
    jb = JitterBuffer()
    jb.put(packet(0), 0.0)
    jb.put(packet(0), 0.001)
    jb.put(packet(1), 0.02)
    assert jb.stats.duplicates == 1
    frames = [jb.pop(0.03), jb.pop(0.05), jb.pop(0.07)]
    assert audio_indexes(frames) == [0, 1]
    # a copy of a frame already played is late
    jb.put(packet(0), 0.08)
    assert jb.stats.late == 1


def test_sequence_and_timestamp_wrap() -> None:
    jb = JitterBuffer()
    ts0 = 0xFFFFFFFF - 160 * 10 + 1
    sim = Sim(jb, 40, seq0=65530, ts0=ts0)
    frames = sim.run(1.2)
    assert audio_indexes(frames, ts0=ts0) == list(range(40))
    assert jb.stats.lost == 0 and jb.stats.resyncs == 0


def test_late_packet_is_discarded_and_counted() -> None:
    jb = JitterBuffer()
    delay: dict[int, float | None] = {30: 0.5}            # far too late for any depth
    frames = Sim(jb, 60, delay).run(2.0)
    assert jb.stats.late == 1
    assert 30 not in audio_indexes(frames)
    assert jb.stats.lost == 1


def test_depth_grows_with_jitter_and_shrinks_slowly() -> None:
    jb = JitterBuffer()
    assert jb.target_ms == 40
    rng = random.Random(7)
    # 5 s of up to 80 ms jitter, then 30 s of a clean stream
    delay: dict[int, float | None] = {k: rng.uniform(0, 0.080) for k in range(250)}
    sim = Sim(jb, 1750, delay)
    frames = sim.run(35.0)
    grown = sim.targets[250]
    assert 80 <= grown <= 120
    # once the buffer adapted (1 s), the jittery stream plays without a gap
    last_audio = max(i for i, f in enumerate(frames) if f.kind is FrameKind.AUDIO)
    assert {f.kind for f in frames[60 : last_audio + 1]} == {FrameKind.AUDIO}
    assert jb.stats.underruns <= 3
    played = audio_indexes(frames)
    assert played == sorted(set(played)) and len(played) >= 1735
    # the target comes down, but slowly: still high 1 s into the clean stream
    assert sim.targets[300] >= grown - 20
    after = sim.targets[250:]
    assert after == sorted(after, reverse=True)
    assert sim.targets[-1] <= 40
    assert jb.level_ms <= 40                               # the buffer drained to match
    assert jb.stats.discarded >= 2                         # by dropping frames


def _jitter_then_clean(seed: int = 7) -> dict[int, float | None]:
    rng = random.Random(seed)
    return {k: rng.uniform(0, 0.080) for k in range(250)}  # 5 s of jitter, then clean


def target_came_down(jb: JitterBuffer) -> bool:
    return jb.target_ms <= 40 and jb.level_ms <= 40


def test_spare_frames_are_dropped_in_pauses() -> None:
    """Shrinking after jitter drops frames only right after two quiet ones (a pause in
    the speech, 200 ms a second here), never inside the talking nor after a lone quiet
    frame (the closure of a stop consonant: every 10th frame here)."""
    def quiet(k: int) -> bool:
        return k % 50 >= 40 or k % 10 == 5

    jb = JitterBuffer()
    frames = Sim(jb, 1750, _jitter_then_clean(), quiet=quiet).run(35.0)
    played = audio_indexes(frames)
    dropped = sorted(set(range(300, played[-1])) - set(played))
    assert jb.stats.drops >= 2 and jb.stats.drops_in_voice == 0
    assert len(dropped) == jb.stats.drops
    assert all(quiet(k - 1) and quiet(k - 2) for k in dropped)
    assert target_came_down(jb)


def test_drop_waits_for_a_quiet_frame_at_most_shrink_defer_pops() -> None:
    """A talker who never pauses: each due drop waits ``shrink_defer`` pops, then is done
    anyway (counted as in voice), so the delay still comes down."""
    jb = JitterBuffer(shrink_defer=100)
    sim = Sim(jb, 1750, _jitter_then_clean(), quiet=lambda k: False)
    sim.run(35.0)
    assert jb.stats.drops >= 2 and jb.stats.drops_in_voice == jb.stats.drops
    assert target_came_down(jb)
    # the same stream with a pause right after each drop falls due: no wait at all
    eager = JitterBuffer(shrink_defer=100)
    Sim(eager, 1750, _jitter_then_clean(), quiet=lambda k: True).run(35.0)
    assert eager.stats.drops >= jb.stats.drops and eager.stats.drops_in_voice == 0


def test_drop_is_not_done_once_the_frame_is_no_longer_spare() -> None:
    """A drop fell due, then the buffer emptied to its target before a quiet frame came:
    nothing is dropped."""
    jb = JitterBuffer(shrink_window=5)
    for k in range(4):                      # 80 ms buffered against a 40 ms target
        jb.put(packet(k), 0.0)
    t = 0.0
    for k in range(4, 9):                   # five pops with two spare frames: a drop is due
        t += 0.020
        jb.put(packet(k), t)
        assert jb.pop(t).kind is FrameKind.AUDIO
        jb.played(LOUD)
    assert jb.drop_due
    for _ in range(3):                      # the sender stalls: the spare frames play out
        t += 0.020
        jb.pop(t)
        jb.played(LOUD)
    jb.played(QUIET)
    jb.played(QUIET)
    t += 0.020
    jb.pop(t)
    assert not jb.drop_due and jb.stats.drops == 0


def test_target_is_bounded_by_max() -> None:
    jb = JitterBuffer(max_ms=200)
    delay: dict[int, float | None] = {k: (0.6 if k % 25 == 0 else 0.0) for k in range(100)}
    Sim(jb, 100, delay).run(3.0)
    assert jb.target_ms == 200


def test_ssrc_change_resyncs() -> None:
    jb = JitterBuffer()
    t = 0.0
    for k in range(10):
        jb.put(packet(k), t)
        jb.pop(t + 0.005)
        t += 0.02
    # another stream (a transfer): new SSRC, unrelated numbers
    out = []
    for k in range(10):
        jb.put(packet(k, ts0=555_000, seq0=9, ssrc=0x9999), t)
        out.append(jb.pop(t + 0.005))
        t += 0.02
    assert jb.ssrc == 0x9999 and jb.stats.resyncs == 1
    assert audio_indexes(out, ts0=555_000)[:3] == [0, 1, 2]
    assert next(f for f in out if f.kind is FrameKind.AUDIO).marker


def test_timestamp_jump_with_continuous_sequence_resyncs() -> None:
    jb = JitterBuffer()
    t = 0.0
    for k in range(20):
        jb.put(packet(k), t)
        jb.pop(t + 0.005)
        t += 0.02
    # same SSRC, sequence continues, timestamp jumps 10 s ahead (sender restart, DTX)
    out = []
    for k in range(20, 40):
        p = packet(k)
        p.timestamp = (p.timestamp + 80_000) & 0xFFFFFFFF
        jb.put(p, t)
        out.append(jb.pop(t + 0.005))
        t += 0.02
    assert jb.stats.resyncs == 1
    assert [f.kind for f in out].count(FrameKind.AUDIO) >= 17
    # and a jump backwards
    out = []
    for k in range(40, 60):
        p = packet(k)
        p.timestamp = (p.timestamp - 800_000) & 0xFFFFFFFF
        jb.put(p, t)
        out.append(jb.pop(t + 0.005))
        t += 0.02
    assert jb.stats.resyncs == 2
    assert [f.kind for f in out].count(FrameKind.AUDIO) >= 17
    assert jb.stats.lost == 0


def test_talk_spurt_after_silence_suppression() -> None:
    jb = JitterBuffer()
    t = 0.0
    frames = []
    for k in range(10):
        jb.put(packet(k), t)
        frames.append(jb.pop(t + 0.005))
        t += 0.02
    for _ in range(25):                                    # 500 ms: the sender is silent
        frames.append(jb.pop(t + 0.005))
        t += 0.02
    kinds = [f.kind for f in frames[10:]]
    assert kinds[:2] == [FrameKind.AUDIO, FrameKind.LOST] or FrameKind.LOST in kinds[:4]
    assert kinds[-1] is FrameKind.EMPTY                    # concealment gives way to silence
    for k in range(35, 45):                                # talk spurt: marker, ts jumped
        jb.put(packet(k, marker=(k == 35)), t)
        frames.append(jb.pop(t + 0.005))
        t += 0.02
    assert audio_indexes(frames)[10:13] == [35, 36, 37]
    assert jb.stats.lost == 0


def test_short_gap_before_marker_is_silence_not_loss() -> None:
    jb = JitterBuffer()
    sent = [*range(0, 10), *range(12, 30)]                 # 40 ms of silence before 12
    t = 0.0
    frames = []
    for k in range(30):
        if k in sent:
            jb.put(packet(k, marker=(k == 12)), t)
        frames.append(jb.pop(t + 0.005))
        t += 0.02
    assert jb.stats.lost == 0
    kinds = "".join(f.kind.value[0] for f in frames)
    # 10 is due before 12 arrived: one frame of concealment (underrun), then 11 and the
    # rest of the silence is silence, and the talk spurt plays from 12
    assert kinds[11:15] == "leea"
    assert audio_indexes(frames)[10] == 12
    assert kinds[0] == "e"


def test_thirty_ms_packets_become_twenty_ms_frames() -> None:
    jb = JitterBuffer()
    audio = bytes(range(256)) * 10                         # 2560 samples
    t = 0.0
    frames = []
    for k in range(10):                                    # 240-sample packets every 30 ms
        jb.put(RtpPacket(8, k, 240 * k, SSRC, payload=audio[240 * k : 240 * (k + 1)]), t)
        if k % 2 == 0:
            frames.append(jb.pop(t + 0.001))
        frames.append(jb.pop(t + 0.011 + (0.010 if k % 2 else 0.0)))
        t += 0.030
    while jb.level_ms > 0:
        frames.append(jb.pop(t))
        t += 0.02
    out = b"".join(f.payload for f in frames if f.kind is FrameKind.AUDIO)
    assert all(len(f.payload) == 160 for f in frames if f.kind is FrameKind.AUDIO)
    assert out == audio[: len(out)] and len(out) == 2400
    assert jb.stats.lost == 0


def test_pop_before_anything_is_empty() -> None:
    jb = JitterBuffer()
    assert jb.pop(0.0).kind is FrameKind.EMPTY
    jb.put(RtpPacket(0, 1, 0, SSRC, payload=b""), 0.0)     # no audio in it
    assert jb.stats.discarded == 1
    assert jb.pop(0.02).kind is FrameKind.EMPTY


def test_burst_after_stall_is_bounded_by_max_depth() -> None:
    jb = JitterBuffer(max_ms=200)
    # 1 s stall: packets 10..59 arrive all at once
    delay: dict[int, float | None] = {k: 1.2 - 0.02 * (k - 10) for k in range(10, 60)}
    frames = Sim(jb, 80, delay).run(3.0)
    assert jb.stats.discarded > 0
    assert jb.level_ms <= 200
    played = audio_indexes(frames)
    assert played == sorted(played) and played[-1] == 79


def test_random_abuse_keeps_invariants() -> None:
    """Random SSRCs, jumps, duplicates, odd sizes and times: no exception, frames stay
    160 samples, the buffer stays bounded."""
    rng = random.Random(1889)
    jb = JitterBuffer(max_ms=200)
    t = 0.0
    seq, ts, ssrc = 0, 0, 1
    for _ in range(20000):
        r = rng.random()
        if r < 0.01:
            ssrc = rng.getrandbits(32)
        elif r < 0.02:
            ts = rng.getrandbits(32)
        elif r < 0.03:
            seq = rng.getrandbits(16)
        size = rng.choice([160, 160, 160, 80, 240, 0, 7, 480])
        for _ in range(rng.choice([0, 1, 1, 1, 2])):
            jitter = rng.uniform(-0.05, 0.05)
            jb.put(RtpPacket(0, seq, ts + rng.choice([0, 0, 0, -160, 160]), ssrc,
                             rng.random() < 0.05, bytes(size)), t + jitter)
        seq = (seq + 1) & 0xFFFF
        ts = (ts + max(size, 160)) & 0xFFFFFFFF
        frame = jb.pop(t)
        if frame.kind is FrameKind.AUDIO:
            assert len(frame.payload) == 160
        elif frame.kind is FrameKind.LOST:
            assert len(frame.payload) <= 480  # the next packet's (or its rest), if here
        else:
            assert frame.payload == b""
        assert jb.level_ms <= 200 + 60
        assert 20 <= jb.target_ms <= 200
        t += 0.020
    s = jb.stats
    assert s.played > 5000 and s.resyncs > 10


def test_captured_thirty_ms_stream_plays_whole() -> None:
    from pathlib import Path

    lines = (Path(__file__).parents[3] / "fixtures" / "rtp" / "g711a.hex").read_text()
    packets = [RtpPacket.parse(bytes.fromhex(x)) for x in lines.splitlines()
               if x and not x.startswith("#")]
    jb = JitterBuffer()
    events = sorted([(0.030 * i, 0, i) for i in range(len(packets))]
                    + [(0.005 + 0.020 * n, 1, n) for n in range(20)])
    out = []
    for t, kind, i in events:
        if kind == 0:
            jb.put(packets[i], t)
        else:
            out.append(jb.pop(t))
    audio = b"".join(f.payload for f in out if f.kind is FrameKind.AUDIO)
    assert audio == b"".join(p.payload for p in packets)[: len(audio)]
    assert len(audio) == 6 * 240 and jb.stats.lost == 0
