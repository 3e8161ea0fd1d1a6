"""Fixtures for the cluster tests: one throwaway Redis and one PostgreSQL per test session
(tests/integration/peers/redis.py, postgres.py), a database per test."""

from peers.postgres import postgres_server, postgres_url
from peers.redis import redis_server, redis_url

__all__ = ["postgres_server", "postgres_url", "redis_server", "redis_url"]
