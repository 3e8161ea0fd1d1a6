"""`Draining`: the drain half of `cluster.node.ClusterNode` (a mixin): an operator's order
to drain a node, what a drained node answers for rooms it does not host, the rooms moved
to it, and a forced drain's moves. The decisions are cluster/logic.py's (`drain_plan`,
`drain_moves`, `drain_target`); the order lives in Redis (`switchboard:draining`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from cluster.logic import (
    Claims,
    ClusterUnavailable,
    DrainOrder,
    NodeBeat,
    Owner,
    Placement,
    drain_moves,
    drain_plan,
    drain_target,
)

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from redis.commands.core import AsyncScript

log = logging.getLogger("cluster.node")

PREFIX = "switchboard:"
DRAINING = PREFIX + "draining"


class Draining:
    if TYPE_CHECKING:  # ClusterNode's
        id: str
        now: float
        view: dict[str, NodeBeat]
        room_map: dict[str, Owner]
        claims: Claims
        accepting: bool
        drain_order: DrainOrder | None
        on_lost_room: Callable[[str], None] | None
        _redis: aioredis.Redis
        _move: AsyncScript
        _split: set[str]
        _notices_tasks: set[asyncio.Task[None]]

        async def _live_owner(self, room: str) -> NodeBeat | None: ...
        async def _read_beats(self) -> dict[str, NodeBeat]: ...
        def _lost(self, exc: BaseException) -> None: ...
        async def publish(self, kind: str, **data: object) -> bool: ...

    async def _elsewhere(self, room: str) -> Placement:
        """A draining node asked for a room it does not host: the room's live owner, else
        the node a new room would go to. ClusterUnavailable when there is none."""
        try:
            beat = await self._live_owner(room)
            if beat is None and drain_target(self.view.values(), self.now, self.id) is None:
                self.view = await self._read_beats()  # a node may have started since the beat
        except RedisError as exc:
            self._lost(exc)
            raise ClusterUnavailable("the cluster's Redis is unreachable") from exc
        if beat is None:
            beat = drain_target(self.view.values(), self.now, self.id)
        if beat is None:
            raise ClusterUnavailable("this node is draining and no other node takes rooms")
        log.info("room %s: node %s is draining: sent to node %s", room, self.id, beat.id)
        return Placement(beat.id, beat.public_url, False, beat.sip)

    async def drain(self, node: str, *, drain: bool = True,
                    force: bool = False) -> dict[str, Any]:
        """An operator's order: drain `node` (force: move its rooms now) or undrain it.
        LookupError for a node the registry does not know; ClusterUnavailable without
        Redis. The order is kept in Redis; a "drain" message makes the node look now."""
        try:
            if not await self._redis.hexists(PREFIX + "nodes", node):
                raise LookupError(f"no node {node!r} in the cluster")
            if drain:
                await self._redis.hset(DRAINING, node, DrainOrder(force).encode())
            else:
                await self._redis.hdel(DRAINING, node)
        except RedisError as exc:
            self._lost(exc)
            raise ClusterUnavailable("the cluster's Redis is unreachable") from exc
        log.warning("cluster: node %s %s by an operator (through node %s)", node,
                    ("drained, forced" if force else "drained") if drain else "undrained",
                    self.id)  # fmt: skip
        if node == self.id:
            self._apply_drain(DrainOrder(force) if drain else None)
        await self.publish("drain", to=node)
        return {"id": node, "draining": drain, "force": drain and force}

    def _apply_drain(self, order: DrainOrder | None) -> None:
        if order != self.drain_order:
            log.warning("cluster: node %s %s", self.id, "undrained: it takes new rooms again"
                        if order is None else "draining: it takes no new rooms; its rooms "
                        + ("move now" if order.force else "move when they become empty"))
        self.drain_order = order
        self.accepting = order is None

    def _adopt(self, now: float) -> None:
        """Entries in this node's name it holds no claim for: moved here by a draining node
        (held, and given back if nobody comes within RELEASE_AFTER)."""
        for room, owner in self.room_map.items():
            if owner.node == self.id and room not in self.claims.tokens:
                self.claims.claimed(room, owner.token, now)
                log.info("cluster: room %s moved here (token %d)", room, owner.token)

    async def _move_away(self, live: Mapping[str, int], now: float) -> None:
        """Forced drain: move each room with people here to another node and send its
        browsers there (they rejoin here, are told the new host, and go)."""
        rooms = {r: live.get(r, 0) for r in drain_plan(self.claims.tokens, live, force=True)[1]}
        if not rooms:
            return
        plan = drain_moves(rooms, self.view.values(), now, self.id)
        if not plan:
            log.error("cluster: node %s: forced drain, but no other live node takes rooms: "
                      "its %d rooms stay", self.id, len(rooms))
            return
        for room, node in plan.items():
            token = self.claims.tokens.get(room)
            if token is None:
                continue
            value = await self._move(keys=[PREFIX + "room:" + room, PREFIX + "fence"],
                                     args=[Owner(self.id, token).encode(), node,
                                           PREFIX + "node:"])  # fmt: skip
            self.claims.forget(room)
            owner = Owner.decode(value)
            if owner is None:  # taken over meanwhile, or the target died: next beat sees
                log.warning("cluster: room %s: not moved to node %s", room, node)
                continue
            self.room_map[room] = owner
            self._split.add(room)  # expected: not logged as a split room
            log.warning("cluster: room %s moved to node %s (forced drain of node %s)", room,
                        node, self.id)
            if self.on_lost_room is not None:
                self.on_lost_room(room)

    def _on_drain(self, message: dict[str, Any]) -> None:
        """A drain order for this node changed: read it now rather than at the next beat."""
        if message.get("to") != self.id or message.get("from") == self.id:
            return
        task = asyncio.get_running_loop().create_task(self._reread_drain())
        self._notices_tasks.add(task)
        task.add_done_callback(self._notices_tasks.discard)

    async def _reread_drain(self) -> None:
        try:
            self._apply_drain(DrainOrder.decode(await self._redis.hget(DRAINING, self.id)))
        except RedisError as exc:
            self._lost(exc)
