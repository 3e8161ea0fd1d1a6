"""Throttling PIN guessing across calls (sans-I/O: time comes in as `now`).

After `failures` wrong PINs within `window` seconds from one caller number, or from one source
address, new calls from that caller number or address are refused for `block` seconds. The
two keys are counted in separate tables, so spoofing many caller numbers neither evades the
address count nor pushes address entries out of memory.

- A correct PIN does not reset the count: otherwise someone who knows one PIN could keep
  guessing others by entering it after every few wrong ones. Counts age out with the window.
- Anonymous caller numbers ("", "anonymous", ...) are not counted by number (one guesser would
  otherwise lock out every anonymous caller); their address still is.
- Addresses in `exempt_addresses` (a carrier or PBX trunk that carries many people's calls)
  are not counted by address, only by caller number.
- Memory is bounded: each table holds at most `max_entries` keys. Entries whose failures have
  aged out and whose block has ended are dropped first, then the least recently used entry
  that is not blocked, and only when every entry is blocked, the least recently used one.

The address should be the host alone: source ports change from call to call.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice

__all__ = ["ANONYMOUS_CALLERS", "PinThrottle"]

log = logging.getLogger(__name__)

ANONYMOUS_CALLERS = frozenset({"", "anonymous", "unknown", "restricted", "unavailable", "private"})
_EVICTION_SCAN = 64  # entries looked at to find an unblocked one to evict


@dataclass(slots=True)
class _Entry:
    failures: deque[float]
    blocked_until: float = float("-inf")
    last: float = float("-inf")

    def blocked(self, now: float) -> bool:
        return now < self.blocked_until

    def stale(self, now: float, window: float) -> bool:
        return not self.blocked(now) and self.last <= now - window


@dataclass(slots=True)
class _Table:
    kind: str  # "caller" or "address", for the log
    entries: OrderedDict[str, _Entry] = field(default_factory=OrderedDict)


class PinThrottle:
    def __init__(
        self,
        failures: int = 10,
        window: float = 600.0,
        block: float = 900.0,
        *,
        max_entries: int = 10_000,
        exempt_addresses: Iterable[str] = (),
    ) -> None:
        if failures < 1 or window <= 0 or block < 0 or max_entries < 1:
            raise ValueError("throttle: expected failures >= 1, window > 0, block >= 0")
        self.failures = failures
        self.window = window
        self.block = block
        self.max_entries = max_entries
        self.exempt_addresses = frozenset(exempt_addresses)
        self._callers = _Table("caller")
        self._addresses = _Table("address")

    def _keys(self, caller: str | None, address: str | None) -> Iterator[tuple[_Table, str]]:
        if caller is not None and caller.strip().lower() not in ANONYMOUS_CALLERS:
            yield self._callers, caller.strip()
        if address and address not in self.exempt_addresses:
            yield self._addresses, address

    def is_blocked(self, caller: str | None, address: str | None, now: float) -> bool:
        """True when new calls from this caller number or this address must be refused."""
        for table, key in self._keys(caller, address):
            entry = table.entries.get(key)
            if entry is not None and entry.blocked(now):
                return True
        return False

    def record_failure(self, caller: str | None, address: str | None, now: float) -> bool:
        """Count one wrong PIN; True when this failure started a block."""
        started = False
        for table, key in self._keys(caller, address):
            entry = table.entries.get(key)
            if entry is None:
                entry = _Entry(failures=deque(maxlen=self.failures))
                table.entries[key] = entry
            else:
                table.entries.move_to_end(key)
            entry.last = now
            if entry.blocked(now):
                continue
            entry.failures.append(now)
            if len(entry.failures) == self.failures and entry.failures[0] > now - self.window:
                entry.blocked_until = now + self.block
                entry.failures.clear()
                started = True
                log.warning(
                    "PIN guessing: %s %s made %d wrong PIN entries within %.0f s; "
                    "refusing its calls for %.0f s",
                    table.kind, key, self.failures, self.window, self.block,
                )  # fmt: skip
            self._prune(table, now, keep=key)
        return started

    def record_success(self, caller: str | None, address: str | None, now: float) -> None:
        """A correct PIN. Counts are kept (see the module docstring); only logged."""
        log.debug("PIN accepted from caller %s address %s", caller, address)

    def _prune(self, table: _Table, now: float, keep: str) -> None:
        entries = table.entries
        while entries:
            key, entry = next(iter(entries.items()))
            if not entry.stale(now, self.window):
                break
            del entries[key]
        while len(entries) > self.max_entries:
            head = list(islice(entries.items(), _EVICTION_SCAN))
            victim = next(
                (k for k, e in head if k != keep and not e.blocked(now)),
                next(k for k, _ in head if k != keep),
            )
            del entries[victim]

    def __len__(self) -> int:
        """Keys held in memory (both tables)."""
        return len(self._callers.entries) + len(self._addresses.entries)

    def stats(self) -> dict[str, int]:
        return {"pin_throttle_entries": len(self)}
