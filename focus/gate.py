"""The door of every room: who a joining participant is, and whether they get in.

`Gate` puts together the token check (focus/tokens.py), the room's stored policy
(`RoomPolicies`) and the decision (focus/policy.py) for the browser meetings; a phone
caller's leg (gateway/call_policy.py) reads the same `policy` and makes the same decision,
with `host` from the host PIN and the password it keyed checked by the same store.
Refusals are `JoinRefused` with the code and close code of docs/signaling.md; every refusal
is logged with the room and the client's address, never the token or the password.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from focus.conference import Focus
from focus.policy import OPEN, RoomPolicy, Verdict, admission
from focus.session import (
    CLOSE_BAD_TOKEN,
    CLOSE_NOT_ALLOWED,
    CLOSE_PASSWORD,
    JoinRefused,
    PolicyUpdate,
    RoomPolicies,
)
from focus.tokens import Identity, TokenRefused, TokenVerifier

__all__ = ["Entry", "Gate"]

log = logging.getLogger(__name__)

_CLOSE = {"guests-not-allowed": CLOSE_NOT_ALLOWED, "password-required": CLOSE_PASSWORD,
          "wrong-password": CLOSE_PASSWORD}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Entry:
    verdict: Verdict
    host: bool
    open_room: bool  # the room's policy is open (focus.policy.RoomPolicy.open)


class Gate:
    def __init__(
        self,
        focus: Focus,
        policies: RoomPolicies | None = None,
        tokens: TokenVerifier | None = None,
    ) -> None:
        self.focus = focus
        self.policies = policies
        self.tokens = tokens

    async def identify(self, room: str, token: str | None, source: str | None) -> Identity | None:
        """The token's holder (None without a token); JoinRefused `bad-token` otherwise."""
        if token is None:
            return None
        if self.tokens is None or not self.tokens.configured:
            log.info("room %s: join from %s with a token refused: no keys configured", room,
                     source)  # fmt: skip
            raise JoinRefused("bad-token", "this server accepts no tokens", CLOSE_BAD_TOKEN)
        try:
            return await self.tokens.verify_async(token, room)
        except TokenRefused as exc:
            log.info("room %s: join from %s with a token refused (%s)", room, source,
                     exc.reason)  # fmt: skip
            raise JoinRefused("bad-token", f"token refused: {exc.message}",
                              CLOSE_BAD_TOKEN) from None  # fmt: skip

    def policy(self, room: str) -> RoomPolicy:
        """The room's policy; open when there is no store of policies or no such room."""
        if self.policies is None:
            return OPEN
        try:
            found = self.policies.policy(room)
        except Exception:
            log.exception("room %s: policy unavailable: treated as closed to guests", room)
            return RoomPolicy(lobby=True)
        return found if found is not None else OPEN

    async def decide(
        self,
        room: str,
        identity: Identity | None,
        password: str | None,
        source: str | None,
        *,
        host: bool = False,
    ) -> Entry:
        """Whether a participant gets in now, waits, or is refused (JoinRefused). `host`: a
        host without a token (a phone caller who entered the room's host PIN)."""
        policy = self.policy(room)
        host = host or (identity is not None and identity.moderator)
        checked: bool | None = None
        if password is not None and policy.has_password and not host and \
                self.policies is not None:  # fmt: skip
            checked = await asyncio.to_thread(self.policies.check_password, room, password)
        result = admission(policy, host=host, member=identity is not None and not host,
                           hosts_present=self.focus.hosts_present(room),
                           password=checked)  # fmt: skip
        if result.verdict is None:
            assert result.refusal is not None
            code = result.refusal.code
            log.info("room %s: join from %s refused (%s)", room, source, code)
            raise JoinRefused(code, result.refusal.message, _CLOSE[code])
        return Entry(result.verdict, result.host, policy.open)

    async def change(self, room: str, update: PolicyUpdate) -> RoomPolicy:
        """Store a policy change (ValueError from the store for a bad value)."""
        if self.policies is None:
            raise ValueError("room policies are not stored here")
        return await asyncio.to_thread(self.policies.set_policy, room, update)
