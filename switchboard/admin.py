"""`switchboard rooms ...` and `switchboard numbers ...`: the dialplan from the command line.

They work on the configured store directly (SQLite in WAL mode), so they are safe while
the server runs: the server reads the dialplan on every call setup.
"""

from __future__ import annotations

import argparse

from dialplan.store import Store
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
