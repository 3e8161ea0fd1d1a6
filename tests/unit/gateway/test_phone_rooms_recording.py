"""Phone callers hear when their room's recording starts and stops (gateway/phone_rooms.py),
and the room's receivers are counted again (a recording is one)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from focus import Focus
from gateway.phone_rooms import PhoneRooms
from gateway.prompts import PromptPlayer, PromptSet


@dataclass(eq=False)
class Call:
    leg_id: str
    alone_prompt: bool = False


class Mixer:
    def __init__(self) -> None:
        self.played: list[tuple[str, PromptPlayer | None]] = []

    def play_to_leg(self, leg_id: str, player: PromptPlayer | None) -> None:
        self.played.append((leg_id, player))


class Audio:
    def __init__(self) -> None:
        self.counts: list[tuple[str, int]] = []

    def set_receivers(self, room: str, count: int) -> None:
        self.counts.append((room, count))


def test_callers_hear_recording_on_and_off_and_receivers_are_recounted() -> None:
    focus, mixer, audio, prompts = Focus(), Mixer(), Audio(), PromptSet.load()
    rooms = PhoneRooms(focus, mixer, prompts, audio)  # type: ignore[arg-type]
    calls: Any = {Call("l1", alone_prompt=True), Call("l2")}
    rooms.calls["standup"] = calls
    focus.join("standup", "phone", "a", mixed_by="gateway")
    focus.join("standup", "phone", "b", mixed_by="gateway")
    focus.set_recorded("standup", True)
    rooms.recording_changed("standup", True)
    assert audio.counts == [("standup", 1)]  # no browser: the recording alone listens
    assert sorted((leg, p.name) for leg, p in mixer.played if p) == [
        ("l1", "recording_on"), ("l2", "recording_on")]
    assert not any(c.alone_prompt for c in calls)  # the alone prompt is cut by this one
    focus.set_recorded("standup", False)
    rooms.recording_changed("standup", False)
    assert audio.counts[-1] == ("standup", 0)
    assert {p.name for _, p in mixer.played[-2:] if p} == {"recording_off"}
    rooms.recording_changed("elsewhere", True)  # no callers there: nothing
    assert len(mixer.played) == 4


def test_joining_a_recorded_room_alone_hears_both_prompts_in_turn() -> None:
    prompts = PromptSet.load()
    rooms = PhoneRooms(Focus(), Mixer(), prompts, None)  # type: ignore[arg-type]
    player = rooms.player_of(["recording_on", "only_participant"])
    assert player.name == "recording_on"
    assert player.frame_count == (prompts.frames("recording_on").shape[0]
                                  + prompts.frames("only_participant").shape[0])
