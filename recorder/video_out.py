"""Video recording and live streaming: the active speaker's camera (or the screen share) and
the room mix, as H.264 and AAC, into an MP4 file or to an RTMP ingest.

One `AvPipeline` per recording with video, fed from the event loop and working in a thread
of its own, so that decoding, scaling and encoding (FFmpeg's, through PyAV, which lets go of
the interpreter lock while it works) never hold up the mix clock:

- `on_rtp(data, now)`: every video packet of the recorder's bridge endpoint (the bridge
  sends it the dominant speaker's camera, `last_n` 1, and every screen share); queued.
- `on_audio(index, pcm)`: each 20 ms frame of the room mix (48 kHz mono), with its frame
  index on the recording's clock; queued.
- the thread, `fps` times a second: packets become frames (recorder/depacketize.py), the
  frames are decoded (one decoder per SSRC); the picture is the newest frame of the screen
  share when one sent in the last `STALE` seconds, else of the camera that sent last; it is
  scaled to fit `width` x `height` (its aspect kept, black bars) and encoded with libx264
  (`preset`, a key frame every 2 s); the mix is encoded to AAC. With `layout = "grid"` (the
  bridge then sends every camera) the picture is every camera that sent in the last `STALE`
  seconds, in a grid; a screen share still takes the whole picture. Before any picture, and
  whenever the chosen source is stale, the frame is black: a room of phones still streams.
- Timestamps are the recording's clock (seconds from its start), for video and audio alike,
  so they stay in step whatever the thread's delays; a frame the thread could not make in
  time is skipped (variable frame rate), never queued up.

Outputs:
- `Mp4Output`: fragmented MP4 (an empty `moov`, a fragment per key frame, flushed), so a
  crash leaves a file that plays up to its last fragment, like the audio files.
- `RtmpOutput`: FLV over RTMP. When the ingest drops the connection (or refuses it), the
  output is opened again after a backoff (1 s doubling to 30 s), with new encoders so that
  the stream starts again with its headers and a key frame; what happens meanwhile is lost
  (a live stream does not wait).

PLIs: when a source's frames were lost, `pli_wanted()` gives the SSRCs to ask key frames
for (the service sends the RTCP to the bridge, which asks the sender).
"""

from __future__ import annotations

import logging
import queue
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

import av
import numpy as np
import numpy.typing as npt

from recorder.depacketize import FrameAssembler

log = logging.getLogger(__name__)

RATE = 48000
STALE = 2.0  # s without a new frame: the source is not shown any more
QUEUE_MAX = 4000  # packets and audio frames waiting for the thread; beyond, dropped
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
_RTP = struct.Struct("!BBHII")


def _why(exc: BaseException) -> str:
    """An error's reason without its file name: FFmpeg's errors name the URL, and a stream's
    URL holds its key."""
    reason = getattr(exc, "strerror", None)
    return str(reason) if reason else type(exc).__name__


@dataclass(frozen=True, slots=True)
class VideoSettings:
    width: int = 1280
    height: int = 720
    fps: int = 30
    bitrate: int = 2_500_000  # bits/s of H.264
    preset: str = "veryfast"  # libx264's speed/quality trade
    audio_bitrate: int = 128000
    layout: str = "speaker"  # "speaker": one picture; "grid": every camera (or the screen)


class Output(Protocol):
    name: str

    def open(self, settings: VideoSettings) -> tuple[Any, Any]:
        """(video stream, audio stream) of a newly opened container."""
        ...

    def mux(self, packet: Any) -> None: ...

    def close(self) -> None: ...


class _Container:
    """A PyAV output container with an H.264 and an AAC stream."""

    name = "output"

    def __init__(self, target: str, fmt: str, options: dict[str, str]) -> None:
        self.target = target
        self.fmt = fmt
        self.options = options
        self.container: Any = None

    def open(self, settings: VideoSettings) -> tuple[Any, Any]:
        container = av.open(self.target, "w", format=self.fmt, options=self.options,
                            timeout=(5.0, 5.0))
        try:
            video = container.add_stream("libx264", rate=settings.fps)
            video.width, video.height, video.pix_fmt = settings.width, settings.height, \
                "yuv420p"
            video.bit_rate = settings.bitrate
            video.codec_context.gop_size = 2 * settings.fps
            video.codec_context.time_base = Fraction(1, 1000)
            video.options = {"preset": settings.preset, "tune": "zerolatency"}
            audio = container.add_stream("aac", rate=RATE)
            audio.codec_context.layout = "mono"
            audio.bit_rate = settings.audio_bitrate
            container.start_encoding()  # opens the file or connects now, headers written
        except Exception:
            container.close()
            raise
        self.container = container
        return video, audio

    def mux(self, packet: Any) -> None:
        self.container.mux(packet)

    def close(self) -> None:
        container, self.container = self.container, None
        if container is not None:
            container.close()


