"""Draining a node, with a fake clock: a drained node is never chosen for a new room (nor
for an orphan), a browser that reaches it is sent where a new room would go, its empty rooms
are given back at once, and a forced drain spreads its rooms over the other live nodes."""

from __future__ import annotations

from cluster.logic import (
    CAPACITY,
    DEAD_AFTER,
    DrainOrder,
    NodeBeat,
    Owner,
    choose_node,
    drain_moves,
    drain_plan,
    drain_target,
    orphans,
)

NOW = 1000.0


def test_a_draining_node_takes_no_new_room_even_when_idle() -> None:
    beats = [NodeBeat("a", NOW, load=0.0, accepting=False), NodeBeat("b", NOW, load=0.5)]
    assert choose_node(beats, NOW).id == "b"  # type: ignore[union-attr]
    # nor an orphan: take-over falls to the node choose_node names
    room_map = {"x": Owner("dead", 1)}
    assert orphans(room_map, beats, NOW) == ["x"]
    assert choose_node(beats, NOW).id != "a"  # type: ignore[union-attr]
    # every node draining: no node takes a new room (the join is told to try later)
    assert choose_node([NodeBeat("a", NOW, accepting=False)], NOW) is None


def test_a_browser_on_a_draining_node_is_sent_where_a_new_room_would_go() -> None:
    beats = [NodeBeat("a", NOW, load=0.0, accepting=False),
             NodeBeat("b", NOW, load=0.4), NodeBeat("c", NOW, load=0.2),
             NodeBeat("d", NOW - DEAD_AFTER, load=0.0),  # dead
             NodeBeat("e", NOW, load=0.0, accepting=False)]  # draining too  # fmt: skip
    assert drain_target(beats, NOW, "a").id == "c"  # type: ignore[union-attr]
    # the draining node itself is never the answer, even if its own beat still accepts
    beats[0] = NodeBeat("a", NOW, load=0.0)
    assert drain_target(beats, NOW, "a").id == "c"  # type: ignore[union-attr]
    assert drain_target([NodeBeat("a", NOW)], NOW, "a") is None


def test_empty_rooms_are_given_back_at_once_and_full_ones_move_only_when_forced() -> None:
    claimed = {"standup", "retro", "planning"}
    live = {"standup": 3}  # retro ended, planning taken over and nobody came yet
    assert drain_plan(claimed, live, force=False) == (["planning", "retro"], [])
    assert drain_plan(claimed, live, force=True) == (["planning", "retro"], ["standup"])
    # people here without a claim are not this plan's business (the beat claims them)
    assert drain_plan(set(), live, force=True) == ([], [])


def test_a_forced_drain_spreads_the_rooms_by_load() -> None:
    beats = [NodeBeat("a", NOW, load=0.9, accepting=False),
             NodeBeat("b", NOW, load=0.10), NodeBeat("c", NOW, load=0.15),
             NodeBeat("dead", NOW - DEAD_AFTER - 1, load=0.0),
             NodeBeat("busy", NOW, load=0.0, accepting=False)]  # fmt: skip
    rooms = {"big": 20, "mid": 4, "small": 1}
    plan = drain_moves(rooms, beats, NOW, "a")
    # the largest room to the least stressed; b is then at 0.30, so the next go to c
    assert plan == {"big": "b", "mid": "c", "small": "c"}
    assert sum(rooms.values()) / CAPACITY > 0.2  # the figures above mean what they say
    # many small rooms alternate rather than pile onto one node
    even = [NodeBeat("b", NOW, load=0.1), NodeBeat("c", NOW, load=0.1)]
    many = drain_moves({f"r{i}": 1 for i in range(6)}, even, NOW, "a")
    assert list(many.values()).count("b") == 3 and list(many.values()).count("c") == 3
    # nowhere to go: nothing moves
    assert drain_moves(rooms, [beats[0], beats[3]], NOW, "a") == {}


def test_the_drain_order_as_redis_keeps_it() -> None:
    for order in (DrainOrder(), DrainOrder(force=True)):
        assert DrainOrder.decode(order.encode()) == order
        assert DrainOrder.decode(order.encode().encode()) == order
    for bad in (None, "", "yes", "FORCE"):
        assert DrainOrder.decode(bad) is None
