"""The Store's SQLite backend: one file (or ":memory:"), the single-process default.

One connection opened with check_same_thread=False and guarded by a lock, in WAL mode with a
busy timeout, so the web API and the gateway (both on the event loop) and the
`switchboard rooms` command can use the same file at once. The schema version is
`PRAGMA user_version`.

The database holds every room's PIN: only the service user may read it. Its folder (the data
directory) is created 0700 and the file, with its -wal and -shm, 0600; an existing folder or
file with a wider mode is narrowed at start (logged). A folder that is not the service
user's own or that is sticky (a shared one like /tmp) is left alone.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dialplan.store_base import StoreError

__all__ = ["SqliteBackend"]

log = logging.getLogger("dialplan.store.sqlite")


def _narrow(path: Path, mode: int) -> None:
    """Take every permission bit beyond `mode` away from an existing file or folder."""
    try:
        current = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if current & ~mode:
        os.chmod(path, current & mode)
        log.warning("store: %s was mode %o, now %o (only the service user may read it)",
                    path, current, current & mode)


def _private_file(path: Path) -> None:
    """Create the database's folder (0700) and file (0600), or narrow their modes."""
    folder = path.parent
    if not folder.exists():
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(folder, 0o700)  # mkdir's mode passes through the umask
    else:
        info = folder.stat()
        if info.st_uid == os.getuid() and not info.st_mode & stat.S_ISVTX:
            _narrow(folder, 0o700)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    _narrow(path, 0o600)


class SqliteBackend:
    integrity_error: type[Exception] = sqlite3.IntegrityError
    errors: tuple[type[Exception], ...] = (sqlite3.Error,)

    def __init__(self, target: str) -> None:
        self._lock = threading.RLock()
        if target != ":memory:":
            try:
                _private_file(Path(target))
            except OSError as exc:
                raise StoreError(f"store {target}: {exc}") from exc
        self.label = target
        try:
            self._db = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout = 5000")
            self._db.execute("PRAGMA foreign_keys = ON")
            if target != ":memory:":
                mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    log.warning("store %s: journal mode is %s, not WAL", target, mode)
                self._db.execute("PRAGMA synchronous = NORMAL")
                for suffix in ("-wal", "-shm"):
                    _narrow(Path(target + suffix), 0o600)
        except sqlite3.Error as exc:
            raise StoreError(f"store {target}: {exc}") from exc

    def one(self, sql: str, args: Sequence[object] = ()) -> tuple[Any, ...] | None:
        with self._lock:
            row: tuple[Any, ...] | None = self._db.execute(sql, tuple(args)).fetchone()
            return row

    def all(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            rows: list[tuple[Any, ...]] = self._db.execute(sql, tuple(args)).fetchall()
            return rows

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self, migrations: Sequence[Sequence[str]]) -> Iterator[int]:
        try:
            version = self.schema_version()
            if version > len(migrations):
                raise StoreError(
                    f"store {self.label}: schema version {version} is newer than this "
                    f"Switchboard understands ({len(migrations)})"
                )
            for target in range(version + 1, len(migrations) + 1):
                with self.transaction() as db:
                    for statement in migrations[target - 1]:
                        db.execute(statement)
                    db.execute(f"PRAGMA user_version = {target}")
                yield target
        except sqlite3.Error as exc:
            raise StoreError(f"store {self.label}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()
