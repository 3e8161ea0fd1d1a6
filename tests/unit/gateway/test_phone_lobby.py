"""Phone callers under the room policy (gateway/phone_lobby.py): the plan after the PIN,
and the callers waiting in the focus's lobby (a real Lobby and Focus, a fake mixer that
records what each leg hears). Sans-I/O: the time is a number we pass."""

from __future__ import annotations

from typing import cast

import pytest

from focus import Focus
from focus.lobby import Lobby
from focus.policy import RoomPolicy
from gateway.call import CallState, PhoneCall
from gateway.mixer import ConferenceMixer
from gateway.phone_lobby import PhoneLobby, Plan, needs_password, plan
from gateway.prompts import PromptPlayer, PromptSet
from gateway.sip.peer import Peer

ROOM = "standup"


# --- the plan --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "host", "hosts_present", "password", "expected"),
    [
        (RoomPolicy(), False, False, None, Plan("join")),  # today's open room
        (RoomPolicy(lobby=True), False, True, None, Plan("wait", "moderator")),
        (RoomPolicy(start="hosts"), False, False, None, Plan("wait", "host")),
        (RoomPolicy(start="hosts"), False, True, None, Plan("join")),
        (RoomPolicy(lobby=True, start="hosts"), True, False, None, Plan("join", host=True)),
        (RoomPolicy(guests=False), False, False, None, Plan("refuse", prompt="not_allowed")),
        # a right password skips the lobby, as for browsers, but not a hosts-only wait
        (RoomPolicy(lobby=True, has_password=True), False, False, True, Plan("join")),
        (RoomPolicy(has_password=True, start="hosts"), False, False, True,
         Plan("wait", "host")),
        (RoomPolicy(has_password=True), False, False, False,
         Plan("refuse", prompt="password_failed")),
        # a password a phone cannot type: told so, then the lobby, even with the lobby off
        (RoomPolicy(has_password=True, password_digits=False), False, False, None,
         Plan("wait", "moderator", prompt="password_not_typable")),
        (RoomPolicy(has_password=True, password_digits=False), True, False, None,
         Plan("join", host=True)),
    ],
)
def test_plan(policy: RoomPolicy, host: bool, hosts_present: bool, password: bool | None,
              expected: Plan) -> None:  # fmt: skip
    assert plan(policy, host=host, hosts_present=hosts_present, password=password) == expected


def test_who_is_asked_for_the_password() -> None:
    room = RoomPolicy(has_password=True)
    assert needs_password(room, host=False)
    assert not needs_password(room, host=True)  # a host PIN is enough
    assert not needs_password(RoomPolicy(), host=False)
    assert not needs_password(RoomPolicy(has_password=True, password_digits=False), host=False)
    assert not needs_password(RoomPolicy(has_password=True, guests=False), host=False)


# --- waiting callers ------------------------------------------------------------------------


class FakeMixer:
    """What each leg is played (set_prompt), in order."""

    def __init__(self) -> None:
        self.legs: set[str] = set()
        self.played: dict[str, list[str | None]] = {}
        self.current: dict[str, PromptPlayer | None] = {}

    def __contains__(self, leg_id: object) -> bool:
        return leg_id in self.legs

    def set_prompt(self, leg_id: str, player: PromptPlayer | None) -> None:
        self.played.setdefault(leg_id, []).append(player.name if player else None)
        self.current[leg_id] = player


class World:
    def __init__(self, max_wait: float = 1800.0) -> None:
        self.focus = Focus()
        self.lobby = Lobby(max_waiting=3)
        self.mixer = FakeMixer()
        self.admitted: list[tuple[str, str, str]] = []
        self.phones = PhoneLobby(self.lobby, self.focus, cast(ConferenceMixer, self.mixer),
                                 PromptSet.load(), max_wait=max_wait,
                                 admitted=self._admitted)  # fmt: skip
        self._count = 0

    def _admitted(self, call: PhoneCall, room: str, pid: str) -> None:
        self.admitted.append((call.call_id, room, pid))

    def call(self) -> PhoneCall:
        self._count += 1
        n = self._count
        call = PhoneCall(call_id=f"call-{n}", leg_id=f"leg{n}", caller=f"1555700{n}",
                         name=f"Caller {n}", source=Peer("udp", "127.0.0.1", 5060),
                         route_room=None)  # fmt: skip
        call.set_state(CallState.JOINING)
        self.mixer.legs.add(call.leg_id)
        return call


