"""The dialplan's storage: rooms, numbers and trunks in SQLite.

Two backends behind one API: SQLite (a file, the single-process default:
dialplan/store_sqlite.py) and PostgreSQL (store.url "postgresql://...", the durable state of a
cluster: dialplan/store_pg.py). Every call is synchronous and one short indexed query: the
gateway calls `number()` and `room_by_pin()` on each call setup. A call that cannot reach the
database raises StoreError (PostgreSQL: within a few seconds at most, at once while a
reconnect runs); a running conference does not depend on the store.

The schema is versioned (SQLite: `PRAGMA user_version`; PostgreSQL: a version table):
MIGRATIONS[i] takes version i to i + 1, inside one transaction. A database from a newer
Switchboard is refused, never rewritten.

Rooms carry their policy (dialplan.models.RoomRecord): who may start, lobby, password (a
salted scrypt hash only), host PIN, guests. A new room takes the policy given, else the
store's `defaults` (from configuration: meetings.default_*); a room made before version 2
gets today's behaviour (anyone starts, no lobby, no password, no host PIN, guests welcome).
A host PIN is unique among every room's PINs and host PINs: the IVR looks both up. A new room
gets a generated host PIN (as its PIN is generated) unless one is given or it is asked for
none; a room made before host PINs were generated keeps none until one is set.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dialplan.models import (
    UNSET,
    Conflict,
    DisplayPolicy,
    InvalidInput,
    NotFound,
    NumberRecord,
    RoomInUse,
    RoomRecord,
    RouteKind,
    StartPolicy,
    Unset,
    digits_only,
    hash_password,
    is_display_policy,
    is_route_kind,
    is_start_policy,
    validate_password,
    validate_pin,
    validate_room_name,
)
from dialplan.numbers import country_of, format_number, normalise
from dialplan.pins import generate_pin
from dialplan.store_base import Backend, StoreError, Transaction
from dialplan.store_sqlite import SqliteBackend
from dialplan.trunks import TrunkRecord, parse_trunk

__all__ = ["DEFAULT_PIN_LENGTH", "MIGRATIONS", "SCHEMA_VERSION", "RoomDefaults", "Store",
           "StoreError"]

log = logging.getLogger(__name__)

DEFAULT_PIN_LENGTH = 8
PIN_ATTEMPTS = 50  # draws before giving up on finding an unused PIN

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 0 -> 1
        """CREATE TABLE rooms (
            name TEXT PRIMARY KEY,
            pin TEXT NOT NULL UNIQUE,
            created REAL NOT NULL
        )""",
        """CREATE TABLE numbers (
            number TEXT PRIMARY KEY,
            route TEXT NOT NULL CHECK (route IN ('pin', 'room')),
            room TEXT REFERENCES rooms(name) ON DELETE RESTRICT,
            display TEXT NOT NULL DEFAULT 'mask' CHECK (display IN ('show', 'mask', 'hide')),
            country_code TEXT,
            toll_free INTEGER NOT NULL DEFAULT 0,
            formatted TEXT NOT NULL,
            created REAL NOT NULL,
            CHECK ((route = 'room') = (room IS NOT NULL))
        )""",
        "CREATE INDEX numbers_room ON numbers(room)",
    ),
    (  # 1 -> 2: trunks (dialplan/trunks.py); the record as JSON, names unique
        """CREATE TABLE trunks (
            name TEXT PRIMARY KEY,
            data TEXT NOT NULL,
            created REAL NOT NULL
        )""",
    ),
    (  # 2 -> 3: the room policy (issue 17); existing rooms keep today's behaviour
        "ALTER TABLE rooms ADD COLUMN host_pin TEXT",
        "ALTER TABLE rooms ADD COLUMN lobby INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE rooms ADD COLUMN password_hash TEXT",
        "ALTER TABLE rooms ADD COLUMN start TEXT NOT NULL DEFAULT 'anyone' "
        "CHECK (start IN ('anyone', 'hosts'))",
        "ALTER TABLE rooms ADD COLUMN guests INTEGER NOT NULL DEFAULT 1",
        "CREATE UNIQUE INDEX rooms_host_pin ON rooms(host_pin) WHERE host_pin IS NOT NULL",
    ),
    (  # 3 -> 4: whether the password is digits only (a phone can type it; issue 17 s. 3);
        # NULL for a password set before: not known, the caller is asked for it anyway
        "ALTER TABLE rooms ADD COLUMN password_digits INTEGER",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

_ROOM_COLUMNS = ("name, pin, created, host_pin, lobby, password_hash, start, guests, "
                 "password_digits")
_NUMBER_COLUMNS = "number, route, room, display, country_code, toll_free, formatted, created"


@dataclass(frozen=True, slots=True)
class RoomDefaults:
    """The policy a new room gets when its creator does not say (meetings.default_*)."""

    lobby: bool = False
    start: StartPolicy = "anyone"
    guests: bool = True


def _room(row: tuple[Any, ...]) -> RoomRecord:
    start = row[6]
    assert is_start_policy(start)  # the CHECK constraint holds
    return RoomRecord(name=row[0], pin=row[1], created=row[2], host_pin=row[3],
                      lobby=bool(row[4]), password_hash=row[5], start=start,
                      guests=bool(row[7]),
                      password_digits=None if row[8] is None else bool(row[8]))  # fmt: skip


def _number(row: tuple[Any, ...]) -> NumberRecord:
    route, display = row[1], row[3]
    assert is_route_kind(route) and is_display_policy(display)  # the CHECK constraints hold
    return NumberRecord(
        number=row[0], route=route, room=row[2], display=display, country_code=row[4],
        toll_free=bool(row[5]), formatted=row[6], created=row[7],
    )  # fmt: skip


class Store:
    """Rooms, numbers and trunks. `path` is a file (created with its folder), ":memory:",
    or a PostgreSQL URL ("postgresql://USER@HOST:PORT/DB")."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        pin_length: int = DEFAULT_PIN_LENGTH,
        clock: Callable[[], float] = time.time,
        defaults: RoomDefaults | None = None,
    ) -> None:
        generate_pin(pin_length)  # validates the length now rather than at the first room
        self.pin_length = pin_length
        self.defaults = defaults if defaults is not None else RoomDefaults()
        self._clock = clock
        target = os.fspath(path)
        backend: Backend
        if target.startswith(("postgresql://", "postgres://")):
            from dialplan.store_pg import PostgresBackend  # psycopg only when asked for

            backend = PostgresBackend(target)
        else:
            backend = SqliteBackend(target)
        self._db = backend
        self.path = backend.label
        try:
            for version in backend.migrate(MIGRATIONS):
                log.info("store %s: schema migrated to version %d", self.path, version)
        except BaseException:
            backend.close()
            raise

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def backend(self) -> str:
        """"sqlite" or "postgresql"."""
        return "sqlite" if isinstance(self._db, SqliteBackend) else "postgresql"

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return self._db.schema_version()

    def _one(self, sql: str, args: tuple[object, ...]) -> tuple[Any, ...] | None:
        return self._db.one(sql, args)

    # -- rooms -----------------------------------------------------------------------------

    def create_room(
        self,
        name: str,
        pin: str | None = None,
        *,
        host_pin: str | Unset | None = UNSET,
        lobby: bool | None = None,
        password: str | None = None,
        start: str | None = None,
        guests: bool | None = None,
    ) -> RoomRecord:
        """Add a room; generates an unused PIN when none is given, and an unused host PIN
        (the same length and generator, not the room's PIN) unless one is given or
        `host_pin` is None (no host PIN). The policy not given comes from the store's
        defaults; no password unless given.

        InvalidInput for a bad name, PIN or policy value, Conflict when the name, PIN or host
        PIN is taken (a PIN and a host PIN are taken by any room's PIN or host PIN).
        """
        key = validate_room_name(name)
        given = validate_pin(pin) if pin is not None else None
        generate_host = isinstance(host_pin, Unset)
        host = validate_pin(host_pin) if isinstance(host_pin, str) else None
        if host is not None and host == given:
            raise InvalidInput("host_pin: must differ from the room's PIN")
        if start is not None and not is_start_policy(start):
            raise InvalidInput("start: expected 'anyone' or 'hosts'")
        secret = hash_password(validate_password(password)) if password is not None else None
        digits = digits_only(password) if password is not None else None
        d = self.defaults
        with self._db.transaction() as db:
            if db.execute("SELECT 1 FROM rooms WHERE name = ?", (key,)).fetchone():
                raise Conflict(f"room {key!r} already exists")
            if given is not None:
                if self._pin_taken(db, given, None):
                    raise Conflict("pin is already used by another room")
                chosen = given
            else:
                chosen = self._unused_pin(db)
            if host is not None and self._pin_taken(db, host, None):
                raise Conflict("host_pin is already used by another room")
            if generate_host:
                host = self._unused_pin(db, avoid=chosen)
            record = RoomRecord(
                name=key, pin=chosen, created=self._clock(), host_pin=host,
                lobby=d.lobby if lobby is None else bool(lobby), password_hash=secret,
                start=d.start if start is None else start,
                guests=d.guests if guests is None else bool(guests), password_digits=digits,
            )  # fmt: skip
            db.execute(
                f"INSERT INTO rooms ({_ROOM_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record.name, record.pin, record.created, record.host_pin, int(record.lobby),
                 record.password_hash, record.start, int(record.guests),
                 None if digits is None else int(digits)),
            )  # fmt: skip
        log.info("room %s created (start %s, lobby %s, password %s, host PIN %s)", key,
                 record.start, "on" if record.lobby else "off",
                 "set" if secret else "none", "set" if host else "none")  # fmt: skip
        return record

    def update_room(
        self,
        name: str,
        *,
        host_pin: str | Unset | None = UNSET,
        lobby: bool | None = None,
        password: str | Unset | None = UNSET,
        start: str | None = None,
        guests: bool | None = None,
    ) -> RoomRecord:
        """Change a room's policy; what is not given stays. `host_pin` or `password` None
        removes it. NotFound, InvalidInput, Conflict (a host PIN taken) as for create_room."""
        record = self.room(name)
        if record is None:
            raise NotFound(f"room {name!r} not found")
        changes: dict[str, object] = {}
        if not isinstance(host_pin, Unset):
            if host_pin is not None:
                host_pin = validate_pin(host_pin)
                if host_pin == record.pin:
                    raise InvalidInput("host_pin: must differ from the room's PIN")
            changes["host_pin"] = host_pin
        if lobby is not None:
            changes["lobby"] = int(bool(lobby))
        if not isinstance(password, Unset):
            changes["password_hash"] = (
                hash_password(validate_password(password)) if password is not None else None
            )
            changes["password_digits"] = int(digits_only(password)) if password is not None \
                else None  # fmt: skip
        if start is not None:
            if not is_start_policy(start):
                raise InvalidInput("start: expected 'anyone' or 'hosts'")
            changes["start"] = start
        if guests is not None:
            changes["guests"] = int(bool(guests))
        if changes:
            with self._db.transaction() as db:
                new_host = changes.get("host_pin")
                if isinstance(new_host, str) and self._pin_taken(db, new_host, record.name):
                    raise Conflict("host_pin is already used by another room")
                columns = ", ".join(f"{column} = ?" for column in changes)
                if db.execute(f"UPDATE rooms SET {columns} WHERE name = ?",
                              (*changes.values(), record.name)).rowcount == 0:  # fmt: skip
                    raise NotFound(f"room {name!r} not found")
            log.info("room %s: policy changed (%s)", record.name,
                     ", ".join(sorted(c.replace("_hash", "") for c in changes
                             if c != "password_digits")))  # fmt: skip
        updated = self.room(record.name)
        if updated is None:
            raise NotFound(f"room {name!r} not found")
        return updated

    @staticmethod
    def _pin_taken(db: Transaction, digits: str, except_room: str | None) -> bool:
        """Whether any room (but `except_room`) has these digits as its PIN or host PIN."""
        sql, args = "SELECT 1 FROM rooms WHERE (pin = ? OR host_pin = ?)", [digits, digits]
        if except_room is not None:
            sql, args = sql + " AND name <> ?", [*args, except_room]
        return db.execute(sql, args).fetchone() is not None

    def _unused_pin(self, db: Transaction, avoid: str | None = None) -> str:
        """A fresh PIN no room has as its PIN or host PIN (nor `avoid`: the PIN of the room
        being created, not stored yet)."""
        for _ in range(PIN_ATTEMPTS):
            candidate = generate_pin(self.pin_length)
            if candidate != avoid and not self._pin_taken(db, candidate, None):
                return candidate
        raise Conflict(
            f"no unused {self.pin_length}-digit PIN found after {PIN_ATTEMPTS} draws; "
            "configure a longer PIN length"
        )

    def room(self, name: str) -> RoomRecord | None:
        """The room by name (any case); None when absent or when `name` is not a room name."""
        try:
            key = validate_room_name(name)
        except InvalidInput:
            return None
        row = self._one(f"SELECT {_ROOM_COLUMNS} FROM rooms WHERE name = ?", (key,))
        return _room(row) if row else None

    def room_by_pin(self, pin: str) -> RoomRecord | None:
        row = self._one(f"SELECT {_ROOM_COLUMNS} FROM rooms WHERE pin = ?", (pin,))
        return _room(row) if row else None

    def room_by_host_pin(self, pin: str) -> RoomRecord | None:
        row = self._one(f"SELECT {_ROOM_COLUMNS} FROM rooms WHERE host_pin = ?", (pin,))
        return _room(row) if row else None

    def rooms(self) -> list[RoomRecord]:
        rows = self._db.all(f"SELECT {_ROOM_COLUMNS} FROM rooms ORDER BY name")
        return [_room(r) for r in rows]

    def delete_room(self, name: str) -> None:
        """NotFound when absent; RoomInUse (a Conflict) while a number routes to it."""
        record = self.room(name)
        if record is None:
            raise NotFound(f"room {name!r} not found")
        with self._db.transaction() as db:
            used = db.execute(
                "SELECT number FROM numbers WHERE room = ? ORDER BY number", (record.name,)
            ).fetchall()
            if used:
                raise RoomInUse(record.name, [r[0] for r in used])
            if db.execute("DELETE FROM rooms WHERE name = ?", (record.name,)).rowcount == 0:
                raise NotFound(f"room {name!r} not found")
        log.info("room %s deleted", record.name)

    # -- numbers ---------------------------------------------------------------------------

    def add_number(
        self,
        number: str,
        route: RouteKind | str = "pin",
        room: str | None = None,
        *,
        display: DisplayPolicy | str = "mask",
        country_code: str | None = None,
        toll_free: bool = False,
        formatted: str | None = None,
    ) -> NumberRecord:
        """Add a number. The number is normalised (see dialplan.numbers); country_code is
        derived from the E.164 prefix unless given; formatted defaults to a grouped form.

        InvalidInput for bad values, NotFound when `room` does not exist, Conflict when the
        number is already configured.
        """
        key = normalise(number)
        if not is_route_kind(route):
            raise InvalidInput("route: expected 'pin' or 'room'")
        if not is_display_policy(display):
            raise InvalidInput("display: expected 'show', 'mask' or 'hide'")
        if route == "room" and room is None:
            raise InvalidInput("room: required when route is 'room'")
        if route == "pin" and room is not None:
            raise InvalidInput("room: only allowed when route is 'room'")
        if country_code is not None:
            if not (len(country_code) == 2 and country_code.isascii() and country_code.isalpha()):
                raise InvalidInput("countryCode: expected a two-letter ISO 3166 code")
            country_code = country_code.upper()
        else:
            country_code = country_of(key)
        if formatted is not None and not (0 < len(formatted) <= 64 and formatted.isprintable()):
            raise InvalidInput("formattedNumber: expected 1 to 64 printable characters")
        room_key: str | None = None
        if room is not None:
            target = self.room(room)
            if target is None:
                raise NotFound(f"room {room!r} not found")
            room_key = target.name
        record = NumberRecord(
            number=key, route=route, room=room_key, display=display,
            country_code=country_code, toll_free=bool(toll_free),
            formatted=formatted if formatted is not None else format_number(key),
            created=self._clock(),
        )  # fmt: skip
        try:
            with self._db.transaction() as db:
                if db.execute("SELECT 1 FROM numbers WHERE number = ?", (key,)).fetchone():
                    raise Conflict(f"number {key} already exists")
                db.execute(
                    f"INSERT INTO numbers ({_NUMBER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (record.number, record.route, record.room, record.display,
                     record.country_code, int(record.toll_free), record.formatted,
                     record.created),
                )  # fmt: skip
        except self._db.integrity_error as exc:  # the room vanished in between
            raise NotFound(f"room {room!r} not found") from exc
        log.info("number %s added: route %s %s", key, route, room_key or "")
        return record

    def number(self, number: str) -> NumberRecord | None:
        """The number stored under exactly this normalised form."""
        row = self._one(f"SELECT {_NUMBER_COLUMNS} FROM numbers WHERE number = ?", (number,))
        return _number(row) if row else None

    def numbers(self) -> list[NumberRecord]:
        rows = self._db.all(f"SELECT {_NUMBER_COLUMNS} FROM numbers ORDER BY created, number")
        return [_number(r) for r in rows]

    def delete_number(self, number: str) -> None:
        """NotFound when the number (normalised) is not configured."""
        try:
            key = normalise(number)
        except InvalidInput:
            raise NotFound(f"number {number!r} not found") from None
        with self._db.transaction() as db:
            if db.execute("DELETE FROM numbers WHERE number = ?", (key,)).rowcount == 0:
                raise NotFound(f"number {key} not found")
        log.info("number %s deleted", key)

    # -- trunks ----------------------------------------------------------------------------

    def add_trunk(self, trunk: TrunkRecord) -> TrunkRecord:
        """Store a validated trunk (dialplan.trunks.parse_trunk). Conflict when the name is
        taken or one of its numbers belongs to another trunk."""
        record = parse_trunk(trunk.stored(), created=self._clock())
        with self._db.transaction() as db:
            if db.execute("SELECT 1 FROM trunks WHERE name = ?", (record.name,)).fetchone():
                raise Conflict(f"trunk {record.name!r} already exists")
            for (name, data) in db.execute("SELECT name, data FROM trunks").fetchall():
                shared = set(json.loads(data).get("numbers", ())) & set(record.numbers)
                if shared:
                    raise Conflict(f"number(s) {', '.join(sorted(shared))} already belong "
                                   f"to trunk {name!r}")
            db.execute("INSERT INTO trunks (name, data, created) VALUES (?, ?, ?)",
                       (record.name, json.dumps(record.stored()), record.created))
        log.info("trunk %s added: %s %s, register %s, auth %s", record.name, record.transport,
                 record.address, record.register, record.auth)
        return record

    def trunk(self, name: str) -> TrunkRecord | None:
        row = self._one("SELECT data, created FROM trunks WHERE name = ?", (name.lower(),))
        return parse_trunk(json.loads(row[0]), created=row[1]) if row else None

    def trunks(self) -> list[TrunkRecord]:
        rows = self._db.all("SELECT data, created FROM trunks ORDER BY name")
        return [parse_trunk(json.loads(r[0]), created=r[1]) for r in rows]

    def delete_trunk(self, name: str) -> None:
        with self._db.transaction() as db:
            if db.execute("DELETE FROM trunks WHERE name = ?", (name.lower(),)).rowcount == 0:
                raise NotFound(f"trunk {name!r} not found")
        log.info("trunk %s deleted", name.lower())

    # -- health ----------------------------------------------------------------------------

    def health(self) -> bool:
        try:
            return self._one("SELECT 1", ()) == (1,)
        except StoreError as exc:
            log.warning("store %s: health check failed: %s", self.path, exc)
            return False
        except self._db.errors:
            log.exception("store %s: health check failed", self.path)
            return False

    def stats(self) -> dict[str, int]:
        rooms = self._one("SELECT count(*) FROM rooms", ())
        numbers = self._one("SELECT count(*) FROM numbers", ())
        return {"rooms": int(rooms[0]) if rooms else 0,
                "numbers": int(numbers[0]) if numbers else 0}
