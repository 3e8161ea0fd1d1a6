"""Draining, ClusterNode against a real redis-server: a drained node places no new room
(sent to the least stressed other node), gives back a claim nobody uses at once, keeps its
rooms with people; forced, it moves them spread by load (the targets adopt them, its browsers
are sent away), a stale claim cannot move a room, and undrained it takes rooms again."""

from __future__ import annotations

import pytest
from test_cluster_redis import NodeFactory, make_node

from focus.session import JoinRefused

__all__ = ["make_node"]  # the fixture, borrowed


async def test_drain_then_force_then_undrain(make_node: NodeFactory) -> None:
    a_rooms = {"standup": 3, "retro": 1}
    a, b, c = make_node("a", a_rooms), make_node("b", {"own": 1}), make_node("c")
    lost: list[str] = []
    a.on_lost_room = lost.append
    for node in (a, b, c, a, b, c):  # connect, claim, then read one another's beats
        await node.tick()
    assert (await a.place("fresh")).here  # a claim nobody has come to yet
    assert (await c.status())["rooms"] == {"fresh": "a", "own": "b", "retro": "a",
                                           "standup": "a"}  # fmt: skip
    with pytest.raises(LookupError):
        await b.drain("nobody")
    assert await b.drain("a") == {"id": "a", "draining": True, "force": False}
    await a.tick()
    assert not a.accepting and a.stats()["cluster_draining"] == 1
    status = await c.status()
    assert {n["id"]: n["draining"] for n in status["nodes"]} == {"a": True, "b": False,
                                                                 "c": False}  # fmt: skip
    # the unused claim went back at once; the rooms with people stay
    assert status["rooms"] == {"own": "b", "retro": "a", "standup": "a"}
    # a new room asked of a goes where a new room would go (c: the least stressed)
    where = await a.place("new")
    assert (where.here, where.node, where.public_url) == (False, "c", "http://c")
    with pytest.raises(JoinRefused) as refused:
        await a.admit("new")
    assert refused.value.code == "room-elsewhere" and refused.value.message == "http://c"
    assert await a.owner_url("new") == "http://c"
    assert "new" not in (await c.status())["rooms"]  # a claimed nothing
    await a.admit("standup")  # a room it hosts still takes joins
    assert lost == []
    # forced: standup (3 people) to c (idle), then retro to b (0.0125 < c's 0.03 now)
    stale = a.claims.tokens["standup"]
    await c.drain("a", force=True)
    await a.tick()
    assert (await c.status())["rooms"] == {"own": "b", "retro": "b", "standup": "c"}
    assert sorted(lost) == ["retro", "standup"] and a.claims.tokens == {}
    await b.tick()
    await c.tick()  # the targets adopt what was moved to them
    assert "standup" in c.claims.tokens and "retro" in b.claims.tokens
    with pytest.raises(JoinRefused) as refused:
        await a.admit("standup")  # the browsers' rejoin on a: told the new host
    assert refused.value.message == "http://c"
    # a's old claim cannot move (nor release) the room now: the fencing token
    a.claims.claimed("standup", stale, a.now)
    await a._move_away({"standup": 3}, a.now)
    a.claims.claimed("standup", stale, a.now)
    await a._give_back("standup")
    assert (await b.status())["rooms"]["standup"] == "c"
    await a.tick()  # people still on a: no second notice, no claim
    assert sorted(lost) == ["retro", "standup"] and a.claims.tokens == {}
    # undrained: a takes new rooms again
    await b.drain("a", drain=False)
    await a.tick()
    assert a.accepting and (await a.place("new")).here
