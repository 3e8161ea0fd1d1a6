"""The focus roster: join, leave, mute, subscriptions, and nothing left behind."""

from __future__ import annotations

import pytest

from focus import (
    Focus,
    FocusEvent,
    Forbidden,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantMuted,
    ParticipantUpdated,
    UnknownParticipant,
)


def test_join_leave_and_roster() -> None:
    focus = Focus()
    a = focus.join("standup", "phone", "+1 555 ***0100")
    b = focus.join("standup", "phone", "Bob")
    c = focus.join("other", "browser", "Carol")
    # phones never become moderator on their own (Jicofo never makes Jigasi an owner)
    assert not a.moderator and not b.moderator and c.moderator
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


# -- roles, media, hands, names, moderation ----------------------------------------------------


def test_first_browser_is_moderator_and_the_oldest_takes_over() -> None:
    focus = Focus()
    updates: list[FocusEvent] = []
    focus.subscribe("r", updates.append, updates=True)
    phone = focus.join("r", "phone", "caller")
    a = focus.join("r", "browser", "A")
    b = focus.join("r", "browser", "B")
    c = focus.join("r", "browser", "C")
    assert (phone.moderator, a.moderator, b.moderator, c.moderator) == (False, True, False, False)
    assert a.role == "moderator" and b.role == "guest"
    updates.clear()
    focus.leave(b.id)  # a guest leaving changes no role
    assert [type(e) for e in updates] == [ParticipantLeft]
    focus.leave(a.id)
    assert [type(e) for e in updates] == [ParticipantLeft, ParticipantLeft, ParticipantUpdated]
    handover = updates[-1]
    assert isinstance(handover, ParticipantUpdated)
    assert handover.participant.id == c.id and handover.changed == frozenset({"role"})
    assert focus.get(c.id).moderator and not focus.get(phone.id).moderator
    focus.leave(c.id)  # only the phone is left: nobody to hand over to
    assert not focus.get(phone.id).moderator
    d = focus.join("r", "browser", "D")
    assert d.moderator


def test_updates_only_reach_listeners_that_ask() -> None:
    focus = Focus()
    plain: list[FocusEvent] = []
    full: list[FocusEvent] = []
    focus.subscribe("r", plain.append)
    focus.subscribe("r", full.append, updates=True)
    a = focus.join("r", "browser", "A", audio=True)
    focus.set_hand(a.id, True)
    focus.set_hand(a.id, True)  # no change, no event
    focus.set_name(a.id, "Ada")
    focus.set_media(a.id, audio=True, video=True, screen=False)
    assert [type(e) for e in plain] == [ParticipantJoined]
    assert [type(e) for e in full] == [ParticipantJoined] + [ParticipantUpdated] * 3
    changed = [e.changed for e in full if isinstance(e, ParticipantUpdated)]
    assert changed == [frozenset({"hand"}), frozenset({"name"}), frozenset({"video"})]
    info = focus.get(a.id)
    assert (info.hand, info.name, info.video, info.audio, info.muted) == (
        True, "Ada", True, True, False)  # fmt: skip


def test_browser_media_flags_drive_mute() -> None:
    focus = Focus()
    seen: list[FocusEvent] = []
    focus.subscribe("r", seen.append)
    a = focus.join("r", "browser", "A", audio=False)
    assert a.muted and not a.audio
    p = focus.join("r", "phone", "P")
    assert p.audio and not p.muted
    info = focus.set_media(a.id, audio=True, video=False, screen=True)
    assert not info.muted and info.screen
    assert isinstance(seen[-1], ParticipantMuted) and seen[-1].by is None
    info = focus.set_media(a.id, audio=False, video=False, screen=True)
    assert info.muted


def test_moderator_mute_holds_until_the_participant_unmutes() -> None:
    focus = Focus()
    seen: list[FocusEvent] = []
    focus.subscribe("r", seen.append)
    mod = focus.join("r", "browser", "Mod", audio=True)
    guest = focus.join("r", "browser", "Guest", audio=True)
    phone = focus.join("r", "phone", "Phone")
    muted = focus.moderator_mute(mod.id, guest.id)
    assert muted.muted and muted.force_muted
    assert isinstance(seen[-1], ParticipantMuted) and seen[-1].by == mod.id
    # the guest turning the camera on does not unmute them
    still = focus.set_media(guest.id, audio=False, video=True, screen=False)
    assert still.muted and still.force_muted
    # nobody can unmute someone else: there is no such call, and guests cannot moderate
    with pytest.raises(Forbidden):
        focus.moderator_mute(guest.id, mod.id)
    with pytest.raises(Forbidden):
        focus.kick(guest.id, mod.id)
    with pytest.raises(Forbidden):
        focus.mute_all(guest.id)
    unmuted = focus.set_media(guest.id, audio=True, video=True, screen=False)
    assert not unmuted.muted and not unmuted.force_muted
    # a phone is muted through the same event its gateway already listens to
    focus.moderator_mute(mod.id, phone.id)
    assert focus.get(phone.id).muted and focus.get(phone.id).force_muted
    assert focus.set_muted(phone.id, False).force_muted is False


def test_mute_all_spares_the_moderator_and_kick_removes() -> None:
    focus = Focus()
    seen: list[FocusEvent] = []
    focus.subscribe("r", seen.append)
    mod = focus.join("r", "browser", "Mod", audio=True)
    others = [focus.join("r", "browser", f"G{i}", audio=True) for i in range(3)]
    elsewhere = focus.join("other", "browser", "X", audio=True)
    changed = focus.mute_all(mod.id)
    assert sorted(i.id for i in changed) == sorted(o.id for o in others)
    assert not focus.get(mod.id).muted and not focus.get(elsewhere.id).muted
    with pytest.raises(Forbidden):
        focus.kick(mod.id, elsewhere.id)  # not in the moderator's room
    focus.kick(mod.id, others[0].id)
    left = seen[-1]
    assert isinstance(left, ParticipantLeft)
    assert (left.reason, left.by, left.participant.id) == ("kicked", mod.id, others[0].id)
    with pytest.raises(UnknownParticipant):
        focus.get(others[0].id)
