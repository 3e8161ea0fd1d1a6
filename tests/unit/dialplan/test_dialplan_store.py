"""Store: rooms and numbers CRUD, persistence across reopen, PIN generation and uniqueness."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from dialplan.models import Conflict, InvalidInput, NotFound, RoomInUse
from dialplan.pins import generate_pin, is_trivial_pin
from dialplan.store import SCHEMA_VERSION, Store, StoreError


@pytest.fixture
def store(store_target: str) -> Iterator[Store]:
    s = Store(store_target, clock=lambda: 1000.0)
    yield s
    s.close()


def test_create_room_with_given_pin_and_lookups(store: Store) -> None:
    room = store.create_room("Standup", "48213077")
    assert (room.name, room.pin, room.created) == ("standup", "48213077", 1000.0)
    assert store.room("STANDUP") == room
    assert store.room_by_pin("48213077") == room
    assert store.room_by_pin("48213078") is None
    assert store.room("nope") is None
    assert store.room("bad name!") is None  # not a room name: no error, just absent


def test_generated_pin_has_configured_length_and_no_leading_zero(tmp_path: Path) -> None:
    with Store(tmp_path / "a.db", pin_length=6) as s:
        pins_seen = {s.create_room(f"r{i}").pin for i in range(50)}
    assert len(pins_seen) == 50
    for pin in pins_seen:
        assert len(pin) == 6 and pin.isdigit() and pin[0] != "0"
        assert not is_trivial_pin(pin)


def test_default_pin_length_is_8(store: Store) -> None:
    assert len(store.create_room("x").pin) == 8


def test_duplicate_name_is_case_insensitive_conflict(store: Store) -> None:
    store.create_room("standup")
    with pytest.raises(Conflict, match="already exists"):
        store.create_room("StandUp")
    with pytest.raises(ValueError):  # the CLI reports ValueError and LookupError
        store.create_room("standup")


def test_duplicate_pin_conflict(store: Store) -> None:
    store.create_room("a", "12345679")
    with pytest.raises(Conflict, match="pin"):
        store.create_room("b", "12345679")
    assert store.room("b") is None


@pytest.mark.parametrize("name", ["", "a b", "x" * 65, "é", "a/b", "a@b"])
def test_bad_room_names(store: Store, name: str) -> None:
    with pytest.raises(InvalidInput):
        store.create_room(name)


@pytest.mark.parametrize(
    "pin", ["123", "1" * 13, "12a45", "\uff11\uff12\uff13\uff14", "01234567", "", " 1234"]
)
def test_bad_pins(store: Store, pin: str) -> None:
    with pytest.raises(InvalidInput):
        store.create_room("r", pin)


def test_room_name_edges_are_accepted(store: Store) -> None:
    assert store.create_room("A.b_c-9").name == "a.b_c-9"
    assert store.create_room("y" * 64).name == "y" * 64


def test_generation_never_collides(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    store.create_room("first", "55501234")
    # the PIN's draws, then the host PIN's: neither a stored PIN nor the new room's own PIN
    draws = iter(["55501234", "55501234", "55509876", "55501234", "55509876", "61829304"])
    monkeypatch.setattr("dialplan.store.generate_pin", lambda length: next(draws))
    second = store.create_room("second")
    assert (second.pin, second.host_pin) == ("55509876", "61829304")


def test_generation_gives_up_with_conflict(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    store.create_room("first", "55501234")
    monkeypatch.setattr("dialplan.store.generate_pin", lambda length: "55501234")
    with pytest.raises(Conflict, match="longer PIN"):
        store.create_room("second")
    assert store.room("second") is None


def test_generated_pins_come_from_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def choice(seq: str) -> str:
        calls.append(seq)
        return seq[-1]  # always "9": every draw is trivial

    monkeypatch.setattr("dialplan.pins.secrets.choice", choice)
    with pytest.raises(RuntimeError):
        generate_pin(8)  # every draw is "99999999": trivial, bounded retries
    assert calls and len(calls) == 8 * 1000


@pytest.mark.parametrize(
    ("pin", "trivial"),
    [("11111111", True), ("12121212", True), ("12341234", True), ("12345678", True),
     ("87654321", True), ("78901234", True), ("3210", True), ("48213077", False),
     ("12345670", False), ("1112", False)],
)  # fmt: skip
def test_trivial_pins(pin: str, trivial: bool) -> None:
    assert is_trivial_pin(pin) is trivial


def test_pin_length_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        Store(tmp_path / "x.db", pin_length=3)
    with pytest.raises(ValueError):
        Store(tmp_path / "y.db", pin_length=13)


def test_delete_room(store: Store) -> None:
    store.create_room("gone")
    store.delete_room("GONE")
    assert store.room("gone") is None
    with pytest.raises(NotFound):
        store.delete_room("gone")


def test_delete_room_refused_while_a_number_routes_to_it(store: Store) -> None:
    store.create_room("standup")
    store.add_number("+15550101", "room", "standup")
    with pytest.raises(RoomInUse, match=r"\+15550101"):
        store.delete_room("standup")
    assert store.room("standup") is not None
    store.delete_number("+15550101")
    store.delete_room("standup")
    assert store.room("standup") is None


def test_add_number_normalises_and_derives_fields(store: Store) -> None:
    n = store.add_number("+1 (555) 010-0", "pin")
    assert n.number == "+15550100"
    assert n.country_code == "US"
    assert n.formatted == "+1 555 0100"
    assert (n.route, n.room, n.display, n.toll_free) == ("pin", None, "mask", False)
    assert store.number("+15550100") == n


def test_add_number_explicit_fields(store: Store) -> None:
    store.create_room("standup")
    n = store.add_number(
        "0044 20 7946 0958", "room", "StandUp", display="show", country_code="gb",
        toll_free=True, formatted="+44 20 7946 0958",
    )  # fmt: skip
    assert (n.number, n.room, n.display, n.country_code, n.toll_free, n.formatted) == (
        "+442079460958", "standup", "show", "GB", True, "+44 20 7946 0958",
    )  # fmt: skip


def test_add_number_errors(store: Store) -> None:
    store.create_room("standup")
    store.add_number("+15550100")
    with pytest.raises(Conflict):
        store.add_number("+1 555 0100")
    with pytest.raises(InvalidInput, match="route"):
        store.add_number("+15550102", "ivr")
    with pytest.raises(InvalidInput, match="room"):
        store.add_number("+15550102", "room")
    with pytest.raises(InvalidInput, match="room"):
        store.add_number("+15550102", "pin", "standup")
    with pytest.raises(NotFound):
        store.add_number("+15550102", "room", "nosuch")
    with pytest.raises(InvalidInput, match="display"):
        store.add_number("+15550102", display="everyone")
    with pytest.raises(InvalidInput, match="countryCode"):
        store.add_number("+15550102", country_code="USA")
    with pytest.raises(InvalidInput):
        store.add_number("call me")
    assert [n.number for n in store.numbers()] == ["+15550100"]


def test_number_without_plus_has_no_country(store: Store) -> None:
    n = store.add_number("5550100")
    assert (n.number, n.country_code, n.formatted) == ("5550100", None, "5550100")


def test_delete_number_accepts_any_spelling(store: Store) -> None:
    store.add_number("+15550100")
    store.delete_number("001 555 0100")
    assert store.numbers() == []
    with pytest.raises(NotFound):
        store.delete_number("+15550100")
    with pytest.raises(NotFound):
        store.delete_number("garbage")


def test_data_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "db" / "switchboard.db"
    with Store(path) as s:
        room = s.create_room("standup")
        s.add_number("+15550101", "room", "standup", display="hide")
    with Store(path) as s:
        assert s.room("standup") == room
        number = s.number("+15550101")
        assert number is not None and (number.room, number.display) == ("standup", "hide")
        assert s.schema_version == SCHEMA_VERSION
        assert s.stats() == {"rooms": 1, "numbers": 1}


def test_wal_mode_and_user_version(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    Store(path).close()
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        db.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer"):
        Store(path)


def test_lists_are_ordered(store: Store) -> None:
    store.create_room("b")
    store.create_room("a")
    assert [r.name for r in store.rooms()] == ["a", "b"]


def test_health_and_stats(store: Store) -> None:
    assert store.health() is True
    assert store.stats() == {"rooms": 0, "numbers": 0}
    store.close()
    assert store.health() is False


def test_memory_store() -> None:
    with Store(":memory:") as s:
        s.create_room("m")
        assert s.room("m") is not None


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_new_data_directory_and_database_are_private(tmp_path: Path) -> None:
    """Every room's PIN is in the file: no other user may read it (issue 13)."""
    folder = tmp_path / "new" / "data"
    with Store(folder / "switchboard.db") as s:
        s.create_room("standup", "48213077")
        assert _mode(folder) == 0o700
        for name in ("switchboard.db", "switchboard.db-wal", "switchboard.db-shm"):
            assert (folder / name).exists(), name
            assert _mode(folder / name) == 0o600, name


def test_modes_of_an_existing_directory_and_database_are_narrowed(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "data"
    with Store(folder / "switchboard.db") as s:
        s.create_room("standup", "48213077")
    folder.chmod(0o755)
    for path in folder.iterdir():
        path.chmod(0o644)
    with caplog.at_level("WARNING", logger="dialplan.store"), \
            Store(folder / "switchboard.db") as s:
        assert s.room("standup") is not None
        assert _mode(folder) == 0o700
        assert all(_mode(p) == 0o600 for p in folder.iterdir()), \
            {p.name: oct(_mode(p)) for p in folder.iterdir()}
    assert "was mode 755, now 700" in caplog.text


def test_a_shared_sticky_folder_is_left_alone(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    with Store(shared / "switchboard.db"):
        assert shared.stat().st_mode & 0o7777 == 0o1777
        assert _mode(shared / "switchboard.db") == 0o600


def test_a_folder_as_the_database_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    with pytest.raises(StoreError):
        Store(tmp_path / "db")
