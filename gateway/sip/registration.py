"""Outbound registration to a trunk: a sans-I/O state machine (time comes in as `now`).

The caller (gateway/trunk_registry.py) turns each `RegisterAttempt` from `next_attempt()`
into a REGISTER sent through the user agent, and feeds back `on_response(status, ...)` or
`on_timeout()`; `get_timer()`/`handle_timer(now)` drive refreshes and retries.

The rules, in the order a REGISTER meets them:
1. `start(now)` sends a REGISTER for `expires` seconds to the first address.
2. 401 (WWW-Authenticate) or 407 (Proxy-Authenticate): answered with digest at once (SHA-256
   preferred, MD5). The nonce is reused for refreshes (nc counts up); a challenge to such a
   reused nonce (the registrar restarted, or forgot it) is answered like a first one. A
   challenge to our answer to a fresh challenge is a refusal (a wrong password: counted
   as a 403), unless it says stale=true: then it is answered, no failure counted.
3. 423 Interval Too Brief: the next REGISTER asks for the Min-Expires value (at most
   MAX_423 times in a row), at once.
4. 2xx: "registered" for the granted expiry (the Contact's expires, else Expires, else
   what we asked); the refresh is due at a fraction of it between 50% and 90% (drawn once
   per registration from `rng`), at least MIN_REFRESH seconds ahead.
5. A timeout, a connection that could not be opened (`on_transport_error`: a TLS
   certificate that does not verify, a refused TCP connection), 5xx or 6xx: the next
   address (failover) is tried at once, once per round;
   when every address failed, "failed" and a retry after a backoff that doubles from
   `retry_base` up to `retry_max`. 403 (or a refused password, or another 4xx): "failed",
   and the backoff starts at `forbidden_base` (much slower: hammering a carrier with a
   bad password gets the account locked), doubling up to `forbidden_max`.
6. `stop(now)`: when registered, one REGISTER with Expires: 0 (answering one challenge),
   then "off"; otherwise "off" at once.

States: "off", "registering", "registered", "failed"; `detail` says the last status and,
when failed, when the next attempt is due. Passwords never reach a log line.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from .digest import Challenge, answer_challenge, pick_challenge

__all__ = ["RegState", "RegisterAttempt", "Registration", "RegistrationSettings"]

log = logging.getLogger(__name__)

RegState = Literal["off", "registering", "registered", "failed"]
MAX_423 = 3
MIN_REFRESH = 5.0


@dataclass(frozen=True, slots=True)
class RegistrationSettings:
    name: str  # the trunk's, for logs
    addresses: tuple[tuple[str, int], ...]  # primary, then failover
    username: str
    password: str = field(repr=False)
    domain: str  # the registrar's domain (the request URI and To/From host)
    expires: int = 300
    retry_base: float = 5.0
    retry_max: float = 300.0
    forbidden_base: float = 300.0
    forbidden_max: float = 3600.0


@dataclass(frozen=True, slots=True)
class RegisterAttempt:
    """One REGISTER to send. `authorization`: (header name, value) or None."""

    address: tuple[str, int]
    expires: int
    cseq: int
    authorization: tuple[str, str] | None
    request_uri: str


class Registration:
    def __init__(self, settings: RegistrationSettings,
                 rng: Callable[[], float] = random.random) -> None:
        if not settings.addresses:
            raise ValueError("registration: at least one address")
        self.settings = settings
        self.state: RegState = "off"
        self.detail = "not registering"
        self.registrations = 0  # 2xx to a REGISTER with expires > 0
        self.failures = 0  # rounds that ended failed
        self._rng = rng
        self._cseq = 0
        self._address = 0
        self._tried: set[int] = set()
        self._expires = settings.expires
        self._challenge: Challenge | None = None
        self._challenge_header = "Authorization"
        self._nc = 0
        self._sent_credentials = False
        self._fresh = False
        self._count_423 = 0
        self._backoff_step = 0
        self._forbidden = False
        self._timer: float | None = None
        self._pending: RegisterAttempt | None = None
        self._in_flight = False
        self._stopping = False
        self._granted_until: float | None = None

    # -- inputs --------------------------------------------------------------------------

    def start(self, now: float) -> None:
        self._stopping = False
        self._set("registering", "first REGISTER", now)
        self._address, self._tried = 0, set()
        self._send(now, with_auth=False)

    def stop(self, now: float) -> None:
        """Un-REGISTER when registered (or registering), else off at once."""
        self._timer = None
        if self.state in ("registered", "registering") and not self._stopping:
            self._stopping = True
            self._set("registering", "un-REGISTER", now)
            self._send(now, with_auth=self._challenge is not None)
        else:
            self._off("stopped")

    def on_response(self, status: int, now: float, *, challenges: Sequence[str] = (),
                    min_expires: int | None = None, granted: int | None = None) -> None:
        """A final response to our REGISTER; `challenges`: the WWW-/Proxy-Authenticate
        values of a 401/407; `granted`: the expiry the registrar gave (None: none given)."""
        self._in_flight = False
        label = f"{status} from {self._peer()}"
        if status in (401, 407):
            challenge = pick_challenge(list(challenges))
            if challenge is None:
                return self._fail(f"{label}: no usable challenge", now, forbidden=True)
            if self._sent_credentials and self._fresh and not challenge.stale:
                # our answer to a fresh challenge was challenged again: a wrong password
                return self._fail(f"{label}: credentials refused", now, forbidden=True)
            self._challenge = challenge
            self._challenge_header = "Authorization" if status == 401 else "Proxy-Authorization"
            self._nc = 0
            if challenge.stale:
                log.info("trunk %s: stale nonce, answering the new one", self.settings.name)
            self._send(now, with_auth=True)
            self._fresh = True
            return None
        if status == 423 and min_expires is not None and self._count_423 < MAX_423:
            self._count_423 += 1
            self._expires = max(self._expires, min_expires)
            log.info("trunk %s: 423, asking for %d s", self.settings.name, self._expires)
            return self._send(now, with_auth=self._challenge is not None)
        if 200 <= status < 300:
            return self._registered(label, now, granted)
        if status == 403 or 400 <= status < 500:
            return self._fail(label, now, forbidden=True)
        self._fail_over(label, now)

    def on_timeout(self, now: float, cseq: int | None = None) -> None:
        """No final response to our REGISTER `cseq` (None: the last one). A timeout of an
        earlier REGISTER (one a transport error has already failed) is ignored."""
        if not self._in_flight or (cseq is not None and cseq != self._cseq):
            return
        self._in_flight = False
        self._fail_over(f"408 timeout from {self._peer()}", now)

    def on_transport_error(self, reason: str, now: float) -> None:
        """The REGISTER in flight could not be sent: its connection failed (`reason`, e.g.
        "TLS: certificate verify failed: ..."). As a timeout, without waiting for it."""
        if not self._in_flight:
            return
        self._in_flight = False
        self._fail_over(f"{reason} ({self._peer()})", now)

    def get_timer(self) -> float | None:
        return self._timer

    def handle_timer(self, now: float) -> None:
        if self._timer is None or now < self._timer:
            return
        self._timer = None
        if self._stopping:
            return
        if self._in_flight:  # the expiry check armed with a refresh that has no answer yet
            if self.state == "registered":
                self._set("registering", f"the registration at {self._peer()} expired with "
                          "no answer to its refresh yet", now)
            return
        if self.state == "failed":
            self._address, self._tried = 0, set()
            self._set("registering", f"retrying after: {self.detail}", now)
        self._send(now, with_auth=self._challenge is not None)
        if self.state == "registered" and self._granted_until is not None:
            self._timer = self._granted_until

    def set_addresses(self, addresses: Sequence[tuple[str, int]]) -> None:
        """New addresses for the registrar (DNS resolved again, gateway/trunk_dns.py): the
        next REGISTER goes to the same address when it is still among them, else to the
        first; a failover round starts again when the list changed."""
        new = tuple(addresses)
        if not new or new == self.settings.addresses:
            return
        current = self.address
        log.info("trunk %s: registrar addresses now %s", self.settings.name,
                 ", ".join(f"{h}:{p}" for h, p in new))
        self.settings = dataclasses.replace(self.settings, addresses=new)
        self._address = new.index(current) if current in new else 0
        self._tried = set()

    def next_attempt(self) -> RegisterAttempt | None:
        attempt, self._pending = self._pending, None
        return attempt

    @property
    def address(self) -> tuple[str, int]:
        return self.settings.addresses[self._address]

    # -- transitions ---------------------------------------------------------------------

    def _peer(self) -> str:
        host, port = self.address
        return f"{host}:{port}"

    def _set(self, state: RegState, detail: str, now: float) -> None:
        if state == "failed":  # each failure, again after a retry too: WARNING
            log.warning("trunk %s: registration %s -> failed (%s)", self.settings.name,
                        self.state, detail)
        elif state != self.state:
            log.info("trunk %s: registration %s -> %s (%s)", self.settings.name, self.state,
                     state, detail)
        self.state, self.detail = state, detail

    def _off(self, detail: str) -> None:
        if self.state != "off":
            log.info("trunk %s: registration %s -> off (%s)", self.settings.name, self.state,
                     detail)
        self.state, self.detail, self._timer = "off", detail, None
        self._stopping = False

    def _send(self, now: float, *, with_auth: bool) -> None:
        self._cseq += 1
        host, port = self.address
        uri = f"sip:{self.settings.domain}"
        authorization = None
        if with_auth and self._challenge is not None:
            self._nc += 1
            authorization = (self._challenge_header, answer_challenge(
                self._challenge, self.settings.username, self.settings.password, "REGISTER",
                uri, nc=self._nc))
        self._sent_credentials = authorization is not None
        self._fresh = False  # set by the caller when this answers a new challenge
        self._pending = RegisterAttempt((host, port), 0 if self._stopping else self._expires,
                                        self._cseq, authorization, uri)
        self._in_flight = True

    def _registered(self, label: str, now: float, granted: int | None) -> None:
        if self._stopping:
            return self._off(f"un-registered ({label})")
        expires = granted if granted is not None and granted > 0 else self._expires
        fraction = 0.5 + 0.4 * min(max(self._rng(), 0.0), 1.0)
        refresh = max(MIN_REFRESH, expires * fraction)
        self._timer = now + refresh
        self._granted_until = now + expires
        self._count_423 = 0
        self._backoff_step = 0
        self._tried = set()
        self.registrations += 1
        previous = f"; before: {self.detail}" if self.state == "failed" or \
            "retrying" in self.detail else ""
        log.info("trunk %s: registered (%s) for %d s, refresh in %.0f s", self.settings.name,
                 label, expires, refresh)
        self._set("registered", f"{label}: {expires} s, refresh in {refresh:.0f} s{previous}",
                  now)

    def _fail_over(self, label: str, now: float) -> None:
        """Timeouts and 5xx/6xx: the next address at once if one is left this round."""
        self._tried.add(self._address)
        if self._stopping:
            return self._off(f"un-REGISTER failed ({label})")
        for index in range(len(self.settings.addresses)):
            if index not in self._tried:
                log.info("trunk %s: %s; failing over to %s:%d", self.settings.name, label,
                         *self.settings.addresses[index])
                self._address = index
                self._set("registering", f"{label}; trying {self._peer()}", now)
                return self._send(now, with_auth=self._challenge is not None)
        self._fail(label, now, forbidden=False)

    def _fail(self, label: str, now: float, *, forbidden: bool) -> None:
        if self._stopping:
            return self._off(f"un-REGISTER refused ({label})")
        s = self.settings
        if forbidden != self._forbidden:
            self._backoff_step = 0
        self._forbidden = forbidden
        base, cap = (s.forbidden_base, s.forbidden_max) if forbidden else \
            (s.retry_base, s.retry_max)
        delay = min(cap, base * 2 ** min(self._backoff_step, 16))
        self._backoff_step += 1
        self.failures += 1
        self._timer = now + delay
        self._sent_credentials = False
        if forbidden:
            self._challenge = None  # a fresh challenge next time
        self._set("failed", f"{label}; next attempt in {delay:.0f} s", now)
