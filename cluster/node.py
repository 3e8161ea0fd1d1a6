"""`ClusterNode`: this process as one node of a cluster, through Redis (redis-py asyncio).

Keys (one Redis, not Redis Cluster: the claim script reads a key it is not given):
- `switchboard:node:ID`: the node's last heartbeat (JSON), written every HEARTBEAT seconds
  with a TTL of DEAD_AFTER: a node is dead when its key is gone. `switchboard:nodes` (hash)
  keeps each node's last beat so the dead are still listed (forgotten after FORGET_AFTER).
- `switchboard:room:NAME` = "NODE TOKEN": the room's owner and the claim's fencing token
  (from INCR `switchboard:fence`); `switchboard:rooms` (set) indexes them. The claim script
  sets the entry only when it is absent or its owner's key is gone (dead), so a room lives on
  one node at a time; the release script deletes it only for the same owner and token, so a
  node whose claim was taken over cannot release the new owner's.
- Channel `switchboard:events`: JSON messages between nodes ({"kind", "from", ...}): store
  changes ("store-changed") and commands ("release" a room, "drain" to look at the drain
  orders now). Messages sent while a node was
  disconnected are lost: every tick re-reads the registry and the map, and after a reconnect
  the node checks each of its claims (re-claiming those Redis lost).

- `switchboard:draining` (hash): node -> "drain" | "force", the operators' drain orders
  (`drain()`; read by the node at each beat, so an order survives lost messages and a
  restart). A draining node beats `accepting: false`, gives back its empty rooms, and when
  forced moves its other rooms to the least stressed other node (the move script changes
  the owner only if this node's claim is still the one in the map) and sends its browsers
  there (`on_lost_room`). The receiving node adopts entries in its name at its next beat.

A node that cannot reach Redis takes no new room (`place` refuses, logged as an error once
per outage) and keeps its running conferences; it retries every HEARTBEAT.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from cluster.logic import (
    DEAD_AFTER,
    HEARTBEAT,
    STALE_AFTER,
    Claims,
    ClusterUnavailable,
    DrainOrder,
    JoinWindow,
    NodeBeat,
    Owner,
    Placement,
    alive_nodes,
    choose_node,
    drain_plan,
    orphans,
    stress,
)
from cluster.node_drain import DRAINING, Draining
from cluster.redis_io import CLAIM, MOVE, RELEASE, beat_of, redact, text_of
from focus.session import CLOSE_TRY_LATER, JoinRefused

__all__ = ["PREFIX", "ClusterNode", "ClusterSettings", "ClusterUnavailable", "Placement",
           "default_node_id"]

log = logging.getLogger(__name__)

PREFIX = "switchboard:"
CHANNEL = PREFIX + "events"
HANDOFF_KEY = PREFIX + "handoff-key"
FORGET_AFTER = 3600.0  # a dead node leaves the list after an hour


def default_node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    redis_url: str
    node_id: str
    public_url: str = ""
    sip: str = ""  # "udp:HOST:PORT": where other nodes hand this node phone calls


class ClusterNode(Draining):
    def __init__(
        self,
        settings: ClusterSettings,
        live_rooms: Callable[[], Mapping[str, int]],
        legs: Callable[[], int] = lambda: 0,
    ) -> None:
        self.settings = settings
        self.id = settings.node_id
        self._live_rooms = live_rooms  # {room: participants on this node}
        self.legs = legs  # phone legs here (the gateway's count)
        # called once when another node hosts a room with people here (taken over while
        # this node was cut off from Redis): send its browsers away (they rejoin the host)
        self.on_lost_room: Callable[[str], None] | None = None
        # called once when this node takes a room over from a dead node (redial callees)
        self.on_rehomed: Callable[[str], None] | None = None
        self._redis: aioredis.Redis = aioredis.from_url(
            settings.redis_url, decode_responses=True, socket_connect_timeout=1.0,
            socket_timeout=1.5, retry=Retry(NoBackoff(), 0), health_check_interval=5,
        )  # fmt: skip
        self._claim = self._redis.register_script(CLAIM)
        self._release = self._redis.register_script(RELEASE)
        self._move = self._redis.register_script(MOVE)
        self.claims = Claims()
        self.joins = JoinWindow()
        self.connected = False
        self.accepting = True  # false while draining
        self.drain_order: DrainOrder | None = None
        self.view: dict[str, NodeBeat] = {}
        self.room_map: dict[str, Owner] = {}
        self.load = 0.0
        self.now = time.time()
        self._handlers: dict[str, list[Callable[[dict[str, Any]], None]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._notices: set[asyncio.Task[bool]] = set()
        self._notices_tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._outage_logged = False
        self._split: set[str] = set()  # rooms with participants here, owned elsewhere
        self._handoff_key: bytes | None = None
        self.ticks = 0

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        log.info("cluster: node %s (public URL %s) on Redis %s", self.id,
                 self.settings.public_url or "unset", redact(self.settings.redis_url))
        self.on("release", self._on_release)
        self.on("drain", self._on_drain)
        self._tasks = [asyncio.create_task(self._beat_loop(), name="cluster-beat"),
                       asyncio.create_task(self._listen_loop(), name="cluster-listen")]

    async def stop(self) -> None:
        """Give back every claim and leave the registry (a clean stop is not a death)."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.connected:
            try:
                for room in list(self.claims.tokens):
                    await self._give_back(room)
                await self._redis.delete(PREFIX + "node:" + self.id)
                await self._redis.hdel(PREFIX + "nodes", self.id)
            except RedisError as exc:
                log.warning("cluster: node %s left without tidying up: %s", self.id, exc)
        await self._redis.aclose()

    async def close(self) -> None:
        """Close the connection only (a reader such as `switchboard cluster status`)."""
        await self._redis.aclose()

    # -- what the rest of the process asks -----------------------------------------------

    async def place(self, room: str) -> Placement:
        """Claim `room` for this node unless a live node owns it. ClusterUnavailable while
        Redis is out of reach (no new room then)."""
        if not self.connected:
            raise ClusterUnavailable("the cluster's Redis is unreachable")
        if room in self.claims.tokens:
            return Placement(self.id, self.settings.public_url, True)
        if not self.accepting:
            return await self._elsewhere(room)
        try:
            owner = await self._try_claim(room)
        except RedisError as exc:
            self._lost(exc)
            raise ClusterUnavailable("the cluster's Redis is unreachable") from exc
        if owner is None or owner.node == self.id:
            return Placement(self.id, self.settings.public_url, True)
        try:
            beat, now = await self._owner_beat(owner.node)
        except RedisError as exc:
            self._lost(exc)
            raise ClusterUnavailable("the cluster's Redis is unreachable") from exc
        beat = beat or self.view.get(owner.node)
        fresh = beat is not None and now - beat.beat <= STALE_AFTER
        return Placement(owner.node, beat.public_url if beat else "", False,
                         beat.sip if beat else "", fresh)

    async def admit(self, room: str) -> None:
        """Meetings' placement hook: a browser may join `room` here only when this node
        hosts it (claimed now if free or orphaned). JoinRefused otherwise: while Redis is
        unreachable (no new room), or with the owner's URL when another live node hosts it."""
        try:
            where = await self.place(room)
        except ClusterUnavailable as exc:
            raise JoinRefused("cluster-unavailable", f"this node takes no new rooms now "
                              f"({exc}); try again shortly", CLOSE_TRY_LATER) from None
        if not where.here and not where.fresh:
            log.info("room %s: its node %s has not beaten for %.0f s: try again", room,
                     where.node, STALE_AFTER)
            raise JoinRefused("cluster-unavailable", "the meeting's server is not answering; "
                              "trying again shortly", CLOSE_TRY_LATER)
        if not where.here:
            log.info("room %s: hosted by node %s, not here", room, where.node)
            raise JoinRefused("room-elsewhere", where.public_url or where.node,
                              CLOSE_TRY_LATER)
        self.joins.add(self.now)

    async def owner_url(self, room: str) -> str | None:
        """The public URL of the live node hosting `room` when that is not this node (and it
        has one), or for a draining node where a new room would go; None otherwise, or when
        Redis cannot say (the page then opens here)."""
        if not self.connected or room in self.claims.tokens:
            return None
        if not self.accepting:
            try:
                where = await self._elsewhere(room)
            except ClusterUnavailable:
                return None
            return None if where.here else (where.public_url or None)
        try:
            beat = await self._live_owner(room)
        except RedisError as exc:
            self._lost(exc)
            return None
        return (beat.public_url or None) if beat is not None else None

    async def _owner_beat(self, node: str) -> tuple[NodeBeat | None, float]:
        """`node`'s latest beat (None: dead) and Redis's time now, in one round trip."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.get(PREFIX + "node:" + node)
        pipe.time()
        text, (seconds, micros) = await pipe.execute()
        now = float(seconds) + float(micros) / 1e6
        return (beat_of(text_of(text)) if text else None), now

    def peer_urls(self) -> list[str]:
        """The public URLs of the other live nodes (those taking rooms first), as of the last
        beat: where a page goes when this node stops answering."""
        others = [b for b in alive_nodes(self.view.values(), self.now)
                  if b.id != self.id and b.public_url]
        return [b.public_url for b in sorted(others, key=lambda b: (not b.accepting, b.load))]

    def hosts(self, room: str, node: str) -> bool | None:
        """Whether live `node` still hosts `room`, as of the last beat (no Redis call): True,
        False (the map names another node, or none, or `node` is dead), None when this node
        cannot tell (Redis unreachable)."""
        if not self.connected:
            return None
        owner = self.room_map.get(room)
        beat = self.view.get(node)
        if owner is None or owner.node != node or beat is None:
            return False
        return beat.alive(self.now)

    async def handoff_key(self) -> bytes | None:
        """The key every node signs and checks phone hand-offs with (created once, kept in
        Redis: whoever can read the cluster's Redis is inside the cluster anyway)."""
        if self._handoff_key is not None:
            return self._handoff_key
        try:
            await self._redis.set(HANDOFF_KEY, secrets.token_hex(32), nx=True)
            value = await self._redis.get(HANDOFF_KEY)
        except RedisError as exc:
            self._lost(exc)
            return None
        if value:
            self._handoff_key = text_of(value).encode()
        return self._handoff_key

    async def _live_owner(self, room: str) -> NodeBeat | None:
        """The live node (its beat) that hosts `room` when that is not this node, and beat
        within STALE_AFTER (one that stopped beating is not pointed to)."""
        owner = Owner.decode(await self._redis.get(PREFIX + "room:" + room))
        if owner is None or owner.node == self.id:
            return None
        beat, now = await self._owner_beat(owner.node)  # None: the owner is dead
        return beat if beat is not None and now - beat.beat <= STALE_AFTER else None

    def on(self, kind: str, handler: Callable[[dict[str, Any]], None]) -> None:
        self._handlers.setdefault(kind, []).append(handler)

    def notify(self, kind: str, **data: object) -> None:
        """publish() from synchronous code: sent in the background (lost without Redis)."""
        task = asyncio.get_running_loop().create_task(self.publish(kind, **data))
        self._notices.add(task)
        task.add_done_callback(self._notices.discard)

    def on_room_notice(self, kind: str, handler: Callable[[str], None]) -> None:
        """Call `handler(room)` for another node's `kind` notice about a room this node has
        participants in (its own notices it has acted on already)."""

        def receive(message: dict[str, Any]) -> None:
            room = message.get("room")
            if message.get("from") == self.id or not isinstance(room, str):
                return
            if room in self._live_rooms():
                log.info("cluster: room %s: %s from node %s", room, kind, message.get("from"))
                handler(room)

        self.on(kind, receive)

    async def publish(self, kind: str, **data: object) -> bool:
        """Send a message to every node (and this one); False when Redis is unreachable
        (the message is lost: receivers resync by reading state anyway)."""
        try:
            await self._redis.publish(CHANNEL, json.dumps({"kind": kind, "from": self.id,
                                                           **data}))  # fmt: skip
            return True
        except RedisError as exc:
            self._lost(exc)
            return False

    async def status(self) -> dict[str, Any]:
        """GET /api/cluster: {"nodes": [{"id", "alive", "load", "rooms"}], "rooms": {...}},
        read from Redis now. ClusterUnavailable when it cannot be reached."""
        try:
            now = self.now = await self._time()
            beats = await self._read_beats()
            room_map = await self._read_map()
            draining = {text_of(k) for k in await self._redis.hkeys(DRAINING)}
        except RedisError as exc:
            self._lost(exc)
            raise ClusterUnavailable("the cluster's Redis is unreachable") from exc
        counts: dict[str, int] = {}
        for owner in room_map.values():
            counts[owner.node] = counts.get(owner.node, 0) + 1
        nodes = [{"id": b.id, "alive": b.alive(now), "load": b.load,
                  "rooms": counts.get(b.id, 0), "draining": b.id in draining}
                 for b in sorted(beats.values(), key=lambda b: b.id)]  # fmt: skip
        return {"nodes": nodes, "rooms": {r: o.node for r, o in sorted(room_map.items())}}

    def stats(self) -> dict[str, int]:
        return {
            "cluster_connected": int(self.connected),
            "cluster_nodes_alive": len(alive_nodes(self.view.values(), self.now)),
            "cluster_rooms_owned": len(self.claims.tokens),
            "cluster_load_permille": int(self.load * 1000),
            "cluster_draining": int(not self.accepting),
        }

    # -- the heartbeat -------------------------------------------------------------------

    async def _beat_loop(self) -> None:
        while not self._stopping:
            began = time.monotonic()
            try:
                await self.tick()
            except RedisError as exc:
                self._lost(exc)
            except Exception:
                log.exception("cluster: node %s: heartbeat failed", self.id)
            await asyncio.sleep(max(0.05, HEARTBEAT - (time.monotonic() - began)))

    async def tick(self) -> None:
        """One heartbeat: beat, claim and release, read the others, take over orphans."""
        now = self.now = await self._time()
        if not self.connected:
            self.connected = True
            self._outage_logged = False
            if self.ticks:
                log.warning("cluster: node %s reconnected to Redis: resynchronising", self.id)
            else:
                log.info("cluster: node %s connected to Redis", self.id)
            await self._resync(now)
        self._apply_drain(DrainOrder.decode(await self._redis.hget(DRAINING, self.id)))
        live = dict(self._live_rooms())
        self.load = stress(participants=sum(live.values()), legs=self.legs(),
                           rooms=len(live), recent_joins=self.joins.count(now))  # fmt: skip
        beat = {"id": self.id, "beat": now, "load": self.load, "rooms": len(self.claims.tokens),
                "public_url": self.settings.public_url, "accepting": self.accepting,
                "sip": self.settings.sip}
        text = json.dumps(beat)
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(PREFIX + "node:" + self.id, text, px=int(DEAD_AFTER * 1000))
        pipe.hset(PREFIX + "nodes", self.id, text)
        await pipe.execute()
        for room in self.claims.unclaimed(live):
            owner = await self._try_claim(room)
            if owner is not None and owner.node != self.id and room not in self._split:
                self._split.add(room)  # once per room (a phone leg stays, say)
                log.error("cluster: room %s has people here but node %s hosts it: its "
                          "browsers here are sent there", room, owner.node)
                if self.on_lost_room is not None:
                    self.on_lost_room(room)
        self._split &= set(live)
        release = set(self.claims.to_release(live, now))
        if self.drain_order is not None:  # empty rooms leave a draining node at once
            release.update(drain_plan(self.claims.tokens, live, force=False)[0])
        for room in sorted(release):
            await self._give_back(room)
        held = dict(self.claims.tokens)  # a join may claim while the map is read below
        self.view = await self._read_beats()
        self.room_map = await self._read_map()
        for room, token in held.items():  # lost or taken meanwhile?
            if self.claims.tokens.get(room) != token:
                continue  # given back or claimed anew meanwhile
            owner = self.room_map.get(room)
            if owner is None or owner.node != self.id or owner.token != token:
                log.warning("cluster: room %s: this node's claim is gone (%s)", room,
                            f"now node {owner.node}" if owner else "not in the map")
                self.claims.forget(room)
        self._adopt(now)
        if self.drain_order is not None and self.drain_order.force:
            await self._move_away(live, now)
        await self._take_over(now)
        self.ticks += 1

    async def _take_over(self, now: float) -> None:
        lost = orphans(self.room_map, self.view.values(), now)
        if not lost:
            return
        chosen = choose_node(self.view.values(), now)
        if chosen is None or chosen.id != self.id:
            return  # the least stressed live node does it
        for room in lost:
            dead = self.room_map[room].node
            owner = await self._try_claim(room, announce=False)
            if owner is not None and owner.node == self.id:
                log.warning("cluster: room %s re-homed here from dead node %s", room, dead)
                self.room_map[room] = owner
                self._rehomed(room)

    async def _resync(self, now: float) -> None:
        """After a (re)connect: messages sent meanwhile are lost; claims may be too (a
        restarted Redis). Re-claim every room this node still hosts."""
        self.claims = Claims(last_active=dict(self.claims.last_active))
        for room in sorted(self._live_rooms()):
            await self._try_claim(room)  # a room taken over meanwhile: see tick()
        for room, owner in (await self._read_map()).items():
            if owner.node == self.id and room not in self.claims.tokens:
                # this node's id, from before a quick restart: held, and given back if
                # nobody comes within RELEASE_AFTER
                self.claims.claimed(room, owner.token, now)
                log.info("cluster: room %s: claim kept from this node's last run", room)

    # -- Redis ---------------------------------------------------------------------------

    async def _time(self) -> float:
        seconds, micros = await self._redis.time()
        return float(seconds) + float(micros) / 1e6

    def _rehomed(self, room: str) -> None:
        if self.on_rehomed is not None:
            try:
                self.on_rehomed(room)
            except Exception:
                log.exception("cluster: room %s: re-homing handler failed", room)

    async def _try_claim(self, room: str, *, announce: bool = True) -> Owner | None:
        """Claim `room` unless a live node owns it; the owner after the script. `announce`:
        a room taken from a dead node here calls `on_rehomed` (the take-over does it
        itself)."""
        before = self.room_map.get(room)
        value = await self._claim(keys=[PREFIX + "room:" + room, PREFIX + "fence",
                                        PREFIX + "rooms"],
                                  args=[self.id, PREFIX + "node:", room])  # fmt: skip
        owner = Owner.decode(value)
        if owner is not None and owner.node == self.id and room not in self.claims.tokens:
            self.claims.claimed(room, owner.token, self.now)
            log.info("cluster: room %s claimed by node %s (token %d)", room, self.id,
                     owner.token)
            if announce and before is not None and before.node != self.id:
                log.warning("cluster: room %s taken from dead node %s at a join", room,
                            before.node)
                self._rehomed(room)
        return owner

    async def _give_back(self, room: str) -> None:
        token = self.claims.tokens.get(room)
        self.claims.forget(room)
        if token is None:
            return
        done = await self._release(keys=[PREFIX + "room:" + room, PREFIX + "rooms"],
                                   args=[Owner(self.id, token).encode(), room])  # fmt: skip
        log.info("cluster: room %s released by node %s%s", room, self.id,
                 "" if done else " (already taken over)")
        if room in self.claims.tokens:  # a join claimed it again while it was released
            self.claims.forget(room)
            await self._try_claim(room)

    async def _read_beats(self) -> dict[str, NodeBeat]:
        stored = await self._redis.hgetall(PREFIX + "nodes")
        raw = {text_of(k): text_of(v) for k, v in stored.items()}
        live_keys = await self._redis.mget([PREFIX + "node:" + n for n in raw]) if raw else []
        out: dict[str, NodeBeat] = {}
        stale: list[str] = []
        for (node, text), current in zip(raw.items(), live_keys, strict=True):
            beat = beat_of(text_of(current) if current else text)
            if beat is None:
                continue
            if current is None and beat.alive(self.now):  # the key expired: dead now
                beat = NodeBeat(beat.id, self.now - DEAD_AFTER, beat.load, beat.rooms,
                                beat.public_url, beat.accepting, beat.sip)  # fmt: skip
            if self.now - beat.beat > FORGET_AFTER:
                stale.append(node)
                continue
            out[node] = beat
        if stale:
            await self._redis.hdel(PREFIX + "nodes", *stale)
            await self._redis.hdel(DRAINING, *stale)
        return out

    async def _read_map(self) -> dict[str, Owner]:
        rooms = sorted(text_of(r) for r in await self._redis.smembers(PREFIX + "rooms"))
        if not rooms:
            return {}
        values = await self._redis.mget([PREFIX + "room:" + r for r in rooms])
        out: dict[str, Owner] = {}
        gone: list[str] = []
        for room, value in zip(rooms, values, strict=True):
            owner = Owner.decode(value)
            if owner is None:
                gone.append(room)
            else:
                out[room] = owner
        if gone:
            await self._redis.srem(PREFIX + "rooms", *gone)
        return out

    def _lost(self, exc: BaseException) -> None:
        if self.connected or not self._outage_logged:
            log.error("cluster: node %s lost Redis (%s): it takes no new rooms until Redis "
                      "is back; running conferences go on", self.id, exc)
            self._outage_logged = True
        self.connected = False

    # -- pub/sub -------------------------------------------------------------------------

    async def _listen_loop(self) -> None:
        while not self._stopping:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANNEL)
                while not self._stopping:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._dispatch(message.get("data"))
            except RedisError as exc:
                self._lost(exc)
                await asyncio.sleep(HEARTBEAT)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()

    def _dispatch(self, data: object) -> None:
        try:
            message = json.loads(data) if isinstance(data, str) else None
        except ValueError:
            message = None
        if not isinstance(message, dict) or not isinstance(message.get("kind"), str):
            log.warning("cluster: node %s: ignored a malformed message", self.id)
            return
        for handler in self._handlers.get(message["kind"], []):
            try:
                handler(message)
            except Exception:
                log.exception("cluster: node %s: handler for %s failed", self.id,
                              message["kind"])

    def _on_release(self, message: dict[str, Any]) -> None:
        """A command: give back `room` if this node owns it and nobody is in it here."""
        room = message.get("room")
        if message.get("to") != self.id or not isinstance(room, str):
            return
        if room in self.claims.tokens and room not in self._live_rooms():
            task = asyncio.get_running_loop().create_task(self._give_back(room))
            self._tasks.append(task)
