"""A throwaway redis-server on a free 127.0.0.1 port (PEERS.md): no persistence, its folder
removed when it stops. `redis_server` (session) shares one per test session; tests keep apart
by key prefix (each cluster test names its own node ids) or flush it."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from peers import procs
from peers.throwaway import Throwaway, new_folder, require


@dataclass
class RedisInstance:
    port: int
    process: Throwaway

    @property
    def url(self) -> str:
        return f"redis://{procs.LOOPBACK}:{self.port}/0"

    def ping(self) -> bool:
        try:
            with socket.create_connection((procs.LOOPBACK, self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def command(self, *args: str) -> bytes:
        """One command in RESP; the raw reply (for a test's FLUSHALL or a peek)."""
        parts = [f"*{len(args)}\r\n".encode()]
        for a in args:
            parts.append(f"${len(a.encode())}\r\n{a}\r\n".encode())
        with socket.create_connection((procs.LOOPBACK, self.port), timeout=2.0) as s:
            s.sendall(b"".join(parts))
            return s.recv(65536)


def start_redis(port: int | None = None) -> RedisInstance:
    """A new server; on `port` when given (a restart of one that was stopped)."""
    binary = require("redis-server", "redis-server")
    folder = new_folder("sb-redis-")
    port = port if port is not None else procs.free_port(kinds=("tcp",))
    process = Throwaway("redis-server", folder)
    process.start([binary, "--bind", procs.LOOPBACK, "--port", str(port), "--save", "",
                   "--appendonly", "no", "--dir", str(folder), "--daemonize", "no"])
    instance = RedisInstance(port=port, process=process)
    process.wait_ready(instance.ping, timeout=15.0)
    return instance


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisInstance]:
    instance = start_redis()
    yield instance
    instance.process.stop()


@pytest.fixture
def redis_url(redis_server: RedisInstance) -> str:
    """The shared server, emptied for this test."""
    redis_server.command("FLUSHALL")
    return redis_server.url
