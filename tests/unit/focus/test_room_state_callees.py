"""Dial-out callees kept for a room's next node (cluster/room_state.py's callees, and
gateway/dialout_calls.py's `redial`): an answered callee with `redial` is kept while its call
lasts, forgotten when it ends, and called again by the node that takes the room over."""

from __future__ import annotations

import asyncio
from typing import Any

from room_state_fakes import FakeRedis

from cluster.room_state import RoomState
from gateway.dialout import DialOut, DialRefused
from gateway.dialout_calls import DialOutCalls

ENTRY: dict[str, object] = {"number": "+15550199", "trunk": "carrier", "dtmf": "1,#",
                            "ringing_timeout": 30.0}


def _state(redis: FakeRedis) -> RoomState:
    return RoomState("redis://unused", history=10, ttl=600, client=redis)


async def test_a_callee_is_kept_until_its_call_ends() -> None:
    redis = FakeRedis()
    state = _state(redis)
    state.remember_callee("standup", "c1", ENTRY)
    state.remember_callee("standup", "c2", ENTRY | {"number": "+15550198"})
    assert set(await state.callees("standup")) == {"c1", "c2"}
    assert (await state.callees("standup"))["c1"] == ENTRY
    assert await state.callees("other") == {}
    state.forget_callee("standup", "c1")
    assert set(await state.callees("standup")) == {"c2"}
    assert redis.ttl["switchboard:state:standup:callees"] == 600
    await state.close()


async def test_unreadable_entries_are_skipped() -> None:
    redis = FakeRedis()
    redis.hashes["switchboard:state:r:callees"] = {"a": "not json", "b": "[1]", "c": "{}"}
    state = _state(redis)
    assert await state.callees("r") == {"c": {}}
    await state.close()


class Dialler(DialOutCalls):
    """The gateway's dial-out half with `dial` recorded instead of placed."""

    def __init__(self, memory: RoomState | None) -> None:
        self._init_dialout()
        self.callee_memory = memory
        self.placed: list[tuple[Any, ...]] = []
        self.refuse: set[str] = set()

    async def dial(self, room: str, number: str, trunk: str | None = None,  # type: ignore[override]
                   ringing_timeout: float | None = None, dtmf: str = "",
                   redial: bool = False) -> DialOut:  # fmt: skip
        if number in self.refuse:
            raise DialRefused(403, "not allowed")
        self.placed.append((room, number, trunk, ringing_timeout, dtmf, redial))
        return DialOut(id=f"n{len(self.placed)}", room=room, number=number,
                       trunk=trunk or "", started=0.0, ringing_timeout=ringing_timeout or 0)


async def test_the_next_node_calls_the_callees_again_once() -> None:
    redis = FakeRedis()
    dead, heir = _state(redis), _state(redis)  # two nodes on one Redis
    dead.remember_callee("standup", "c1", ENTRY)
    dead.remember_callee("standup", "c2", ENTRY | {"number": "+15550198"})
    dead.remember_callee("standup", "c3", {"number": 5})  # malformed: skipped
    await dead.flush()
    dialler = Dialler(heir)
    dialler.refuse.add("+15550198")  # refused (e.g. the trunk's guard): logged, skipped
    assert await dialler.redial("standup") == 1
    assert dialler.placed == [("standup", "+15550199", "carrier", 30.0, "1,#", True)]
    await heir.flush()
    assert await heir.callees("standup") == {}  # the new call is kept once answered
    assert await dialler.redial("standup") == 0  # not twice
    await dead.close()
    await heir.close()


async def test_without_a_cluster_nothing_is_called_again() -> None:
    assert await Dialler(None).redial("standup") == 0


async def test_redis_away_calls_nobody() -> None:
    redis = FakeRedis()
    state = _state(redis)
    redis.down = True
    dialler = Dialler(state)
    assert await asyncio.wait_for(dialler.redial("standup"), 5.0) == 0
    assert dialler.placed == []
    await state.close()
