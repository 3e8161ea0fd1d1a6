"""Who gets into a room, and how: the room policy as the focus applies it (sans-I/O).

`admission(policy, who, hosts_present, password)` decides for one participant of any kind
(a browser now, a phone caller later) what happens when they ask to join. The rules, in
the order a participant meets them:

1. A host (a token with `moderator: true` for the room; a caller who entered the host PIN)
   joins at once, as moderator, whatever the policy: nobody is locked out of their own
   room.
2. A room whose `guests` is off refuses everyone else without a token (`guests-not-allowed`).
3. A password that is given is checked: wrong is refused (`wrong-password`); right skips
   the lobby. A token holder (a member) skips the lobby too.
4. Without a password or token: a room with a password and no lobby refuses
   (`password-required`: the page asks for it); a room with the lobby on makes them knock
   (`WAIT_MODERATOR`), whether or not it has a password.
5. Whoever would get in (3, or a room with neither lobby nor password) but meets a room
   whose `start` is "hosts" with no host in it waits for a host (`WAIT_HOST`); a host
   arriving lets these in, never those who knock (4).

Roles: hosts are moderators. In an open room (no lobby, `start` "anyone", guests welcome:
today's default) the oldest browser participant is moderator when no host is, as before.
When the last moderator leaves, the role passes to another host present, else (open rooms
only) to the oldest browser participant.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["OPEN", "Admission", "Refusal", "RoomPolicy", "Verdict", "admission"]


@dataclass(frozen=True, slots=True)
class RoomPolicy:
    start: str = "anyone"  # "anyone" | "hosts"
    lobby: bool = False
    has_password: bool = False
    guests: bool = True
    # A phone can type the password (digits only, or not known); False: a caller is told
    # so and knocks instead (gateway/phone_lobby.py). Not part of the page's JSON.
    password_digits: bool = True

    @property
    def open(self) -> bool:
        """Today's room: anyone starts it, no lobby, no password, guests welcome."""
        return self.start == "anyone" and not self.lobby and not self.has_password \
            and self.guests  # fmt: skip

    def as_json(self) -> dict[str, object]:
        return {"start": self.start, "lobby": self.lobby, "has_password": self.has_password,
                "guests": self.guests}  # fmt: skip


OPEN = RoomPolicy()


class Verdict(Enum):
    JOIN = "join"  # in at once
    WAIT_HOST = "host"  # let in when a host is in (start: hosts)
    WAIT_MODERATOR = "moderator"  # knocks: a moderator admits or denies


@dataclass(frozen=True, slots=True)
class Refusal:
    code: str  # "guests-not-allowed", "password-required", "wrong-password"
    message: str


@dataclass(frozen=True, slots=True)
class Admission:
    verdict: Verdict | None  # None: refused
    refusal: Refusal | None = None
    host: bool = False  # joins as a host (moderator)


def admission(
    policy: RoomPolicy,
    *,
    host: bool,
    member: bool,
    hosts_present: bool,
    password: bool | None,
) -> Admission:
    """The decision for one participant. `host`: a host of this room; `member`: holds a
    valid token for the room that is not a moderator's; `password`: None when none was
    given, else whether it was right."""
    if host:
        return Admission(Verdict.JOIN, host=True)
    if not policy.has_password:
        password = None  # nothing to check, nothing to skip
    if not policy.guests and not member:
        return Admission(None, Refusal("guests-not-allowed", "this room is for invited "
                                       "participants only: ask the host for a link"))
    if password is False:
        return Admission(None, Refusal("wrong-password", "the password is not right"))
    skips = member or password is True
    if not skips:
        if policy.lobby:
            return Admission(Verdict.WAIT_MODERATOR)
        if policy.has_password:
            return Admission(None, Refusal("password-required", "this room needs a password"))
    if policy.start == "hosts" and not hosts_present:
        return Admission(Verdict.WAIT_HOST)
    return Admission(Verdict.JOIN)
