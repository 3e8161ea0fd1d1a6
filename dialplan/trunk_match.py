"""Which trunk an incoming call came over (pure: the gateway passes in what it saw).

In order, the first that fits:
1. registration: the trunk registers, the call arrives from one of its registrar's
   addresses (`registered_from`), and the request URI user (or the To user) is the user of
   the Contact we registered or one of the trunk's numbers; or the peer registers to us
   (`register_in`) and the call arrives from the address its binding came from (also in
   `registered_from`);
2. address: the source is in the trunk's `allowed_addresses`;
3. digest: the call carries credentials (Proxy-Authorization) whose username is that of
   a trunk with auth = true and no `allowed_addresses` (a trunk limited to networks is
   matched by them alone).
A call that matches none may still be a digest trunk's call that has not authenticated
yet: `challenge_candidates` says whether a 407 should be sent rather than a refusal.

The number called: the request URI user, unless it is the registered Contact's user (then
the To user); the gateway routes its E.164 form (default country) when a number is stored
under it, else the user as dialled (extensions stay extensions).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from dialplan.limits import Networks
from dialplan.models import InvalidInput
from dialplan.trunks import TrunkRecord, to_e164

__all__ = ["TrunkMatch", "challenge_candidates", "dialled_number", "e164_or_none",
           "match_trunk"]

MatchedBy = Literal["registration", "address", "digest"]


@dataclass(frozen=True, slots=True)
class TrunkMatch:
    trunk: TrunkRecord
    by: MatchedBy


def _number(user: str | None, default_country: str) -> str | None:
    if not user:
        return None
    try:
        return to_e164(user, default_country)
    except InvalidInput:
        return None


def match_trunk(
    trunks: Sequence[TrunkRecord],
    source: str,
    ruri_user: str | None,
    to_user: str | None,
    auth_username: str | None,
    registered_from: Mapping[str, frozenset[str]],
    contact_users: Mapping[str, str],
    default_country: str = "",
) -> TrunkMatch | None:
    numbers = {n for n in (_number(ruri_user, default_country),
                           _number(to_user, default_country)) if n}  # fmt: skip
    for trunk in trunks:
        if not (trunk.register or trunk.register_in) \
                or source not in registered_from.get(trunk.name, ()):
            continue
        if trunk.register_in:  # the PBX's own registered address: its calls
            return TrunkMatch(trunk, "registration")
        contact = contact_users.get(trunk.name)
        if (contact and ruri_user == contact) or numbers & set(trunk.numbers):
            return TrunkMatch(trunk, "registration")
    for trunk in trunks:
        if trunk.allowed_addresses and source in Networks(trunk.allowed_addresses):
            return TrunkMatch(trunk, "address")
    if auth_username:
        for trunk in trunks:
            if trunk.auth and not trunk.allowed_addresses and trunk.username == auth_username:
                return TrunkMatch(trunk, "digest")
    return None


def challenge_candidates(trunks: Sequence[TrunkRecord]) -> bool:
    """True when some trunk may be matched by digest alone (worth a 407)."""
    return any(t.auth and not t.allowed_addresses for t in trunks)


def dialled_number(ruri_user: str | None, to_user: str | None, match: TrunkMatch | None,
                   contact_users: Mapping[str, str]) -> str | None:
    """The user part that names the number dialled (see the module docstring)."""
    if match is not None and ruri_user and ruri_user == contact_users.get(match.trunk.name):
        return to_user
    return ruri_user or to_user


def e164_or_none(user: str | None, default_country: str) -> str | None:
    return _number(user, default_country)
