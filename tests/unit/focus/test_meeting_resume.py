"""A room's memory in a cluster (focus/meeting_resume.py, cluster/room_state.py): two
`Meetings` on one (fake) Redis are two nodes; the first hosts a room and "dies" (is
dropped without a word), the second gets the room's browsers back with their resume tokens.
What each browser receives is checked: its id, name, role and hand back, the public chat
and never a private message; a forged, stale or other room's token gets nothing."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from focus_fakes import FakeBridge, FakeConnection, FakeRooms
from room_state_fakes import FakeRedis

from cluster.room_state import RoomState, chat_entries, token_key
from focus import Focus, meeting_resume
from focus import protocol as p
from focus.meeting import Meetings
from focus.session import MeetingSettings


class Node:
    def __init__(self, redis: FakeRedis | None, history: int = 50) -> None:
        self.focus = Focus()
        self.meetings = Meetings(
            self.focus, FakeBridge(), FakeRooms(rooms={"standup": "1", "retro": "2"}),
            MeetingSettings(renegotiate_delay=0.01, chat_history=history),
            clock=lambda: 1_700_000_000.0,
        )  # fmt: skip
        self.state: RoomState | None = None
        if redis is not None:
            self.state = RoomState("redis://unused", history=history, ttl=600, client=redis,
                                   live_rooms=lambda: self.focus.live_rooms())  # fmt: skip
            self.meetings.memory = self.state

    async def join(self, name: str, room: str = "standup",
                   resume: str | None = None) -> tuple[str, FakeConnection]:  # fmt: skip
        conn = FakeConnection()
        pid = await self.meetings.join(conn, p.Join(room=room, name=name, audio=True,
                                                    video=False, resume=resume))  # fmt: skip
        return pid, conn

    async def send(self, pid: str, message: dict[str, Any]) -> None:
        await self.meetings.handle(pid, p.parse_message(p.encode(message)))

    def info(self, pid: str) -> Any:
        return self.focus.get(pid)

    async def flush(self) -> None:
        if self.state is not None:
            await self.state.flush()

    async def close(self) -> None:
        if self.state is not None:
            await self.state.close()


async def meeting_on_a(redis: FakeRedis) -> tuple[Node, dict[str, Any]]:
    """Node A: Ada (moderator: first in an open room) and Bob (guest); Ada chats in public
    and privately to Bob; Bob raises his hand and renames himself."""
    a = Node(redis)
    ada, ca = await a.join("Ada")
    bob, cb = await a.join("Bob")
    await a.send(ada, {"type": "chat", "text": "agenda: budget"})
    await a.send(ada, {"type": "private-chat", "to": bob, "text": "my secret salary"})
    await a.send(bob, {"type": "hand", "raised": True})
    await a.send(bob, {"type": "set-name", "name": "Bob B."})
    await a.flush()
    assert a.info(ada).moderator and not a.info(bob).moderator
    return a, {"ada": ada, "bob": bob, "ada_token": ca.last("joined")["resume"],
               "bob_token": cb.last("joined")["resume"]}


async def test_a_room_taken_over_gives_back_chat_roles_names_and_hands() -> None:
    redis = FakeRedis()
    a, was = await meeting_on_a(redis)
    # node A dies: nothing more from it. Node B takes the room; Bob comes back first.
    b = Node(redis)
    bob, cb = await b.join("Bobby?", resume=was["bob_token"])
    joined = cb.last("joined")
    assert bob == was["bob"] and joined["self"]["id"] == was["bob"]
    assert joined["self"]["name"] == "Bob B."  # his name as it was, not what the page sent
    assert joined["self"]["role"] == "guest"  # Ada is awaited: Bob does not moderate
    assert [(c["name"], c["text"]) for c in joined["chat"]] == [("Ada", "agenda: budget")]
    assert "my secret salary" not in repr(cb.messages)  # private chat is never replayed
    assert joined["resume"] == was["bob_token"]
    assert b.info(bob).hand
    ada, ca = await b.join("Ada", resume=was["ada_token"])
    assert ada == was["ada"]
    assert ca.last("joined")["self"]["role"] == "moderator" and b.info(ada).moderator
    assert not b.info(bob).moderator
    # the moderator acts as one on the new node
    await b.send(ada, {"type": "moderate", "action": "mute", "target": bob})
    assert cb.last("muted")["by"] == ada
    # new chat on B is kept after the old
    await b.send(bob, {"type": "chat", "text": "back"})
    await b.flush()
    c = Node(redis)
    _x, cx = await c.join("Xena")
    assert [m["text"] for m in cx.last("joined")["chat"]] == ["agenda: budget", "back"]
    for node in (a, b, c):
        await node.close()


async def test_forged_stale_and_other_rooms_tokens_get_nothing() -> None:
    redis = FakeRedis()
    a, was = await meeting_on_a(redis)
    # Ada leaves on purpose: her token is forgotten
    await a.send(was["ada"], {"type": "leave"})
    await a.flush()
    b = Node(redis)
    # Bob is in; a forged token, Ada's stale one and a token of another room give nothing
    _bob, _cb = await b.join("Bob", resume=was["bob_token"])
    retro, cr = await b.join("Rita", room="retro")
    retro_token = cr.last("joined")["resume"]
    assert b.info(retro).moderator  # first in retro
    for token in ("A" * 32, was["ada_token"], retro_token):
        pid, conn = await b.join("Mallory", resume=token)
        me = conn.last("joined")["self"]
        assert pid not in (was["ada"], was["bob"], retro)
        assert me["name"] == "Mallory" and me["role"] == "guest", me
        assert conn.last("joined")["resume"] != token  # a new token of its own
    for node in (a, b):
        await node.close()


async def test_moderators_that_do_not_come_back_are_replaced_after_the_grace(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(meeting_resume, "RESUME_GRACE", 0.2)
    redis = FakeRedis()
    a, was = await meeting_on_a(redis)
    b = Node(redis)
    bob, _cb = await b.join("Bob", resume=was["bob_token"])
    assert not b.info(bob).moderator
    for _ in range(50):
        await asyncio.sleep(0.02)
        if b.info(bob).moderator:
            break
    assert b.info(bob).moderator  # the open-room rule again, once Ada was not back
    for node in (a, b):
        await node.close()


async def test_hand_overs_while_a_room_empties_are_not_kept_a_lasting_one_is(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(meeting_resume, "ROLE_SETTLE", 0.1)
    redis = FakeRedis()
    a, was = await meeting_on_a(redis)
    # the room moves away: A closes its browsers one after another (socket gone: "timeout")
    a.meetings.leave(was["ada"], "timeout")
    assert a.info(was["bob"]).moderator  # handed down on A for a moment
    a.meetings.leave(was["bob"], "timeout")
    await asyncio.sleep(0.3)
    await a.flush()
    b = Node(redis)
    ada, _ = await b.join("Ada", resume=was["ada_token"])
    bob, _ = await b.join("Bob", resume=was["bob_token"])
    assert b.info(ada).moderator and not b.info(bob).moderator  # as they were before
    # a hand-over that lasts is kept: Ada leaves for good, Bob moderates on B
    await b.send(ada, {"type": "leave"})
    assert b.info(bob).moderator
    await asyncio.sleep(0.3)
    await b.flush()
    c = Node(redis)
    bob, _ = await c.join("Bob", resume=was["bob_token"])
    assert c.info(bob).moderator
    for node in (a, b, c):
        await node.close()


async def test_without_a_cluster_nothing_changes() -> None:
    a = Node(None)
    _pid, conn = await a.join("Ada")
    assert "resume" not in conn.last("joined")
    # a resume token presented to a single process is ignored
    b_pid, cb = await a.join("Bob", resume="B" * 32)
    assert cb.last("joined")["self"]["name"] == "Bob" and not a.info(b_pid).moderator


async def test_redis_keeps_hashes_public_chat_only_bounded_with_ttl(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    redis = FakeRedis()
    a = Node(redis, history=3)
    ada, ca = await a.join("Ada")
    bob, _ = await a.join("Bob")
    token = ca.last("joined")["resume"]
    for n in range(5):
        await a.send(ada, {"type": "chat", "text": f"m{n}"})
    await a.send(ada, {"type": "private-chat", "to": bob, "text": "psst"})
    await a.flush()
    chat = redis.lists["switchboard:state:standup:chat"]
    assert [m["text"] for m in chat_entries(chat)] == ["m2", "m3", "m4"]  # the last 3
    people = redis.hashes["switchboard:state:standup:people"]
    assert token_key(token) in people and token not in repr(redis.hashes)
    assert "psst" not in repr(redis.lists) + repr(redis.hashes)
    assert redis.ttl["switchboard:state:standup:chat"] == 600
    assert redis.ttl["switchboard:state:standup:people"] == 600
    assert all(token not in r.getMessage() for r in caplog.records)  # never in a log line
    await a.close()


async def test_an_unreachable_redis_means_joining_anew_not_failing() -> None:
    redis = FakeRedis()
    a, was = await meeting_on_a(redis)
    redis.down = True
    b = Node(redis)
    pid, conn = await b.join("Bob", resume=was["bob_token"])
    me = conn.last("joined")["self"]
    assert me["name"] == "Bob" and pid != was["bob"]
    await b.send(pid, {"type": "chat", "text": "still works"})  # queued, dropped, logged
    await b.flush()
    assert b.state is not None and b.state.stats()["room_state_dropped"] >= 1
    for node in (a, b):
        await node.close()


def test_the_join_field_is_checked_and_never_shown() -> None:
    msg = p.parse_message(p.encode({"type": "join", "version": 1, "room": "r", "name": "n",
                                    "audio": True, "video": False, "resume": "x" * 32}))
    assert isinstance(msg, p.Join) and msg.resume == "x" * 32
    assert "x" * 32 not in repr(msg)
    for bad in ("short", "no spaces allowed here!", 5, "y" * 200):
        with pytest.raises(p.ProtocolError) as exc:
            p.parse_message(p.encode({"type": "join", "version": 1, "room": "r", "name": "n",
                                      "audio": True, "video": False, "resume": bad}))
        assert exc.value.code == "bad-message" and "resume" in exc.value.message
