"""Phone callers as participants of conferences: the gateway's side of the focus.

A caller whose PIN (or number, or header) named a room joins the focus as a "phone"
participant; its leg moves into the room's mix and its voice goes to the bridge
(``ConferenceAudio``: encoded once per speaking caller, or an Opus phone's own packets passed
through). While a room has callers, its focus events are followed: a moderator's mute (the
caller hears "you have been muted"), a removal (the goodbye prompt, then the gateway's BYE),
join and leave tones, "you are the only participant" while nobody else is there, and the
room's receivers: the focus counts the participants that hear the room through the bridge
(`Focus.audio_receivers`: everyone but the phones this gateway's group mixes itself), and
``ConferenceAudio.set_receivers`` hears the count on every join and leave, so the callers'
voices are encoded for the bridge only while someone can hear them (a recording counts:
``recording_changed`` recounts, and the callers hear "this meeting is now being recorded" or
"no longer"; a caller joining a recorded room hears it first). The callers join the
focus with ``mixed_by`` set to the gateway's group (the bridge group of its endpoints).

Phones count against the room's participant cap (`meetings.max_participants`) as browsers do,
and browsers count the phones (focus/meeting.py counts the focus's roster, phones included):
a caller to a full room does not join; it hears "this meeting is full" and the gateway then
hangs up (the call is left in ENDING, which the gateway ends when the prompt has played).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from focus import Focus, FocusEvent, ParticipantJoined, ParticipantLeft, ParticipantMuted
from gateway.call import CallState, PhoneCall
from gateway.conference_audio import ConferenceAudio
from gateway.mixer import ConferenceMixer
from gateway.prompts import PromptPlayer, PromptSet
from gateway.tones import join_tone, leave_tone

log = logging.getLogger(__name__)


class PhoneRooms:
    """The phone calls in each room, by participant id, and the rooms' focus subscriptions."""

    def __init__(self, focus: Focus, mixer: ConferenceMixer, prompts: PromptSet,
                 audio: ConferenceAudio | None, *, max_participants: int | None = None,
                 group: str = "gateway") -> None:
        """``max_participants``: the most participants (phones and browsers) in a room;
        ``group``: this gateway's group at the bridge (focus.phones.PhoneMedia's)."""
        self.group = group
        self.focus = focus
        self.max_participants = max_participants
        self.mixer = mixer
        self.prompts = prompts
        self.audio = audio
        self.by_participant: dict[str, PhoneCall] = {}
        self.calls: dict[str, set[PhoneCall]] = {}  # phone calls in each room
        self._unsubscribe: dict[str, Callable[[], None]] = {}

    def full(self, room: str) -> bool:
        """The room has as many participants as it may (phones and browsers counted)."""
        return self.max_participants is not None and \
            len(self.focus.participants(room)) >= self.max_participants

    def join(self, call: PhoneCall, room: str, *, participant_id: str | None = None,
             host: bool = False, open_room: bool | None = None,
             greeting: str | None = None, called_out: bool = False) -> bool:
        """The call (its leg set up) enters ``room``; False when the room is full (the call
        then hears the room_full prompt, in state ENDING: the gateway hangs up after it).
        ``participant_id``: the id it waited under in the lobby; ``host``: a host PIN
        caller (a moderator); ``open_room``: the room's policy is open (focus.Focus.join);
        ``greeting``: a prompt it hears on entering, instead of "you are the only
        participant" (``admitted``, the host's keys); ``called_out``: a dial-out callee, in
        the roster as ``participant_id`` since it was dialled (not counted again)."""
        assert call.leg is not None
        if not called_out and self.full(room):
            log.info("call %s: room %s is full (%s participants): refused", call.call_id,
                     room, self.max_participants)
            call.set_state(CallState.ENDING)
            self.mixer.set_prompt(call.leg_id, self.prompts.player("room_full"))
            return False
        call.room = room
        self._watch(room)
        if participant_id is not None and called_out:  # in the roster since the dial
            info = self.focus.set_state(participant_id, "in-meeting")
            self._arrived(room)  # its join tone now, not while it rang
        else:
            info = self.focus.join(room, "phone", call.name, mixed_by=self.group,
                                   participant_id=participant_id, host=host,
                                   open_room=open_room)  # fmt: skip
        call.participant_id = info.id
        self.by_participant[info.id] = call
        self.mixer.move_leg(call.leg_id, room)
        self.connect_voice(call, joined=True)
        self.calls.setdefault(room, set()).add(call)
        call.set_state(CallState.ROOM)
        # Alone in the conference, browsers counted (not only the phones in the mixer).
        call.alone_prompt = greeting is None and len(self.focus.participants(room)) == 1
        # A recorded room says so first ("this meeting is being recorded"), then the
        # greeting (a host's keys) or "alone".
        names = ["recording_on"] if self.focus.recorded(room) else []
        if greeting is not None:
            names.append(greeting)
        elif call.alone_prompt:
            names.append("only_participant")
        if names:
            self.mixer.play_to_leg(call.leg_id, self.player_of(names))
        return True

    def recording_changed(self, room: str, recording: bool) -> None:
        """The recorder started or stopped recording ``room``: the receivers are counted
        again (a recording is one) and every caller of the room hears it."""
        calls = self.calls.get(room)
        if not calls:
            return
        self._count_receivers(room)
        name = "recording_on" if recording else "recording_off"
        for call in calls:
            call.alone_prompt = False
            self.mixer.play_to_leg(call.leg_id, self.prompts.player(name))
        log.info("room %s: %d callers told the recording %s", room, len(calls),
                 "started" if recording else "stopped")

    def player_of(self, names: list[str]) -> PromptPlayer:
        """The prompts ``names`` one after the other, as one player."""
        if len(names) == 1:
            return self.prompts.player(names[0])
        return PromptPlayer(np.concatenate([self.prompts.frames(n) for n in names]),
                            names[0])

    def connect_voice(self, call: PhoneCall, *, joined: bool) -> None:
        """The caller's voice towards the bridge: encoded from the leg's PCM, or an Opus
        phone's own packets passed through; ``joined``: the caller has just entered, else
        its codec changed (a re-INVITE)."""
        if self.audio is None or call.participant_id is None or call.session is None:
            return
        assert call.leg is not None and call.room is not None
        passthrough = call.leg.codec_name == "OPUS"
        if joined:
            self.audio.caller_joined(call.room, call.participant_id, call.leg_id,
                                     call.leg.sample_rate, passthrough=passthrough)
        else:
            self.audio.caller_codec_changed(call.participant_id, call.leg.sample_rate,
                                            passthrough=passthrough)
        caller = self.audio.callers.get(call.participant_id)
        call.session.on_audio_packet = (
            caller.on_phone_packet if passthrough and caller is not None else None)

    def leave(self, call: PhoneCall, reason: str, by: str | None = None) -> None:
        """The call leaves its room (hung up, timed out, removed, sent to the lobby by
        ``by``); the focus hears why."""
        room = call.room
        if call.participant_id is not None:
            pid, call.participant_id = call.participant_id, None
            self.by_participant.pop(pid, None)
            calls = self.calls.get(room) if room is not None else None
            if calls is not None and room is not None:
                calls.discard(call)
                if not calls:
                    del self.calls[room]
            if self.audio is not None:
                self.audio.caller_left(pid)
                if call.session is not None:
                    call.session.on_audio_packet = None
            if call.leg_id in self.mixer:
                self.mixer.move_leg(call.leg_id, None)
            self.focus.leave(pid, roster_reason(reason), by=by)
        if room is not None and room not in self.calls:
            unsubscribe = self._unsubscribe.pop(room, None)
            if unsubscribe is not None:
                unsubscribe()
                if self.audio is not None:
                    self.audio.set_receivers(room, 0)  # forgotten with the room

    def _arrived(self, room: str) -> None:
        """Someone came: whoever still hears "you are the only participant" stops hearing
        it, and the room's phones hear the join tone."""
        calls = self.calls.get(room, ())
        for other in calls:
            if other.alone_prompt:
                other.alone_prompt = False
                self.mixer.play_to_leg(other.leg_id, None)
        if calls:
            self.mixer.play_to_room(room, join_tone())

    def _watch(self, room: str) -> None:
        if room in self._unsubscribe:
            return
        self._count_receivers(room)

        def on_event(event: FocusEvent) -> None:
            self._on_focus_event(room, event)

        self._unsubscribe[room] = self.focus.subscribe(room, on_event)

    def _count_receivers(self, room: str) -> None:
        if self.audio is not None:
            self.audio.set_receivers(room, self.focus.audio_receivers(room, self.group))

    def _on_focus_event(self, room: str, event: FocusEvent) -> None:
        if isinstance(event, ParticipantJoined | ParticipantLeft):
            self._count_receivers(room)
        info = event.participant
        call = self.by_participant.get(info.id)
        if isinstance(event, ParticipantMuted):
            if call is not None:
                self.mixer.set_muted(call.leg_id, info.muted)
                if event.by is not None and info.muted:  # a moderator's mute, not *6
                    self.mixer.play_to_leg(call.leg_id,
                                           self.prompts.player("muted_by_moderator"))
            return
        if isinstance(event, ParticipantLeft) and call is not None and event.reason == "kicked":
            # A moderator removed this caller: goodbye prompt, then BYE (the gateway ends
            # a call in ENDING when its prompt has finished).
            self.leave(call, "kicked")
            call.set_state(CallState.ENDING)
            self.mixer.set_prompt(call.leg_id, self.prompts.player("removed"))
        if info.state is not None and info.state != "in-meeting":
            return  # a called-out phone still ringing (or that never answered) is nobody yet
        calls = self.calls.get(room, ())
        if isinstance(event, ParticipantJoined):
            self._arrived(room)
            return
        if calls:
            self.mixer.play_to_room(room, leave_tone())
        if isinstance(event, ParticipantLeft) and len(calls) == 1:
            (alone,) = calls
            if len(self.focus.participants(room)) == 1 and not alone.alone_prompt:
                alone.alone_prompt = True
                self.mixer.play_to_leg(alone.leg_id, self.prompts.player("only_participant"))


def roster_reason(reason: str) -> str:
    """Why a caller left, in the words of docs/signaling.md's participant-left."""
    if reason in ("kicked", "timeout", "lobby"):
        return reason
    if reason == "media timeout":
        return "timeout"
    return "hangup"
