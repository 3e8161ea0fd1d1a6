"""PBXs that register to us: the registrar for trunks with `register_in` (sans-I/O: the
store, the digest server and the throttle are passed in, time comes in as `now`).

The rules, in the order a REGISTER meets them:

1. The user agent hands us a REGISTER only while some trunk has `register_in`
   (`enabled()`); otherwise it answers 405 as it always did.
2. A source address blocked by the PIN throttle (dialplan/throttle.py) gets 403 at once.
3. Without `Authorization` (or with one for another realm or algorithm, or unusable): 401
   with the digest challenges (SHA-256 and MD5, qop=auth) of the same `DigestServer` as the
   407s of inbound calls (gateway/trunk_auth.py): the same nonces, the same lifetime. Every
   REGISTER gets the same 401, whatever its user: no trunk name is given away.
4. Credentials: the username must be a `register_in` trunk's, the response right for its
   password ("REGISTER" and the request URI); a stale nonce gets 401 with stale=true; a
   wrong password or an unknown username gets 403 and counts one failure towards the
   throttle under the source address (not the username: a guesser elsewhere must not lock
   the genuine PBX out).
5. The binding: one Contact per trunk, kept in memory with its expiry (the Contact's
   expires, else Expires, else 3600 s; at most MAX_EXPIRES; below MIN_EXPIRES: 423 with
   Min-Expires), and the transport address the REGISTER came from (NAT: calls go back
   there). Expires 0 (or `Contact: *`) removes it. 200 names the binding and its expiry.
6. While bound, calls from that address are the trunk's (dialplan/trunk_match.py:
   `sources`), and dial-outs through the trunk go to it (`binding`).

Passwords and digest responses never reach a log line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dialplan.throttle import PinThrottle
from dialplan.trunks import TrunkRecord
from gateway.sip.digest import DigestServer, parse_credentials
from gateway.sip.errors import RemoteProtocolError
from gateway.sip.message import SipRequest
from gateway.sip.peer import Peer
from gateway.sip.uri import NameAddr, SipUri

__all__ = ["Binding", "Registrar"]

log = logging.getLogger(__name__)

DEFAULT_EXPIRES, MIN_EXPIRES, MAX_EXPIRES = 3600, 60, 3600

Answer = tuple[int, str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True, slots=True)
class Binding:
    trunk: str
    contact: SipUri
    source: Peer  # where the REGISTER came from: calls to the PBX go there
    expires_at: float


class Registrar:
    def __init__(self, trunks: Callable[[], Sequence[TrunkRecord]], digest: DigestServer,
                 throttle: PinThrottle) -> None:
        self._trunks = trunks
        self._digest = digest
        self._throttle = throttle
        self._bindings: dict[str, Binding] = {}

    def enabled(self) -> bool:
        return any(t.register_in for t in self._trunks())

    # -- the bindings ------------------------------------------------------------------------

    def binding(self, trunk: str, now: float) -> Binding | None:
        found = self._bindings.get(trunk)
        if found is not None and found.expires_at <= now:
            log.info("trunk %s: the PBX's registration expired", trunk)
            del self._bindings[trunk]
            return None
        return found

    def sources(self, now: float) -> dict[str, frozenset[str]]:
        """Trunk name -> the host its PBX registered from (for inbound matching)."""
        return {name: frozenset({b.source.host}) for name in list(self._bindings)
                if (b := self.binding(name, now)) is not None}

    def state(self, trunk: str, now: float) -> tuple[str, str] | None:
        """The API's registration state of a register_in trunk (None: not one)."""
        if not any(t.name == trunk and t.register_in for t in self._trunks()):
            return None
        bound = self.binding(trunk, now)
        if bound is None:
            return ("off", "its PBX has not registered (register_in)")
        return ("registered", f"its PBX registered from {bound.source}, "
                              f"expires in {bound.expires_at - now:.0f} s")

    def stats(self, now: float) -> dict[str, int]:
        return {"trunk_bindings": len(self.sources(now))}

    # -- a REGISTER --------------------------------------------------------------------------

    def on_register(self, request: SipRequest, source: Peer, now: float) -> Answer:
        """The final response (status, reason, headers) to a REGISTER (rules 2-5)."""
        raw = request.headers.get("Authorization")
        creds = parse_credentials(raw) if raw else None
        user = creds.username[:64] if creds is not None else None
        if self._throttle.is_blocked(None, source.host, now):
            log.warning("REGISTER %s from %s: refused: blocked after wrong passwords",
                        request.call_id, source)
            return 403, "Forbidden", ()
        if creds is None:
            return self._challenge(now, source.host, stale=False)
        trunk = next((t for t in self._trunks() if t.register_in and t.username == user), None)
        if trunk is None:
            self._throttle.record_failure(None, source.host, now)
            log.warning("REGISTER %s from %s: digest for unknown user %r: refused",
                        request.call_id, source, user)
            return 403, "Forbidden", ()
        verdict = self._digest.verify(creds, trunk.password, "REGISTER", source.host, now)
        if verdict == "stale":
            return self._challenge(now, source.host, stale=True)
        if verdict == "malformed":
            return self._challenge(now, source.host, stale=False)
        if verdict != "ok":
            started = self._throttle.record_failure(None, source.host, now)
            log.warning("REGISTER %s from %s: trunk %s: wrong digest credentials: refused%s",
                        request.call_id, source, trunk.name, " (now blocked)" if started else "")
            return 403, "Forbidden", ()
        return self._bind(trunk, request, source, now)

    def _challenge(self, now: float, host: str, *, stale: bool) -> Answer:
        values = self._digest.challenges(now, host, stale=stale)
        return 401, "Unauthorized", tuple(("WWW-Authenticate", v) for v in values)

    def _bind(self, trunk: TrunkRecord, request: SipRequest, source: Peer,
              now: float) -> Answer:
        contacts = request.headers.get_all("Contact")
        header = (request.headers.get("Expires") or "").strip()
        default = int(header) if header.isdigit() and len(header) <= 9 else DEFAULT_EXPIRES
        if not contacts:  # a query: what is bound
            return self._ok(trunk.name, now)
        if contacts == ["*"]:
            if default != 0:
                return 400, "Bad Request", ()
            self._unbind(trunk.name, "Contact: *")
            return 200, "OK", ()
        try:
            contact = NameAddr.parse(contacts[0].split(",")[0])
        except RemoteProtocolError:
            return 400, "Bad Request", ()
        value = contact.params.get("expires") or ""
        expires = int(value) if value.isdigit() and len(value) <= 9 else default
        if expires == 0:
            self._unbind(trunk.name, "expires 0")
            return 200, "OK", ()
        if expires < MIN_EXPIRES:
            return 423, "Interval Too Brief", (("Min-Expires", str(MIN_EXPIRES)),)
        expires = min(expires, MAX_EXPIRES)
        fresh = trunk.name not in self._bindings
        self._bindings[trunk.name] = Binding(trunk.name, contact.uri, source, now + expires)
        if fresh:
            log.info("trunk %s: the PBX registered from %s for %d s", trunk.name, source,
                     expires)
        return self._ok(trunk.name, now)

    def _ok(self, trunk: str, now: float) -> Answer:
        bound = self.binding(trunk, now)
        if bound is None:
            return 200, "OK", ()
        left = max(1, int(bound.expires_at - now))
        return 200, "OK", (("Contact", f"<{bound.contact}>;expires={left}"),)

    def _unbind(self, trunk: str, why: str) -> None:
        if self._bindings.pop(trunk, None) is not None:
            log.info("trunk %s: the PBX un-registered (%s)", trunk, why)
