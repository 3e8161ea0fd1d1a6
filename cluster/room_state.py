"""`RoomState`: the rooms' memory in the cluster's Redis (focus/meeting_resume.py's
`RoomMemory`), so a room re-homed on another node keeps its chat and its people's places.

Keys (per room, each expiring `ttl` seconds after its last write; the node hosting the room
refreshes them every ttl / 3 while people are in it, so they outlive the room by ttl):
- `switchboard:state:ROOM:chat` (list): the room's public chat messages as the page shows
  them (JSON), the last `history` kept (RPUSH + LTRIM). Private messages are never written.
- `switchboard:state:ROOM:people` (hash): SHA-256 of a participant's resume token (hex) ->
  its `Resumed` entry (JSON). Redis holds no usable token; a token is only ever looked up
  under the room joined, so one room's token opens nothing in another.
- `switchboard:state:ROOM:callees` (hash): dial id -> {"number", "trunk", "dtmf",
  "ringing_timeout"} of each answered dial-out with `redial` while it lasts (deleted when
  the call ends on a node that lives): the node that takes the room over from a dead node
  calls them again (gateway.dialout_calls.DialOutCalls.redial).

Writes are queued (bounded: QUEUE_LIMIT, beyond which they are dropped with one log line)
and sent by one task in pipelines, in order; a write never waits for Redis. While Redis is
out of reach writes are dropped (logged once per outage) and reads answer nothing: a browser
then joins anew, as without a cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from focus.meeting_resume import Recalled, Resumed

__all__ = ["QUEUE_LIMIT", "RoomState", "chat_entries", "chat_entry", "token_key"]

log = logging.getLogger(__name__)

PREFIX = "switchboard:state:"
QUEUE_LIMIT = 10_000
BATCH = 256  # writes per pipeline at most
MAX_PEOPLE = 1000  # entries read back per room at most


def token_key(token: str) -> str:
    """What Redis keeps of a resume token: its SHA-256 (hex)."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def chat_entry(message: Mapping[str, object]) -> str | None:
    """A public chat message (protocol.chat) as kept; None for anything else (a private
    message is never kept)."""
    if message.get("type") != "chat":
        return None
    keep = {k: message.get(k) for k in ("type", "from", "name", "text", "ts")}
    return json.dumps(keep, ensure_ascii=False)


def chat_entries(texts: Iterable[str | bytes]) -> list[dict[str, object]]:
    """The kept messages read back, oldest first: the well-formed public ones only."""
    out: list[dict[str, object]] = []
    for text in texts:
        try:
            data = json.loads(text)
        except ValueError:
            continue
        if isinstance(data, dict) and data.get("type") == "chat" and \
                isinstance(data.get("text"), str) and isinstance(data.get("from"), str) and \
                isinstance(data.get("name"), str) and \
                isinstance(data.get("ts"), (int, float)):  # fmt: skip
            out.append({k: data[k] for k in ("type", "from", "name", "text", "ts")})
    return out


def _chat_key(room: str) -> str:
    return f"{PREFIX}{room}:chat"


def _people_key(room: str) -> str:
    return f"{PREFIX}{room}:people"


def _callees_key(room: str) -> str:
    return f"{PREFIX}{room}:callees"


