"""Reactions and private chat (focus/meeting_social.py) against fake connections: what
each participant receives. A private message reaches its addressee and its sender and nobody
else, never another room; a reaction reaches its own room only; bad input gets a clear error;
reactions are rate-limited per participant."""

from __future__ import annotations

from typing import Any

import pytest
from focus_fakes import FakeBridge, FakeConnection, FakeRooms

from focus import Focus
from focus import protocol as p
from focus.meeting import Meetings
from focus.meeting_social import REACTION_BURST, REACTION_RATE
from focus.session import MeetingSettings

THUMBS = "\U0001f44d"
SOCIAL = ("reaction", "private-chat", "chat")


class World:
    def __init__(self) -> None:
        self.focus = Focus()
        self.rooms = FakeRooms(rooms={"standup": "12345678", "retro": "23456789"})
        self.now = 100.0
        self.meetings = Meetings(
            self.focus, FakeBridge(), self.rooms, MeetingSettings(renegotiate_delay=0.01),
            clock=lambda: 1_700_000_000.0, monotonic=lambda: self.now,
        )  # fmt: skip

    async def join(self, name: str, room: str = "standup") -> tuple[str, FakeConnection]:
        conn = FakeConnection()
        pid = await self.meetings.join(conn, p.Join(room=room, name=name, audio=True,
                                                    video=False))  # fmt: skip
        return pid, conn

    async def send(self, pid: str, message: dict[str, Any]) -> None:
        await self.meetings.handle(pid, p.parse_message(p.encode(message)))


def social(conn: FakeConnection) -> list[dict[str, Any]]:
    return [m for m in conn.messages if m["type"] in SOCIAL]


async def test_a_reaction_reaches_its_room_and_only_its_room() -> None:
    w = World()
    a, ca = await w.join("Ada")
    _b, cb = await w.join("Bob")
    _x, cx = await w.join("Xena", room="retro")
    await w.send(a, {"type": "reaction", "emoji": THUMBS})
    expected = {"type": "reaction", "from": a, "emoji": THUMBS}
    assert social(ca) == [expected]  # the sender sees it as the others do
    assert social(cb) == [expected]
    assert social(cx) == []
    # A room field naming another room is refused, and nobody there gets anything.
    with pytest.raises(p.ProtocolError) as exc:
        await w.send(a, {"type": "reaction", "emoji": THUMBS, "room": "retro"})
    assert exc.value.code == "wrong-room"
    assert social(cx) == []


@pytest.mark.parametrize("emoji", ["", "x", "\U0001f4a9", THUMBS * 2, 1, None, ["\U0001f44d"]])
async def test_a_reaction_must_be_one_of_the_offered_emoji(emoji: object) -> None:
    w = World()
    a, _ = await w.join("Ada")
    _b, cb = await w.join("Bob")
    with pytest.raises(p.ProtocolError) as exc:
        await w.send(a, {"type": "reaction", "emoji": emoji})
    assert exc.value.code == "bad-message" and exc.value.ref == "reaction"
    assert "emoji: expected one of" in exc.value.message
    assert social(cb) == []


async def test_reactions_are_rate_limited_per_participant() -> None:
    w = World()
    a, _ca = await w.join("Ada")
    b, cb = await w.join("Bob")
    for _ in range(REACTION_BURST):
        await w.send(a, {"type": "reaction", "emoji": THUMBS})
    with pytest.raises(p.ProtocolError) as exc:
        await w.send(a, {"type": "reaction", "emoji": THUMBS})
    assert exc.value.code == "rate-limited"
    assert len(social(cb)) == REACTION_BURST
    # Bob has his own allowance, and Ada gets hers back with time.
    await w.send(b, {"type": "reaction", "emoji": THUMBS})
    w.now += 1.0 / REACTION_RATE
    await w.send(a, {"type": "reaction", "emoji": THUMBS})
    assert len([m for m in social(cb) if m["from"] == a]) == REACTION_BURST + 1


async def test_a_private_message_reaches_only_its_addressee_and_its_sender() -> None:
    w = World()
    a, ca = await w.join("Ada")
    b, cb = await w.join("Bob")
    _c, cc = await w.join("Cy")
    _x, cx = await w.join("Xena", room="retro")
    await w.send(a, {"type": "private-chat", "to": b, "text": "just for you"})
    expected = {"type": "private-chat", "from": a, "name": "Ada", "to": b, "to_name": "Bob",
                "text": "just for you", "ts": 1_700_000_000.0}  # fmt: skip
    assert social(cb) == [expected]
    assert social(ca) == [expected]
    assert social(cc) == [] and social(cx) == []
    # It is not kept: someone joining later does not get it in the history.
    _, cd = await w.join("Dee")
    assert cd.last("joined")["chat"] == []


async def test_a_private_message_never_crosses_to_another_room() -> None:
    w = World()
    a, ca = await w.join("Ada")
    _b, cb = await w.join("Bob")
    x, cx = await w.join("Xena", room="retro")
    with pytest.raises(p.ProtocolError) as exc:
        await w.send(a, {"type": "private-chat", "to": x, "text": "hello over there"})
    assert exc.value.code == "unknown-participant" and exc.value.ref == "private-chat"
    assert social(cx) == [] and social(ca) == [] and social(cb) == []
    # From the other side too, and with a room field naming the target's room.
    with pytest.raises(p.ProtocolError) as exc:
        await w.send(x, {"type": "private-chat", "to": a, "text": "hi", "room": "standup"})
    assert exc.value.code == "wrong-room"
    assert social(ca) == []


async def test_a_private_message_to_a_phone_caller_or_oneself_is_refused() -> None:
    w = World()
    a, ca = await w.join("Ada")
    phone = w.focus.join("standup", "phone", "+1 555 ***0100")
    for to, code in ((phone.id, "unknown-participant"), (a, "bad-message"),
                     ("nobody", "unknown-participant")):  # fmt: skip
        with pytest.raises(p.ProtocolError) as exc:
            await w.send(a, {"type": "private-chat", "to": to, "text": "hi"})
        assert exc.value.code == code
    assert social(ca) == []


@pytest.mark.parametrize("fields", [
    {"to": "b", "text": ""},
    {"to": "b", "text": "x" * (p.MAX_CHAT_TEXT + 1)},
    {"to": "b", "text": "bell\x07"},
    {"to": "", "text": "hi"},
    {"to": 7, "text": "hi"},
    {"to": "b" * 65, "text": "hi"},
    {"text": "hi"},
    {"to": "b", "text": "hi", "cc": "c"},
])  # fmt: skip
def test_private_chat_input_is_validated(fields: dict[str, object]) -> None:
    with pytest.raises(p.ProtocolError) as exc:
        p.parse_message(p.encode({"type": "private-chat", **fields}))
    assert exc.value.code == "bad-message" and exc.value.ref == "private-chat"


def test_the_signaling_room_bucket_covers_the_new_messages() -> None:
    from web.signaling import ROOM_MESSAGES

    assert p.Reaction in ROOM_MESSAGES and p.PrivateChat in ROOM_MESSAGES
