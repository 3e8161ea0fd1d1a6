"""Where a trunk's requests go: RFC 3263 (locating SIP servers) for its configured host.

The rules, in the order an address meets them:

1. A numeric IP address is used as it is, with its port (given, else the transport's
   default: 5060, 5061 for TLS).
2. A host name with a port given: its A and AAAA records, with that port.
3. A host name without a port: the SRV records of the trunk's transport, `_sip._udp.`,
   `_sip._tcp.` or `_sips._tcp.` + the name (RFC 3263 4.2; the transport is the trunk's,
   so no NAPTR step), ordered by priority, and within a priority by RFC 2782's weighted
   random draw; each target's A and AAAA records, with the SRV port. A target "." means
   the service is not offered there. No SRV records at all: the name's A/AAAA records with
   the transport's default port (RFC 3263 4.2, last paragraph).
4. Answers are cached for `min(TTL, cache_ttl)` seconds (30 s by default), so each
   registration refresh and each dial-out resolves again, not once at start; a failed
   lookup is not cached.

Lookups go through dnspython's asyncio resolver (never blocking the loop), to the system's
name servers or to `sip.dns_server`; the resolver is injectable for tests (`Lookup`).
"""

from __future__ import annotations

import ipaddress
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import dns.asyncresolver
import dns.exception
import dns.resolver

from dialplan.trunks import DEFAULT_PORTS, TrunkRecord

__all__ = ["Lookup", "Resolved", "TrunkResolver", "srv_name", "srv_order"]

log = logging.getLogger(__name__)

SRV_SERVICES = {"udp": "_sip._udp", "tcp": "_sip._tcp", "tls": "_sips._tcp"}
CACHE_TTL = 30.0
LOOKUP_TIMEOUT = 5.0


class DnsError(Exception):
    """A name that does not resolve (the message says which and why)."""


@dataclass(frozen=True, slots=True)
class Srv:
    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True, slots=True)
class Answer:
    """One lookup's records and their TTL."""

    records: tuple[str, ...] | tuple[Srv, ...]
    ttl: float


class Lookup(Protocol):
    """One DNS question: `kind` "SRV", "A" or "AAAA"; an empty answer when the name has no
    such records; DnsError when the lookup itself fails (no server, timeout)."""

    def __call__(self, name: str, kind: str) -> Awaitable[Answer]: ...


@dataclass(frozen=True, slots=True)
class Resolved:
    """A trunk's addresses, in the order to try them; `how` for logs."""

    addresses: tuple[tuple[str, int], ...]
    how: str


def srv_name(host: str, transport: str) -> str:
    return f"{SRV_SERVICES[transport]}.{host.rstrip('.')}."


def srv_order(records: list[Srv], rng: Callable[[], float] = random.random) -> list[Srv]:
    """RFC 2782: lowest priority first; within one priority, zero weights first, then a
    number drawn in [0, sum of weights] picks the first record whose running sum reaches
    it; that record is taken out and the draw repeats."""
    ordered: list[Srv] = []
    for priority in sorted({r.priority for r in records}):
        group = sorted((r for r in records if r.priority == priority),
                       key=lambda r: r.weight != 0)
        while group:
            pick = rng() * sum(r.weight for r in group)
            running = 0
            chosen = group[-1]
            for record in group:
                running += record.weight
                if running >= pick:
                    chosen = record
                    break
            ordered.append(chosen)
            group.remove(chosen)
    return ordered