class Mp4Output(_Container):
    def __init__(self, path: str) -> None:
        super().__init__(path, "mp4", {"movflags": "frag_keyframe+empty_moov+default_base_moof",
                                       "flush_packets": "1"})
        self.name = "video.mp4"


class RtmpOutput(_Container):
    def __init__(self, url: str) -> None:
        super().__init__(url, "flv", {"flvflags": "no_duration_filesize"})
        self.name = "stream"


class AvPipeline:
    """See the module. `clock` is the loop's monotonic clock the recording's `start` is on."""

    def __init__(self, recording_id: str, output: _Container, settings: VideoSettings,
                 start: float, codecs: dict[int, str], *, reconnect: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.id = recording_id
        self.output = output
        self.settings = settings
        self.start = start
        self.codecs = codecs  # payload type -> "VP8" | "H264"
        self.reconnect = reconnect
        self.clock = clock
        self.screens: set[int] = set()  # SSRCs that are screen shares (from the bridge)
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._queued = 0
        self._plis: list[int] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"video-{recording_id}",
                                        daemon=True)
        # counters (read from the loop; written by the thread)
        self.frames_out = 0
        self.frames_in = 0
        self.skipped = 0
        self.dropped_input = 0
        self.reconnects = 0
        self.connected = False
        self.error = ""

    # -- the loop's side -----------------------------------------------------------------

    def begin(self) -> None:
        self._thread.start()

    def on_rtp(self, data: bytes, now: float) -> None:
        if len(data) < 12 or (data[1] & 0x7F) not in self.codecs:
            return
        self._put(("rtp", data, now))

    def on_audio(self, index: int, pcm: npt.NDArray[np.int16]) -> None:
        self._put(("pcm", index, pcm.copy()))

    def summary(self) -> dict[str, Any]:
        """What metadata.json says of the video (never the stream's URL)."""
        s = self.settings
        return {"width": s.width, "height": s.height, "fps": s.fps,
                "frames": self.frames_out, "frames_skipped": self.skipped,
                "frames_received": self.frames_in, "reconnects": self.reconnects,
                **({"error": self.error} if self.error else {})}

    def pli_wanted(self) -> list[int]:
        with self._lock:
            plis, self._plis = self._plis, []
        return plis

    def _put(self, item: tuple[Any, ...]) -> None:
        if self._queued >= QUEUE_MAX:
            self.dropped_input += 1
            return
        self._queued += 1
        self._queue.put(item)

    def finish(self) -> None:
        """Stop: what is queued is written, the encoders flushed, the output closed. Blocks
        until the thread is done (call it off the loop)."""
        self._stop.set()
        self._queue.put(None)
        self._thread.join(timeout=30)
        if self._thread.is_alive():
            log.error("recording %s: the video thread did not finish in 30 s", self.id)

    # -- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            _Worker(self).run()
        except Exception as exc:  # the recording's audio goes on; say why the video stopped
            self.error = _why(exc)
            log.error("recording %s: video stopped: %s (%s)", self.id, self.error,
                      type(exc).__name__)


class _Source:
    __slots__ = ("assembler", "decoder", "frame", "frame_at", "ssrc")

    def __init__(self, ssrc: int, codec: str) -> None:
        self.ssrc = ssrc
        self.assembler = FrameAssembler(ssrc, codec)
        self.decoder = av.CodecContext.create("vp8" if codec == "VP8" else "h264", "r")
        self.frame: Any = None  # the newest decoded av.VideoFrame
        self.frame_at = float("-inf")


