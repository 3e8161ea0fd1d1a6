"""Phone callers' audio in the conference: their sources at the bridge and the browsers' voices.

The gateway joins each caller to the focus as a participant (gateway/service.py); this
module gives the caller's voice to the bridge and the browsers' voices to the room mixer:

- per caller, a plain bridge endpoint from the focus (`MediaProvider.attach`) and a
  `VoiceUplink` fed by the mixer's voice tap (Opus encoded once per speaking caller, or the
  phone's own Opus passed through);
- per room with callers, one mixer endpoint (`MediaProvider.open_room`) whose packets go to
  a `RoomAudio` (loudest browsers decoded once each, mixed for every phone of the room).

A caller's voice is encoded and sent only while the room has receivers: participants that
hear the room through the bridge (browsers, muted ones too; a recorder or another node's
phone mixer later). The focus counts them (`Focus.audio_receivers`) and the gateway tells
this module on every change (`set_receivers`, from gateway/phone_rooms.py). With none, the
callers' mixer taps are off and their uplinks stopped: a phones-only room costs what the
phone mixer costs. The first receiver starts every caller's uplink at once (a fresh encoder
fed by the tap from the next tick: the browser hears the callers from its first moments,
nothing stale); the last one stops them. The callers' endpoints and sources stay allocated
at the bridge meanwhile: allocating them again would re-offer every browser of the room
once per caller (`sources_changed`), and a browser's first offer would miss the callers
until those renegotiations finished, which is the gap this must not have; an idle plain
endpoint costs the bridge no packet work, only a visit by its conference's timers a few
times a second (RTCP, stats). The room's mixer endpoint stays too (the
browsers' streams it decodes only exist while browsers send).

Endpoints are asked for in background tasks (the focus may talk to a bridge elsewhere);
whatever comes back after its caller or room is gone is released at once. Packets travel
through links the composition root makes (`connect(media, on_rtp, on_rtcp)`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.browser_audio import MixerLike as RoomMixer
from gateway.browser_audio import RoomAudio
from gateway.media.opus import OpusCodec
from gateway.uplink import FrameEncoder, Pcm, VoiceUplink

log = logging.getLogger(__name__)

OPUS_PT = 111  # the conference's Opus payload type (docs/signaling.md)


class Allocation(Protocol):
    @property
    def endpoint_id(self) -> str: ...

    @property
    def media(self) -> str: ...


class MediaProvider(Protocol):
    """focus.phones.PhoneMedia, structurally."""

    async def open_room(self, room: str) -> Allocation: ...

    async def attach(self, room: str, participant_id: str, ssrc: int) -> Allocation: ...

    async def release(self, room: str, endpoint_id: str) -> None: ...


class Link(Protocol):
    def send_rtp(self, data: bytes) -> None: ...

    def close(self) -> None: ...


PacketHandler = Callable[[bytes], None]
LinkFactory = Callable[[str, PacketHandler, PacketHandler], Link]


class MixerLike(RoomMixer, Protocol):
    """gateway.mixer.ConferenceMixer, as this module uses it."""

    def set_tap(self, leg_id: str, tap: Callable[[Pcm | None, bool], None] | None) -> None: ...

    def __contains__(self, leg_id: object) -> bool: ...


@dataclass(frozen=True, slots=True)
class AudioSettings:
    max_decoded: int = 3  # browser streams decoded per room (the loudest)
    opus_complexity: int = 0            # 8 kHz (G.711) callers: 1 costs 20% more, +0.01 MOS
    opus_complexity_wideband: int = 5   # 16 kHz (G.722) callers: 1 costs them ~0.3 PESQ MOS
    # Opus bitrate of callers' voices: libopus's automatic rate at 8 kHz with FEC costs about
    # one PESQ MOS on G.711 speech (3.15 against 4.13); 32 kb/s without FEC is transparent.
    opus_bitrate: int = 32000
    stream_timeout: float = 2.0

    def voice_encoder(self, rate: int) -> OpusCodec:
        """A caller's voice towards the browsers: Opus from the leg's PCM ``rate``."""
        complexity = self.opus_complexity_wideband if rate >= 16000 else self.opus_complexity
        return OpusCodec(OPUS_PT, sample_rate=rate, complexity=complexity,
                         bitrate=self.opus_bitrate, fec=False)


class _Caller:
    __slots__ = ("closed", "leg_id", "link", "participant_id", "rate", "room", "ssrc",
                 "uplink")

    def __init__(self, participant_id: str, room: str, leg_id: str, rate: int) -> None:
        self.participant_id = participant_id
        self.room = room
        self.leg_id = leg_id
        self.rate = rate
        self.ssrc = secrets.randbits(32) or 1
        self.uplink: VoiceUplink | None = None
        self.link: Link | None = None
        self.closed = False

    def on_frame(self, frame: Pcm | None, voiced: bool) -> None:
        if self.uplink is not None:
            self.uplink.on_frame(frame, voiced)

    def on_phone_packet(self, payload_type: int, payload: bytes, timestamp: int,
                        marker: bool) -> None:
        if self.uplink is not None:
            self.uplink.on_phone_packet(payload, timestamp, marker)


class _Room:
    __slots__ = ("audio", "callers", "closed", "endpoint_id", "link", "name")

    def __init__(self, name: str, audio: RoomAudio) -> None:
        self.name = name
        self.audio = audio
        self.callers: set[str] = set()
        self.endpoint_id: str | None = None
        self.link: Link | None = None
        self.closed = False


class ConferenceAudio:
    def __init__(self, mixer: MixerLike, provider: MediaProvider, connect: LinkFactory,
                 clock: Callable[[], float], settings: AudioSettings | None = None) -> None:
        self.mixer = mixer
        self.provider = provider
        self.connect = connect
        self.clock = clock
        self.settings = settings or AudioSettings()
        self.rooms: dict[str, _Room] = {}
        self.callers: dict[str, _Caller] = {}
        self.receivers: dict[str, int] = {}  # rooms with receivers, and how many
        self._tasks: set[asyncio.Task[None]] = set()
        self.failures = 0

    # -- callers -----------------------------------------------------------------------

    def caller_joined(self, room: str, participant_id: str, leg_id: str, rate: int, *,
                      passthrough: bool = False) -> _Caller:
        """The caller's leg is in the room's mix: give its voice to the bridge. With
        ``passthrough`` (an Opus phone) the caller feeds `on_phone_packet` instead of
        being encoded. Returns the caller (its `on_phone_packet` is the RTP hook)."""
        state = self.rooms.get(room)
        if state is None:
            state = self.rooms[room] = _Room(room, RoomAudio(
                room, self.mixer, self._decoder, max_decoded=self.settings.max_decoded,
                stream_timeout=self.settings.stream_timeout))
            self._spawn(self._open_room(state), room)
        caller = _Caller(participant_id, room, leg_id, 0 if passthrough else rate)
        state.callers.add(participant_id)
        state.audio.ignored.add(caller.ssrc)
        self.callers[participant_id] = caller
        if self.receivers.get(room, 0):
            self._tap(caller, True)
        self._spawn(self._attach(caller), participant_id)
        return caller

    def caller_codec_changed(self, participant_id: str, rate: int, *,
                             passthrough: bool = False) -> None:
        """The caller's leg now runs at ``rate`` (or is an Opus phone passed through): its
        voice is encoded from that rate from the next tick on."""
        caller = self.callers.get(participant_id)
        if caller is None:
            return
        caller.rate = 0 if passthrough else rate
        if caller.uplink is not None and caller.uplink.running:
            caller.uplink.use_encoder(
                self.settings.voice_encoder(caller.rate) if caller.rate else None)
        log.info("participant %s: voice to the bridge now %s", participant_id,
                 f"Opus from {caller.rate} Hz" if caller.rate else "phone's Opus passed through")

    def caller_left(self, participant_id: str) -> None:
        caller = self.callers.pop(participant_id, None)
        if caller is None:
            return
        caller.closed = True
        self._tap(caller, False)
        if caller.uplink is not None:
            caller.uplink.close()
            self._close_link(caller.link)
            caller.link = None
            self._spawn(self.provider.release(caller.room, participant_id), participant_id)
        state = self.rooms.get(caller.room)
        if state is not None:
            state.callers.discard(participant_id)
            if not state.callers:
                self._close_room(state)

    async def _attach(self, caller: _Caller) -> None:
        allocation = await self.provider.attach(caller.room, caller.participant_id, caller.ssrc)
        if caller.closed:
            await self.provider.release(caller.room, caller.participant_id)
            return
        caller.link = self.connect(allocation.media, _ignore, _ignore)
        caller.uplink = VoiceUplink(caller.participant_id, caller.ssrc, caller.link, None,
                                    payload_type=OPUS_PT, stopped_at=self.clock())
        if self.receivers.get(caller.room, 0):
            caller.uplink.start(self.clock(), self._encoder(caller))
        log.info("participant %s: voice to the bridge (%s)", caller.participant_id,
                 f"Opus from {caller.rate} Hz" if caller.rate else "phone's Opus passed through")

    def _encoder(self, caller: _Caller) -> FrameEncoder | None:
        return self.settings.voice_encoder(caller.rate) if caller.rate else None

    def _tap(self, caller: _Caller, on: bool) -> None:
        """The mixer's voice tap of the caller's leg, on or off (off: not a call per tick)."""
        if caller.leg_id in self.mixer:
            self.mixer.set_tap(caller.leg_id, caller.on_frame if on else None)

    # -- receivers ---------------------------------------------------------------------

    def set_receivers(self, room: str, count: int) -> None:
        """``room`` has ``count`` receivers of its phones' voices now (the focus's count).
        From none to some, every caller's voice starts going to the bridge; from some to
        none, it stops."""
        before = self.receivers.get(room, 0)
        if count > 0:
            self.receivers[room] = count
        else:
            self.receivers.pop(room, None)
        if (before > 0) == (count > 0):
            return
        state = self.rooms.get(room)
        if state is None:
            return
        now = self.clock()
        callers = [self.callers[p] for p in state.callers if p in self.callers]
        for caller in callers:
            self._tap(caller, count > 0)
            if caller.uplink is None:
                continue  # its endpoint is on the way: _attach starts it
            if count > 0:
                caller.uplink.start(now, self._encoder(caller))
            else:
                caller.uplink.stop(now)
        log.info("room %s: %s, %d callers' voices to the bridge %s", room,
                 f"{count} receivers" if count else "no receivers", len(callers),
                 "started" if count else "stopped")

    # -- rooms -------------------------------------------------------------------------

    async def _open_room(self, state: _Room) -> None:
        allocation = await self.provider.open_room(state.name)
        if state.closed:
            await self.provider.release(state.name, allocation.endpoint_id)
            return
        state.endpoint_id = allocation.endpoint_id
        audio, clock = state.audio, self.clock

        def on_rtp(data: bytes) -> None:
            audio.on_rtp(data, clock())

        state.link = self.connect(allocation.media, on_rtp, _ignore)

    def _close_room(self, state: _Room) -> None:
        state.closed = True
        if self.rooms.get(state.name) is state:
            del self.rooms[state.name]
        state.audio.close()
        self._close_link(state.link)
        state.link = None
        if state.endpoint_id is not None:
            self._spawn(self.provider.release(state.name, state.endpoint_id), state.name)

    def before_tick(self, now: float) -> None:
        for state in self.rooms.values():
            state.audio.before_tick(now)

    # -- plumbing ----------------------------------------------------------------------

    def _decoder(self, rate: int) -> OpusCodec:
        return OpusCodec(OPUS_PT, sample_rate=rate)

    def _close_link(self, link: Link | None) -> None:
        if link is not None:
            try:
                link.close()
            except Exception:
                log.exception("closing a bridge link failed")

    def _spawn(self, coro: Coroutine[Any, Any, None], owner: str) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                self.failures += 1
                log.error("%s: bridge media task failed", owner, exc_info=t.exception())

        task.add_done_callback(done)

    async def close(self) -> None:
        for pid in list(self.callers):
            self.caller_left(pid)
        if self._tasks:  # the releases (bounded: the focus times its bridge calls out)
            await asyncio.wait(list(self._tasks), timeout=5.0)

    def stats(self) -> dict[str, int]:
        uplinks = [c.uplink for c in self.callers.values() if c.uplink is not None]
        return {
            "bridge_callers": len(self.callers),
            "bridge_rooms": len(self.rooms),
            "browser_streams": sum(len(s.audio.streams) for s in self.rooms.values()),
            "browser_streams_decoded": sum(s.audio.decoding() for s in self.rooms.values()),
            "uplink_packets": sum(u.packets for u in uplinks),
            "uplinks_running": sum(1 for u in uplinks if u.running),
            "media_tasks": len(self._tasks),
        }


def _ignore(data: bytes) -> None:
    """RTCP from the bridge (receiver reports): nothing to do with it yet."""
