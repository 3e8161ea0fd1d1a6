"""A Redis in memory with the few commands cluster/room_state.py sends (hash, list, expire,
pipelines), for the rooms' memory tests: two `Meetings` on one `FakeRedis` are two nodes on
one Redis."""

from __future__ import annotations

from typing import Any


class FakeRedis:
    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, str]] = {}
        self.lists: dict[str, list[str]] = {}
        self.ttl: dict[str, int] = {}
        self.down = False  # every command raises ConnectionError
        self.commands = 0

    def _check(self) -> None:
        if self.down:
            from redis.exceptions import ConnectionError as RedisConnectionError

            raise RedisConnectionError("fake Redis is down")
        self.commands += 1

    def pipeline(self, transaction: bool = False) -> FakePipeline:
        return FakePipeline(self)

    async def hget(self, key: str, field: str) -> str | None:
        self._check()
        return self.hashes.get(key, {}).get(field)

    async def hgetall(self, key: str) -> dict[str, str]:
        self._check()
        return dict(self.hashes.get(key, {}))

    async def aclose(self) -> None:
        pass

    # -- applied by a pipeline ------------------------------------------------------------

    def apply(self, name: str, args: tuple[Any, ...]) -> Any:
        self._check()
        if name == "hset":
            key, field, value = args
            self.hashes.setdefault(key, {})[field] = value
            return 1
        if name == "hdel":
            key, field = args
            return int(self.hashes.get(key, {}).pop(field, None) is not None)
        if name == "hgetall":
            return dict(self.hashes.get(args[0], {}))
        if name == "rpush":
            key, value = args
            self.lists.setdefault(key, []).append(value)
            return len(self.lists[key])
        if name == "ltrim":
            key, start, stop = args
            values = self.lists.get(key, [])
            end = len(values) + stop + 1 if stop < 0 else stop + 1
            begin = max(0, len(values) + start) if start < 0 else start
            self.lists[key] = values[begin:end]
            return True
        if name == "lrange":
            key, start, stop = args
            values = self.lists.get(key, [])
            end = len(values) + stop + 1 if stop < 0 else stop + 1
            begin = max(0, len(values) + start) if start < 0 else start
            return values[begin:end]
        if name == "expire":
            key, seconds = args
            if key in self.hashes or key in self.lists:
                self.ttl[key] = seconds
                return 1
            return 0
        raise AssertionError(f"unexpected command {name}")


class FakePipeline:
    def __init__(self, redis: FakeRedis) -> None:
        self.redis = redis
        self.queued: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        def queue(*args: Any) -> FakePipeline:
            self.queued.append((name, args))
            return self

        return queue

    async def execute(self) -> list[Any]:
        return [self.redis.apply(name, args) for name, args in self.queued]