class _Worker:
    def __init__(self, p: AvPipeline) -> None:
        self.p = p
        s = p.settings
        self.interval = 1.0 / s.fps
        self.sources: dict[int, _Source] = {}
        self.video: Any = None
        self.audio: Any = None
        self.next_open = 0.0
        self.backoff = BACKOFF_FIRST
        self.last_pts = -1
        self.audio_next = 0  # the next audio sample expected (pts, 48 kHz)
        self.shown: object = None  # what was composed last: (ssrc, id of the frame), ...
        self.canvas = self._black()
        self.frame_cache: Any = None

    def _black(self) -> npt.NDArray[np.uint8]:
        s = self.p.settings
        canvas = np.empty((s.height * 3 // 2, s.width), dtype=np.uint8)
        canvas[:s.height] = 16
        canvas[s.height:] = 128
        return canvas

    def run(self) -> None:
        p = self.p
        self._open()
        next_frame = p.clock()
        while True:
            timeout = max(0.0, next_frame - p.clock())
            try:
                item = p._queue.get(timeout=timeout)
            except queue.Empty:
                item = ()
            if item is None:
                break
            if item:
                p._queued -= 1
                self._take(item)
                continue
            now = p.clock()
            self._picture(now)
            next_frame += self.interval
            if next_frame < now:  # behind: skip to the next frame time from now
                missed = int((now - next_frame) / self.interval) + 1
                p.skipped += missed
                next_frame += missed * self.interval
        while True:  # what was queued before the stop
            try:
                item = p._queue.get_nowait()
            except queue.Empty:
                break
            if item:
                self._take(item)
        self._close(flush=True)

    # input
    def _take(self, item: tuple[Any, ...]) -> None:
        if item[0] == "rtp":
            self._packet(item[1], item[2])
        else:
            self._pcm(item[1], item[2])

    def _packet(self, data: bytes, now: float) -> None:
        b0, b1, seq, ts, ssrc = _RTP.unpack_from(data)
        offset = 12 + 4 * (b0 & 0x0F)
        if b0 & 0x10:
            if offset + 4 > len(data):
                return
            offset += 4 + 4 * int.from_bytes(data[offset + 2:offset + 4], "big")
        end = len(data) - (data[-1] if b0 & 0x20 else 0)
        if end <= offset:
            return
        source = self.sources.get(ssrc)
        if source is None:
            codec = self.p.codecs[b1 & 0x7F]
            source = self.sources[ssrc] = _Source(ssrc, codec)
            log.info("recording %s: video SSRC %d (%s)", self.p.id, ssrc, codec)
        frame = source.assembler.push(seq, ts, bool(b1 & 0x80), data[offset:end])
        if source.assembler.needs_keyframe(now):
            with self.p._lock:
                self.p._plis.append(ssrc)
        if frame is None:
            return
        try:
            decoded = source.decoder.decode(av.Packet(frame.data))
        except av.FFmpegError as exc:
            log.debug("recording %s: SSRC %d: decoding failed: %s", self.p.id, ssrc, _why(exc))
            source.assembler.waiting_keyframe = True
            return
        if decoded:
            source.frame = decoded[-1]
            source.frame_at = now
            self.p.frames_in += 1

    def _pcm(self, index: int, pcm: npt.NDArray[np.int16]) -> None:
        if self.audio is None:
            return
        pts = index * pcm.size
        if pts < self.audio_next:
            return  # (cannot happen: the timeline gives frames in order)
        self.audio_next = pts + pcm.size
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = pts
        frame.time_base = Fraction(1, RATE)
        self._encode(self.audio, frame)

    # output
    def _fresh(self, now: float) -> list[_Source]:
        return [s for s in self.sources.values()
                if s.frame is not None and now - s.frame_at < STALE]

    def _choose(self, now: float) -> _Source | None:
        fresh = self._fresh(now)
        screens = [s for s in fresh if s.ssrc in self.p.screens]
        pool = screens or fresh
        return max(pool, key=lambda s: s.frame_at) if pool else None

    def _picture(self, now: float) -> None:
        if self.video is None:
            self._open()
            if self.video is None:
                return
        pts = round((now - self.p.start) * 1000)
        if pts <= self.last_pts:
            return
        source = self._choose(now)
        key = (source.ssrc, id(source.frame)) if source is not None else None
        if self.p.settings.layout == "grid" and (source is None
                                                 or source.ssrc not in self.p.screens):
            tiles = self._fresh(now)
            grid_key = tuple((t.ssrc, id(t.frame)) for t in tiles)
            if grid_key != self.shown or self.frame_cache is None:
                self.frame_cache = self._grid(tiles)
                self.shown = grid_key
        elif key != self.shown or self.frame_cache is None:
            self.frame_cache = self._compose(source)
            self.shown = key
        frame = self.frame_cache
        frame.pts = pts
        frame.time_base = Fraction(1, 1000)
        self.last_pts = pts
        if self._encode(self.video, frame):
            self.p.frames_out += 1

    def _compose(self, source: _Source | None) -> Any:
        s = self.p.settings
        if source is None:
            return av.VideoFrame.from_ndarray(self.canvas, format="yuv420p")
        canvas = self._black()
        self._paste(canvas, source.frame, 0, 0, s.width, s.height)
        return av.VideoFrame.from_ndarray(canvas, format="yuv420p")

    def _grid(self, tiles: list[_Source]) -> Any:
        """Every fresh camera in a grid (in the order they first sent), each letterboxed."""
        s = self.p.settings
        canvas = self._black()
        count = len(tiles)
        if count:
            cols = 1
            while cols * cols < count:
                cols += 1
            rows = -(-count // cols)
            tw, th = (s.width // cols) & ~1, (s.height // rows) & ~1
            for i, tile in enumerate(tiles):
                row, col = divmod(i, cols)
                self._paste(canvas, tile.frame, col * tw, row * th, tw, th)
        return av.VideoFrame.from_ndarray(canvas, format="yuv420p")

    def _paste(self, canvas: npt.NDArray[np.uint8], image: Any, left: int, top: int,
               box_w: int, box_h: int) -> None:
        """`image` scaled to fit the box (aspect kept, centred) into the yuv420p canvas."""
        s = self.p.settings
        scale = min(box_w / image.width, box_h / image.height)
        w = max(2, int(image.width * scale) & ~1)
        h = max(2, int(image.height * scale) & ~1)
        planes = image.reformat(width=w, height=h, format="yuv420p").to_ndarray()
        x, y = (left + (box_w - w) // 2) & ~1, (top + (box_h - h) // 2) & ~1
        canvas[y:y + h, x:x + w] = planes[:h]
        u = planes[h:h + h // 4].reshape(h // 2, w // 2)
        v = planes[h + h // 4:].reshape(h // 2, w // 2)
        cu = canvas[s.height:s.height + s.height // 4].reshape(s.height // 2, s.width // 2)
        cv = canvas[s.height + s.height // 4:].reshape(s.height // 2, s.width // 2)
        cu[y // 2:y // 2 + h // 2, x // 2:x // 2 + w // 2] = u
        cv[y // 2:y // 2 + h // 2, x // 2:x // 2 + w // 2] = v

    def _encode(self, stream: Any, frame: Any) -> bool:
        try:
            for packet in stream.encode(frame):
                self.p.output.mux(packet)
            return True
        except (av.FFmpegError, OSError) as exc:
            self._lost(exc)
            return False

    def _open(self) -> None:
        p = self.p
        now = p.clock()
        if now < self.next_open:
            return
        try:
            self.video, self.audio = p.output.open(p.settings)
        except (av.FFmpegError, OSError) as exc:
            if not p.reconnect:
                raise
            self.next_open = now + self.backoff
            log.warning("recording %s: %s: could not open (%s); again in %.0f s", p.id,
                        p.output.name, _why(exc), self.backoff)
            self.backoff = min(BACKOFF_MAX, self.backoff * 2)
            return
        if p.connected is False and self.next_open > 0:
            p.reconnects += 1
            log.warning("recording %s: %s: open again", p.id, p.output.name)
        p.connected = True
        self.backoff = BACKOFF_FIRST
        self.frame_cache = None
        self.last_pts = -1 if self.last_pts < 0 else self.last_pts
        # the audio goes on from its next frame; the stream's timestamps from here
        self.audio_next = 0

    def _lost(self, exc: BaseException) -> None:
        p = self.p
        if not p.reconnect:
            raise exc
        log.warning("recording %s: %s: connection lost (%s)", p.id, p.output.name, _why(exc))
        self._close(flush=False)
        p.connected = False
        self.next_open = p.clock() + self.backoff
        self.backoff = min(BACKOFF_MAX, self.backoff * 2)

    def _close(self, flush: bool) -> None:
        video, audio, self.video, self.audio = self.video, self.audio, None, None
        if flush:
            for stream in (video, audio):
                if stream is None:
                    continue
                try:
                    for packet in stream.encode(None):
                        self.p.output.mux(packet)
                except (av.FFmpegError, OSError) as exc:
                    log.warning("recording %s: flushing %s: %s", self.p.id,
                                self.p.output.name, _why(exc))
                    break
        try:
            self.p.output.close()
        except (av.FFmpegError, OSError) as exc:
            log.warning("recording %s: closing %s: %s", self.p.id, self.p.output.name,
                        _why(exc))
