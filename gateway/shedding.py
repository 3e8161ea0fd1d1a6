"""SIP load shedding: who may cost the gateway what (sans-I/O: time comes in as `now`).

Kamailio's pike and OpenSIPS's ratelimit are the models. The rules a packet meets, in the
order it meets them (`admit`, before anything is parsed):

1. A source in `sip.trusted_peers` (a PBX, a carrier) passes: it carries many callers, so
   no per-source limit applies to it (the global ones below still do).
2. A blocked source (a scanner, see 5.) is dropped silently: no answer at all, which is
   what stops sipvicious `svwar` (it reads silence as "nothing there").
3. Every packet takes a token from the source host's request bucket (`request_rate` a
   second up to `request_burst`); without one it is dropped unanswered. Over UDP that is
   cheaper than any answer, and the cost of a flood is cut before parsing.
4. A packet that starts `INVITE ` also takes a token from the source's INVITE bucket
   (`invite_rate`, `invite_burst`); without one it is dropped the same way.
5. Scanners: an initial request (no To tag) names a target user (Request-URI, else To);
   a source naming more than `scan_targets` distinct targets, or failing more than
   `scan_failures` calls (our 4xx answers: 403, 404, 488...; `end_setup`), within
   `scan_window` seconds is blocked for `block_time` seconds.

Then, for a new call (`begin_call`, after the INVITE parsed, before anything is allocated):

6. Calls in setup (INVITE received, until it is ACKed or the call ends): at most
   `calls_in_setup_per_source` per untrusted source and `calls_in_setup` in all, trusted
   sources included. Over either the call gets 503 with Retry-After (`Refusal`).
7. `stale_setups(now)`: calls in setup for longer than `reclaim_after` seconds, oldest
   first: the gateway ends those that are answered but unACKed when its RTP ports run low.

A warning is logged once when a source starts being limited or is blocked, with its address,
not per packet. Memory is bounded whatever the number of sources: every table is capped at
`max_sources` entries (least recently seen forgotten first), the calls in setup by
`calls_in_setup`.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from dialplan.limits import ConcurrencyLimit, Networks, RateLimiter

__all__ = ["Refusal", "SheddingSettings", "SipShedder", "counts_as_failure"]

log = logging.getLogger(__name__)

_TO_LINE = re.compile(rb"^(?:to|t)[ \t]*:([^\r\n]*)", re.I | re.M)
_USER = re.compile(rb"sips?:([^@;>\s]+)@", re.I)
# In-dialog and transaction-bound requests name no new target.
_NO_TARGET = (b"ACK ", b"CANCEL ", b"BYE ", b"PRACK ")
_MAX_TARGET_LEN = 64


@dataclass(frozen=True, slots=True)
class SheddingSettings:
    """The knobs of `[sip.limits]` (see deploy/switchboard.example.toml)."""

    request_rate: float = 20.0
    request_burst: float = 60.0
    invite_rate: float = 5.0
    invite_burst: float = 10.0
    calls_in_setup_per_source: int = 10
    calls_in_setup: int = 1000
    scan_targets: int = 10
    scan_failures: int = 10
    scan_window: float = 60.0
    block_time: float = 600.0
    retry_after: int = 10
    reclaim_after: float = 3.0
    max_sources: int = 10_000


@dataclass(frozen=True, slots=True)
class Refusal:
    """A call refused by the calls-in-setup limits: answer `status` with Retry-After."""

    status: int
    reason: str
    retry_after: int


def counts_as_failure(status: int | None) -> bool:
    """Whether a final status we sent for a call counts as a failed call of its source
    (our rejections: 403, 404, 488...). Cancelled, timed out and busy-here calls do not."""
    return status is not None and 400 <= status < 500 and status not in (
        401, 407, 408, 480, 486, 487, 491)


@dataclass(slots=True)
class _Activity:
    since: float
    targets: set[bytes] = field(default_factory=set)
    failures: int = 0


class SipShedder:
    """The admission decisions of one gateway (see the module docstring)."""

    def __init__(self, settings: SheddingSettings, trusted: Iterable[str] = ()) -> None:
        self.settings = s = settings
        self._trusted = Networks(trusted)
        self._trusted_cache: dict[str, bool] = {}
        self._requests = RateLimiter(s.request_rate, s.request_burst, max_keys=s.max_sources)
        self._invites = RateLimiter(s.invite_rate, s.invite_burst, max_keys=s.max_sources)
        self._per_source = ConcurrencyLimit(s.calls_in_setup_per_source)
        self._setup: dict[str, tuple[str, float, bool]] = {}  # call -> host, since, counted
        self._activity: OrderedDict[str, _Activity] = OrderedDict()
        self._blocked: OrderedDict[str, float] = OrderedDict()  # host -> until
        self._limited: OrderedDict[str, float] = OrderedDict()  # host -> last drop
        self.counters = {
            "sip_dropped_rate": 0,
            "sip_dropped_invite_rate": 0,
            "sip_dropped_blocked": 0,
            "sip_sources_blocked_total": 0,
            "sip_calls_refused_busy": 0,
            "sip_calls_reclaimed": 0,
        }

    # --- packets -----------------------------------------------------------------------

    def trusted(self, host: str) -> bool:
        cached = self._trusted_cache.get(host)
        if cached is None:
            if len(self._trusted_cache) >= self.settings.max_sources:
                self._trusted_cache.clear()
            cached = self._trusted_cache[host] = host in self._trusted
        return cached

    def admit(self, data: bytes, host: str, now: float) -> bool:
        """Whether a packet from `host` may be parsed (rules 1-5); False: drop it unanswered."""
        if self.trusted(host):
            return True
        if self._blocked and self.blocked(host, now):
            self.counters["sip_dropped_blocked"] += 1
            return False
        if not self._requests.allow(host, now):
            self.counters["sip_dropped_rate"] += 1
            self._note_limited(host, now, "requests")
            return False
        if data.startswith(b"INVITE ") and not self._invites.allow(host, now):
            self.counters["sip_dropped_invite_rate"] += 1
            self._note_limited(host, now, "INVITEs")
            return False
        if not data.startswith(b"SIP/") and not data.startswith(_NO_TARGET):
            target = _target(data)
            if target is not None:
                activity = self._activity_of(host, now)
                if target not in activity.targets:
                    activity.targets.add(target)
                    if len(activity.targets) > self.settings.scan_targets:
                        self._block(host, now, f"{len(activity.targets)} distinct targets")
                        return False
        return True

    def blocked(self, host: str, now: float) -> bool:
        until = self._blocked.get(host)
        if until is None:
            return False
        if now < until:
            return True
        del self._blocked[host]
        log.info("SIP source %s: block over", host)
        return False

    # --- calls in setup ----------------------------------------------------------------

    def begin_call(self, call_id: str, host: str, now: float) -> Refusal | None:
        """A new call from `host`: None when admitted (pair it with `end_setup`), else why
        not (rule 6)."""
        if call_id in self._setup:
            return None
        trusted = self.trusted(host)
        s = self.settings
        if len(self._setup) >= s.calls_in_setup:
            return self._refuse(host, now, f"{s.calls_in_setup} calls in setup in all")
        if not trusted and not self._per_source.acquire(host):
            return self._refuse(host, now, f"{s.calls_in_setup_per_source} calls in setup")
        self._setup[call_id] = (host, now, not trusted)
        return None

    def end_setup(self, call_id: str, status: int | None, now: float) -> None:
        """The call was ACKed (status None) or ended with `status` (None when it had none)."""
        entry = self._setup.pop(call_id, None)
        if entry is None:
            return
        host, _, counted = entry
        if counted:
            self._per_source.release(host)
            if counts_as_failure(status):
                self.call_failed(host, now)

    def call_failed(self, host: str, now: float) -> None:
        """A call from `host` failed on our side (a 4xx we answered)."""
        if self.trusted(host):
            return
        activity = self._activity_of(host, now)
        activity.failures += 1
        if activity.failures > self.settings.scan_failures:
            self._block(host, now, f"{activity.failures} failed calls")

    def stale_setups(self, now: float) -> list[str]:
        """Calls in setup for `reclaim_after` seconds or more, oldest first."""
        limit = now - self.settings.reclaim_after
        out: list[str] = []
        for call_id, (_, since, _) in self._setup.items():  # insertion order: oldest first
            if since > limit:
                break
            out.append(call_id)
        return out

    def reclaimed(self, count: int) -> None:
        self.counters["sip_calls_reclaimed"] += count

    @property
    def calls_in_setup(self) -> int:
        return len(self._setup)

    def table_sizes(self) -> dict[str, int]:
        """Entries in each table (memory; every one is bounded)."""
        return {"requests": len(self._requests), "invites": len(self._invites),
                "activity": len(self._activity), "blocked": len(self._blocked),
                "limited": len(self._limited), "trusted_cache": len(self._trusted_cache),
                "setup": len(self._setup)}

    def stats(self, now: float) -> dict[str, int]:
        blocked = sum(1 for until in self._blocked.values() if until > now)
        return {**self.counters, "sip_blocked_sources": blocked,
                "sip_calls_in_setup": len(self._setup)}

    # --- internals ---------------------------------------------------------------------

    def _refuse(self, host: str, now: float, why: str) -> Refusal:
        self.counters["sip_calls_refused_busy"] += 1
        self._note_limited(host, now, f"calls ({why})")
        if not self.trusted(host):
            self.call_failed(host, now)
        return Refusal(503, "Service Unavailable", self.settings.retry_after)

    def _activity_of(self, host: str, now: float) -> _Activity:
        activity = self._activity.get(host)
        if activity is None or now - activity.since >= self.settings.scan_window:
            activity = _Activity(now)
            self._activity[host] = activity
            if len(self._activity) > self.settings.max_sources:
                self._activity.popitem(last=False)
        self._activity.move_to_end(host)
        return activity

    def _block(self, host: str, now: float, why: str) -> None:
        if host not in self._blocked:
            self.counters["sip_sources_blocked_total"] += 1
            log.warning("SIP source %s blocked for %.0f s: %s within %.0f s (a scanner?)",
                        host, self.settings.block_time, why, self.settings.scan_window)
        self._blocked[host] = now + self.settings.block_time
        self._blocked.move_to_end(host)
        if len(self._blocked) > self.settings.max_sources:
            self._blocked.popitem(last=False)
        self._activity.pop(host, None)

    def _note_limited(self, host: str, now: float, what: str) -> None:
        last = self._limited.get(host)
        if last is None or now - last >= self.settings.scan_window:
            log.warning("SIP source %s: over its limit of %s; shedding", host, what)
        self._limited[host] = now
        self._limited.move_to_end(host)
        if len(self._limited) > self.settings.max_sources:
            self._limited.popitem(last=False)


def _target(data: bytes) -> bytes | None:
    """The user an initial request names (Request-URI, else To); None for in-dialog ones."""
    to = _TO_LINE.search(data, 0, 8192)
    if to is None:
        return None
    value = to.group(1)
    if b"tag=" in value.lower():
        return None
    line_end = data.find(b"\n", 0, 1024)
    first = data[:line_end] if line_end > 0 else data[:1024]
    user = _USER.search(first) or _USER.search(value)
    return user.group(1)[:_MAX_TARGET_LEN] if user is not None else b""
