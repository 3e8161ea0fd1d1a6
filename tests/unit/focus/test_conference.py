"""The focus roster: join, leave, mute, subscriptions, and nothing left behind."""

from __future__ import annotations

import pytest

from focus import (
    Focus,
    FocusEvent,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantMuted,
    UnknownParticipant,
)


def test_join_leave_and_roster() -> None:
    focus = Focus()
    a = focus.join("standup", "phone", "+1 555 ***0100")
    b = focus.join("standup", "phone", "Bob")
    c = focus.join("other", "browser", "Carol")
    assert a.moderator and not b.moderator and c.moderator
    assert [p.id for p in focus.participants("standup")] == [a.id, b.id]
    assert focus.stats() == {"conferences": 2, "participants": 3}
    assert a.as_json() == {"id": a.id, "kind": "phone", "name": "+1 555 ***0100", "muted": False}
    focus.leave(a.id)
    focus.leave(a.id)  # twice is harmless
    focus.leave(b.id)
    focus.leave(c.id)
    assert focus.participants("standup") == []
    assert focus.stats() == {"conferences": 0, "participants": 0}


def test_ids_are_unique_and_kind_is_checked() -> None:
    focus = Focus()
    ids = {focus.join("r", "phone", "x").id for _ in range(500)}
    assert len(ids) == 500
    with pytest.raises(ValueError):
        focus.join("r", "robot", "x")


def test_subscribers_see_events_until_unsubscribed() -> None:
    focus = Focus()
    seen: list[FocusEvent] = []
    unsubscribe = focus.subscribe("standup", seen.append)
    a = focus.join("standup", "phone", "A")
    muted = focus.set_muted(a.id, True)
    assert focus.set_muted(a.id, True) is muted  # no change, no event
    focus.leave(a.id, "hangup")
    assert [type(e) for e in seen] == [ParticipantJoined, ParticipantMuted, ParticipantLeft]
    assert isinstance(seen[2], ParticipantLeft) and seen[2].reason == "hangup"
    # the subscription outlives an empty conference
    focus.join("standup", "phone", "B")
    assert len(seen) == 4
    unsubscribe()
    focus.join("standup", "phone", "C")
    assert len(seen) == 4


def test_failing_listener_does_not_break_the_roster() -> None:
    focus = Focus()

    def boom(event: FocusEvent) -> None:
        raise RuntimeError("listener bug")

    focus.subscribe("r", boom)
    a = focus.join("r", "phone", "A")
    assert focus.get(a.id) == a
    with pytest.raises(UnknownParticipant):
        focus.set_muted("nobody", True)
