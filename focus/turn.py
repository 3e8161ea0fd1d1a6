"""Short-lived TURN credentials for browsers (the TURN REST API, as coturn's
`use-auth-secret` checks them).

The bridge's operator gives TURN servers and a shared secret (`bridge.turn_servers`,
`bridge.turn_secret`). Each browser gets, in `joined`'s `ice_servers`:

    username = "EXPIRY:PARTICIPANT"   EXPIRY: Unix time now + ttl (seconds)
    credential = base64(HMAC-SHA1(secret, username))

coturn recomputes the HMAC from its `static-auth-secret` and refuses a username whose
EXPIRY has passed, so a credential leaked from one page stops working by itself, and the
secret never leaves the server. Pure functions: `now` is passed in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass


def rest_credentials(secret: str, user: str, now: float, ttl: int) -> tuple[str, str]:
    """(username, password) for `user`, valid until now + ttl (whole seconds)."""
    username = f"{int(now) + ttl}:{user}"
    digest = hmac.new(secret.encode("utf-8"), username.encode("utf-8"), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True, slots=True)
class IceServers:
    """What browsers get as RTCIceServer dicts: STUN URLs as they are, TURN URLs with
    per-participant REST credentials (`secret`) or fixed ones (`username`/`password`)."""

    stun_urls: tuple[str, ...] = ()
    turn_urls: tuple[str, ...] = ()
    secret: str = ""
    ttl: int = 86400
    username: str = ""
    password: str = ""

    def for_participant(self, participant_id: str, now: float) -> tuple[Mapping[str, object], ...]:
        servers: list[Mapping[str, object]] = []
        if self.stun_urls:
            servers.append({"urls": list(self.stun_urls)})
        if self.turn_urls:
            if self.secret:
                username, credential = rest_credentials(self.secret, participant_id, now,
                                                        self.ttl)  # fmt: skip
            else:
                username, credential = self.username, self.password
            servers.append({"urls": list(self.turn_urls), "username": username,
                            "credential": credential})  # fmt: skip
        return tuple(servers)
