"""The recordings of every room: started and stopped on request, ticked, finalized, listed.

A recording of a room is a plain endpoint at the bridge (`allocate_plain`, receiving audio,
in no group: it gets every speaker, the gateway's phone callers included) whose packets go
to a `Recording` (recorder/session.py). The focus is told the room is being recorded
(`Focus.set_recorded`): the recorder counts as one of the room's receivers, so the gateway
encodes its callers' voices for the bridge while the recording runs, and `on_change(room,
recording)` tells the composition root (the gateway's prompt to callers, the meeting
page's indicator).

Who may start one is decided by the caller (the API checks the admin token or a room
moderator's); here:

- a room without a conference (nobody in it) is refused (`RecordingRefused`, "empty"), as is
  a room already being recorded ("busy") and a disk with less than `min_free_mb` free
  ("disk");
- a recording stops on request, when its room empties, when no speaker sent audio for
  `idle_timeout`, at `max_duration` or `max_mb`, when the disk falls under `min_free_mb`,
  and when the server stops; `ticker()` checks all of that every `TICK` seconds;
- then the finalize command and the webhook run (recorder/finalize.py) and the state goes
  from "finalizing" to "done".

Recordings are folders under `recording.path` named by id; the API lists those on disk too.
A recording cut by a crash or kill -9 is closed at the next start (`recover()`,
recorder/recovery.py): its metadata.json completed, then the finalize command and the webhook,
as for one that stopped; its state is then "done" (its reason "interrupted").
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import shutil
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bridge.api import EndpointUpdate
from recorder.finalize import post_webhook, run_finalize_command, write_json_atomic
from recorder.recovery import close_unfinished, unfinished
from recorder.rtmp import StreamRefused, redact, stream_target
from recorder.session import METADATA_FILE, VIDEO_FILE, Limits, Recording, list_files
from recorder.video_out import AvPipeline, Mp4Output, RtmpOutput, VideoSettings

log = logging.getLogger(__name__)

# Every TICK each recording writes its frames that are due (one or two: the work spread
# evenly, not five frames of every recording at once), one recording per loop callback, so
# that the phone mixer's 20 ms clock waits for one recording's frame at most, not for all.
TICK = 0.02
DISK_CHECK = 5.0  # s between looks at the free disk while recording
SOURCES_REFRESH = 1.0  # s between asks to the bridge for an unknown SSRC's owner
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class RecordingRefused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code  # "empty" | "busy" | "disk" | "unavailable" | "invalid" | "forbidden"
        self.message = message


@dataclass(frozen=True, slots=True)
class RecorderSettings:
    path: str = "./recordings"
    mix_format: str = "ogg"
    max_duration: float = 14400.0
    max_mb: int = 2048
    min_free_mb: int = 1024
    idle_timeout: float = 300.0
    finalize_command: str = ""
    webhook_url: str = ""
    webhook_secret: str = ""
    rtmp_allow: tuple[str, ...] = ()
    video: VideoSettings = field(default_factory=VideoSettings)

    @classmethod
    def from_config(cls, config: Any) -> RecorderSettings:
        r = config.recording
        return cls(path=r.path, mix_format=r.mix_format, max_duration=r.max_duration,
                   max_mb=r.max_mb, min_free_mb=r.min_free_mb, idle_timeout=r.idle_timeout,
                   finalize_command=r.finalize_command, webhook_url=r.webhook_url,
                   webhook_secret=r.webhook_secret, rtmp_allow=tuple(r.rtmp_allow),
                   video=VideoSettings(width=r.video_width, height=r.video_height,
                                       fps=r.video_fps, bitrate=r.video_bitrate * 1000,
                                       preset=r.video_preset, layout=r.video_layout))


class Participant(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def name(self) -> str: ...


class FocusLike(Protocol):
    def participants(self, room: str) -> list[Any]: ...

    def subscribe(self, room: str, listener: Callable[[Any], None], *,
                  updates: bool = False) -> Callable[[], None]: ...

    def set_recorded(self, room: str, recorded: bool) -> None: ...


class BridgeLike(Protocol):
    async def allocate_plain(self, conference_id: str, endpoint_id: str) -> Any: ...

    async def expire(self, conference_id: str, endpoint_id: str) -> None: ...

    async def receive_sources(self, conference_id: str,
                              endpoint_id: str) -> tuple[Any, ...]: ...

    async def update(self, conference_id: str, endpoint_id: str,
                     update: EndpointUpdate) -> None: ...


class Link(Protocol):
    def close(self) -> None: ...

    def send_rtcp(self, data: bytes) -> None: ...


def pli(media_ssrc: int) -> bytes:
    """An RTCP Picture Loss Indication (RFC 4585) for one of the streams we receive."""
    return bytes((0x81, 206, 0, 2)) + (1).to_bytes(4, "big") + \
        (media_ssrc & 0xFFFFFFFF).to_bytes(4, "big")


LinkFactory = Callable[[str, Callable[[bytes], None], Callable[[bytes], None]], Link]


class _Running:
    __slots__ = ("endpoint_id", "link", "next_lookup", "recording", "unsubscribe")

    def __init__(self, recording: Recording, endpoint_id: str) -> None:
        self.recording = recording
        self.endpoint_id = endpoint_id
        self.link: Link | None = None
        self.unsubscribe: Callable[[], None] | None = None
        self.next_lookup = 0.0


class Recordings:
    def __init__(self, settings: RecorderSettings, focus: FocusLike, bridge: BridgeLike,
                 connect: LinkFactory, *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 on_change: Callable[[str, bool], None] | None = None) -> None:
        self.settings = settings
        self.focus = focus
        self.bridge = bridge
        self.connect = connect
        self.clock = clock
        self.wall = wall
        self.on_change = on_change
        self.root = Path(settings.path)
        self.running: dict[str, _Running] = {}  # by room
        self.by_id: dict[str, Recording] = {}  # this process's recordings
        self.recovering: set[str] = set()  # ids of crashed ones being finalized now
        self._tasks: set[asyncio.Task[None]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._next_disk_check = 0.0

    # -- control -----------------------------------------------------------------------

    def free_mb(self) -> int:
        self.root.mkdir(parents=True, exist_ok=True)
        return shutil.disk_usage(self.root).free // (1024 * 1024)

    async def start(self, room: str, by: str, *, video: bool = False, stream: bool = False,
                    url: str | None = None, youtube_key: str | None = None) -> Recording:
        """Start recording ``room`` (with video: also video.mp4), or with ``stream`` live
        streaming it to ``url`` or a YouTube key (recorder/rtmp.py checks them against
        rtmp_allow); RecordingRefused says why not."""
        stream_url: str | None = None
        if stream:
            try:
                stream_url = stream_target(url, youtube_key, self.settings.rtmp_allow)
            except StreamRefused as exc:
                log.warning("room %s: live stream refused: %s", room, exc)
                raise RecordingRefused("forbidden" if exc.forbidden else "invalid",
                                       str(exc)) from None
        if room in self.running:
            raise RecordingRefused("busy", f"room {room} is already being recorded")
        participants = self.focus.participants(room)
        if not participants:
            raise RecordingRefused("empty", f"room {room} has nobody in it")
        free = self.free_mb()
        if free < self.settings.min_free_mb:
            log.warning("room %s: recording refused, %d MB free (min_free_mb %d)", room, free,
                        self.settings.min_free_mb)
            raise RecordingRefused("disk", "not enough free disk space to record")
        now, wall = self.clock(), self.wall()
        rid = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(wall))}-{room}-" \
              f"{secrets.token_hex(4)}"
        s = self.settings
        limits = Limits(max_duration=s.max_duration, max_bytes=s.max_mb * 1024 * 1024,
                        idle_timeout=s.idle_timeout)
        recording = Recording(rid, room, self.root / rid, now, wall, limits, s.mix_format,
                              audio_files=not stream, mode="stream" if stream else "file")
        if stream or video:
            assert stream_url is not None or video
            output = RtmpOutput(stream_url) if stream_url is not None else \
                Mp4Output(str(recording.folder / VIDEO_FILE))
            recording.av = AvPipeline(rid, output, s.video, now, {}, reconnect=stream,
                                      clock=self.clock)
        endpoint_id = f"recorder-{rid[-8:]}"
        entry = self.running[room] = _Running(recording, endpoint_id)
        self.by_id[rid] = recording
        for p in participants:
            recording.joined(p.id, p.kind, p.name, wall, muted=bool(getattr(p, "muted", False)))
        recording.checkpoint()  # metadata.json from the start: a crash leaves who was there
        try:
            allocation = await asyncio.wait_for(self.bridge.allocate_plain(room, endpoint_id),
                                                5.0)
        except Exception as exc:
            self.running.pop(room, None)
            self.by_id.pop(rid, None)
            recording.stop(self.clock(), self.wall(), "bridge refused")
            shutil.rmtree(recording.folder, ignore_errors=True)  # nothing was recorded
            log.error("recording %s: no endpoint at the bridge: %s", rid, exc)
            raise RecordingRefused("unavailable", "the bridge could not give an endpoint") \
                from exc
        if self.running.get(room) is not entry:  # stopped meanwhile
            await self.bridge.expire(room, endpoint_id)
            return recording
        av = recording.av
        if av is not None:
            av.codecs.update({pt.pt: pt.name for pt in allocation.payload_types
                              if pt.name in ("VP8", "H264")})
            # the active speaker's camera (last-N 1), or every camera for a grid, and
            # every screen share
            last_n = -1 if s.video.layout == "grid" else 1
            await self.bridge.update(room, endpoint_id, EndpointUpdate(receive="all",
                                                                       last_n=last_n))
            av.begin()
            if stream_url is not None:
                log.info("recording %s: streaming to %s", rid, redact(stream_url))
        clock = self.clock

        def on_rtp(data: bytes) -> None:
            ssrc = recording.on_rtp(data, clock())
            if ssrc is not None:
                self._lookup(entry)

        entry.link = self.connect(allocation.media, on_rtp, _ignore)

        def on_event(event: Any) -> None:
            self._on_focus_event(entry, event)

        entry.unsubscribe = self.focus.subscribe(room, on_event, updates=True)
        self.focus.set_recorded(room, True)
        self._lookup(entry)
        log.info("recording %s: started by %s", rid, by)
        self._changed(room, True)
        self._ensure_ticker()
        return recording

    def stop(self, room: str, reason: str) -> Recording | None:
        """Stop the room's recording (files closed now; finalizing in the background)."""
        entry = self.running.pop(room, None)
        if entry is None:
            return None
        recording = entry.recording
        if entry.link is not None:
            entry.link.close()
        if entry.unsubscribe is not None:
            entry.unsubscribe()
        self.focus.set_recorded(room, False)
        metadata = recording.stop(self.clock(), self.wall(), reason)
        if entry.link is not None:  # (else its endpoint is on the way: start() expires it)
            self._spawn(self._release(room, entry.endpoint_id), recording.id)
        self._spawn(self._finalize(recording, metadata), recording.id)
        self._changed(room, False)
        return recording

    def recording_of(self, room: str) -> Recording | None:
        entry = self.running.get(room)
        return entry.recording if entry is not None else None

    def _changed(self, room: str, on: bool) -> None:
        if self.on_change is not None:
            try:
                self.on_change(room, on)
            except Exception:
                log.exception("room %s: telling of the recording's change failed", room)

    # -- the roster and the bridge's sources ----------------------------------------------

    def _on_focus_event(self, entry: _Running, event: Any) -> None:
        info = event.participant
        recording = entry.recording
        name = type(event).__name__
        if name == "ParticipantJoined":
            recording.joined(info.id, info.kind, info.name, self.wall(), muted=info.muted)
            self._lookup(entry)
        elif name == "ParticipantLeft":
            recording.left(info.id, self.wall())
        elif name == "ParticipantMuted":
            recording.muted(info.id, info.muted, self.wall())
        elif name == "ParticipantUpdated" and "name" in event.changed:
            recording.renamed(info.id, info.name)

    def _lookup(self, entry: _Running) -> None:
        now = self.clock()
        if now < entry.next_lookup:
            return
        entry.next_lookup = now + SOURCES_REFRESH
        self._spawn(self._owners(entry), entry.recording.id)

    async def _owners(self, entry: _Running) -> None:
        room = entry.recording.room
        try:
            sources = await self.bridge.receive_sources(room, entry.endpoint_id)
        except Exception as exc:  # expired meanwhile (the recording stopped), or a bridge error
            log.info("recording %s: no sources from the bridge (%s)", entry.recording.id,
                     exc)
            return
        if self.running.get(room) is not entry:
            return
        names = {p.id: p.name for p in self.focus.participants(room)}
        recording = entry.recording
        av = recording.av
        for rs in sources:
            pid = rs.source.endpoint_id
            if rs.source.kind == "video" and av is not None:
                if rs.source.video_type == "screen":
                    av.screens.add(rs.ssrc)
                else:
                    av.screens.discard(rs.ssrc)
            if rs.source.kind != "audio":
                continue
            owner = recording.owners.get(rs.ssrc)
            name = names.get(pid) or (recording.roster[pid].name if pid in recording.roster
                                      else pid)
            if owner is None or owner.participant != pid or owner.name != name:
                recording.set_owner(rs.ssrc, pid, name)

    # -- ticking, auto-stop ----------------------------------------------------------------

    def _ensure_ticker(self) -> None:
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.get_running_loop().create_task(self._tick_loop())

    async def _tick_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while self.running:
            now = self.clock()
            low_disk = self._disk_low(now)
            for room in list(self.running):
                try:
                    self._tick_room(room, now, low_disk)
                except Exception:  # a bug must not stop every recording's writing
                    log.exception("recordings: tick of room %s failed", room)
                await asyncio.sleep(0)  # the loop's other work between two recordings
            next_at = max(next_at + TICK, loop.time())
            await asyncio.sleep(next_at - loop.time())

    def _disk_low(self, now: float) -> bool:
        if now < self._next_disk_check:
            return False
        self._next_disk_check = now + DISK_CHECK
        return self.free_mb() < self.settings.min_free_mb

    def tick(self) -> None:
        """Every recording at once (the tests' tick; the service's loop spreads them)."""
        now = self.clock()
        low_disk = self._disk_low(now)
        for room in list(self.running):
            self._tick_room(room, now, low_disk)

    def _tick_room(self, room: str, now: float, low_disk: bool) -> None:
        entry = self.running.get(room)
        if entry is None:
            return
        if now >= entry.next_lookup and any(o.participant is None for o in
                                            entry.recording.owners.values()):
            self._lookup(entry)  # a track nobody owns yet: ask the bridge again
        av = entry.recording.av
        if av is not None and entry.link is not None:
            for ssrc in av.pli_wanted():
                entry.link.send_rtcp(pli(ssrc))
            if now >= entry.next_lookup:
                self._lookup(entry)  # screen shares come and go: keep the kinds fresh
        reason = entry.recording.tick(now)
        if reason is None and not self.focus.participants(room):
            reason = "room empty"
        if reason is None and low_disk:
            reason = "low disk"
        if reason is not None:
            log.info("recording %s: auto-stop (%s)", entry.recording.id, reason)
            self.stop(room, reason)

    # -- after the end ---------------------------------------------------------------------

    async def _release(self, room: str, endpoint_id: str) -> None:
        try:
            await self.bridge.expire(room, endpoint_id)
        except Exception:
            log.exception("room %s: expiring recorder endpoint %s failed", room, endpoint_id)

    async def _finalize(self, recording: Recording, metadata: dict[str, Any]) -> None:
        s = self.settings
        if recording.av is not None:  # the video thread writes what is queued and closes
            await asyncio.get_running_loop().run_in_executor(None, recording.av.finish)
            metadata = recording.metadata()
            try:
                write_json_atomic(recording.folder / METADATA_FILE, metadata)
            except OSError as exc:
                log.error("recording %s: metadata.json: %s", recording.id, exc)
        if s.finalize_command and recording.state != "failed":
            await run_finalize_command(s.finalize_command, recording.folder, recording.id)
        if recording.state == "finalizing":
            recording.state = "done"
        metadata["state"] = recording.state
        if s.webhook_url:
            metadata["files"] = list_files(recording.folder)
            await post_webhook(s.webhook_url, s.webhook_secret, metadata)

    # -- recordings an earlier process left unfinished -------------------------------------

    def recover(self) -> None:
        """At start-up: close the recordings a crash or kill -9 cut short (in the
        background: the finalize command may take minutes)."""
        self._spawn(self._recover(), "recovery")

    async def _recover(self) -> None:
        loop = asyncio.get_running_loop()
        found = await loop.run_in_executor(None, unfinished, self.root, set(self.by_id))
        for folder in found:
            rid = folder.name
            self.recovering.add(rid)
            try:
                metadata = await loop.run_in_executor(None, close_unfinished, folder)
                if metadata is not None:
                    await self._finish_recovered(folder, metadata)
            except Exception:
                log.exception("recording %s: closing it after the crash failed", rid)
            finally:
                self.recovering.discard(rid)

    async def _finish_recovered(self, folder: Path, metadata: dict[str, Any]) -> None:
        s = self.settings
        if s.finalize_command:
            await run_finalize_command(s.finalize_command, folder, folder.name)
        metadata["state"] = "done"
        if s.webhook_url:
            metadata["files"] = list_files(folder)
            await post_webhook(s.webhook_url, s.webhook_secret, metadata)

    # -- listing ---------------------------------------------------------------------------

    def describe(self, rid: str) -> dict[str, Any] | None:
        """{"id", "room", "state", "start", "end", "files"} of one recording, or None."""
        if not ID_PATTERN.fullmatch(rid):
            return None
        folder = self.root / rid
        recording = self.by_id.get(rid)
        if recording is not None:
            meta = recording.metadata()
            return {"id": rid, "room": recording.room, "state": recording.state,
                    "start": meta["start"], "end": meta["end"],
                    "files": list_files(folder)}
        if not folder.is_dir():
            return None
        meta = _read_metadata(folder)
        if rid in self.recovering:
            state = "finalizing"
        elif not meta or meta.get("state") == "failed":
            state = "failed"
        elif meta.get("state") == "recording" and meta.get("end") is None:
            state = "recording"  # in another process, or cut short (closed at its start)
        else:
            state = "done"
        return {"id": rid, "room": meta.get("room", ""), "state": state,
                "start": meta.get("start"), "end": meta.get("end"),
                "files": list_files(folder)}

    def listing(self, room: str | None = None) -> list[dict[str, Any]]:
        if not self.root.is_dir():
            return []
        out = []
        for folder in sorted(self.root.iterdir()):
            if folder.is_dir() and ID_PATTERN.fullmatch(folder.name):
                item = self.describe(folder.name)
                if item is not None and (room is None or item["room"] == room or (
                        not item["room"] and f"-{room}-" in folder.name)):
                    out.append(item)
        return out

    def file_path(self, rid: str, name: str) -> Path | None:
        """The path of one listed file of a recording (nothing else is served)."""
        item = self.describe(rid)
        if item is None or name not in {f["name"] for f in item["files"]}:
            return None
        return self.root / rid / name

    # -- plumbing --------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None], owner: str) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("recording %s: task failed", owner, exc_info=t.exception())

        task.add_done_callback(done)

    async def close(self) -> None:
        """Stop every recording (the server stops) and wait for the finalizing, bounded."""
        for room in list(self.running):
            self.stop(room, "server stopping")
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=10.0)

    def stats(self) -> dict[str, int]:
        return {"recordings_running": len(self.running)}


def _read_metadata(folder: Path) -> dict[str, Any]:
    import json

    try:
        data = json.loads((folder / METADATA_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _ignore(data: bytes) -> None:
    """RTCP from the bridge: nothing to do with it."""
