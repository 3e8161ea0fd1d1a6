"""An adaptive jitter buffer for one received audio stream, sans-I/O.

Packets go in with ``put(packet, now)`` (or ``insert(...)`` from the fast path) whenever
they arrive; ``pop(now)`` is called once per 20 ms tick and returns one ``JitterFrame``:
audio payload for exactly one frame, a loss marker (conceal it), or empty (nothing to
play: not started, or the stream is silent).

The buffer works in RTP timestamp units, so it does not care about sequence numbers
(wrap included), copes with senders that use 10 or 30 ms packets when the codec can be
cut at any byte (G.711 and G.722: ``bytes_per_tick=1``), and treats a gap before a marker
packet as silence rather than loss.

Framed codecs (Opus: ``bytes_per_tick=None``) cannot be cut. Their packets last one frame
unless ``packet_ticks(payload)`` says otherwise: a 40 or 60 ms packet is handed out whole
as the AUDIO frame of its first 20 ms, and the pops that fall inside the rest of it return
CONTINUED (play the rest of what that packet decoded to). A LOST frame carries the payload
of the packet that follows it when that one is already here, for the decoder to rebuild
the lost frame from it (Opus in-band FEC) or to conceal towards it (G.711 interpolation).

Depth: the target is the peak extra delay seen recently (packet arrival relative to the
fastest packet, a floor that creeps up slowly to follow clock drift) plus one frame,
between ``min_ms`` and ``max_ms``. It starts at ``start_ms``, grows at once with the
observed jitter and shrinks by ``shrink_ms_per_s``. Playback starts (and restarts after
an underrun) only once ``target`` worth of audio is buffered; when a whole second of
pops saw at least one frame more than the target buffered, one frame is due to be dropped.

A due drop waits for a quiet moment: a 20 ms hole in a word is plainly heard (PESQ took
0.35 off a sentence for one), the same hole in a pause is not. The buffer does not decode,
so the consumer tells it what each popped frame decoded to (``played(pcm)``, looked at only
while ``drop_due``); after ``QUIET_RUN`` quiet frames in a row the next one is dropped, if
it is still spare. A drop that found no such pause within ``shrink_defer`` pops (a talker
who never pauses) is done anyway. ``stats.drops`` counts the drops, ``stats.drops_in_voice``
the forced ones.

Resync (flush and start over) happens on an SSRC change, on a timestamp jump that the
sequence numbers show is not a stale packet, and when audio resumes far ahead after the
buffer ran dry (silence suppression, hold, a stall).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from native._mixcore import peak

from .rtp import RtpPacket

log = logging.getLogger(__name__)

_MOD32 = 1 << 32
_HALF32 = 1 << 31
_NO_LEVEL = 1 << 62
#: a decoded frame whose peak |sample| is at most this (-30 dBFS) is quiet enough to follow
#: with a dropped frame
QUIET_PEAK = 1024
#: quiet frames in a row before a drop: one alone may be a stop consonant's closure
QUIET_RUN = 2


class FrameKind(enum.Enum):
    AUDIO = "audio"     # payload holds one frame (or a longer framed packet: see CONTINUED)
    LOST = "lost"       # a frame should be here: conceal it (payload: next packet, see above)
    EMPTY = "empty"     # nothing to play (not started, silent stream)
    CONTINUED = "continued"   # still inside the last AUDIO frame's multi-frame packet


class JitterFrame:
    """One popped frame; read it, never change it. (A plain class: one is made every 20 ms
    for every stream, and a frozen dataclass's ``__init__`` cost several times as much.)"""

    __slots__ = ("kind", "marker", "payload", "timestamp")

    def __init__(self, kind: FrameKind, payload: bytes = b"", timestamp: int = 0,
                 marker: bool = False) -> None:
        self.kind = kind
        self.payload = payload      # AUDIO: the frame; LOST: the following packet when here
        self.timestamp = timestamp  # RTP timestamp of the first sample (AUDIO, CONTINUED)
        self.marker = marker        # first frame after a start, resync or talk spurt start

    def __repr__(self) -> str:
        return (f"JitterFrame({self.kind}, {len(self.payload)} bytes, ts={self.timestamp}, "
                f"marker={self.marker})")


EMPTY_FRAME = JitterFrame(FrameKind.EMPTY)
LOST_FRAME = JitterFrame(FrameKind.LOST)


@dataclass(slots=True)
class JitterStats:
    received: int = 0      # packets put in
    played: int = 0        # audio frames popped
    late: int = 0          # packets that came after their frame was played: dropped
    lost: int = 0          # frames concealed because their packet never came
    underruns: int = 0     # times the buffer ran dry while playing (then it rebuffers)
    discarded: int = 0     # packets or frames dropped to shrink, bound or flush the buffer
    duplicates: int = 0
    resyncs: int = 0
    drops: int = 0           # spare frames dropped to shrink the delay (also in discarded)
    drops_in_voice: int = 0  # of which done without a quiet moment (after shrink_defer)


class JitterBuffer:
    def __init__(
        self,
        clock_rate: int = 8000,
        frame_ticks: int = 160,
        bytes_per_tick: int | None = 1,
        start_ms: float = 40.0,
        min_ms: float = 20.0,
        max_ms: float = 200.0,
        shrink_ms_per_s: float = 5.0,
        floor_creep_ms_per_s: float = 2.0,
        shrink_window: int = 50,
        shrink_defer: int = 150,
        conceal_frames: int = 3,
        packet_ticks: Callable[[bytes], int] | None = None,
    ) -> None:
        """``packet_ticks``: the duration of a framed codec's packet in timestamp units (0
        when unknown: one frame is assumed); only used when ``bytes_per_tick`` is None."""
        self.clock_rate = clock_rate
        self.frame_ticks = frame_ticks
        self.bytes_per_tick = bytes_per_tick
        self._packet_ticks = packet_ticks if not bytes_per_tick else None
        frame_s = frame_ticks / clock_rate
        self._min_s = max(min_ms / 1000.0, frame_s)
        self._max_s = max(max_ms / 1000.0, self._min_s)
        self._start_peak = max(0.0, start_ms / 1000.0 - frame_s)
        self._shrink_rate = shrink_ms_per_s / 1000.0
        self._creep = floor_creep_ms_per_s / 1000.0
        self._max_ticks = int(self._max_s * clock_rate)
        self._shrink_window = shrink_window
        self._shrink_defer = shrink_defer
        self._conceal_frames = conceal_frames
        self.stats = JitterStats()
        # stream state
        self._ssrc: int | None = None
        self._play: int | None = None           # extended timestamp of the next frame
        self._buf: dict[int, tuple[bytes, bool, int]] = {}   # ts -> (payload, marker, end)
        self._newest_end = 0
        self._playing = False
        self._next_marker = True
        self._last_seq: int | None = None
        self._dry_pops = 0                      # consecutive pops without audio while playing
        self._cont_end: int | None = None       # end of the multi-frame packet being played
        # depth estimation
        self._peak = self._start_peak
        self._floor: float | None = None
        self._last_put: float | None = None
        self._target_ticks = self._ticks_for(self._peak)
        self._window_min = _NO_LEVEL
        self._window_pops = 0
        self._drop_due = 0                      # pops since a drop fell due (0: none due)
        self._quiet = 0                         # quiet frames in a row, as told (heard)

    # --- public state -----------------------------------------------------------------

    @property
    def target_ms(self) -> float:
        return 1000.0 * self._target_ticks / self.clock_rate

    @property
    def level_ms(self) -> float:
        """Audio buffered ahead of the playout point."""
        if not self._buf or self._play is None:
            return 0.0
        return 1000.0 * max(0, self._newest_end - self._play) / self.clock_rate

    @property
    def ssrc(self) -> int | None:
        return self._ssrc

    @property
    def drop_due(self) -> bool:
        """A spare frame waits for a quiet moment to be dropped (see ``played``)."""
        return self._drop_due > 0

    def played(self, pcm: npt.NDArray[np.int16] | None) -> None:
        """After a pop: what its frame decoded to (None: nothing, silence). Only looked at
        while a drop is due: quiet means a peak of at most ``QUIET_PEAK``."""
        if self._drop_due:
            self.heard(pcm is None or peak(pcm) <= QUIET_PEAK)

    def heard(self, quiet: bool) -> None:
        """After a pop: whether its frame was quiet (``played`` for a decoded frame). After
        ``QUIET_RUN`` quiet frames in a row (a pause, not the closure of a "t") a due drop
        takes the next frame."""
        self._quiet = self._quiet + 1 if quiet else 0

    # --- input ------------------------------------------------------------------------

    def put(self, packet: RtpPacket, now: float) -> None:
        self.insert(
            packet.ssrc, packet.sequence_number, packet.timestamp, packet.marker,
            packet.payload, now,
        )

    def insert(
        self, ssrc: int, seq: int, timestamp: int, marker: bool, payload: bytes, now: float
    ) -> None:
        """``put`` without an ``RtpPacket``: for the receive fast path."""
        stats = self.stats
        stats.received += 1
        bpt = self.bytes_per_tick
        if bpt:
            duration = len(payload) // bpt
        elif self._packet_ticks is None or not payload:
            duration = self.frame_ticks if payload else 0
        else:
            # whole frames only: a 10 ms packet counts as one (unusual for phones)
            frames = self._packet_ticks(payload) // self.frame_ticks
            duration = max(1, frames) * self.frame_ticks
        if duration <= 0:
            stats.discarded += 1
            return
        contiguous = self._last_seq is not None and seq == (self._last_seq + 1) & 0xFFFF
        self._last_seq = seq
        play = self._play
        if ssrc != self._ssrc or play is None:
            if self._ssrc is not None and ssrc != self._ssrc:
                log.debug("jitter buffer: SSRC %08x -> %08x, resync", self._ssrc, ssrc)
                stats.resyncs += 1
            self._ssrc = ssrc
            self._resync(timestamp)
            play = timestamp
        ts = play + ((timestamp - play + _HALF32) % _MOD32) - _HALF32
        end = ts + duration
        buf = self._buf
        if end <= play:
            if contiguous and play - ts > 2 * self._max_ticks:
                log.debug("jitter buffer: timestamp jumped back by %d, resync", play - ts)
                self._restart(timestamp)
                ts, end = timestamp, timestamp + duration
            else:
                stats.late += 1
                self._observe(ts, now)
                return
        elif ts - play > self._max_ticks:
            if not buf or ts - self._newest_end > self._max_ticks:
                # audio resumed far ahead (silence suppression, hold, stall, jump)
                self._restart(timestamp)
                ts, end = timestamp, timestamp + duration
            else:
                self._trim(end - self._max_ticks, ts)
        elif not buf and ts - play > self._target_ticks + self.frame_ticks:
            # the buffer ran dry and the stream comes back well ahead: start over there
            self._restart(timestamp)
            ts, end = timestamp, timestamp + duration
        if ts in buf:
            stats.duplicates += 1
            return
        self._observe(ts, now)
        buf[ts] = (payload, marker, end)
        if end > self._newest_end or len(buf) == 1:
            self._newest_end = end

    def _observe(self, ts: int, now: float) -> None:
        """Update the jitter estimate from one arrival (A.8-like transit, peak-held)."""
        rel = now - ts / self.clock_rate
        last = self._last_put
        elapsed = 0.0 if last is None else max(0.0, now - last)
        self._last_put = now
        floor = self._floor
        # the floor is the fastest transit seen; it creeps up to follow clock drift
        floor = rel if floor is None else min(rel, floor + elapsed * self._creep)
        self._floor = floor
        delay = rel - floor
        peak = max(self._peak - elapsed * self._shrink_rate, delay)
        self._peak = peak
        self._target_ticks = self._ticks_for(peak)

    def _ticks_for(self, peak: float) -> int:
        frame_s = self.frame_ticks / self.clock_rate
        target = min(self._max_s, max(self._min_s, peak + frame_s))
        # round up to whole frames: the buffer plays whole frames
        frames = -(-int(target * self.clock_rate + 0.5) // self.frame_ticks)
        return frames * self.frame_ticks

    def _resync(self, timestamp: int) -> None:
        self.stats.discarded += len(self._buf)
        self._buf.clear()
        self._play = timestamp
        self._newest_end = timestamp
        self._playing = False
        self._next_marker = True
        self._cont_end = None
        self._floor = None
        self._window_min = _NO_LEVEL
        self._window_pops = 0
        self._drop_due = 0
        self._quiet = 0

    def _restart(self, timestamp: int) -> None:
        self.stats.resyncs += 1
        self._resync(timestamp)

    def _trim(self, new_play: int, arriving: int) -> None:
        """Drop buffered audio before ``new_play`` to bound the delay."""
        buf = self._buf
        old = [ts for ts in buf if ts < new_play]
        for ts in old:
            del buf[ts]
        self.stats.discarded += len(old)
        self._play = min(arriving, *buf) if buf else arriving
        self._next_marker = True
        self._cont_end = None

    # --- output -----------------------------------------------------------------------

    def pop(self, now: float) -> JitterFrame:
        """The frame to play for this 20 ms tick."""
        play = self._play
        if play is None:
            return EMPTY_FRAME
        cont = self._cont_end
        if cont is not None:
            if play < cont:
                # inside the multi-frame packet handed out before
                self._play = play + self.frame_ticks
                self.stats.played += 1
                return JitterFrame(FrameKind.CONTINUED, b"", play % _MOD32)
            self._cont_end = None
        buf = self._buf
        level = self._newest_end - play if buf else 0
        if not self._playing:
            if level >= self._target_ticks:
                self._playing = True
                self._window_min = _NO_LEVEL
                self._window_pops = 0
            else:
                return self._dry()
        if self._drop_due:
            play, level = self._due_drop(play, level)
        frame_end = play + self.frame_ticks
        entry = buf.get(play)
        if entry is not None and entry[2] == frame_end:
            # fast path: one packet is exactly one frame
            del buf[play]
            payload, marker = entry[0], entry[1]
        elif entry is not None and entry[2] > frame_end and not self.bytes_per_tick:
            # a framed packet of several frames: all of it now, CONTINUED for the rest
            del buf[play]
            payload, marker = entry[0], entry[1]
            self._cont_end = entry[2]
        else:
            assembled = self._assemble(play, frame_end)
            if assembled is None:
                return self._missing(play, frame_end)
            payload, marker = assembled
        self._play = frame_end
        self._dry_pops = 0
        self.stats.played += 1
        if self._next_marker:
            marker = True
            self._next_marker = False
        self._shrink_check(level)
        return JitterFrame(FrameKind.AUDIO, payload, play % _MOD32, marker)

    def _dry(self) -> JitterFrame:
        """Nothing to play: conceal the first few frames after audio, then silence."""
        if self._dry_pops and self._dry_pops <= self._conceal_frames:
            self._dry_pops += 1
            return LOST_FRAME
        return EMPTY_FRAME

    def _assemble(self, play: int, frame_end: int) -> tuple[bytes, bool] | None:
        """One frame cut from the packets covering [play, frame_end), or None."""
        bpt = self.bytes_per_tick
        buf = self._buf
        if not bpt:
            return None
        pieces: list[bytes] = []
        marker = False
        pos = play
        while pos < frame_end:
            start = pos if pos in buf else None
            if start is None:
                for ts, (_, _, end) in buf.items():
                    if ts < pos < end:
                        start = ts
                        break
            if start is None:
                return None
            payload, first_marker, end = buf[start]
            if start == play:
                marker = first_marker
            upto = min(end, frame_end)
            pieces.append(payload[(pos - start) * bpt : (upto - start) * bpt])
            pos = upto
        for ts in [ts for ts, entry in buf.items() if entry[2] <= frame_end]:
            del buf[ts]
        return b"".join(pieces), marker

    def _missing(self, play: int, frame_end: int) -> JitterFrame:
        buf = self._buf
        stats = self.stats
        if buf and self._newest_end > frame_end:
            # later audio is here: this frame is lost (or silence before a talk spurt)
            self._play = frame_end
            stale = [ts for ts, entry in buf.items() if entry[2] <= frame_end]
            for ts in stale:
                del buf[ts]
            stats.discarded += len(stale)
            nxt = min(buf) if buf else None
            if nxt is not None and nxt >= frame_end and buf[nxt][1]:
                self._dry_pops = 0
                return EMPTY_FRAME
            stats.lost += 1
            self._dry_pops = 1
            if nxt == frame_end:
                # the next packet is here: Opus rebuilds this frame from its in-band FEC,
                # G.711 interpolates towards it (gateway/media/plc.py)
                return JitterFrame(FrameKind.LOST, buf[nxt][0])
            return LOST_FRAME
        # nothing newer: the buffer ran dry; rebuild the target depth before playing on
        stats.underruns += 1
        self._playing = False
        self._window_pops = 0
        if not self._dry_pops:
            self._dry_pops = 1
        return self._dry()

    def _shrink_check(self, level: int) -> None:
        if level < self._window_min:
            self._window_min = level
        self._window_pops += 1
        if self._window_pops < self._shrink_window:
            return
        excess = self._window_min - self._target_ticks
        self._window_pops = 0
        self._window_min = _NO_LEVEL
        if excess >= self.frame_ticks and not self._drop_due:
            # a whole window with at least one spare frame: drop one at a quiet moment
            self._drop_due = 1
            self._quiet = 0

    def _due_drop(self, play: int, level: int) -> tuple[int, int]:
        """Drop the frame at ``play`` after ``QUIET_RUN`` quiet frames (or once the drop
        waited ``shrink_defer`` pops), if it is still spare: the new (play, level)."""
        quiet = self._quiet >= QUIET_RUN
        if not quiet and self._drop_due <= self._shrink_defer:
            self._drop_due += 1
            return play, level
        self._drop_due = 0
        self._quiet = 0
        frame = self.frame_ticks
        if level - frame < self._target_ticks:
            return play, level   # no longer spare (the stream slowed down meanwhile)
        new_play = play + frame
        buf = self._buf
        for ts in [ts for ts, entry in buf.items() if entry[2] <= new_play]:
            del buf[ts]
        self._play = new_play
        stats = self.stats
        stats.discarded += 1
        stats.drops += 1
        if not quiet:
            stats.drops_in_voice += 1
        return new_play, level - frame