def test_a_waiting_caller_is_in_the_knocking_list_and_hears_prompt_then_music() -> None:
    w = World()
    call = w.call()
    assert w.phones.wait(call, ROOM, "moderator", "155***01", 0.0)
    (entry,) = w.lobby.waiting(ROOM)
    assert entry.as_json() == {"id": entry.id, "kind": "phone", "name": "155***01"}
    assert entry.id.startswith("p")
    assert w.mixer.played[call.leg_id] == ["lobby_wait"]
    assert w.phones.on_prompt_finished(call)
    assert w.phones.on_prompt_finished(call)  # the music loops
    assert w.mixer.played[call.leg_id] == ["lobby_wait", "hold_music", "hold_music"]


def test_preamble_plays_first() -> None:
    w = World()
    call = w.call()
    w.phones.wait(call, ROOM, "moderator", "x", 0.0, "password_not_typable")
    w.phones.on_prompt_finished(call)
    w.phones.on_prompt_finished(call)
    assert w.mixer.played[call.leg_id] == ["password_not_typable", "lobby_wait", "hold_music"]


def test_admitted_joins_under_the_id_it_waited_with() -> None:
    w = World()
    call = w.call()
    w.phones.wait(call, ROOM, "moderator", "x", 0.0)
    (entry,) = w.lobby.waiting(ROOM)
    w.lobby.admit(ROOM, entry.id, "api")
    assert w.admitted == [(call.call_id, ROOM, entry.id)]
    assert w.mixer.current[call.leg_id] is None  # the music stops
    assert not w.phones.waiting(call) and len(w.phones) == 0
    assert not w.phones.on_prompt_finished(call)


def test_denied_hears_so_then_the_call_ends() -> None:
    w = World()
    call = w.call()
    w.phones.wait(call, ROOM, "moderator", "x", 0.0)
    (entry,) = w.lobby.waiting(ROOM)
    w.lobby.deny(ROOM, entry.id, "b1-abc")
    assert w.admitted == []
    assert call.state is CallState.ENDING  # the gateway sends BYE when the prompt ends
    assert w.mixer.played[call.leg_id][-1] == "denied"
    assert w.lobby.waiting(ROOM) == []


def test_a_host_arriving_lets_in_those_waiting_for_a_host_only() -> None:
    w = World()
    early, knocking = w.call(), w.call()
    w.phones.wait(early, ROOM, "host", "x", 0.0)
    w.phones.wait(knocking, ROOM, "moderator", "y", 0.0)
    w.lobby.host_arrived(ROOM)
    assert [a[0] for a in w.admitted] == [early.call_id]
    assert [e.reason for e in w.lobby.waiting(ROOM)] == ["moderator"]


def test_an_early_caller_is_not_cut_off_before_the_maximum_wait() -> None:
    w = World(max_wait=1800.0)
    call = w.call()
    w.phones.wait(call, ROOM, "host", "x", 100.0)
    assert w.phones.expire(1899.9) == 0
    assert call.state is CallState.JOINING and w.lobby.waiting(ROOM)
    assert w.phones.expire(1900.0) == 1
    assert call.state is CallState.ENDING
    assert w.mixer.played[call.leg_id][-1] == "lobby_timeout"
    assert w.lobby.waiting(ROOM) == [] and len(w.phones) == 0


def test_hanging_up_leaves_the_lobby() -> None:
    w = World()
    call = w.call()
    w.phones.wait(call, ROOM, "moderator", "x", 0.0)
    w.phones.cancel(call)
    assert w.lobby.waiting(ROOM) == [] and len(w.phones) == 0
    w.phones.cancel(call)  # twice: nothing


def test_a_full_lobby_refuses_with_a_prompt() -> None:
    w = World()
    calls = [w.call() for _ in range(4)]
    assert [w.phones.wait(c, ROOM, "moderator", "x", 0.0) for c in calls] == \
        [True, True, True, False]  # fmt: skip
    assert calls[3].state is CallState.ENDING
    assert w.mixer.played[calls[3].leg_id] == ["room_full"]


def test_events_for_browsers_or_other_gateways_are_not_ours() -> None:
    w = World()
    call = w.call()
    w.phones.wait(call, ROOM, "moderator", "x", 0.0)
    w.lobby.wait(ROOM, "b9-000000", "browser", "Ada", "moderator", 0.0)
    w.lobby.admit(ROOM, "b9-000000", "api")
    assert w.admitted == [] and w.phones.waiting(call)
