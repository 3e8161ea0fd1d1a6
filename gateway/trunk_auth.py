"""Inbound calls and trunks: which trunk a call came over, digest for trunks with auth, and
`sip.require_trunk`. One decision per new INVITE, before routing:

1. No trunk configured and require_trunk off: admitted as today (no lookup beyond one query).
2. The trunk is found (dialplan/trunk_match.py: registration, address, digest username).
3. No trunk: with require_trunk, a 407 when some trunk is matched by digest alone and the
   INVITE carried no credentials, else 403 (credentials for no known user count as a wrong
   password). Without require_trunk the call goes on as an ordinary call (the PIN prompt
   or its number's route).
4. A trunk with auth = true: no Proxy-Authorization (or one for another user, or with a
   realm or algorithm we did not offer) gets 407 with a SHA-256 and an MD5 challenge; an
   answer to an expired nonce gets 407 with stale=true; a wrong password (or a nonce we
   never issued to that source) gets 403 and counts as one failure towards the PIN
   throttle (dialplan/throttle.py) under the caller number and the source address, so a
   password guesser is blocked (403 at once, `Gateway._incoming`) exactly as a PIN guesser.
The number dialled routes as before (dialplan/routing.py); its E.164 form (default
country) is used when a number is stored under it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from dialplan.store import Store
from dialplan.throttle import PinThrottle
from dialplan.trunk_match import (
    TrunkMatch,
    challenge_candidates,
    dialled_number,
    e164_or_none,
    match_trunk,
)
from dialplan.trunks import TrunkRecord
from gateway.sip.digest import Credentials, DigestServer, parse_credentials
from gateway.sip.message import SipRequest
from gateway.trunk_registry import contact_user

__all__ = ["Admit", "Challenge", "InboundTrunks", "Refuse"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Admit:
    trunk: TrunkRecord | None
    dialled: str | None


@dataclass(frozen=True, slots=True)
class Challenge:
    """407 Proxy Authentication Required with these headers."""

    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Refuse:
    status: int
    reason: str
    wrong_password: bool = False


Decision = Admit | Challenge | Refuse


class InboundTrunks:
    def __init__(
        self,
        store: Store,
        throttle: PinThrottle,
        sources: Callable[[], Mapping[str, frozenset[str]]],
        *,
        require_trunk: bool = False,
        realm: str = "switchboard",
        nonce_lifetime: float = 300.0,
        algorithms: tuple[str, ...] = ("SHA-256", "MD5"),
        default_country: str = "",
    ) -> None:
        self._store = store
        self._throttle = throttle
        self._sources = sources
        self.require_trunk = require_trunk
        self.default_country = default_country
        self.digest = DigestServer(realm=realm, nonce_lifetime=nonce_lifetime,
                                   algorithms=algorithms)

    def decide(self, call_id: str, request: SipRequest, source: str, caller: str,
               now: float) -> Decision:
        ruri_user, to_user = request.uri.user, request.to_addr.uri.user
        trunks = self._store.trunks()
        if not trunks and not self.require_trunk:
            return Admit(None, ruri_user or to_user)
        raw = request.headers.get("Proxy-Authorization")
        creds = parse_credentials(raw) if raw else None
        contacts = {t.name: contact_user(t) for t in trunks if t.register}
        match = match_trunk(trunks, source, ruri_user, to_user,
                            creds.username if creds else None, self._sources(), contacts,
                            self.default_country)  # fmt: skip
        if match is None:
            if not self.require_trunk:
                return self._admit(None, ruri_user, to_user, contacts)
            if creds is None and challenge_candidates(trunks):
                log.info("call %s: from %s, no credentials: challenged", call_id, source)
                return self._challenge(now, source)
            if creds is not None:
                log.warning("call %s: digest from %s for unknown user %r: refused", call_id,
                            source, creds.username[:64])
                self._throttle.record_failure(caller, source, now)
                return Refuse(403, "Forbidden", wrong_password=True)
            log.info("call %s: from %s matches no trunk: refused (sip.require_trunk)",
                     call_id, source)
            return Refuse(403, "Forbidden")
        if match.trunk.auth:
            decision = self._authenticate(call_id, match, creds, source, caller, now)
            if decision is not None:
                return decision
        log.info("call %s: over trunk %s (by %s)", call_id, match.trunk.name, match.by)
        return self._admit(match, ruri_user, to_user, contacts)

    def _authenticate(self, call_id: str, match: TrunkMatch, creds: Credentials | None,
                      source: str, caller: str, now: float) -> Decision | None:
        trunk = match.trunk
        if creds is None or creds.username != trunk.username:
            log.info("call %s: trunk %s needs digest: challenged", call_id, trunk.name)
            return self._challenge(now, source)
        verdict = self.digest.verify(creds, trunk.password, "INVITE", source, now)
        if verdict == "ok":
            return None
        if verdict == "stale":
            log.info("call %s: trunk %s: stale nonce, challenged again", call_id, trunk.name)
            return self._challenge(now, source, stale=True)
        if verdict == "malformed":
            log.info("call %s: trunk %s: unusable credentials, challenged", call_id,
                     trunk.name)
            return self._challenge(now, source)
        started = self._throttle.record_failure(caller, source, now)
        log.warning("call %s: trunk %s: wrong digest credentials from %s: refused%s",
                    call_id, trunk.name, source, " (now blocked)" if started else "")
        return Refuse(403, "Forbidden", wrong_password=True)

    def _challenge(self, now: float, source: str, *, stale: bool = False) -> Challenge:
        values = self.digest.challenges(now, source, stale=stale)
        return Challenge(tuple(("Proxy-Authenticate", v) for v in values))

    def _admit(self, match: TrunkMatch | None, ruri_user: str | None, to_user: str | None,
               contacts: Mapping[str, str]) -> Admit:
        user = dialled_number(ruri_user, to_user, match, contacts)
        if self.default_country:
            e164 = e164_or_none(user, self.default_country)
            if e164 is not None and self._store.number(e164) is not None:
                user = e164
        return Admit(match.trunk if match else None, user)
