"""ClusterNode against a real redis-server: claims (one owner, fencing), the registry and
death detection, take-over of a dead node's rooms, pub/sub, and a lost Redis (no new rooms,
conferences kept, resync when it is back)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from peers.redis import start_redis

from cluster.logic import DEAD_AFTER
from cluster.node import ClusterNode, ClusterSettings, ClusterUnavailable
from focus.session import JoinRefused

NodeFactory = Callable[..., ClusterNode]


@pytest.fixture
async def make_node(redis_url: str) -> AsyncIterator[NodeFactory]:
    made: list[ClusterNode] = []

    def make(node_id: str, rooms: dict[str, int] | None = None, *, url: str = redis_url,
             public_url: str = "") -> ClusterNode:
        live = rooms if rooms is not None else {}
        node = ClusterNode(ClusterSettings(url, node_id, public_url or f"http://{node_id}"),
                           lambda: live)
        made.append(node)
        return node

    yield make
    for node in made:
        await node.stop()


async def test_a_room_lives_on_one_node_and_the_others_are_told_where(
        make_node: NodeFactory) -> None:
    a, b = make_node("a"), make_node("b")
    await a.tick()
    await b.tick()
    here = await a.place("standup")
    assert here.here and here.node == "a"
    there = await b.place("standup")
    assert (there.here, there.node, there.public_url) == (False, "a", "http://a")
    with pytest.raises(JoinRefused) as refused:
        await b.admit("standup")
    assert refused.value.code == "room-elsewhere" and refused.value.message == "http://a"
    await a.admit("standup")  # the owner admits
    status = await b.status()
    assert status == {"nodes": [{"id": "a", "alive": True, "load": 0.0, "rooms": 1,
                                 "draining": False},
                                {"id": "b", "alive": True, "load": 0.0, "rooms": 0,
                                 "draining": False}],
                      "rooms": {"standup": "a"}}


async def test_many_nodes_claiming_at_once_get_one_owner(make_node: NodeFactory) -> None:
    nodes = [make_node(f"n{i}") for i in range(8)]
    for node in nodes:
        await node.tick()
    placed = await asyncio.gather(*(node.place("busy") for node in nodes))
    owners = {p.node for p in placed}
    assert len(owners) == 1
    assert sum(p.here for p in placed) == 1


async def test_a_dead_nodes_rooms_are_taken_over_within_five_seconds(
        make_node: NodeFactory) -> None:
    a_rooms = {"standup": 2}
    a, b, c = make_node("a", a_rooms), make_node("b"), make_node("c")
    for node in (a, b, c):
        await node.tick()
    await a.tick()  # claims the room its participants are in
    assert (await c.status())["rooms"] == {"standup": "a"}
    died = time.monotonic()  # a stops beating (as under kill -9)
    owner = "a"
    while owner == "a":
        assert time.monotonic() - died < 5.0, "not taken over within 5 s"
        await asyncio.sleep(0.5)
        await b.tick()
        await c.tick()
        owner = (await b.status())["rooms"].get("standup", "a")
    assert owner in ("b", "c")
    status = await b.status()
    assert {n["id"]: n["alive"] for n in status["nodes"]} == {"a": False, "b": True, "c": True}
    assert time.monotonic() - died >= DEAD_AFTER - 1.0  # not before it was dead
    # the dead node's fencing token is stale: it cannot give the new owner's claim back
    a_rooms.clear()
    await a._give_back("standup")
    assert (await b.status())["rooms"] == {"standup": owner}


async def test_an_empty_room_is_given_back_and_a_clean_stop_leaves(
        make_node: NodeFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("cluster.logic.RELEASE_AFTER", 0.0)
    rooms = {"standup": 1}
    a, b = make_node("a", rooms), make_node("b")
    await a.tick()
    await b.tick()
    assert (await b.status())["rooms"] == {"standup": "a"}
    rooms.clear()
    await a.tick()
    assert (await b.status())["rooms"] == {}
    rooms["x"] = 1
    await a.tick()
    await a.stop()
    status = await b.status()
    assert status["rooms"] == {} and [n["id"] for n in status["nodes"]] == ["b"]


async def test_messages_between_nodes(make_node: NodeFactory) -> None:
    a, b = make_node("a"), make_node("b")
    got: list[dict[str, object]] = []
    b.on("store-changed", got.append)
    await a.start()
    await b.start()
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:  # until b's subscription is up
        await a.publish("store-changed", what="room", key="standup")
        await asyncio.sleep(0.2)
    assert got and got[0]["from"] == "a" and got[0]["key"] == "standup"


async def test_a_node_that_loses_redis_takes_no_new_rooms_and_resyncs(
        make_node: NodeFactory) -> None:
    server = start_redis()
    try:
        rooms = {"standup": 1}
        node = make_node("a", rooms, url=server.url)
        await node.start()
        deadline = time.monotonic() + 5
        while "standup" not in node.claims.tokens:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        port = server.port
        server.process.stop()  # Redis is gone, with everything it held
        began = time.monotonic()
        while node.connected:
            assert time.monotonic() - began < 5, "the loss was not noticed"
            await asyncio.sleep(0.1)
        with pytest.raises(ClusterUnavailable):
            await node.place("new-room")
        with pytest.raises(JoinRefused) as refused:
            await node.admit("new-room")
        assert refused.value.code == "cluster-unavailable"
        assert node.stats()["cluster_connected"] == 0
        server = start_redis(port)  # back, empty: the node re-claims what it hosts
        deadline = time.monotonic() + 10
        while True:
            try:
                if (await node.status())["rooms"] == {"standup": "a"}:
                    break
            except ClusterUnavailable:
                pass
            assert time.monotonic() < deadline, "no resync within 10 s"
            await asyncio.sleep(0.2)
        assert node.connected
        assert (await node.place("new-room")).here
    finally:
        server.process.stop()


async def test_a_join_during_the_release_keeps_the_room_claimed(make_node: NodeFactory) -> None:
    """The release script runs while a join claims the room again: the claim must hold in
    Redis, with the token this node keeps (else a second node could start the room)."""
    a, b = make_node("a"), make_node("b")
    await a.tick()
    await b.tick()
    assert (await a.place("standup")).here
    release = a._release

    async def join_meanwhile(*args: Any, **kwargs: Any) -> Any:
        assert (await a.place("standup")).here  # the join, while the release is under way
        return await release(*args, **kwargs)

    a._release = join_meanwhile  # type: ignore[method-assign]
    await a._give_back("standup")
    rooms = (await b.status())["rooms"]
    assert rooms == {"standup": "a"}
    assert not (await b.place("standup")).here
    await a.tick()  # the next beat finds its claim intact
    assert "standup" in a.claims.tokens
    assert a.claims.tokens["standup"] == a.room_map["standup"].token


async def test_a_room_taken_over_while_its_node_was_away_sends_its_browsers_there(
        make_node: NodeFactory, redis_server: Any) -> None:
    """Its node was cut off from Redis long enough to be declared dead: another node took the
    room over. Back, the node finds that out and sends its browsers away, once."""
    rooms = {"standup": 2}
    a, b = make_node("a", rooms), make_node("b")
    lost: list[str] = []
    a.on_lost_room = lost.append
    await a.tick()
    await b.tick()
    assert (await b.status())["rooms"] == {"standup": "a"}
    redis_server.command("SET", "switchboard:room:standup", "b 999")  # b's take-over
    for _ in range(3):
        await a.tick()
    assert lost == ["standup"]
    assert "standup" not in a.claims.tokens
    assert not (await a.place("standup")).here  # new browsers are sent to b too
    rooms.clear()  # its browsers have left
    await a.tick()
    rooms["standup"] = 1
    await a.tick()
    assert lost == ["standup", "standup"]  # a new split is a new event


async def test_a_node_restarted_under_its_id_takes_up_its_old_claims(
        make_node: NodeFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Restarted within DEAD_AFTER (systemd's restart, a configured node_id): its old claims
    never look orphaned, so the new process holds them and gives them back when empty."""
    first = make_node("a", {"standup": 1})
    await first.tick()
    assert "standup" in first.claims.tokens  # then the process dies: no release
    again = make_node("a", {})
    monkeypatch.setattr("cluster.logic.RELEASE_AFTER", 0.0)
    await again.tick()  # adopts the claim...
    await again.tick()  # ...and gives it back: nobody is in the room
    assert (await again.status())["rooms"] == {}
