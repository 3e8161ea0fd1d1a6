"""`switchboard rooms|numbers|trunks ...`: the dialplan from the command line.

They work on the configured store directly (SQLite in WAL mode), so they are safe while
the server runs: the server reads the dialplan on every call setup.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dialplan.models import InvalidInput
from dialplan.store import Store
from dialplan.trunks import parse_trunk
from switchboard.config import Config


def run_admin(config: Config, args: argparse.Namespace) -> object:
    """Carry out one admin command; returns what to print as JSON (None: nothing)."""
    with Store(config.store.database_path, pin_length=config.dialplan.pin_length) as store:
        if args.command == "rooms":
            if args.action == "add":
                return store.create_room(args.name, args.pin).as_json()
            if args.action == "list":
                return [r.as_json() for r in store.rooms()]
            store.delete_room(args.name)
            return None
        if args.command == "trunks":
            return _trunks(config, store, args)
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


def _password(path: str | None) -> str:
    if path is None:
        return ""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"--password-file: {exc.strerror}") from None
    return text.rstrip("\r\n")


def _trunks(config: Config, store: Store, args: argparse.Namespace) -> object:
    if args.action == "list":
        return [t.as_json() for t in store.trunks()]
    if args.action == "remove":
        store.delete_trunk(args.name)
        return None
    data: dict[str, object] = {
        "name": args.name, "address": args.address, "transport": args.transport,
        "failover_address": args.failover_address, "username": args.username,
        "password": _password(args.password_file), "register": args.register,
        "expires": args.expires, "numbers": args.numbers,
        "allowed_addresses": args.allowed_addresses, "auth": args.auth,
        "codecs": args.codecs, "media_encryption": args.media_encryption,
        "allowed_destinations": args.allowed_destinations,
    }  # fmt: skip
    return store.add_trunk(parse_trunk(data, config.dialplan.default_country)).as_json()