class RoomState:
    """The rooms' memory for one node (see the module's docstring)."""

    def __init__(self, redis_url: str, *, history: int, ttl: float,
                 live_rooms: Callable[[], Iterable[str]] = lambda: (),
                 client: Any = None) -> None:  # fmt: skip
        self.history = max(1, history)
        self.ttl = max(1, int(ttl))
        self._live_rooms = live_rooms  # rooms with people here: their keys are refreshed
        self._redis: Any = client if client is not None else aioredis.from_url(
            redis_url, decode_responses=True, socket_connect_timeout=1.0, socket_timeout=1.5,
            retry=Retry(NoBackoff(), 0), health_check_interval=5,
        )  # fmt: skip
        self._queue: asyncio.Queue[tuple[str, str, str, str]] = asyncio.Queue(QUEUE_LIMIT)
        self._tasks: list[asyncio.Task[None]] = []
        self._outage = False
        self._closed = False
        self._dropped = 0
        self.written = 0  # writes sent (stats, tests)

    # -- RoomMemory ----------------------------------------------------------------------

    def remember_person(self, room: str, token: str, person: Resumed) -> None:
        self._put(("person", room, token_key(token), person.encode()))

    def forget_person(self, room: str, token: str) -> None:
        self._put(("forget", room, token_key(token), ""))

    def remember_chat(self, room: str, message: Mapping[str, object]) -> None:
        entry = chat_entry(message)
        if entry is not None:
            self._put(("chat", room, "", entry))

    # -- gateway.dialout_calls.CalleeMemory -----------------------------------------------

    def remember_callee(self, room: str, key: str, entry: dict[str, object]) -> None:
        self._put(("callee", room, key, json.dumps(entry)))

    def forget_callee(self, room: str, key: str) -> None:
        self._put(("uncallee", room, key, ""))

    async def callees(self, room: str) -> dict[str, dict[str, object]]:
        """Answered callees with `redial` of `room`: dial id -> entry (the number, trunk,
        DTMF, ringing timeout)."""
        await self._settle()
        raw = await self._redis.hgetall(_callees_key(room))
        out: dict[str, dict[str, object]] = {}
        for key, text in list(raw.items())[:MAX_PEOPLE]:
            try:
                entry = json.loads(text)
            except ValueError:
                continue
            if isinstance(entry, dict):
                out[str(key)] = entry
        return out

    async def recall(self, room: str) -> Recalled:
        await self._settle()  # this node's own writes first
        pipe = self._redis.pipeline(transaction=False)
        pipe.lrange(_chat_key(room), -self.history, -1)
        pipe.hgetall(_people_key(room))
        chat, people = await pipe.execute()
        found = [x for x in (Resumed.decode(v) for v in list(people.values())[:MAX_PEOPLE])
                 if x is not None]  # fmt: skip
        return Recalled(chat_entries(chat), found)

    async def resume(self, room: str, token: str) -> Resumed | None:
        await self._settle()
        return Resumed.decode(await self._redis.hget(_people_key(room), token_key(token)))

    # -- running -------------------------------------------------------------------------

    def _ensure_started(self) -> None:
        """The writer and the refresher start with the first use (in the event loop)."""
        if not self._tasks and not self._closed:
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(self._write_loop()),
                           loop.create_task(self._refresh_loop())]  # fmt: skip

    async def close(self) -> None:
        """Send what is queued (2 s at most), stop, close the connection."""
        self._closed = True
        with contextlib.suppress(asyncio.TimeoutError, RedisError, OSError):
            await asyncio.wait_for(self.flush(), 2.0)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._redis.aclose()

    async def flush(self) -> None:
        """Wait until every write queued so far has been sent (or dropped)."""
        if self._tasks:
            await self._queue.join()

    async def _settle(self) -> None:
        """Before a read: this node's queued writes sent (1 s at most)."""
        self._ensure_started()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.flush(), 1.0)

    def stats(self) -> dict[str, int]:
        return {"room_state_queued": self._queue.qsize(), "room_state_dropped": self._dropped}

    def _put(self, op: tuple[str, str, str, str]) -> None:
        if self._closed:
            return
        self._ensure_started()
        try:
            self._queue.put_nowait(op)
        except asyncio.QueueFull:
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 1000 == 0:
                log.error("room state: %d writes dropped (the queue to Redis is full)",
                          self._dropped)  # fmt: skip

    async def _write_loop(self) -> None:
        while True:
            ops = [await self._queue.get()]
            while len(ops) < BATCH and not self._queue.empty():
                ops.append(self._queue.get_nowait())
            try:
                await self._send(ops)
                self.written += len(ops)
                if self._outage:
                    log.warning("room state: Redis answers again")
                    self._outage = False
            except (RedisError, OSError) as exc:
                self._dropped += len(ops)
                if not self._outage:
                    log.error("room state: Redis unreachable (%s): rooms' chat and resume "
                              "entries are not kept meanwhile", exc)
                    self._outage = True
            finally:
                for _ in ops:
                    self._queue.task_done()

    async def _send(self, ops: list[tuple[str, str, str, str]]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        touched: set[str] = set()
        for kind, room, field, value in ops:
            if kind == "person":
                pipe.hset(_people_key(room), field, value)
                touched.add(_people_key(room))
            elif kind == "forget":
                pipe.hdel(_people_key(room), field)
            elif kind == "callee":
                pipe.hset(_callees_key(room), field, value)
                touched.add(_callees_key(room))
            elif kind == "uncallee":
                pipe.hdel(_callees_key(room), field)
            elif kind == "chat":
                pipe.rpush(_chat_key(room), value)
                pipe.ltrim(_chat_key(room), -self.history, -1)
                touched.add(_chat_key(room))
        for key in sorted(touched):
            pipe.expire(key, self.ttl)
        await pipe.execute()

    async def _refresh_loop(self) -> None:
        """Keep the keys of the rooms with people here from expiring."""
        while True:
            await asyncio.sleep(max(1.0, self.ttl / 3))
            rooms = sorted(set(self._live_rooms()))
            if not rooms:
                continue
            try:
                pipe = self._redis.pipeline(transaction=False)
                for room in rooms:
                    pipe.expire(_chat_key(room), self.ttl)
                    pipe.expire(_people_key(room), self.ttl)
                    pipe.expire(_callees_key(room), self.ttl)
                await pipe.execute()
            except (RedisError, OSError) as exc:
                log.warning("room state: keys not refreshed (%s)", exc)
