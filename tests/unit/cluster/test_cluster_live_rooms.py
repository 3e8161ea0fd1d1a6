"""What a cluster node counts as its rooms: participants, and people waiting in a lobby."""

from __future__ import annotations

from focus import Focus
from focus.lobby import Lobby
from switchboard.app import live_rooms


def test_a_room_whose_only_people_wait_in_its_lobby_is_still_here() -> None:
    focus, lobby = Focus(), Lobby()
    assert live_rooms(focus, lobby) == {}
    focus.join("standup", "browser", "Ann")
    lobby.wait("retro", "p-9", "browser", "Bob", "host", 0.0)
    lobby.wait("standup", "p-8", "phone", "Cy", "moderator", 0.0)
    assert live_rooms(focus, lobby) == {"standup": 2, "retro": 1}
    lobby.cancel("p-9")
    assert live_rooms(focus, lobby) == {"standup": 2}
