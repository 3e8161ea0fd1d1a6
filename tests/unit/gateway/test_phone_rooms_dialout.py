"""PhoneRooms with a called-out phone (gateway/dialout_calls.py): while it rings it is in
the roster but nobody yet for the room's phones (no join tone, the lone caller keeps
hearing "you are the only participant"); when it answers it joins under the participant id
it had and the room hears it arrive; if it never answers, its leaving is silent."""

from __future__ import annotations

from typing import Any

from focus import Focus
from gateway.call import CallState, PhoneCall
from gateway.phone_rooms import PhoneRooms
from gateway.sip.peer import Peer


class FakeMixer:
    def __init__(self) -> None:
        self.room_plays: list[str] = []
        self.leg_plays: list[tuple[str, object]] = []
        self.legs: dict[str, str | None] = {}

    def __contains__(self, leg_id: str) -> bool:
        return leg_id in self.legs

    def move_leg(self, leg_id: str, room: str | None) -> None:
        self.legs[leg_id] = room

    def play_to_room(self, room: str, player: Any) -> None:
        self.room_plays.append(room)

    def play_to_leg(self, leg_id: str, player: Any) -> None:
        self.leg_plays.append((leg_id, player))

    def set_prompt(self, leg_id: str, player: Any) -> None:
        self.leg_plays.append((leg_id, player))


class FakePrompts:
    def player(self, name: str) -> str:
        return name


def call(n: int) -> PhoneCall:
    c = PhoneCall(call_id=f"call-{n}", leg_id=f"leg{n}", caller="+15550100", name=f"Phone {n}",
                  source=Peer("udp", "127.0.0.1", 5060), route_room=None)
    c.leg = object()  # type: ignore[assignment]  # (join only checks that it has one)
    return c


def test_a_ringing_callee_is_silent_until_it_answers() -> None:
    focus, mixer = Focus(), FakeMixer()
    rooms = PhoneRooms(focus, mixer, FakePrompts(), None)  # type: ignore[arg-type]
    alone = call(1)
    assert rooms.join(alone, "r")
    assert alone.alone_prompt and mixer.leg_plays == [("leg1", "only_participant")]
    # the dial: in the roster at once, ringing
    pid = focus.new_id("phone")
    focus.join("r", "phone", "+155*****99", mixed_by=rooms.group, participant_id=pid,
               state="calling")
    focus.set_state(pid, "ringing")
    assert mixer.room_plays == [] and alone.alone_prompt  # nobody came yet
    # answered: joins under its id; the lone caller stops hearing the prompt, a join tone
    callee = call(2)
    assert rooms.join(callee, "r", participant_id=pid, called_out=True)
    assert callee.participant_id == pid and callee.state is CallState.ROOM
    assert focus.get(pid).state == "in-meeting"
    assert not alone.alone_prompt and ("leg1", None) in mixer.leg_plays
    assert mixer.room_plays == ["r"]
    assert [p.id for p in focus.participants("r")].count(pid) == 1


def test_a_callee_that_never_answers_leaves_silently() -> None:
    focus, mixer = Focus(), FakeMixer()
    rooms = PhoneRooms(focus, mixer, FakePrompts(), None)  # type: ignore[arg-type]
    assert rooms.join(call(1), "r")
    pid = focus.new_id("phone")
    focus.join("r", "phone", "x", mixed_by=rooms.group, participant_id=pid, state="calling")
    focus.set_state(pid, "busy", "busy")
    focus.leave(pid, "hangup")
    assert mixer.room_plays == []  # no leave tone for someone who never came
