"""The recording's one clock: every speaker's Opus packets placed on 20 ms frames, gaps filled.

Sans-I/O: packets come in with the time they arrived (`now`, the loop's monotonic seconds),
and `advance(now)` gives back, in order, every frame that is due: for each frame index, the
payload of every track, real or filler. A packet meets these rules, in this order:

1. Its track is the packet's SSRC; a packet of an SSRC never seen opens a track (up to
   `max_tracks`; beyond that the packet is dropped and counted).
2. Anchoring: a track's first packet is placed at the frame of its arrival time, counted from
   the recording's start (`(now - start) / FRAME`, minus the `delay` it may have waited),
   and remembers that packet's RTP timestamp. Later packets are placed by their RTP
   timestamp's distance from the anchor (48 kHz: 960 per frame), so DTX and loss, which
   advance the timestamp without packets, leave the right number of frames empty.
3. Re-anchoring: when a packet's place by timestamp is more than `resync` seconds from its
   place by arrival (a sender that restarted its timestamps, a browser that stopped sending
   while muted and resumed with a jump, a clock drift), the track is anchored again at the
   arrival frame; a jump backwards never rewrites frames already written.
4. A packet for a frame already given out (too late) or already held (a duplicate) is
   dropped and counted. But a sender whose clock runs slow (its timestamps fall behind the
   time its packets arrive by more than the `delay`, less than `resync`) would have every
   packet dropped as late: after `LATE_RUN` packets in a row placed too late, the track is
   anchored again at the arrival frame (a short gap, then its sound again).
5. `advance(now)` gives out every frame up to `now - delay` (the delay lets reordered
   packets find their place): a frame no packet filled gets the filler (an encoded Opus
   silence frame, `filled` true). A track covers every frame from the one its first packet
   landed on (its `first_frame`, on the recording's clock) to the recording's end: mute,
   DTX, loss and a speaker who left are filled, so every track's duration is the wall-clock
   time it covers and all tracks line up on one clock.
6. `finish(now)` gives out everything up to `now` (no delay): the recording's end.

Frames are 20 ms (what browsers and the gateway send); a packet of another duration is
placed at its start and counts as one frame.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

FRAME = 0.02  # seconds per frame
TICKS_PER_FRAME = 960  # Opus RTP clock (48 kHz) per 20 ms
LATE_RUN = 3  # packets in a row placed on frames already given out: the track is re-anchored


@dataclass(slots=True)
class Track:
    """One speaker's stream (an SSRC) on the recording's clock."""

    ssrc: int
    number: int  # 1, 2, ... in order of appearance (the Matroska track number)
    first_frame: int  # where its first packet landed
    anchor_frame: int
    anchor_ts: int
    pending: dict[int, bytes] = field(default_factory=dict)  # frame index -> payload
    levels: dict[int, int] = field(default_factory=dict)  # frame index -> RFC 6464 level
    packets: int = 0
    filled: int = 0  # frames given out as filler (after the track's first packet)
    late: int = 0  # packets dropped: too late or duplicate
    resyncs: int = 0
    last_arrival: float = 0.0
    late_run: int = 0  # packets in a row placed too late (rule 4)


@dataclass(frozen=True, slots=True)
class Frame:
    """One 20 ms frame of every track: (track, payload, filled) in track order."""

    index: int
    payloads: tuple[tuple[Track, bytes, bool], ...]
    # each payload's audio level (RFC 6464: 0 loudest, 127 silence; -1 unknown; 127 filler)
    levels: tuple[int, ...] = ()

    @property
    def time(self) -> float:
        """Seconds from the recording's start."""
        return self.index * FRAME


class Timeline:
    def __init__(self, start: float, filler: bytes, *, delay: float = 0.2, resync: float = 0.5,
                 max_tracks: int = 64) -> None:
        self.start = start
        self.filler = filler
        self.delay = delay
        self.resync_frames = max(1, round(resync / FRAME))
        self.max_tracks = max_tracks
        self.tracks: dict[int, Track] = {}
        self.next_index = 0  # the first frame not yet given out
        self.dropped = 0  # packets of SSRCs beyond max_tracks
        self.finished = False

    def frame_at(self, now: float) -> int:
        return int((now - self.start) / FRAME + 1e-6)

    def on_packet(self, ssrc: int, timestamp: int, payload: bytes, now: float,
                  level: int = -1) -> Track | None:
        """Place one packet (rules 1-4); the track it went to, or None when it was dropped."""
        if self.finished:
            return None
        track = self.tracks.get(ssrc)
        if track is None:
            if len(self.tracks) >= self.max_tracks:
                self.dropped += 1
                return None
            arrival = max(self.next_index, self.frame_at(now))
            track = self.tracks[ssrc] = Track(ssrc, len(self.tracks) + 1, arrival, arrival,
                                              timestamp)
            log.debug("timeline: SSRC %d is track %d from frame %d", ssrc, track.number, arrival)
        track.packets += 1
        track.last_arrival = now
        index = self._place(track, timestamp)
        if abs(index - self.frame_at(now)) > self.resync_frames + round(self.delay / FRAME):
            track.resyncs += 1
            track.anchor_frame = max(self.next_index, self.frame_at(now))
            track.anchor_ts = timestamp
            index = track.anchor_frame
        if index < self.next_index:
            track.late_run += 1
            if track.late_run < LATE_RUN:
                track.late += 1
                return track
            track.resyncs += 1  # a slow sender, not a reordered packet (rule 4)
            track.anchor_frame = index = max(self.next_index, self.frame_at(now))
            track.anchor_ts = timestamp
        track.late_run = 0
        if index in track.pending:
            track.late += 1
            return track
        track.pending[index] = payload
        if level >= 0:
            track.levels[index] = level
        return track

    def _place(self, track: Track, timestamp: int) -> int:
        delta = (timestamp - track.anchor_ts) & 0xFFFFFFFF
        if delta >= 0x80000000:
            delta -= 0x100000000  # before the anchor (reordered)
        return track.anchor_frame + round(delta / TICKS_PER_FRAME)

    def advance(self, now: float) -> list[Frame]:
        """Every frame up to ``now - delay`` (rule 5)."""
        return self._give_until(self.frame_at(now - self.delay))

    def finish(self, now: float) -> list[Frame]:
        """Everything up to ``now``; nothing is taken after this (rule 6)."""
        frames = self._give_until(self.frame_at(now))
        self.finished = True
        return frames

    def _give_until(self, end: int) -> list[Frame]:
        frames: list[Frame] = []
        tracks = list(self.tracks.values())
        filler = self.filler
        for index in range(self.next_index, end):
            row: list[tuple[Track, bytes, bool]] = []
            levels: list[int] = []
            for track in tracks:
                if index < track.first_frame:
                    continue
                payload = track.pending.pop(index, None)
                if payload is None:
                    track.filled += 1
                    row.append((track, filler, True))
                    levels.append(127)
                else:
                    row.append((track, payload, False))
                    levels.append(track.levels.pop(index, -1) if track.levels else -1)
            frames.append(Frame(index, tuple(row), tuple(levels)))
        if end > self.next_index:
            self.next_index = end
        return frames

    def duration(self) -> float:
        """Seconds given out so far (every track's duration)."""
        return self.next_index * FRAME
