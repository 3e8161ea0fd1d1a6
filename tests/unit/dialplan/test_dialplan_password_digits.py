"""Whether a room's password can be typed on a phone (schema 3 -> 4, issue 17 section 3):
stored beside the hash, never the password itself."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from dialplan.models import digits_only
from dialplan.store import MIGRATIONS, SCHEMA_VERSION, Store
from focus.rooms import StoreRooms


def test_digits_only_means_ascii_digits() -> None:
    assert digits_only("0931")
    assert not digits_only("09 31")
    assert not digits_only("open sesame")
    assert not digits_only("\u0661\u0662\u0663\u0664")  # Arabic-Indic digits: no keypad has them
    assert not digits_only("")


def test_stored_at_creation_and_on_every_change(tmp_path: Path) -> None:
    with Store(tmp_path / "db") as store:
        rooms = StoreRooms(store)
        assert store.create_room("a", password="9305").password_digits is True
        assert store.create_room("b", password="open sesame").password_digits is False
        assert store.create_room("c").password_digits is None
        policy = rooms.policy("b")
        assert policy is not None and policy.has_password and not policy.password_digits
        assert store.update_room("b", password="20261205").password_digits is True
        assert store.update_room("a", password=None).password_digits is None
        store.update_room("c", lobby=True)  # a change that is not the password keeps it
        assert store.room("c") is not None
    with Store(tmp_path / "db") as store:  # kept across restarts
        room = store.room("b")
        assert room is not None and room.password_digits is True


def test_a_version_3_room_with_a_password_is_asked_for_it(tmp_path: Path) -> None:
    """A password set before version 4 is not known to be digits: a caller is asked for it
    (RoomPolicy.password_digits True) rather than sent to the lobby."""
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    for migration in MIGRATIONS[:3]:
        for statement in migration:
            db.execute(statement)
    db.execute("PRAGMA user_version = 3")
    db.execute("INSERT INTO rooms (name, pin, created, password_hash) VALUES "
               "('standup', '48213077', 1.0, 'scrypt$16384$8$1$AAAA$BBBB')")
    db.commit()
    db.close()
    with Store(path) as store:
        assert store.schema_version == SCHEMA_VERSION == 4
        room = store.room("standup")
        assert room is not None and room.has_password and room.password_digits is None
        policy = StoreRooms(store).policy("standup")
        assert policy is not None and policy.password_digits
