"""A small Matroska writer: every speaker's Opus packets, as received, one track each.

Why our own and not a muxer library's: Matroska lists its tracks before the first cluster,
and speakers join while the file is being written. The layout here keeps the track list
editable in place:

    EBML header
    Segment (size unknown: the file is valid at every cluster boundary)
      Info: TimestampScale 1 ms, MuxingApp, WritingApp, then a Void the size of a Duration
            (`close()` writes the Duration there)
      Tracks + Void, together exactly `header_reserve` bytes: `add_track()` and
            `rename_track()` rewrite this region in place (one write, then flush)
      Cluster, Cluster, ... (one a second by default, each written whole with its size and
            flushed as soon as it is complete)

No Cues (index) is written: players read a Matroska file without one (they seek by scanning
clusters), so what is on disk after a crash or kill -9 plays up to the last whole cluster.
Blocks are SimpleBlocks, one Opus packet each, keyframe flag set, timestamps in ms on the
recording's clock (a track whose speaker arrived late starts late: its first block's time).
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
from dataclasses import dataclass
from typing import BinaryIO

from recorder.ogg import opus_head

log = logging.getLogger(__name__)

EBML = 0x1A45DFA3
SEGMENT = 0x18538067
INFO = 0x1549A966
TRACKS = 0x1654AE6B
TRACK_ENTRY = 0xAE
CLUSTER = 0x1F43B675
VOID = 0xEC
PRE_SKIP = 312
UNKNOWN_SIZE = b"\x01\xff\xff\xff\xff\xff\xff\xff"


class MatroskaError(Exception):
    """Our own misuse: too many tracks for the reserved header, or a closed file."""


def vint_size(n: int) -> bytes:
    """An EBML element size (variable length; the all-ones values are reserved)."""
    for length in range(1, 9):
        if n < (1 << (7 * length)) - 1:
            return (n | (1 << (7 * length))).to_bytes(length, "big")
    raise ValueError("ebml: size too large")


def element_id(eid: int) -> bytes:
    return eid.to_bytes((eid.bit_length() + 7) // 8, "big")


def element(eid: int, payload: bytes) -> bytes:
    return element_id(eid) + vint_size(len(payload)) + payload


def uint(eid: int, value: int) -> bytes:
    return element(eid, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def string(eid: int, value: str) -> bytes:
    return element(eid, value.encode("utf-8"))


def double(eid: int, value: float) -> bytes:
    return element(eid, struct.pack(">d", value))


def void(total: int) -> bytes:
    """A Void element of exactly ``total`` bytes (at least 9: 1 id + 8 size bytes)."""
    if total < 9:
        raise ValueError("ebml: a void needs at least 9 bytes")
    size = total - 9
    return b"\xec" + (size | (1 << 56)).to_bytes(8, "big") + bytes(size)


@dataclass(slots=True)
class MkvTrack:
    number: int
    name: str
    uid: int


class MatroskaOpusWriter:
    def __init__(self, fh: BinaryIO, *, header_reserve: int = 16384,
                 cluster_ms: int = 1000) -> None:
        self.fh = fh
        self.header_reserve = header_reserve
        self.cluster_ms = cluster_ms
        self.tracks: dict[int, MkvTrack] = {}
        self.bytes = 0
        self.closed = False
        self._cluster_start: int | None = None
        self._blocks: list[bytes] = []
        self._last_ms = 0
        ebml = element(EBML, b"".join([
            uint(0x4286, 1), uint(0x42F7, 1), uint(0x42F2, 4), uint(0x42F3, 8),
            string(0x4282, "matroska"), uint(0x4287, 4), uint(0x4285, 2),
        ]))
        head = ebml + element_id(SEGMENT) + UNKNOWN_SIZE
        info_body = (uint(0x2AD7B1, 1_000_000) + string(0x4D80, "switchboard")
                     + string(0x5741, "switchboard recorder"))
        self._duration_at = len(head) + len(element_id(INFO)) + len(
            vint_size(len(info_body) + 11)) + len(info_body)
        info = element(INFO, info_body + void(11))
        self._tracks_at = len(head) + len(info)
        self._write(head + info + self._tracks_region())

    # -- tracks --------------------------------------------------------------------------

    def add_track(self, number: int, name: str) -> None:
        if number in self.tracks:
            raise MatroskaError(f"mkv: track {number} exists")
        self.tracks[number] = MkvTrack(number, name, uid=0x5B00_0000 + number)
        self._rewrite_tracks()

    def rename_track(self, number: int, name: str) -> None:
        track = self.tracks[number]
        if track.name != name:
            track.name = name
            self._rewrite_tracks()

    def _track_entry(self, track: MkvTrack) -> bytes:
        audio = element(0xE1, double(0xB5, 48000.0) + uint(0x9F, 1))
        return element(TRACK_ENTRY, b"".join([
            uint(0xD7, track.number), uint(0x73C5, track.uid), uint(0x83, 2), uint(0x9C, 0),
            string(0x86, "A_OPUS"), element(0x63A2, opus_head(1, 48000, PRE_SKIP)),
            uint(0x56AA, PRE_SKIP * 1_000_000_000 // 48000), uint(0x56BB, 80_000_000),
            string(0x536E, track.name[:128]), string(0x22B59C, "und"), audio,
        ]))

    def _tracks_region(self) -> bytes:
        tracks = element(TRACKS, b"".join(self._track_entry(t) for t in
                                          sorted(self.tracks.values(), key=lambda t: t.number)))
        if not self.tracks:
            tracks = b""  # no empty Tracks element: the region is all Void until a track
        rest = self.header_reserve - len(tracks)
        if rest < 9:
            raise MatroskaError("mkv: the reserved header has no room for another track")
        return tracks + void(rest)

    def _rewrite_tracks(self) -> None:
        if self.closed:
            raise MatroskaError("mkv: closed")
        region = self._tracks_region()
        end = self.fh.tell()
        self.fh.seek(self._tracks_at)
        self.fh.write(region)
        self.fh.seek(end)
        self.fh.flush()

    # -- blocks --------------------------------------------------------------------------

    def write(self, number: int, time_ms: int, payload: bytes) -> None:
        """One Opus packet of track ``number`` at ``time_ms`` on the recording's clock
        (non-decreasing across calls)."""
        if self._cluster_start is None:
            self._cluster_start = time_ms
        elif time_ms - self._cluster_start >= self.cluster_ms:
            self.flush_cluster()
            self._cluster_start = time_ms
        rel = time_ms - self._cluster_start
        self._blocks.append(element(0xA3, vint_size(number) + struct.pack(">hB", rel, 0x80)
                                    + payload))
        self._last_ms = max(self._last_ms, time_ms + 20)

    def flush_cluster(self) -> None:
        if self._cluster_start is None or not self._blocks:
            return
        body = uint(0xE7, self._cluster_start) + b"".join(self._blocks)
        self._write(element(CLUSTER, body))
        self._blocks = []
        self._cluster_start = None

    def _write(self, data: bytes) -> None:
        self.fh.write(data)
        self.fh.flush()
        self.bytes += len(data)

    def close(self, duration_ms: float | None = None) -> None:
        """The last cluster, and the Duration (``duration_ms``, else the last block's end)."""
        if self.closed:
            return
        self.flush_cluster()
        self.closed = True
        end = self.fh.tell()
        self.fh.seek(self._duration_at)
        self.fh.write(double(0x4489, float(duration_ms if duration_ms is not None
                                           else self._last_ms)))
        self.fh.seek(end)
        self.fh.flush()
        with contextlib.suppress(OSError, ValueError):
            os.fsync(self.fh.fileno())
        self.fh.close()
