"""Admission limits: networks, token buckets per key, concurrency per key (no sockets)."""

from __future__ import annotations

import pytest

from dialplan.limits import ConcurrencyLimit, Networks, RateLimiter


def test_networks_match_addresses_and_cidr() -> None:
    trusted = Networks(["127.0.0.0/8", "::1", "192.0.2.7"])
    assert "127.0.0.1" in trusted and "127.9.9.9" in trusted
    assert "::1" in trusted and "192.0.2.7" in trusted
    assert "192.0.2.8" not in trusted and "10.0.0.1" not in trusted
    assert "::ffff:127.0.0.1" in trusted  # IPv4-mapped
    assert "pbx.example.com" not in trusted and "127.0.0.999" not in trusted
    assert "" not in trusted and None not in trusted
    assert not Networks() and "127.0.0.1" not in Networks()


def test_networks_name_a_bad_entry() -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0\.0/33'"):
        Networks(["10.0.0.0/33"])


def test_rate_limiter_bursts_then_refills() -> None:
    limiter = RateLimiter(rate=10, burst=5)
    assert all(limiter.allow("a", 0.0) for _ in range(5))
    assert not limiter.allow("a", 0.0)
    assert limiter.allow("b", 0.0)  # keys are separate
    assert not limiter.allow("a", 0.05)  # half a token
    assert limiter.allow("a", 0.1)
    assert all(limiter.allow("a", 100.0) for _ in range(5))  # full again, never past burst
    assert not limiter.allow("a", 100.0)


def test_rate_limiter_cost_is_not_taken_when_short() -> None:
    limiter = RateLimiter(rate=1, burst=3)
    assert not limiter.allow("a", 0.0, cost=4)
    assert limiter.allow("a", 0.0, cost=3)


def test_rate_limiter_memory_is_bounded() -> None:
    limiter = RateLimiter(rate=1, burst=1, max_keys=100)
    for i in range(10_000):
        limiter.allow(f"10.0.{i // 256}.{i % 256}", float(i))
    assert len(limiter) == 100
    assert not limiter.allow("10.0.39.15", 9999.0)  # the newest keys are kept


def test_concurrency_limit_per_key_and_total() -> None:
    limit = ConcurrencyLimit(per_key=2, total=3)
    assert limit.acquire("a") and limit.acquire("a")
    assert not limit.acquire("a")
    assert limit.acquire("b")
    assert not limit.acquire("c")  # total reached
    limit.release("a")
    assert limit.acquire("c")
    assert len(limit) == 3 and limit.count("a") == 1
    limit.release("zzz")  # never acquired: nothing changes
    assert len(limit) == 3
    for key in ("a", "b", "c"):
        limit.release(key)
    assert len(limit) == 0 and limit.count("a") == 0