def dnspython_lookup(server: str = "", port: int = 53,
                     timeout: float = LOOKUP_TIMEOUT) -> Lookup:
    """A Lookup on dnspython's asyncio resolver: the system's name servers (read at the
    first lookup: a machine without /etc/resolv.conf fails lookups, not the start), or
    `server`."""
    made: list[dns.asyncresolver.Resolver] = []

    def resolver() -> dns.asyncresolver.Resolver:
        if not made:
            made.append(dns.asyncresolver.Resolver(configure=not server))
            if server:
                made[0].nameservers = [server]
                made[0].port = port
            made[0].lifetime = timeout
        return made[0]

    async def lookup(name: str, kind: str) -> Answer:
        try:
            answer = await resolver().resolve(name, kind, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return Answer((), CACHE_TTL)
        except (dns.exception.DNSException, OSError) as exc:
            raise DnsError(f"{kind} {name}: {exc.__class__.__name__}: {exc}") from None
        ttl = float(answer.rrset.ttl) if answer.rrset is not None else CACHE_TTL
        if kind == "SRV":
            return Answer(tuple(Srv(r.priority, r.weight, r.port, r.target.to_text())
                                for r in answer), ttl)
        return Answer(tuple(r.address for r in answer), ttl)

    return lookup


class TrunkResolver:
    def __init__(self, lookup: Lookup | None = None, *, cache_ttl: float = CACHE_TTL,
                 clock: Callable[[], float] = time.monotonic,
                 rng: Callable[[], float] = random.random) -> None:
        self._lookup = lookup or dnspython_lookup()
        self._cache_ttl = cache_ttl
        self._clock = clock
        self._rng = rng
        self._cache: dict[tuple[str, str], tuple[float, Answer]] = {}

    async def resolve_trunk(self, trunk: TrunkRecord) -> Resolved:
        """The trunk's primary then failover addresses (rules 1-3); DnsError when none
        resolves."""
        found: list[tuple[str, int]] = []
        how: list[str] = []
        errors: list[str] = []
        for address in [trunk.address] + ([trunk.failover] if trunk.failover else []):
            try:
                resolved = await self.resolve(address.host, address.port if
                                              address.port_given else None, trunk.transport)
            except DnsError as exc:
                errors.append(str(exc))
                continue
            found.extend(a for a in resolved.addresses if a not in found)
            how.append(resolved.how)
        if not found:
            raise DnsError("; ".join(errors) or f"trunk {trunk.name}: no address")
        return Resolved(tuple(found), "; ".join(how))

    async def resolve(self, host: str, port: int | None, transport: str) -> Resolved:
        """Rules 1-3 for one host; `port` None: not given (SRV applies)."""
        try:
            ipaddress.ip_address(host)
            return Resolved(((host, port or DEFAULT_PORTS[transport]),), "address")
        except ValueError:
            pass
        if port is not None:
            hosts = await self._addresses(host)
            return Resolved(tuple((h, port) for h in hosts), f"A/AAAA {host}")
        name = srv_name(host, transport)
        srv = [r for r in (await self._cached(name, "SRV")).records if isinstance(r, Srv)]
        if not srv:
            hosts = await self._addresses(host)
            return Resolved(tuple((h, DEFAULT_PORTS[transport]) for h in hosts),
                            f"no SRV {name}: A/AAAA {host}")
        found: list[tuple[str, int]] = []
        errors: list[str] = []
        for record in srv_order(srv, self._rng):
            if record.target in (".", ""):
                continue
            try:
                hosts = await self._addresses(record.target)
            except DnsError as exc:
                errors.append(str(exc))
                continue
            found.extend((h, record.port) for h in hosts if (h, record.port) not in found)
        if not found:
            raise DnsError(f"SRV {name}: no target resolves" +
                           (f" ({'; '.join(errors)})" if errors else ""))
        return Resolved(tuple(found), f"SRV {name}")

    async def _addresses(self, host: str) -> list[str]:
        name = host if host.endswith(".") else host + "."
        found: list[str] = []
        errors: list[str] = []
        for kind in ("A", "AAAA"):
            try:
                answer = await self._cached(name, kind)
            except DnsError as exc:
                errors.append(str(exc))
                continue
            found.extend(r for r in answer.records if isinstance(r, str))
        if not found:
            raise DnsError(f"{host}: no address" + (f" ({'; '.join(errors)})"
                                                     if errors else ""))
        return found

    async def _cached(self, name: str, kind: str) -> Answer:
        now = self._clock()
        key = (name.lower(), kind)
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        answer = await self._lookup(name, kind)
        self._cache[key] = (now + min(answer.ttl, self._cache_ttl), answer)
        if len(self._cache) > 1000:  # bounded: the oldest expiries go first
            for stale in sorted(self._cache, key=lambda k: self._cache[k][0])[:100]:
                del self._cache[stale]
        return answer
