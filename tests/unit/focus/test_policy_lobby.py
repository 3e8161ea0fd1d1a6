"""The room policy's decision (focus/policy.py) and the lobby's state machine
(focus/lobby.py), without sockets: every rule in the order the modules list them."""

from __future__ import annotations

import pytest

from focus.conference import Focus, UnknownParticipant
from focus.lobby import Admitted, Cancelled, Denied, Knocked, Lobby, LobbyEvent, LobbyFull
from focus.policy import RoomPolicy, Verdict, admission

OPEN = RoomPolicy()
LOBBY = RoomPolicy(lobby=True)
PASSWORD = RoomPolicy(has_password=True)
HOSTS = RoomPolicy(start="hosts")
MEMBERS = RoomPolicy(guests=False)


def decide(policy: RoomPolicy, *, host: bool = False, member: bool = False,
           hosts_present: bool = False, password: bool | None = None) -> str:  # fmt: skip
    result = admission(policy, host=host, member=member, hosts_present=hosts_present,
                       password=password)  # fmt: skip
    if result.verdict is None:
        assert result.refusal is not None
        return result.refusal.code
    return result.verdict.value + (" as host" if result.host else "")


@pytest.mark.parametrize(
    ("policy", "who", "expected"),
    [
        (OPEN, {}, "join"),  # today's behaviour
        (LOBBY, {}, "moderator"),  # guests knock
        (LOBBY, {"member": True}, "join"),  # a token holder skips the lobby
        (LOBBY, {"host": True}, "join as host"),
        (LOBBY, {"password": True}, "moderator"),  # no password set: nothing to skip
        (RoomPolicy(lobby=True, has_password=True), {"password": True}, "join"),
        (RoomPolicy(lobby=True, has_password=True), {}, "moderator"),  # knock instead
        (RoomPolicy(lobby=True, has_password=True), {"password": False}, "wrong-password"),
        (PASSWORD, {}, "password-required"),
        (PASSWORD, {"password": False}, "wrong-password"),
        (PASSWORD, {"password": True}, "join"),
        (PASSWORD, {"host": True, "password": False}, "join as host"),  # never locked out
        (HOSTS, {}, "host"),  # guests wait until a host is in
        (HOSTS, {"hosts_present": True}, "join"),
        (HOSTS, {"member": True}, "host"),
        (HOSTS, {"host": True}, "join as host"),
        (RoomPolicy(start="hosts", lobby=True), {}, "moderator"),  # a host never lets them in
        (RoomPolicy(start="hosts", has_password=True), {"password": True}, "host"),
        (MEMBERS, {}, "guests-not-allowed"),
        (MEMBERS, {"password": True}, "guests-not-allowed"),
        (MEMBERS, {"member": True}, "join"),
        (MEMBERS, {"host": True}, "join as host"),
    ],
)  # fmt: skip
def test_admission(policy: RoomPolicy, who: dict[str, bool], expected: str) -> None:
    assert decide(policy, **who) == expected


def test_open_is_only_todays_room() -> None:
    assert OPEN.open
    assert not any(p.open for p in (LOBBY, PASSWORD, HOSTS, MEMBERS))


# -- the lobby -------------------------------------------------------------------------------


class Recorder:
    def __init__(self, lobby: Lobby, room: str | None) -> None:
        self.events: list[LobbyEvent] = []
        self.stop = lobby.subscribe(room, self.events.append)

    def kinds(self) -> list[tuple[str, str]]:
        return [(type(e).__name__, e.entry.id) for e in self.events]


