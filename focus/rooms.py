"""The dialplan as the meetings see it: which rooms exist, and how to dial in.

`StoreRooms` implements `focus.session.RoomDirectory` and `focus.session.RoomPolicies` over
`dialplan.store.Store`, so `Meetings` needs no more of the dialplan than these questions.
"""

from __future__ import annotations

import logging

from dialplan.models import UNSET, Conflict, NotFound, RoomRecord, Unset, verify_password
from dialplan.store import Store
from focus.policy import RoomPolicy
from focus.session import PolicyUpdate

__all__ = ["StoreRooms"]

log = logging.getLogger(__name__)


class StoreRooms:
    def __init__(self, store: Store) -> None:
        self.store = store

    def exists(self, room: str) -> bool:
        return self.store.room(room) is not None

    def create(self, room: str) -> None:
        """Create the room with a generated PIN and host PIN; a room created meanwhile is
        fine."""
        try:
            self.store.create_room(room)
        except Conflict:
            if self.store.room(room) is None:
                raise

    def dial_in(self, room: str) -> dict[str, object] | None:
        """{"pin", "numbers": [...]} for `joined`: the numbers that ask for a PIN (route
        "pin"), and "host_pin" when the room has one (Meetings shows it to moderators only);
        None when the room is unknown."""
        record = self.store.room(room)
        if record is None:
            return None
        numbers = [
            {"number": n.number, "formatted": n.formatted, "country": n.country_code,
             "toll_free": n.toll_free}
            for n in self.store.numbers()
            if n.route == "pin"
        ]  # fmt: skip
        info: dict[str, object] = {"pin": record.pin, "numbers": numbers}
        if record.host_pin is not None:
            info["host_pin"] = record.host_pin
        return info

    def policy(self, room: str) -> RoomPolicy | None:
        record = self.store.room(room)
        return _policy(record) if record is not None else None

    def check_password(self, room: str, password: str) -> bool:
        record = self.store.room(room)
        if record is None or record.password_hash is None:
            return False
        return verify_password(record.password_hash, password)

    def set_policy(self, room: str, change: PolicyUpdate) -> RoomPolicy:
        """NotFound for a vanished room; InvalidInput for a bad value."""
        password: str | Unset | None = UNSET
        if change.password is not None:
            password = change.password or None
        record = self.store.update_room(
            room, lobby=change.lobby, start=change.start, guests=change.guests,
            password=password,
        )  # fmt: skip
        if record is None:  # pragma: no cover - update_room raises instead
            raise NotFound(room)
        return _policy(record)


def _policy(record: RoomRecord) -> RoomPolicy:
    return RoomPolicy(start=record.start, lobby=record.lobby,
                      has_password=record.has_password, guests=record.guests,
                      password_digits=record.password_digits is not False)  # fmt: skip
