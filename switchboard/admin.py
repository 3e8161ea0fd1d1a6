"""`switchboard rooms|numbers ...`: the dialplan from the command line.

They work on the configured store directly (SQLite in WAL mode, or PostgreSQL), so they are
safe while the server runs: the server reads the dialplan on every call setup. `trunks`
goes through the running server first (switchboard/trunks_cli.py: registrations live
there); `open_store` and `trunk_data` are its way to the store when the server is down.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dialplan.models import UNSET, InvalidInput, NotFound, Unset
from dialplan.store import RoomDefaults, Store
from switchboard.config import Config


def _switch(value: str | None) -> bool | None:
    return None if value is None else value == "on"


def _password(args: argparse.Namespace) -> str | None:
    if not args.password_stdin:
        return None
    return sys.stdin.readline().rstrip("\r\n")


def open_store(config: Config) -> Store:
    """The configured store, with the room defaults of [meetings]."""
    m = config.meetings
    defaults = RoomDefaults(lobby=m.default_lobby, guests=m.default_guests,
                            start="hosts" if m.default_start == "hosts" else "anyone")
    return Store(config.store.database, pin_length=config.dialplan.pin_length,
                 defaults=defaults)  # fmt: skip


def run_admin(config: Config, args: argparse.Namespace) -> object:
    """Carry out one rooms or numbers command; returns what to print as JSON (None:
    nothing)."""
    with open_store(config) as store:
        if args.command == "rooms":
            if args.action == "add":
                new_host: str | Unset | None = None if args.no_host_pin else \
                    args.host_pin if args.host_pin is not None else UNSET  # fmt: skip
                return store.create_room(
                    args.name, args.pin, host_pin=new_host, lobby=_switch(args.lobby),
                    password=_password(args), start=args.start, guests=_switch(args.guests),
                ).as_json()  # fmt: skip
            if args.action == "set":
                host_pin: str | Unset | None = None if args.no_host_pin else \
                    args.host_pin if args.host_pin is not None else UNSET  # fmt: skip
                password: str | Unset | None = None if args.no_password else \
                    _password(args) if args.password_stdin else UNSET  # fmt: skip
                return store.update_room(
                    args.name, host_pin=host_pin, lobby=_switch(args.lobby), password=password,
                    start=args.start, guests=_switch(args.guests),
                ).as_json()  # fmt: skip
            if args.action == "show":
                room = store.room(args.name)
                if room is None:
                    raise NotFound(f"room {args.name!r} not found")
                return room.as_json()
            if args.action == "list":
                return [r.as_json() for r in store.rooms()]
            store.delete_room(args.name)
            return None
        if args.action == "add":
            return store.add_number(
                args.number,
                args.route,
                args.room,
                display=args.display,
                country_code=args.country,
                toll_free=args.toll_free,
            ).as_json()
        if args.action == "list":
            return [n.as_json() for n in store.numbers()]
        store.delete_number(args.number)
        return None


def _trunk_password(path: str | None) -> str:
    if path is None:
        return ""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"--password-file: {exc.strerror}") from None
    return text.rstrip("\r\n")


def trunk_data(args: argparse.Namespace) -> dict[str, object]:
    """`trunks add`'s options as the JSON of POST /api/trunks (the password read from
    --password-file, once)."""
    return {
        "name": args.name, "address": args.address, "transport": args.transport,
        "failover_address": args.failover_address, "username": args.username,
        "password": _trunk_password(args.password_file), "register": args.register,
        "expires": args.expires, "numbers": args.numbers,
        "allowed_addresses": args.allowed_addresses, "auth": args.auth,
        "codecs": args.codecs, "media_encryption": args.media_encryption,
        "allowed_destinations": args.allowed_destinations,
        "tls_verify": args.tls_verify, "tls_ca": args.tls_ca, "register_in": args.register_in,
    }  # fmt: skip