def test_knock_admit_deny_in_order() -> None:
    lobby = Lobby()
    room, everywhere = Recorder(lobby, "standup"), Recorder(lobby, None)
    other = Recorder(lobby, "other")
    lobby.wait("standup", "b1", "browser", "Ada", "moderator", 1.0)
    lobby.wait("standup", "p2", "phone", "+1 555 ***0100", "moderator", 2.0)
    lobby.wait("standup", "b3", "browser", "Eve", "moderator", 3.0)
    assert [e.as_json() for e in lobby.waiting("standup")] == [
        {"id": "b1", "kind": "browser", "name": "Ada"},
        {"id": "p2", "kind": "phone", "name": "+1 555 ***0100"},
        {"id": "b3", "kind": "browser", "name": "Eve"},
    ]
    assert lobby.admit("standup", "b1", "b9").name == "Ada"
    assert lobby.deny("standup", "b3", "b9").name == "Eve"
    with pytest.raises(UnknownParticipant):
        lobby.admit("standup", "b3", "b9")  # decided already
    with pytest.raises(UnknownParticipant):
        lobby.admit("other", "p2", "b9")  # waits in another room
    assert [e.id for e in lobby.admit_all("standup", "b9")] == ["p2"]
    assert lobby.waiting("standup") == [] and lobby.stats() == {"lobby_waiting": 0}
    assert room.kinds() == [("Knocked", "b1"), ("Knocked", "p2"), ("Knocked", "b3"),
                            ("Admitted", "b1"), ("Denied", "b3"), ("Admitted", "p2")]
    assert everywhere.kinds() == room.kinds() and other.events == []
    denied = room.events[4]
    assert isinstance(denied, Denied) and denied.by == "b9"


def test_a_host_arriving_lets_in_only_those_waiting_for_a_host() -> None:
    lobby = Lobby()
    seen = Recorder(lobby, "standup")
    lobby.wait("standup", "b1", "browser", "Ada", "host", 1.0)
    lobby.wait("standup", "b2", "browser", "Eve", "moderator", 2.0)
    assert [e.id for e in lobby.host_arrived("standup")] == ["b1"]
    assert [e.id for e in lobby.waiting("standup")] == ["b2"]  # still knocking
    admitted = seen.events[2]
    assert isinstance(admitted, Admitted) and admitted.by is None


def test_cancel_full_and_listeners() -> None:
    lobby = Lobby(max_waiting=2)
    seen = Recorder(lobby, "standup")
    lobby.wait("standup", "b1", "browser", "Ada", "moderator", 1.0)
    with pytest.raises(ValueError):
        lobby.wait("other", "b1", "browser", "Ada", "moderator", 1.0)  # one lobby at a time
    lobby.wait("standup", "b2", "browser", "Bob", "moderator", 1.0)
    with pytest.raises(LobbyFull):
        lobby.wait("standup", "b3", "browser", "Cy", "moderator", 1.0)
    assert lobby.cancel("b1") is not None and lobby.cancel("b1") is None
    assert isinstance(seen.events[-1], Cancelled)
    seen.stop()
    lobby.cancel("b2")
    assert len(seen.events) == 3 and isinstance(seen.events[0], Knocked)

    def broken(event: LobbyEvent) -> None:
        raise RuntimeError("listener bug")

    lobby.subscribe("standup", broken)
    lobby.wait("standup", "b4", "browser", "Di", "moderator", 1.0)  # still waits
    assert lobby.get("b4") is not None


# -- roles -----------------------------------------------------------------------------------


def test_hosts_moderate_and_hand_over_to_another_host() -> None:
    focus = Focus()
    guest = focus.join("standup", "browser", "Guest", open_room=False)
    assert not guest.moderator  # a room with a policy: guests never moderate by arriving
    first = focus.join("standup", "browser", "Host 1", host=True)
    second = focus.join("standup", "browser", "Host 2", host=True)
    assert first.moderator and second.moderator and focus.hosts_present("standup")
    focus.leave(first.id)
    assert focus.get(second.id).moderator
    focus.leave(second.id)
    assert not focus.get(guest.id).moderator and not focus.hosts_present("standup")


def test_an_open_room_keeps_todays_roles() -> None:
    focus = Focus()
    a = focus.join("standup", "browser", "A")
    b = focus.join("standup", "browser", "B")
    assert a.moderator and not b.moderator
    focus.leave(a.id)
    assert focus.get(b.id).moderator


def test_a_waiting_id_is_kept_when_joining() -> None:
    focus = Focus()
    pid = focus.new_id("browser")
    assert focus.join("standup", "browser", "Ada", participant_id=pid).id == pid
    with pytest.raises(ValueError):
        focus.join("standup", "browser", "Ada", participant_id=pid)
    assert Verdict.WAIT_HOST.value == "host"


def test_opening_a_room_gives_it_a_moderator_again() -> None:
    focus = Focus()
    guest = focus.join("standup", "browser", "Guest", open_room=False)
    assert not guest.moderator
    focus.set_open_room("standup", True)  # the lobby and the rest were turned off
    assert focus.get(guest.id).moderator
    focus.set_open_room("standup", False)  # a moderator keeps the role
    assert focus.get(guest.id).moderator
