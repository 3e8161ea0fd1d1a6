"""The phone mixer: one sans-I/O object that mixes every room's audio, once per 20 ms tick.

The media clock (``gateway/clock.py``) starts a tick every 20 ms with
:meth:`ConferenceMixer.begin_tick` and mixes it in slices of a few rooms
(:meth:`ConferenceMixer.run_slice`), giving the event loop its turn between slices so that the
bridge keeps forwarding packets while the gateway mixes and encodes; :meth:`tick` does a whole
tick at once. Each tick the mixer:

1. pulls one frame from every contributor, once (a leg in the IVR is pulled too, so its jitter
   buffer keeps draining, and the frame is dropped);
2. per room, sums the frames of the contributors that are not muted and not silent (int32),
   adds the room-wide tones (join/leave), and gives every listener that sum minus its own
   contribution (N-1), clipped to int16 and encoded in the listener's codec;
3. listeners that contributed nothing share one encoded frame of the full mix per codec per
   room (encode once, send many);
4. legs that are in no room ("solo": the IVR) hear their prompt player, or silence;
5. per-leg overlays (a prompt or tone for one leg: "you are muted") are mixed over whatever
   that leg hears, in a room or solo.

Inputs and outputs are separate seams: a :class:`Contributor` gives frames (a phone leg, or
a decoded browser stream from the bridge), a :class:`Listener` takes encoded frames in its
codec. A phone leg (:class:`MixerLeg`) is both.

Rates: a member may say its PCM rate with a ``sample_rate`` attribute (8000 or 16000; absent
means 8000; 0 on a contributor means "whatever the room runs at"). A room mixes at 16 kHz
while any member of it is wideband, else at 8 kHz, so a room of G.711 phones never
resamples. Frames at another rate are resampled per member with streaming filters
(``gateway/media/resample.py``); prompts and tones (8 kHz) likewise. ``room_rate(room)``
tells a contributor of rate 0 what to give.

Encoding: ``encoder_for(codec_name)`` is called once per listener, and once per room and
codec for the shared frame; a listener with a ``new_encoder()`` method makes its own instead
(a phone whose codec is set up from its SDP: an Opus phone's fmtp). After a listener's codec
or rate has changed (a re-INVITE), :meth:`ConferenceMixer.codec_changed` takes the change.
Only codecs without state between frames (``shared_codecs``: G.711) share that frame: a
stateful encoder (G.722's ADPCM, Opus) must feed one decoder from one continuous state, and
handing a phone between its own encoder and a shared one made its decoder lose track
(full-scale pops whenever the phone started or stopped talking). Listeners of stateful
codecs encode the full mix with their own encoder.

A voice tap (:meth:`ConferenceMixer.set_tap`) sees each tick what a member contributed at
its own rate (``None`` when it was muted or gave nothing; quiet frames are given, so the
receiver can keep a hangover): the gateway encodes a phone caller's voice towards the bridge
from it. Taps run after the rooms are mixed, not in the middle of them: mixing queues them
(the frame copied) and :meth:`ConferenceMixer.run_taps` runs them, so that their codec work
(an Opus encode each) never delays the phones' packets of the tick; :meth:`tick` and the next
:meth:`begin_tick` run any left, in order.

The frame handed to an encoder or returned by a contributor is only valid during the call:
the mixer reuses its buffers. Prompt-end events (:class:`PromptFinished`) are pulled with
:meth:`ConferenceMixer.next_event` after each tick.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gateway.mixer_parts import (
    Contributor,
    EncodeFn,
    EncoderLookup,
    Listener,
    MixerLeg,
    MixMember,
    MixRoom,
    Pcm,
    VoiceTap,
    member_rate,
)
from gateway.prompts import SAMPLE_RATE, PromptPlayer
from native._mixcore import mix as mix_frames

__all__ = [
    "ConferenceMixer", "Contributor", "EncodeFn", "EncoderLookup", "Listener", "MixerError",
    "MixerEvent", "MixerLeg", "Pcm", "PromptFinished", "VoiceTap", "member_rate",
]

log = logging.getLogger(__name__)

INT16_MIN = -32768
INT16_MAX = 32767
ERROR_LOG_EVERY = 1000  # a member that keeps failing is logged on its 1st, 1001st, ... error


@dataclass(frozen=True, slots=True)
class PromptFinished:
    """A prompt set with set_prompt() or play_to_leg() played to its end (not stopped)."""

    leg_id: str
    name: str


MixerEvent = PromptFinished


class MixerError(Exception):
    """The mixer's API was misused (unknown leg, duplicate id): our own code's fault."""


class ConferenceMixer:
    """Mixes every room and plays the IVR's prompts; driven by tick(now)."""

    def __init__(self, encoder_for: EncoderLookup, *, silence_threshold: int = 16,
                 shared_codecs: frozenset[str] = frozenset({"PCMU", "PCMA"})) -> None:
        """``silence_threshold``: a frame whose peak |sample| is at or below it counts as
        silent (the leg contributed nothing and shares the common frame).
        ``shared_codecs``: codecs whose encoders keep no state (their frames can be shared)."""
        self._encoder_for = encoder_for
        self.shared_codecs = shared_codecs
        self.silence_threshold = silence_threshold
        self._members: dict[str, MixMember] = {}
        self._rooms: dict[str, MixRoom] = {}
        self._solo: dict[str, MixMember] = {}
        self._events: deque[MixerEvent] = deque()
        self._silence = {rate: np.zeros(rate // 50, dtype=np.int16) for rate in (8000, 16000)}
        for frame in self._silence.values():
            frame.flags.writeable = False
        self.ticks = 0
        self._pending: deque[MixRoom] = deque()  # rooms of the current tick still to mix
        self._taps: deque[tuple[MixMember, Pcm | None, bool]] = deque()  # queued voice taps
        self._solo_pending = False
        self._tick_now = 0.0

    # ------------------------------------------------------------------ membership
    def add_leg(self, room: str | None, leg: MixerLeg) -> None:
        """Add a phone leg to ``room``, or solo (None: it hears only its prompt)."""
        self._add(leg.leg_id, leg, leg, room)

    def add_source(self, room: str, source_id: str, source: Contributor) -> None:
        """Add a contributor that hears nothing (e.g. a decoded browser stream)."""
        self._add(source_id, source, None, room)

    def add_listener(self, room: str | None, listener_id: str, listener: Listener) -> None:
        """Add a listener that says nothing (e.g. a recorder)."""
        self._add(listener_id, None, listener, room)

    def remove_leg(self, leg_id: str) -> None:
        """Remove a leg, source or listener; unknown ids are ignored."""
        member = self._members.pop(leg_id, None)
        if member is None:
            return
        self._detach(member)
        log.debug("mixer: %s removed", leg_id)

    remove = remove_leg

    def move_leg(self, leg_id: str, room: str | None) -> None:
        """Move a member to another room, or out of rooms (None: solo). Its mute state and
        overlay stay; a solo prompt is stopped when it enters a room."""
        member = self._member(leg_id)
        if (member.room.name if member.room is not None else None) == room:
            return
        self._detach(member)
        self._attach(member, room)

    def codec_changed(self, leg_id: str) -> None:
        """The member's codec or rates changed (a re-INVITE): read them again, give it a
        new encoder and filters, and mix its room at the rate it now needs."""
        member = self._member(leg_id)
        if member.listener is not None:
            member.codec = member.listener.codec_name
            member.encode = self._listener_encoder(member.listener)
        member.in_rate = member_rate(member.source)
        member.out_rate = member_rate(member.listener)
        member.resamplers.clear()
        if member.room is not None:
            member.room.update_rate()
        log.info("mixer: %s now %s at %d Hz", leg_id, member.codec or "-",
                 member.out_rate if member.listener is not None else member.in_rate)

    def room_of(self, leg_id: str) -> str | None:
        member = self._member(leg_id)
        return member.room.name if member.room is not None else None

    def members(self, room: str) -> list[str]:
        """The ids of everything in the room (legs, sources, listeners), in joining order."""
        r = self._rooms.get(room)
        if r is None:
            return []
        seen = dict.fromkeys(m.member_id for m in r.contributors)
        seen.update(dict.fromkeys(m.member_id for m in r.listeners))
        return list(seen)

    def rooms(self) -> list[str]:
        return list(self._rooms)

    def room_rate(self, room: str) -> int:
        """The rate the room mixes at now (8000 when there is no such room)."""
        r = self._rooms.get(room)
        return r.rate if r is not None else SAMPLE_RATE

    def __contains__(self, leg_id: object) -> bool:
        return leg_id in self._members

    # ------------------------------------------------------------------ per-leg controls
    def set_muted(self, leg_id: str, muted: bool) -> None:
        """A muted leg contributes nothing but still hears the room."""
        self._member(leg_id).muted = muted

    def is_muted(self, leg_id: str) -> bool:
        return self._member(leg_id).muted

    def set_tap(self, leg_id: str, tap: VoiceTap | None) -> None:
        """Each tick the member is in a room, ``tap`` gets its frame at its own rate (valid
        during the call only; quiet ones too), or None: muted or no frame; and whether the
        mixer counted it as voice (not at or under ``silence_threshold``)."""
        self._member(leg_id).tap = tap

    def set_prompt(self, leg_id: str, player: PromptPlayer | None) -> None:
        """What a solo leg hears (the IVR's prompt); None stops it. The replaced player is
        stopped. Ignored (with a warning) for a leg in a room: use play_to_leg."""
        member = self._member(leg_id)
        if member.room is not None and player is not None:
            log.warning("mixer: %s is in room %s; set_prompt ignored", leg_id, member.room.name)
            return
        if member.prompt is not None and member.prompt is not player:
            member.prompt.stop()
        member.prompt = player

    def play_to_leg(self, leg_id: str, player: PromptPlayer | None) -> None:
        """Mix ``player`` over what this one leg hears (None stops the current overlay)."""
        member = self._member(leg_id)
        if member.overlay is not None and member.overlay is not player:
            member.overlay.stop()
        member.overlay = player

    def play_to_room(self, room: str, player: PromptPlayer) -> None:
        """Play ``player`` (a join or leave tone) to every listener of the room."""
        r = self._rooms.get(room)
        if r is None:
            log.debug("mixer: no room %s for %s", room, player.name)
            return
        r.tones.append(player)

    # ------------------------------------------------------------------ the tick
    def tick(self, now: float) -> None:
        """One whole tick at once: begin_tick(), every slice, then the voice taps."""
        self.begin_tick(now)
        self.run_slice(0)
        self.run_taps(0)

    def begin_tick(self, now: float) -> None:
        """Start a tick: the rooms to mix are fixed now and mixed by run_slice(). A tick
        still unfinished is finished first (its frames are due, then its taps)."""
        self.run_slice(0)
        self.run_taps(0)
        self.ticks += 1
        self._tick_now = now
        self._pending.extend(self._rooms.values())
        self._solo_pending = True

    def run_slice(self, members: int) -> bool:
        """Mix rooms of the current tick until about ``members`` members are done (0: all),
        then the solo legs; True while some are left, for the caller to give the event loop
        its turn in between. A room gone since begin_tick() is skipped."""
        pending = self._pending
        now = self._tick_now
        done = 0
        while pending:
            room = pending.popleft()
            if self._rooms.get(room.name) is not room:
                continue  # emptied (or replaced) since the tick began
            self._mix_room(room, now)
            done += len(room.contributors) + len(room.listeners)
            if members and done >= members and pending:
                return True
        if self._solo_pending:
            self._solo_pending = False
            if self._solo:
                self._play_solo(now)
        return False

    def skip(self, count: int, now: float) -> None:
        """``count`` ticks were skipped (the loop woke too late for them): every contributor
        gives up that many frames (its input keeps its latency), every listener that can
        (``skip_frames``) moves its stream's clock on by as much (a gap, not a delay), and
        every voice tap gets that many empty frames (its stream to the bridge keeps to the
        wall clock too: a receiver that places packets by their timestamps, the recorder,
        would otherwise see them fall behind for good)."""
        if count <= 0:
            return
        self.run_slice(0)  # a tick left unfinished comes first, then its taps
        self.run_taps(0)
        for member in tuple(self._members.values()):
            if member.tap is not None:
                for _ in range(count):
                    self._tap(member, None, False)
            if member.source is not None:
                rate = member.in_rate or (member.room.rate if member.room else SAMPLE_RATE)
                for _ in range(count):
                    self._pull(member, now, rate)
            skip = getattr(member.listener, "skip_frames", None)
            if skip is not None:
                try:
                    skip(count)
                except Exception:
                    self._failed(member, "skip_frames")

    def run_taps(self, count: int) -> bool:
        """Run up to ``count`` of the voice taps queued by mixing (0: all), in mixing
        order; True while some are left."""
        taps = self._taps
        done = 0
        while taps:
            member, frame, voiced = taps.popleft()
            if member.tap is not None:  # (unset since it was queued: skipped)
                self._tap(member, frame, voiced)
            done += 1
            if count and done >= count and taps:
                return True
        return False

    @property
    def taps_pending(self) -> bool:
        """Voice taps queued by mixing wait for run_taps()."""
        return bool(self._taps)

    @property
    def tick_now(self) -> float:
        """The ``now`` of the tick begun last."""
        return self._tick_now

    @property
    def tick_pending(self) -> bool:
        """A tick is begun and not fully mixed."""
        return bool(self._pending) or self._solo_pending

    def next_event(self) -> MixerEvent | None:
        return self._events.popleft() if self._events else None

    def stats(self) -> dict[str, int]:
        return {
            "rooms": len(self._rooms),
            "members": len(self._members),
            "solo": len(self._solo),
            "ticks": self.ticks,
        }

    # ------------------------------------------------------------------ internals
    def _member(self, leg_id: str) -> MixMember:
        try:
            return self._members[leg_id]
        except KeyError:
            raise MixerError(f"mixer: no leg {leg_id!r}") from None

    def _add(self, member_id: str, source: Contributor | None, listener: Listener | None,
             room: str | None) -> None:
        if member_id in self._members:
            raise MixerError(f"mixer: {member_id!r} already added")
        encode = self._listener_encoder(listener) if listener is not None else None
        member = MixMember(member_id, source, listener, encode)
        self._members[member_id] = member
        self._attach(member, room)
        log.debug("mixer: %s added to %s", member_id, room or "solo")

    def _listener_encoder(self, listener: Listener) -> EncodeFn:
        make = getattr(listener, "new_encoder", None)
        return make() if callable(make) else self._encoder_for(listener.codec_name)

    def _shared_encoder(self, room: MixRoom, codec: str) -> EncodeFn:
        encode = room.shared_encoders.get(codec)
        if encode is None:
            encode = room.shared_encoders[codec] = self._encoder_for(codec)
        return encode

    def _attach(self, member: MixMember, room: str | None) -> None:
        if room is None:
            self._solo[member.member_id] = member
            return
        if member.prompt is not None:
            member.prompt.stop()
            member.prompt = None
        r = self._rooms.get(room)
        if r is None:
            r = self._rooms[room] = MixRoom(room)
        member.room = r
        if member.source is not None:
            r.contributors.append(member)
            r.ensure_rows(len(r.contributors))
        if member.listener is not None:
            r.listeners.append(member)
        r.update_rate()

    def _detach(self, member: MixMember) -> None:
        r = member.room
        member.room = None
        member.row = -1
        if r is None:
            self._solo.pop(member.member_id, None)
            return
        if member in r.contributors:
            r.contributors.remove(member)
        if member in r.listeners:
            r.listeners.remove(member)
        if not r.contributors and not r.listeners:
            del self._rooms[r.name]
        else:
            r.update_rate()

    def _failed(self, member: MixMember, what: str) -> None:
        if member.errors % ERROR_LOG_EVERY == 0:
            log.exception("mixer: %s failed in %s (error %d)", member.member_id, what,
                          member.errors + 1)
        member.errors += 1

    def _pull(self, member: MixMember, now: float, rate: int) -> Pcm | None:
        """The member's next frame, which must be 20 ms at ``rate`` (its own rate)."""
        assert member.source is not None
        try:
            frame = member.source.pull_frame(now)
        except Exception:
            self._failed(member, "pull_frame")
            return None
        if frame is not None and frame.shape != (rate // 50,):
            if member.errors % ERROR_LOG_EVERY == 0:
                log.warning("mixer: %s gave a frame of shape %s, want (%d,)",
                            member.member_id, frame.shape, rate // 50)
            member.errors += 1
            return None
        return frame

    def _send(self, member: MixMember, payload: bytes) -> None:
        assert member.listener is not None
        try:
            member.listener.send_payload(payload)
        except Exception:
            self._failed(member, "send_payload")

    def _overlay_frame(self, member: MixMember) -> Pcm | None:
        """The member's overlay prompt's next frame at the member's output rate."""
        player = member.overlay
        if player is None:
            return None
        frame = player.next_frame()
        if frame is None:
            member.overlay = None
            if not player.stopped:
                self._events.append(PromptFinished(member.member_id, player.name))
            return None
        if member.out_rate != SAMPLE_RATE:
            frame = member.resample("overlay", frame, SAMPLE_RATE, member.out_rate)
        return frame

    def _mix_room(self, room: MixRoom, now: float) -> None:
        rate = room.rate
        count = 0
        voiced = room.voiced
        voiced.clear()
        voices = room.voices
        voices.clear()
        tapped: list[tuple[MixMember, Pcm | None]] = []
        for member in tuple(room.contributors):
            member.row = -1
            own_rate = member.in_rate or rate
            frame = self._pull(member, now, own_rate)
            if member.tap is not None:
                tapped.append((member, None if member.muted else frame))
            if frame is None or member.muted:
                continue
            voices.append(frame if own_rate == rate else member.resample(
                "in", frame, own_rate, rate))
            member.row = count
            voiced.append(member)
            count += 1

        tones: list[Pcm] = []
        if room.tones:
            for tone in tuple(room.tones):
                tone_frame = tone.next_frame()
                if tone_frame is None:
                    room.tones.remove(tone)
                else:
                    tones.append(tone_frame if rate == SAMPLE_RATE
                                 else room.resample("tones", tone_frame, rate))

        # In C (native/_mixcore.c): rows 0..count-1 each voice's N-1 mix, row count the full
        # mix, clipped; a voice at or under the silence threshold is left out of the sum
        # (its row is the full mix, and it shares the common frame below).
        out16 = room.out
        for i in mix_frames(voices, tones, self.silence_threshold, out16, rate // 50):
            voiced[i].row = -1
        voices.clear()
        for member, frame in tapped:  # run by run_taps(), after the tick's sends
            self._taps.append((member, None if frame is None else frame.copy(),
                               member.row >= 0))
        mix16 = out16[count]

        shared = room.shared
        shared.clear()
        mixes: dict[int, Pcm] = {rate: mix16}
        for member in tuple(room.listeners):
            encode = member.encode
            assert encode is not None
            row = member.row if member.row >= 0 else count
            own_rate = member.out_rate
            overlay = self._overlay_frame(member) if member.overlay is not None else None
            if overlay is None and row == count and member.codec in self.shared_codecs:
                payload = shared.get(member.codec)
                if payload is None:
                    mix = mixes.get(own_rate)
                    if mix is None:
                        mix = mixes[own_rate] = room.resample("mix", mix16, own_rate)
                    payload = shared[member.codec] = self._shared_encoder(room, member.codec)(
                        mix)
                self._send(member, payload)
                continue
            frame = out16[row]
            if own_rate != rate:
                frame = member.resample("out", frame, rate, own_rate)
            if overlay is not None:
                frame = _clip16(frame.astype(np.int32) + overlay)
            self._send(member, encode(frame))

    def _tap(self, member: MixMember, frame: Pcm | None, voiced: bool) -> None:
        assert member.tap is not None
        try:
            member.tap(frame, voiced)
        except Exception:
            self._failed(member, "voice tap")

    def _play_solo(self, now: float) -> None:
        silence: dict[str, bytes] = {}
        for member in tuple(self._solo.values()):
            if member.source is not None:
                # Keep the leg's input draining; nobody hears it.
                self._pull(member, now, member.in_rate or SAMPLE_RATE)
            if member.listener is None:
                continue
            base: Pcm | None = None
            player = member.prompt
            if player is not None:
                base = player.next_frame()
                if base is None:
                    member.prompt = None
                    if not player.stopped:
                        self._events.append(PromptFinished(member.member_id, player.name))
                elif member.out_rate != SAMPLE_RATE:
                    base = member.resample("prompt", base, SAMPLE_RATE, member.out_rate)
            overlay = self._overlay_frame(member) if member.overlay is not None else None
            encode = member.encode
            assert encode is not None
            if overlay is not None:
                frame16 = overlay if base is None else _clip16(base.astype(np.int32) + overlay)
            elif base is not None:
                frame16 = base
            elif member.codec in self.shared_codecs:
                payload = silence.get(member.codec)
                if payload is None:
                    payload = silence[member.codec] = encode(self._silence[member.out_rate])
                self._send(member, payload)
                continue
            else:
                frame16 = self._silence[member.out_rate]
            self._send(member, encode(frame16))


def _clip16(samples: npt.NDArray[np.int32]) -> Pcm:
    # np.maximum/np.minimum: np.clip costs several times more per call on small arrays.
    return np.minimum(np.maximum(samples, INT16_MIN), INT16_MAX).astype(np.int16)
