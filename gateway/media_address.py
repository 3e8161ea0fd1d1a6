"""The remote media address of a phone leg, from its SDP c= line (resolved once, or refused).

``MediaAddressResolver.resolve(host)`` gives the numeric IP a leg sends to and takes media
from, or None (the service answers 488):

- a numeric unicast IP of the leg's family is used as it is (in one spelling), and 0.0.0.0
  or :: (hold) too;
- a host name (a PBX that writes one) is resolved ONCE, when the offer comes, off the event
  loop on at most ``max_pending`` resolver threads, and given up after ``timeout`` seconds;
  the first address of the leg's family is used. Names under ``.invalid`` (RFC 6761) are
  never looked up. When ``max_pending`` look-ups are already running (a flood of offers
  naming hosts that never answer) the offer is refused at once instead of queueing;
- anything else (127.0.0.999, an IPv6 address on an IPv4 leg, multicast, garbage) is
  refused.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gateway.sip.sdp import media_host_kind

log = logging.getLogger(__name__)

RESOLVE_TIMEOUT = 2.0   # seconds for one host name
MAX_PENDING = 4         # host name look-ups running at once


class MediaAddressResolver:
    def __init__(self, ipv6: bool, *, timeout: float = RESOLVE_TIMEOUT,
                 max_pending: int = MAX_PENDING) -> None:
        self.ipv6 = ipv6
        self.timeout = timeout
        self.max_pending = max_pending
        self._pending = 0
        self._executor: ThreadPoolExecutor | None = None

    def usable_now(self, host: str) -> str | None:
        """The address to use when no look-up is needed (a numeric IP or hold), else None."""
        kind = media_host_kind(host, self.ipv6)
        if kind == "hold":
            return host
        if kind == "ip":
            return str(ipaddress.ip_address(host))
        return None

    def needs_lookup(self, host: str) -> bool:
        return media_host_kind(host, self.ipv6) == "name"

    async def resolve(self, host: str, call_id: str = "") -> str | None:
        """The numeric address for a c= host, or None when it is unusable (see the module)."""
        ready = self.usable_now(host)
        if ready is not None or not self.needs_lookup(host):
            return ready
        name = host.lower().removesuffix(".")
        if name == "invalid" or name.endswith(".invalid"):
            return None
        if self._pending >= self.max_pending:
            log.warning("call %s: %d media host names already being resolved: refused",
                        call_id, self._pending)
            return None
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.max_pending, "media-resolver")
        family = socket.AF_INET6 if self.ipv6 else socket.AF_INET
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, socket.getaddrinfo, name, None, family,
                                      socket.SOCK_DGRAM)
        self._pending += 1
        future.add_done_callback(self._done)
        try:
            infos = await asyncio.wait_for(asyncio.shield(future), self.timeout)
        except (OSError, UnicodeError, TimeoutError) as exc:
            log.info("call %s: media host name not resolved: %s", call_id,
                     type(exc).__name__)
            return None
        for info in infos:
            address = str(info[4][0])
            if media_host_kind(address, self.ipv6) == "ip":
                return str(ipaddress.ip_address(address))
        return None

    def _done(self, future: asyncio.Future[Any]) -> None:
        self._pending -= 1
        if not future.cancelled():
            future.exception()   # retrieved: a late failure is not "never retrieved"

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
