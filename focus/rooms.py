"""The dialplan as the meetings see it: which rooms exist, and how to dial in.

`StoreRooms` implements `focus.session.RoomDirectory` over `dialplan.store.Store`, so
`Meetings` needs no more of the dialplan than these three questions.
"""

from __future__ import annotations

import logging

from dialplan.models import Conflict
from dialplan.store import Store

__all__ = ["StoreRooms"]

log = logging.getLogger(__name__)


class StoreRooms:
    def __init__(self, store: Store) -> None:
        self.store = store

    def exists(self, room: str) -> bool:
        return self.store.room(room) is not None

    def create(self, room: str) -> None:
        """Create the room with a generated PIN; a room created meanwhile is fine."""
        try:
            self.store.create_room(room)
        except Conflict:
            if self.store.room(room) is None:
                raise

    def dial_in(self, room: str) -> dict[str, object] | None:
        """{"pin", "numbers": [...]} for `joined`: the numbers that ask for a PIN (route
        "pin"); None when the room is unknown."""
        record = self.store.room(room)
        if record is None:
            return None
        numbers = [
            {"number": n.number, "formatted": n.formatted, "country": n.country_code,
             "toll_free": n.toll_free}
            for n in self.store.numbers()
            if n.route == "pin"
        ]  # fmt: skip
        return {"pin": record.pin, "numbers": numbers}
