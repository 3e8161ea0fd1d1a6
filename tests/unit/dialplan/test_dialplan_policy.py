"""The room policy in the store: schema 1 -> 2, defaults, changes, host PINs and passwords."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from dialplan.models import Conflict, InvalidInput, NotFound, hash_password, verify_password
from dialplan.pins import is_trivial_pin
from dialplan.store import MIGRATIONS, SCHEMA_VERSION, RoomDefaults, Store


@pytest.fixture
def store(store_target: str) -> Iterator[Store]:
    with Store(store_target) as s:
        yield s


def test_a_version_1_database_is_migrated_and_keeps_todays_behaviour(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    for statement in MIGRATIONS[0]:  # what a Switchboard from before issue 17 made
        db.execute(statement)
    db.execute("PRAGMA user_version = 1")
    db.execute("INSERT INTO rooms (name, pin, created) VALUES ('standup', '48213077', 1.0)")
    db.commit()
    db.close()
    with Store(path, defaults=RoomDefaults(lobby=True, start="hosts")) as store:
        assert store.schema_version == SCHEMA_VERSION == 4
        room = store.room("standup")
        assert room is not None and room.pin == "48213077"
        assert (room.lobby, room.start, room.has_password, room.host_pin, room.guests) == \
            (False, "anyone", False, None, True)  # fmt: skip
        assert store.create_room("new").lobby  # new rooms take the configured defaults
    with Store(path) as store:  # reopening migrates nothing more
        assert store.schema_version == SCHEMA_VERSION == 4


def test_policy_given_at_creation_and_changed_later(tmp_path: Path) -> None:
    with Store(tmp_path / "db", defaults=RoomDefaults(start="hosts", guests=False)) as store:
        room = store.create_room("standup", "48213077", host_pin="59372014", lobby=True,
                                 password="open sesame")  # fmt: skip
        assert (room.start, room.guests, room.lobby, room.host_pin) == \
            ("hosts", False, True, "59372014")  # fmt: skip
        assert room.as_json() == {"name": "standup", "pin": "48213077", "host_pin": "59372014",
                                  "lobby": True, "has_password": True, "start": "hosts",
                                  "guests": False}  # fmt: skip
        changed = store.update_room("StandUp", lobby=False, start="anyone", host_pin=None,
                                    password=None, guests=True)  # fmt: skip
        assert changed.as_json()["lobby"] is False and changed.host_pin is None
        assert not changed.has_password and changed.start == "anyone"
        store.update_room("standup", password="1234")
    with Store(tmp_path / "db") as store:  # kept across restarts
        room = store.room("standup")
        assert room is not None and room.password_hash is not None
        assert verify_password(room.password_hash, "1234")
        assert not verify_password(room.password_hash, "1235")


def test_the_password_is_stored_hashed_and_salted(tmp_path: Path) -> None:
    with Store(tmp_path / "db") as store:
        store.create_room("a", password="hunter22")
        store.create_room("b", password="hunter22")
        a, b = store.room("a"), store.room("b")
        assert a is not None and b is not None and a.password_hash != b.password_hash
    raw = b"".join(f.read_bytes() for f in tmp_path.iterdir())  # the file, -wal, -shm
    assert b"hunter22" not in raw and b"scrypt$" in raw
    assert "password_hash" not in a.as_json() and "password" not in a.as_json()
    assert a.password_hash is not None and a.password_hash.startswith("scrypt$")
    assert not verify_password("garbage", "hunter22")
    assert verify_password(hash_password("x" * 4), "x" * 4)


def test_a_new_room_gets_a_host_pin_unless_given_or_refused(store_target: str) -> None:
    with Store(store_target, pin_length=6) as store:
        rooms = [store.create_room(f"r{i}") for i in range(20)]
        rooms.append(store.create_room("given-pin", "482130"))  # a PIN given: still one
        for room in rooms:
            assert room.host_pin is not None and room.host_pin != room.pin
            assert len(room.host_pin) == 6 and room.host_pin.isdigit()
            assert not is_trivial_pin(room.host_pin) and room.host_pin[0] != "0"
            assert store.room_by_host_pin(room.host_pin) == room
        every = [r.pin for r in rooms] + [r.host_pin for r in rooms]
        assert len(set(every)) == len(every)  # unique across rooms, PINs and host PINs
        assert store.create_room("own", host_pin="591372").host_pin == "591372"
        assert store.create_room("none", host_pin=None).host_pin is None


def test_generated_host_pins_come_from_the_pin_generator(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    draws = iter(["48213077", "59372014"])
    monkeypatch.setattr("dialplan.store.generate_pin", lambda length: next(draws))
    room = store.create_room("standup")
    assert (room.pin, room.host_pin) == ("48213077", "59372014")


def test_host_pins_are_unique_among_all_pins(store: Store) -> None:
    store.create_room("a", "48213077", host_pin="59372014")
    for attempt in (
        lambda: store.create_room("b", "59372014"),  # a's host PIN as a PIN
        lambda: store.create_room("b", host_pin="48213077"),  # a's PIN as a host PIN
        lambda: store.create_room("b", host_pin="59372014"),
    ):
        with pytest.raises(Conflict):
            attempt()
    store.create_room("b", "61829304")
    with pytest.raises(Conflict):
        store.update_room("b", host_pin="48213077")
    with pytest.raises(InvalidInput):
        store.update_room("b", host_pin="61829304")  # its own PIN
    store.update_room("a", host_pin="59372014")  # its own host PIN again: fine
    found = store.room_by_host_pin("59372014")
    assert found is not None and found.name == "a"
    assert store.room_by_pin("59372014") is None  # the PIN prompt never takes a host PIN


@pytest.mark.parametrize(
    ("change", "fragment"),
    [({"start": "everyone"}, "start"), ({"password": "abc"}, "password"),
     ({"password": "x" * 65}, "password"), ({"host_pin": "12"}, "pin"),
     ({"password": "tab\there"}, "password")],
)  # fmt: skip
def test_bad_policy_values(store: Store, change: dict[str, str], fragment: str) -> None:
    store.create_room("standup")
    with pytest.raises(InvalidInput, match=fragment):
        store.update_room("standup", **change)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match=fragment):
        store.create_room("other", **change)  # type: ignore[arg-type]


def test_update_of_a_missing_room(store: Store) -> None:
    with pytest.raises(NotFound):
        store.update_room("nope", lobby=True)
