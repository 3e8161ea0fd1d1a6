"""Trunks' registrations on the event loop: the glue between `Registration` (the sans-I/O
state machine, gateway/sip/registration.py) and the user agent.

- `start(trunks)` at server start, `trunk_added`/`trunk_removed` from the API: a trunk with
  register=true gets a Registration; its addresses are resolved first (RFC 3263: SRV for a
  host name without a port, else A/AAAA; gateway/trunk_dns.py, never blocking the loop),
  and again before every refresh or retry the timer sends (a short cache spares the DNS
  server), so a carrier that moves is followed. A name that does not resolve is "failed"
  with the DNS reason and tried again after `retry_base` seconds.
- Each Registration's `RegisterAttempt` becomes `UserAgent.register(...)` with the trunk's
  own Call-ID, From tag and CSeq; the final response (RequestAnswered) or the timeout
  (RequestTimedOut) goes back to it by Call-ID. One loop timer, re-armed to the earliest
  Registration timer, fires refreshes and retries.
- `stop()` and `trunk_removed` un-REGISTER (Expires: 0).
- `sources()`: the addresses each registering trunk's calls come from, for inbound matching
  (dialplan/trunk_match.py): calls sent to the Contact we registered arrive from there.
- Over TLS each resolved address is bound to its trunk (gateway/trunk_tls.py: the trunk's
  `tls_verify`/`tls_ca`), and a connection that cannot be opened (`transport_failed`, e.g.
  a certificate that does not verify) fails the REGISTER at once with that reason.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

from dialplan.trunks import TrunkRecord
from gateway.sip.events import RequestAnswered, RequestTimedOut
from gateway.sip.message import SipResponse
from gateway.sip.peer import Peer
from gateway.sip.registration import Registration, RegistrationSettings
from gateway.sip.uri import NameAddr
from gateway.sip.useragent import UserAgent
from gateway.trunk_dns import DnsError, TrunkResolver
from gateway.trunk_tls import TrunkTls

__all__ = ["TrunkRegistry", "contact_user"]

log = logging.getLogger(__name__)


def contact_user(trunk: TrunkRecord) -> str:
    """The user part of the Contact we register for a trunk."""
    return trunk.username or trunk.name


@dataclass(slots=True)
class _Entry:
    trunk: TrunkRecord
    registration: Registration | None = None
    hosts: tuple[str, ...] = ()  # resolved addresses, primary first
    call_id: str = field(default_factory=lambda: secrets.token_hex(16))
    from_tag: str = field(default_factory=lambda: secrets.token_hex(8))
    removed: bool = False
    dns_error: str = ""  # why the addresses did not resolve (before any Registration)


def _granted(response: SipResponse, user: str, requested: int) -> int | None:
    """The expiry the registrar gave our Contact (its expires param, else Expires)."""
    try:
        contacts = response.contacts
    except Exception:
        contacts = []
    for contact in contacts:
        if contact.uri.user == user and "expires" in contact.params:
            value = contact.params.get("expires") or ""
            if value.isdigit() and len(value) <= 9:
                return int(value)
    value = (response.headers.get("Expires") or "").strip()
    return int(value) if value.isdigit() and len(value) <= 9 else None


class TrunkRegistry:
    def __init__(self, ua: UserAgent, flush: Callable[[], None],
                 retry_base: float = 5.0, forbidden_base: float = 300.0,
                 tls: TrunkTls | None = None, resolver: TrunkResolver | None = None) -> None:
        self._ua = ua
        self._flush = flush
        self._tls = tls
        self.resolver = resolver or TrunkResolver()  # (dial-outs resolve through it too)
        #: the state of trunks whose PBX registers to us (Registrar.state), for the API
        self.inbound_state: Callable[[str, float], tuple[str, str] | None] | None = None
        self._entries: dict[str, _Entry] = {}
        self._by_call: dict[str, _Entry] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.retry_base = retry_base
        self.forbidden_base = forbidden_base

    # -- TrunkControl (web/app.py) ---------------------------------------------------------

    def registration(self, name: str) -> tuple[str, str]:
        inbound = self.inbound_state(name, self._now()) if self.inbound_state else None
        if inbound is not None:  # a PBX registering to us (gateway/registrar.py)
            return inbound
        entry = self._entries.get(name)
        if entry is None:
            return ("off", "the trunk does not register")
        if entry.registration is None:
            if entry.dns_error:
                return ("failed", entry.dns_error)
            return ("registering", "resolving the trunk's address")
        return (entry.registration.state, entry.registration.detail)

    def trunk_added(self, trunk: TrunkRecord) -> None:
        if not trunk.register or trunk.name in self._entries or self._loop is None:
            return
        entry = _Entry(trunk)
        self._entries[trunk.name] = entry
        self._by_call[entry.call_id] = entry
        self._spawn(self._resolve_and_start(entry))

    def trunk_removed(self, trunk: TrunkRecord) -> None:
        entry = self._entries.pop(trunk.name, None)
        if entry is None:
            return
        entry.removed = True
        if self._tls is not None:
            self._tls.unbind(trunk)
        if entry.registration is not None:
            entry.registration.stop(self._now())
            self._pump()
        if entry.registration is None or entry.registration.state == "off":
            self._by_call.pop(entry.call_id, None)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, trunks: Iterable[TrunkRecord]) -> None:
        self._loop = asyncio.get_running_loop()
        for trunk in trunks:
            self.trunk_added(trunk)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for entry in list(self._entries.values()):
            self.trunk_removed(entry.trunk)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def sources(self) -> dict[str, frozenset[str]]:
        """Trunk name -> the hosts its registration's calls arrive from."""
        return {name: frozenset(e.hosts) for name, e in self._entries.items() if e.hosts}

    def stats(self) -> dict[str, int]:
        states = [e.registration.state for e in self._entries.values() if e.registration]
        return {"trunk_registrations": len(self._entries),
                "trunks_registered": states.count("registered")}

    # -- the machinery ---------------------------------------------------------------------

    def _now(self) -> float:
        return self._loop.time() if self._loop is not None else 0.0

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _addresses(self, entry: _Entry) -> tuple[tuple[str, int], ...] | None:
        """The trunk's addresses now (DNS: gateway/trunk_dns.py), bound to it for TLS; None
        when none resolves (logged)."""
        trunk = entry.trunk
        try:
            resolved = await self.resolver.resolve_trunk(trunk)
        except DnsError as exc:
            log.warning("trunk %s: its address does not resolve: %s", trunk.name, exc)
            entry.dns_error = f"DNS: {exc}"
            return None
        if resolved.how != "address":
            log.info("trunk %s: %s -> %s", trunk.name, resolved.how,
                     ", ".join(f"{h}:{p}" for h, p in resolved.addresses))
        entry.dns_error = ""
        entry.hosts = tuple(dict.fromkeys(h for h, _ in resolved.addresses))
        if self._tls is not None:
            for host, port in resolved.addresses:
                self._tls.bind(trunk, Peer(trunk.transport, host, port))
        return resolved.addresses

    async def _resolve_and_start(self, entry: _Entry) -> None:
        assert self._loop is not None
        trunk = entry.trunk
        addresses = await self._addresses(entry)
        if entry.removed:
            return
        if addresses is None:
            entry.dns_error += f"; next attempt in {self.retry_base:.0f} s"
            self._loop.call_later(self.retry_base, lambda: None if entry.removed
                                  else self._spawn(self._resolve_and_start(entry)))
            return
        entry.registration = Registration(RegistrationSettings(
            name=trunk.name, addresses=addresses, username=trunk.username,
            password=trunk.password, domain=str(trunk.address), expires=trunk.expires,
            retry_base=self.retry_base, forbidden_base=self.forbidden_base,
        ))  # fmt: skip
        entry.registration.start(self._now())
        self._pump()

    async def _resolve_due(self) -> None:
        """The timer: the registrations whose refresh or retry is due resolve their
        addresses again (cached briefly), then everything due is sent."""
        now = self._now()
        due = [e for e in self._by_call.values() if e.registration is not None
               and not e.removed and (t := e.registration.get_timer()) is not None
               and t <= now]
        found = await asyncio.gather(*(self._addresses(e) for e in due))  # side by side
        for entry, addresses in zip(due, found, strict=True):
            if addresses is not None and not entry.removed and entry.registration is not None:
                entry.registration.set_addresses(addresses)
        # At the time the due ones were chosen: a registration that fell due since (the
        # loop's timer may fire a fraction of a millisecond early) waits for its own timer,
        # and resolves first, rather than going out here on its old addresses.
        self._pump(now)

    def on_event(self, event: RequestAnswered | RequestTimedOut) -> bool:
        """A response or timeout of a REGISTER; False when it is none of ours."""
        entry = self._by_call.get(event.call_id)
        if entry is None or entry.registration is None:
            return False
        now = self._now()
        reg = entry.registration
        if isinstance(event, RequestTimedOut):
            reg.on_timeout(now, event.cseq)
        else:
            response = event.response
            status = response.status
            header = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
            min_expires = (response.headers.get("Min-Expires") or "").strip()
            reg.on_response(
                status, now, challenges=response.headers.get_all(header),
                min_expires=int(min_expires) if min_expires.isdigit() and
                len(min_expires) <= 9 else None,
                granted=_granted(response, contact_user(entry.trunk), reg.settings.expires)
                if 200 <= status < 300 else None,
            )  # fmt: skip
        if entry.removed and reg.state == "off":
            self._by_call.pop(entry.call_id, None)
        self._pump()
        return True

    def transport_failed(self, dest: Peer, reason: str) -> None:
        """A connection to `dest` could not be opened: the REGISTERs in flight to it fail
        now, with `reason` in their state's detail."""
        now = self._now()
        hit = False
        for entry in self._by_call.values():
            reg = entry.registration
            if reg is not None and entry.trunk.transport == dest.transport \
                    and reg.address == (dest.host, dest.port):
                reg.on_transport_error(reason, now)
                hit = True
        if hit:
            self._pump()

    def _pump(self, now: float | None = None) -> None:
        """Send what every Registration wants sent (its timers as of `now`, default the
        loop's time); re-arm the one timer."""
        if now is None:
            now = self._now()
        sent = False
        for entry in list(self._by_call.values()):
            reg = entry.registration
            if reg is None:
                continue
            reg.handle_timer(now)
            while (attempt := reg.next_attempt()) is not None:
                host, port = attempt.address
                aor = NameAddr.parse(f"<sip:{entry.trunk.username or entry.trunk.name}@"
                                     f"{entry.trunk.address}>")
                self._ua.register(
                    Peer(entry.trunk.transport, host, port), attempt.request_uri, str(aor),
                    contact_user(entry.trunk), call_id=entry.call_id,
                    from_tag=entry.from_tag, cseq=attempt.cseq, expires=attempt.expires,
                    headers=[attempt.authorization] if attempt.authorization else [],
                    now=now,
                )  # fmt: skip
                sent = True
        if sent:
            self._flush()
        self._arm()

    def _arm(self) -> None:
        if self._loop is None:
            return
        deadlines = [t for e in self._by_call.values() if e.registration is not None
                     and (t := e.registration.get_timer()) is not None]
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if deadlines:
            self._timer = self._loop.call_at(min(deadlines), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._spawn(self._resolve_due())
