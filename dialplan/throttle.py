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

Calls in PIN entry are counted too (`admit` when a call is routed to the PIN prompt, `finish`
when it leaves it: joined, hung up, or ended in any way), so parallel calls cannot multiply
the guesses one source may make:

- A new call is refused "blocked" (403) while its caller number or address is blocked, and
  "busy" (486) when that key's failures in the window plus its calls already in PIN entry
  reach `failures`, or when its address already has `max_concurrent_per_source` calls in PIN
  entry. Exempt addresses and trusted peers (`trusted=True`, the gateway's decision) are
  not counted or limited by address, only by caller number.
- `request_check` before every PIN lookup: "blocked" when the call's number or address has
  become blocked meanwhile (the call is told so and hung up; the PIN is not looked up), so
  the calls already in PIN entry cannot go on guessing past the block.
- A global limit on PIN lookups from all callers together: `checks_per_second` with a burst
  of `checks_burst`. Over it, the lookup waits ("wait": ask again shortly) in one line for
  everybody, first come first served; each call has at most one lookup waiting and each
  source at most `max_concurrent_per_source` calls, so a genuine caller waits behind a few
  guesses per source, not behind a flood. A lookup that has waited `max_check_wait` seconds
  is given up ("busy": the caller is told to try later, nothing is counted against it).

The address should be the host alone: source ports change from call to call.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Literal

from dialplan.limits import ConcurrencyLimit, RateLimiter

__all__ = ["ANONYMOUS_CALLERS", "Admission", "CheckVerdict", "PinThrottle"]

log = logging.getLogger(__name__)

ANONYMOUS_CALLERS = frozenset({"", "anonymous", "unknown", "restricted", "unavailable", "private"})
_EVICTION_SCAN = 64  # entries looked at to find an unblocked one to evict
_GLOBAL = "all"  # the one key of the global PIN-check bucket

#: a new call routed to the PIN prompt: "admitted", "blocked" (403) or "busy" (486)
Admission = Literal["admitted", "blocked", "busy"]
#: before a PIN lookup: "check" it now, "wait" and ask again, "busy" (waited too long:
#: try later) or "blocked" (the caller's number or address is blocked)
CheckVerdict = Literal["check", "wait", "busy", "blocked"]


@dataclass(slots=True)
class _Entry:
    failures: deque[float]
    blocked_until: float = float("-inf")
    last: float = float("-inf")

    def blocked(self, now: float) -> bool:
        return now < self.blocked_until

    def stale(self, now: float, window: float) -> bool:
        return not self.blocked(now) and self.last <= now - window

    def recent(self, now: float, window: float) -> int:
        """Failures within the window before `now`."""
        return sum(1 for t in self.failures if t > now - window)


@dataclass(slots=True)
class _Table:
    kind: str  # "caller" or "address", for the log
    in_entry: ConcurrencyLimit  # calls in PIN entry per key
    entries: OrderedDict[str, _Entry] = field(default_factory=OrderedDict)


@dataclass(slots=True)
class _Call:
    """A call in PIN entry: the keys it is counted under, and since when its lookup waits."""

    keys: tuple[tuple[_Table, str], ...]
    waiting_since: float | None = None


class PinThrottle:
    def __init__(
        self,
        failures: int = 10,
        window: float = 600.0,
        block: float = 900.0,
        *,
        max_entries: int = 10_000,
        exempt_addresses: Iterable[str] = (),
        max_concurrent_per_source: int = 5,
        checks_per_second: float = 20.0,
        checks_burst: int = 40,
        max_check_wait: float = 20.0,
    ) -> None:
        if failures < 1 or window <= 0 or block < 0 or max_entries < 1:
            raise ValueError("throttle: expected failures >= 1, window > 0, block >= 0")
        if max_concurrent_per_source < 1 or checks_per_second <= 0 or checks_burst < 1 \
                or max_check_wait <= 0:
            raise ValueError("throttle: expected max_concurrent_per_source >= 1, "
                             "checks_per_second > 0, checks_burst >= 1, max_check_wait > 0")
        self.failures = failures
        self.window = window
        self.block = block
        self.max_entries = max_entries
        self.exempt_addresses = frozenset(exempt_addresses)
        self.max_concurrent_per_source = max_concurrent_per_source
        self.checks_per_second = checks_per_second
        self.max_check_wait = max_check_wait
        self._callers = _Table("caller", ConcurrencyLimit(failures))
        self._addresses = _Table("address", ConcurrencyLimit(max_concurrent_per_source))
        self._calls: dict[str, _Call] = {}  # calls in PIN entry, by call id
        self._checks = RateLimiter(checks_per_second, checks_burst, max_keys=1)
        self._waiting: OrderedDict[str, None] = OrderedDict()  # lookups in line, oldest first

    def _keys(self, caller: str | None, address: str | None,
              trusted: bool = False) -> Iterator[tuple[_Table, str]]:
        if caller is not None and caller.strip().lower() not in ANONYMOUS_CALLERS:
            yield self._callers, caller.strip()
        if address and not trusted and address not in self.exempt_addresses:
            yield self._addresses, address

    def is_blocked(self, caller: str | None, address: str | None, now: float, *,
                   trusted: bool = False) -> bool:
        """True when new calls from this caller number or this address must be refused."""
        for table, key in self._keys(caller, address, trusted):
            entry = table.entries.get(key)
            if entry is not None and entry.blocked(now):
                return True
        return False

    # -- calls in PIN entry ------------------------------------------------------------------

    def admit(self, call_id: str, caller: str | None, address: str | None, now: float, *,
              trusted: bool = False) -> Admission:
        """A new call routed to the PIN prompt; "admitted" calls are counted until `finish`."""
        if call_id in self._calls:
            return "admitted"
        keys = tuple(self._keys(caller, address, trusted))
        for table, key in keys:
            entry = table.entries.get(key)
            if entry is not None and entry.blocked(now):
                return "blocked"
        for table, key in keys:
            entry = table.entries.get(key)
            recent = entry.recent(now, self.window) if entry is not None else 0
            in_entry = table.in_entry.count(key)
            if recent + in_entry >= self.failures:
                log.info("call %s: refused: %s %s has %d wrong PINs and %d calls in PIN "
                         "entry (limit %d)", call_id, table.kind, key, recent, in_entry,
                         self.failures)  # fmt: skip
                return "busy"
        taken: list[tuple[_Table, str]] = []
        for table, key in keys:
            if not table.in_entry.acquire(key):
                for t, k in taken:
                    t.in_entry.release(k)
                log.info("call %s: refused: %s %s already has %d calls in PIN entry",
                         call_id, table.kind, key, table.in_entry.count(key))
                return "busy"
            taken.append((table, key))
        self._calls[call_id] = _Call(keys)
        return "admitted"

    def finish(self, call_id: str) -> None:
        """The call left PIN entry (joined, hung up, ended). Unknown or repeated: nothing."""
        call = self._calls.pop(call_id, None)
        if call is None:
            return
        self._waiting.pop(call_id, None)
        for table, key in call.keys:
            table.in_entry.release(key)

    def request_check(self, call_id: str, now: float) -> CheckVerdict:
        """May this call's PIN be looked up now? See the module docstring."""
        call = self._calls.get(call_id)
        if call is None:  # not admitted (a bug upstream): limited globally all the same
            call = self._calls[call_id] = _Call(())
        for table, key in call.keys:
            entry = table.entries.get(key)
            if entry is not None and entry.blocked(now):
                self._stop_waiting(call_id, call)
                return "blocked"
        if call.waiting_since is None:
            if not self._waiting and self._checks.allow(_GLOBAL, now):
                return "check"
            call.waiting_since = now
            self._waiting[call_id] = None
            log.info("call %s: PIN lookups at their limit (%g/s): %d waiting", call_id,
                     self.checks_per_second, len(self._waiting))
            return "wait"
        if now - call.waiting_since >= self.max_check_wait:
            self._stop_waiting(call_id, call)
            log.warning("call %s: PIN lookup waited %.0f s: given up", call_id,
                        self.max_check_wait)
            return "busy"
        self._drop_expired_waiters(now)
        head = next(iter(self._waiting), None)
        if head == call_id and self._checks.allow(_GLOBAL, now):
            self._stop_waiting(call_id, call)
            return "check"
        return "wait"

    def _stop_waiting(self, call_id: str, call: _Call) -> None:
        call.waiting_since = None
        self._waiting.pop(call_id, None)

    def _drop_expired_waiters(self, now: float) -> None:
        """Lookups at the head of the line that waited too long leave it (their calls hear
        "busy" when they next ask), so a stuck waiter cannot hold up the others."""
        while self._waiting:
            head = next(iter(self._waiting))
            call = self._calls.get(head)
            if call is not None and call.waiting_since is not None and \
                    now - call.waiting_since < self.max_check_wait:
                return
            del self._waiting[head]

    def in_entry(self, caller: str | None = None, address: str | None = None) -> int:
        """Calls in PIN entry: all of them, or those of one caller number or address."""
        if caller is None and address is None:
            return len(self._calls)
        if caller is not None:
            return self._callers.in_entry.count(caller.strip())
        assert address is not None
        return self._addresses.in_entry.count(address)

    # -- wrong and right PINs ----------------------------------------------------------------

    def record_failure(self, caller: str | None, address: str | None, now: float, *,
                       trusted: bool = False) -> bool:
        """Count one wrong PIN; True when this failure started a block."""
        return self._record(tuple(self._keys(caller, address, trusted)), now)

    def _record(self, keys: tuple[tuple[_Table, str], ...], now: float) -> bool:
        started = False
        for table, key in keys:
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

    def call_failed(self, call_id: str, now: float) -> bool:
        """A wrong PIN in an admitted call, counted under the keys it was admitted with."""
        call = self._calls.get(call_id)
        return self._record(call.keys if call is not None else (), now)

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
        return {"pin_throttle_entries": len(self), "pin_entry_calls": len(self._calls),
                "pin_checks_waiting": len(self._waiting)}
