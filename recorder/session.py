"""One recording: packets in, files out, limits checked; no sockets, no tasks.

The service (recorder/service.py) feeds it the packets of its bridge endpoint
(`on_rtp(data, now)`), the roster's changes (`joined`, `left`, `name_track`) and a tick a few
times a second (`tick(now)`), and stops it. Rules, in the order a tick applies them:

1. the timeline gives out the frames that are due (recorder/timeline.py); each frame's
   packets go to tracks.mkv as they are (one Matroska track per speaker: a new SSRC adds a
   track) and to the mix (decoded, summed, encoded) in mix.opus (or AAC in mix.m4a);
2. limits: `max_duration` seconds of recording, `max_bytes` of files; the first one passed
   is the reason the tick returns (the service stops the recording with it);
3. idle: no packet with audio (a payload longer than `MEDIA_BYTES`: DTX and muted frames are
   smaller) for `idle_timeout` seconds returns "idle".

States: recording -> finalizing (stopped: files closed, metadata.json written; the finalize
command and webhook run) -> done; a write that fails (disk full) -> failed (whatever was
written stays playable).

Crash safety: while recording, metadata.json is written (temp file + rename) at the start and
after every join, leave, mute, rename and track owner change (`dirty`, written by the next
tick), with "state": "recording" and "end": null; the folder's `LOCK_FILE` is held locked
(flock) by this process until the recording stops. A folder whose metadata still says
"recording" and whose lock nobody holds was cut by a crash or kill -9: recorder/recovery.py
closes it at the next start of the server.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recorder.finalize import iso, write_json_atomic
from recorder.m4a import AacM4aWriter
from recorder.media import OPUS_PT, RoomMix, audio_level, parse_rtp, silence_packet
from recorder.mkv import MatroskaError, MatroskaOpusWriter
from recorder.ogg import OggOpusWriter
from recorder.timeline import FRAME, Frame, Timeline, Track
from recorder.video_out import AvPipeline

log = logging.getLogger(__name__)

MEDIA_BYTES = 10  # an Opus payload longer than this carries sound (DTX/silence is 1-8 bytes)
MIX_FILES = {"ogg": "mix.opus", "m4a": "mix.m4a"}  # by recording.mix_format
TRACKS_FILE = "tracks.mkv"
METADATA_FILE = "metadata.json"
LOCK_FILE = ".recording.lock"  # held (flock) while a process records into the folder
VIDEO_FILE = "video.mp4"
FILE_KINDS = {"mix.opus": "mix", "mix.m4a": "mix", TRACKS_FILE: "tracks", VIDEO_FILE: "video",
              METADATA_FILE: "metadata"}
STATES = ("recording", "finalizing", "done", "failed")


@dataclass(frozen=True, slots=True)
class Limits:
    max_duration: float = 14400.0  # seconds
    max_bytes: int = 2 * 1024**3
    idle_timeout: float = 300.0
    delay: float = 0.2  # the timeline's reordering delay


@dataclass(slots=True)
class RosterEntry:
    id: str
    kind: str
    name: str
    joined: float  # wall clock
    left: float | None = None
    mutes: list[list[float | None]] = field(default_factory=list)  # [from, to | None]

    def set_muted(self, muted: bool, wall: float) -> bool:
        """Record a mute change; True when it was one."""
        open_ = bool(self.mutes) and self.mutes[-1][1] is None
        if muted and not open_:
            self.mutes.append([wall, None])
        elif not muted and open_:
            self.mutes[-1][1] = wall
        else:
            return False
        return True


@dataclass(slots=True)
class TrackOwner:
    participant: str | None = None
    name: str = ""


@dataclass(slots=True)
class Recording:
    id: str
    room: str
    folder: Path
    start: float  # the loop's clock
    started_at: float  # wall clock
    limits: Limits = field(default_factory=Limits)
    mix_format: str = "ogg"  # "ogg": Opus in Ogg; "m4a": AAC in MP4
    audio_files: bool = True  # the mix and the tracks on disk (a live stream alone: False)
    mode: str = "file"  # "file" | "stream"
    av: AvPipeline | None = None  # video.mp4 or the live stream (recorder/video_out.py)
    state: str = "recording"
    reason: str = ""
    ended_at: float | None = None
    roster: dict[str, RosterEntry] = field(default_factory=dict)
    owners: dict[int, TrackOwner] = field(default_factory=dict)  # SSRC -> who
    last_media: float = 0.0
    malformed: int = 0
    dirty: bool = False  # metadata.json is behind the roster (written by the next tick)
    lock_fd: int | None = field(init=False, default=None)
    timeline: Timeline = field(init=False)
    mix: RoomMix = field(init=False)
    mix_file: OggOpusWriter | AacM4aWriter | None = field(init=False, default=None)
    tracks_file: MatroskaOpusWriter | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=False)
        self.lock_fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new folder: ours
        self.timeline = Timeline(self.start, silence_packet(), delay=self.limits.delay)
        self.mix = RoomMix()
        if self.audio_files:
            mix_path = self.folder / MIX_FILES[self.mix_format]
            if self.mix_format == "m4a":
                self.mix_file = AacM4aWriter(mix_path)
            else:
                self.mix_file = OggOpusWriter(open(mix_path, "wb"),  # noqa: SIM115
                                              comments={"TITLE": f"{self.room} (room mix)"})
            self.tracks_file = MatroskaOpusWriter(open(self.folder / TRACKS_FILE, "w+b"))  # noqa: SIM115
        self.last_media = self.start
        log.info("recording %s: room %s into %s", self.id, self.room, self.folder)

    # -- input -----------------------------------------------------------------------------

    def on_rtp(self, data: bytes, now: float) -> int | None:
        """A packet from the bridge; the SSRC when it opened a track nobody owns yet."""
        if self.state != "recording":
            return None
        av = self.av
        if av is not None and len(data) > 1 and (data[1] & 0x7F) in av.codecs:
            av.on_rtp(data, now)
            return None
        parsed = parse_rtp(data)
        if parsed is None or parsed[0] != OPUS_PT:
            self.malformed += 1
            return None
        _, ssrc, _, ts, payload = parsed
        known = ssrc in self.timeline.tracks
        track = self.timeline.on_packet(ssrc, ts, payload, now, audio_level(data))
        if track is None:
            return None
        if len(payload) > MEDIA_BYTES:
            self.last_media = now
        if not known:
            owner = self.owners.setdefault(ssrc, TrackOwner(name=f"SSRC {ssrc}"))
            self._add_track(track, owner)
            return ssrc if owner.participant is None else None
        return None

    def _add_track(self, track: Track, owner: TrackOwner) -> None:
        if self.tracks_file is None:
            return
        try:
            self.tracks_file.add_track(track.number, owner.name)
        except MatroskaError:
            log.warning("recording %s: no room for track %d in tracks.mkv", self.id,
                        track.number)
        log.info("recording %s: track %d is %s", self.id, track.number, owner.name)

    def set_owner(self, ssrc: int, participant: str, name: str) -> None:
        """The bridge said whose SSRC this is (the track is named after them)."""
        owner = self.owners.setdefault(ssrc, TrackOwner())
        if (owner.participant, owner.name) != (participant, name):
            self.dirty = True
        owner.participant, owner.name = participant, name
        track = self.timeline.tracks.get(ssrc)
        mkv = self.tracks_file
        if track is not None and mkv is not None and track.number in mkv.tracks \
                and not mkv.closed:
            mkv.rename_track(track.number, name)

    def joined(self, pid: str, kind: str, name: str, wall: float, *,
               muted: bool = False) -> None:
        if pid not in self.roster:
            entry = self.roster[pid] = RosterEntry(pid, kind, name, wall)
            entry.set_muted(muted, wall)
            self.dirty = True

    def left(self, pid: str, wall: float) -> None:
        entry = self.roster.get(pid)
        if entry is not None and entry.left is None:
            entry.left = wall
            entry.set_muted(False, wall)
            self.dirty = True

    def muted(self, pid: str, muted: bool, wall: float) -> None:
        entry = self.roster.get(pid)
        if entry is not None and entry.left is None and entry.set_muted(muted, wall):
            self.dirty = True

    def renamed(self, pid: str, name: str) -> None:
        entry = self.roster.get(pid)
        if entry is not None:
            entry.name = name
            self.dirty = True
        for ssrc, owner in self.owners.items():
            if owner.participant == pid:
                self.set_owner(ssrc, pid, name)

    # -- the tick --------------------------------------------------------------------------

    def tick(self, now: float) -> str | None:
        """Write what is due; the reason to stop now, or None."""
        if self.state != "recording":
            return None
        if self.dirty:
            self.checkpoint()
        try:
            self._write(self.timeline.advance(now))
        except OSError as exc:
            self._fail(exc)
            return "write failed"
        limits = self.limits
        if now - self.start >= limits.max_duration:
            return "max duration"
        if self.bytes() >= limits.max_bytes:
            return "max size"
        if now - self.last_media >= limits.idle_timeout:
            return "idle"
        return None

    def _write(self, frames: list[Frame]) -> None:
        mkv, out, mix, av = self.tracks_file, self.mix_file, self.mix, self.av
        for frame in frames:
            ms = round(frame.index * FRAME * 1000)
            row: list[tuple[int, bytes, bool]] = []
            for track, payload, filled in frame.payloads:
                if mkv is not None and track.number in mkv.tracks:
                    mkv.write(track.number, ms, payload)
                row.append((track.number, payload, filled))
            pcm = mix.frame(row, frame.levels)
            if av is not None:
                av.on_audio(frame.index, pcm)
            if isinstance(out, OggOpusWriter):
                out.write(mix.encode(pcm))
            elif out is not None:
                out.write(pcm)

    def bytes(self) -> int:
        total = 0
        for writer in (self.mix_file, self.tracks_file):
            if writer is not None:
                total += writer.bytes
        if self.av is not None and self.mode == "file":
            with contextlib.suppress(OSError):
                total += (self.folder / VIDEO_FILE).stat().st_size
        return total

    def _fail(self, exc: BaseException) -> None:
        log.error("recording %s: writing failed: %s", self.id, exc)
        self.state = "failed"
        self.reason = f"write failed: {exc}"
        for writer in (self.mix_file, self.tracks_file):
            if writer is None:
                continue
            try:
                writer.close()
            except Exception:  # the file is what it is; close the other one
                continue

    def checkpoint(self) -> None:
        """metadata.json as it stands, "end" null (what a crash leaves for the next start)."""
        self.dirty = False
        if self.state != "recording":
            return
        try:
            write_json_atomic(self.folder / METADATA_FILE, self.metadata(), sync=False)
        except OSError as exc:  # the media files matter more: keep recording
            log.warning("recording %s: metadata.json not updated: %s", self.id, exc)

    def release(self) -> None:
        """Let go of the folder's lock (the recording stopped; nothing to recover)."""
        fd, self.lock_fd = self.lock_fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.folder / LOCK_FILE)
        os.close(fd)

    # -- the end ---------------------------------------------------------------------------

    def stop(self, now: float, wall: float, reason: str) -> dict[str, Any]:
        """Close the files and write metadata.json; its content."""
        if self.state == "recording":
            self.reason = reason
            try:
                self._write(self.timeline.finish(now))
                duration = self.timeline.duration()
                if self.mix_file is not None:
                    self.mix_file.close()
                if self.tracks_file is not None:
                    self.tracks_file.close(duration * 1000)
                self.state = "finalizing"
            except OSError as exc:
                self._fail(exc)
        self.ended_at = wall
        metadata = self.metadata()
        try:
            write_json_atomic(self.folder / METADATA_FILE, metadata)
        except OSError as exc:
            log.error("recording %s: metadata.json: %s", self.id, exc)
        self.release()
        log.info("recording %s: stopped (%s), %.1f s, %d tracks", self.id, reason,
                 self.timeline.duration(), len(self.timeline.tracks))
        return self.metadata()

    def metadata(self) -> dict[str, Any]:
        tracks = []
        for track in self.timeline.tracks.values():
            owner = self.owners.get(track.ssrc, TrackOwner(name=f"SSRC {track.ssrc}"))
            tracks.append({"track": track.number, "participant": owner.participant,
                           "name": owner.name, "start": round(track.first_frame * FRAME, 3),
                           "packets": track.packets, "filled": track.filled,
                           "late": track.late, "resyncs": track.resyncs})
        return {
            "id": self.id, "room": self.room, "state": self.state, "reason": self.reason,
            "start": iso(self.started_at), "end": iso(self.ended_at),
            "duration": round(self.timeline.duration(), 3),
            "participants": [{"id": e.id, "kind": e.kind, "name": e.name,
                              "joined": iso(e.joined), "left": iso(e.left),
                              "muted": [{"from": iso(a), "to": iso(b)} for a, b in e.mutes]}
                             for e in self.roster.values()],
            "tracks": tracks,
            "mode": self.mode,
            **({"video": self.av.summary()} if self.av is not None else {}),
            "files": list_files(self.folder),
        }


def list_files(folder: Path) -> list[dict[str, Any]]:
    """The recording's files: [{"name", "kind", "bytes"}] (those that exist)."""
    out = []
    for name, kind in FILE_KINDS.items():
        path = folder / name
        if path.is_file():
            out.append({"name": name, "kind": kind, "bytes": path.stat().st_size})
    return out
