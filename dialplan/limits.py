"""Admission limits shared by the SIP and HTTP edges (sans-I/O: time comes in as `now`).

- `Networks`: a set of IP networks (CIDR or single addresses), for "who is trusted" and
  "who may send calls"; a host that is not a numeric IP is in no network.
- `RateLimiter`: one token bucket per key (a source address): `rate` tokens a second up to
  `burst`. Memory is bounded: at most `max_keys` buckets; when full, the least recently
  used one is dropped (a bucket unused for `burst / rate` seconds is full again anyway, so
  dropping it forgets nothing that matters).
- `ConcurrencyLimit`: things in progress per key (calls in setup, connections), with a cap
  per key and an optional cap in all; `acquire` says no instead of counting past a cap, and
  every `acquire` that said yes is paired with one `release`.

The key should be the host alone: source ports change from request to request.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["ConcurrencyLimit", "Networks", "RateLimiter"]

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Networks:
    """IP networks; `host in networks` is False for anything that is not a numeric IP."""

    __slots__ = ("_networks",)

    def __init__(self, networks: Iterable[str] = ()) -> None:
        """Each item "10.0.0.0/8", "192.0.2.7" or "::1"; ValueError names a bad one."""
        parsed: list[IpNetwork] = []
        for text in networks:
            try:
                parsed.append(ipaddress.ip_network(text.strip(), strict=False))
            except ValueError:
                raise ValueError(f"expected an IP address or network, got {text!r}") from None
        self._networks = tuple(parsed)

    def __contains__(self, host: object) -> bool:
        if not isinstance(host, str) or not self._networks:
            return False
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._networks)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def __repr__(self) -> str:
        return f"Networks({[str(n) for n in self._networks]!r})"


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """Token buckets per key, at most `max_keys` of them."""

    def __init__(self, rate: float, burst: float, *, max_keys: int = 10_000) -> None:
        if rate <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate limiter: expected rate > 0, burst >= 1, max_keys >= 1")
        self.rate = rate
        self.burst = float(burst)
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def allow(self, key: str, now: float, cost: float = 1.0) -> bool:
        """Take `cost` tokens from `key`'s bucket; False (and nothing taken) when short."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(self.burst, now)
            self._buckets[key] = bucket
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            if now > bucket.at:
                bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
                bucket.at = now
        if bucket.tokens < cost:
            return False
        bucket.tokens -= cost
        return True

    def __len__(self) -> int:
        return len(self._buckets)


class ConcurrencyLimit:
    """Counts in progress per key, capped at `per_key` each and `total` in all (None: none)."""

    def __init__(self, per_key: int, total: int | None = None) -> None:
        if per_key < 1 or (total is not None and total < 1):
            raise ValueError("concurrency limit: expected per_key >= 1 and total >= 1")
        self.per_key = per_key
        self.total = total
        self._counts: dict[str, int] = {}
        self._sum = 0

    def acquire(self, key: str) -> bool:
        count = self._counts.get(key, 0)
        if count >= self.per_key or (self.total is not None and self._sum >= self.total):
            return False
        self._counts[key] = count + 1
        self._sum += 1
        return True

    def release(self, key: str) -> None:
        count = self._counts.get(key, 0)
        if count <= 0:
            return
        self._sum -= 1
        if count == 1:
            del self._counts[key]
        else:
            self._counts[key] = count - 1

    def count(self, key: str) -> int:
        return self._counts.get(key, 0)

    def __len__(self) -> int:
        """Everything in progress, all keys together."""
        return self._sum
