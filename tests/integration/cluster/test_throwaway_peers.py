"""The throwaway Redis and PostgreSQL start, answer, and keep tests apart."""

from __future__ import annotations

import psycopg
from peers.postgres import PostgresInstance
from peers.redis import RedisInstance


def test_redis_answers(redis_server: RedisInstance, redis_url: str) -> None:
    assert redis_server.ping()
    assert redis_server.command("SET", "k", "v") == b"+OK\r\n"
    assert redis_server.command("GET", "k") == b"$1\r\nv\r\n"


def test_each_test_gets_its_own_database(postgres_server: PostgresInstance,
                                         postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (x int)")
        name = conn.execute("SELECT current_database()").fetchone()
    assert name is not None and name[0].startswith("t_")
    assert postgres_server.process.running()
