"""The Store's PostgreSQL backend (store.url = "postgresql://..."): the durable state of a
cluster of nodes, each node a Store on the same database.

Same schema and migrations as SQLite, translated where the dialects differ: REAL becomes
DOUBLE PRECISION (SQLite's REAL is 8 bytes, PostgreSQL's 4) and text compares byte by byte
(COLLATE "C", as SQLite does). The version lives in a one-row table `switchboard_schema`.
Writers take a transaction-scoped advisory lock (`pg_advisory_xact_lock`), so a write on one
node waits for a write on another exactly as SQLite's BEGIN IMMEDIATE makes threads wait; a
migration takes it too, so nodes starting together migrate once.

Calls stay synchronous (psycopg 3, one connection in autocommit mode, guarded by a lock): a
lookup by an index costs a fraction of a millisecond on loopback (docs/benchmarks.md). A dead
database must not hang a running conference, so every wait is short: connecting
(CONNECT_TIMEOUT), a statement (STATEMENT_TIMEOUT, server side) and unacknowledged TCP data
(TCP_USER_TIMEOUT, for a peer that vanished without a reset). A lost connection raises
StoreError at once and from then on every call fails fast with StoreError while a background
thread reconnects once a second; the event loop never waits for a reconnect.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import psycopg
from psycopg import conninfo

from dialplan.store_base import StoreError

__all__ = ["PostgresBackend", "is_postgres_url", "redact"]

log = logging.getLogger("dialplan.store.pg")

CONNECT_TIMEOUT = 2  # seconds (libpq's unit)
STATEMENT_TIMEOUT_MS = 2000
LOCK_TIMEOUT_MS = 2000
TCP_USER_TIMEOUT_MS = 3000
RECONNECT_INTERVAL = 1.0
WRITE_LOCK = 0x5357_4244  # "SWBD": the advisory lock every writer takes

_SCHEMA_TABLE = "CREATE TABLE IF NOT EXISTS switchboard_schema (version INTEGER NOT NULL)"


def is_postgres_url(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """host:port/dbname for logs: never the password, nor the user's other parameters."""
    try:
        info = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unparsable URL)"
    return f"postgresql://{info.get('host', '')}:{info.get('port', 5432)}/{info.get('dbname', '')}"


def translate(statement: str) -> str:
    """SQLite's SQL as PostgreSQL takes it: `?` placeholders to `%s`, REAL to DOUBLE
    PRECISION, TEXT columns compared byte by byte."""
    out = statement.replace("?", "%s")
    out = re.sub(r"\bREAL\b", "DOUBLE PRECISION", out)
    if re.match(r"\s*(CREATE TABLE|ALTER TABLE)", out):
        out = re.sub(r"\bTEXT\b", 'TEXT COLLATE "C"', out)
    return out


class _Tx:
    """The transaction handle the Store writes through: SQLite's SQL, translated."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, args: Sequence[object] = ()) -> psycopg.Cursor[Any]:
        return self._conn.execute(translate(sql), tuple(args))


class PostgresBackend:
    integrity_error: type[Exception] = psycopg.IntegrityError
    errors: tuple[type[Exception], ...] = (psycopg.Error,)

    def __init__(self, url: str) -> None:
        self.url = url
        self.label = redact(url)
        self._lock = threading.RLock()
        self._closed = threading.Event()
        self._reconnecting: threading.Thread | None = None
        self._down_logged = False
        try:
            self._conn: psycopg.Connection[Any] | None = self._connect()
        except psycopg.Error as exc:
            raise StoreError(f"store {self.label}: cannot connect: {_reason(exc)}") from exc

    # -- the connection ------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(
            self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
            keepalives=1, keepalives_idle=5, keepalives_interval=1, keepalives_count=3,
            tcp_user_timeout=TCP_USER_TIMEOUT_MS, application_name="switchboard",
            options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS} "
                    f"-c lock_timeout={LOCK_TIMEOUT_MS} "
                    "-c idle_in_transaction_session_timeout=10000",
        )  # fmt: skip
        return conn

    def _live(self) -> psycopg.Connection[Any]:
        """The connection, or StoreError at once while it is down (a reconnect runs)."""
        if self._closed.is_set():
            raise StoreError(f"store {self.label}: closed")
        if self._conn is None or self._conn.closed:
            self._lost(None)
            raise StoreError(f"store {self.label}: PostgreSQL is unreachable (reconnecting)")
        return self._conn

    def _lost(self, exc: BaseException | None) -> None:
        """Drop the connection and start the reconnect thread (once)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(psycopg.Error):
                conn.close()
        if not self._down_logged:
            self._down_logged = True
            log.error("store %s: connection to PostgreSQL lost (%s); every store call fails "
                      "until it is back, running conferences go on", self.label,
                      _reason(exc) if exc else "closed")  # fmt: skip
        if self._closed.is_set():
            return
        if self._reconnecting is None or not self._reconnecting.is_alive():
            self._reconnecting = threading.Thread(target=self._reconnect, daemon=True,
                                                  name="store-reconnect")  # fmt: skip
            self._reconnecting.start()

    def _reconnect(self) -> None:
        attempts = 0
        while not self._closed.wait(RECONNECT_INTERVAL):
            attempts += 1
            try:
                conn = self._connect()
            except psycopg.Error as exc:
                if attempts % 30 == 1:
                    log.warning("store %s: reconnect failed (%s)", self.label, _reason(exc))
                continue
            with self._lock:
                if self._closed.is_set():
                    conn.close()
                    return
                self._conn = conn
                self._down_logged = False
            log.warning("store %s: connection to PostgreSQL is back after %d attempt(s)",
                        self.label, attempts)  # fmt: skip
            return

    @contextmanager
    def _guard(self) -> Iterator[psycopg.Connection[Any]]:
        """The connection under the lock; a connection-level failure becomes StoreError."""
        with self._lock:
            conn = self._live()
            try:
                yield conn
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                if conn.closed or conn.broken:
                    self._lost(exc)
                    raise StoreError(f"store {self.label}: PostgreSQL is unreachable: "
                                     f"{_reason(exc)}") from exc
                if isinstance(exc, psycopg.errors.QueryCanceled | psycopg.errors.LockNotAvailable):
                    raise StoreError(f"store {self.label}: PostgreSQL did not answer in "
                                     f"time: {_reason(exc)}") from exc
                raise

    # -- the Backend protocol ------------------------------------------------------------

    def one(self, sql: str, args: Sequence[object] = ()) -> tuple[Any, ...] | None:
        with self._guard() as conn:
            row: tuple[Any, ...] | None = conn.execute(
                translate(sql), tuple(args)).fetchone()
            return row

    def all(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._guard() as conn:
            rows: list[tuple[Any, ...]] = conn.execute(
                translate(sql), tuple(args)).fetchall()
            return rows

    @contextmanager
    def transaction(self) -> Iterator[_Tx]:
        with self._guard() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            yield _Tx(conn)

    def schema_version(self) -> int:
        with self._guard() as conn:
            if conn.execute("SELECT to_regclass('switchboard_schema')").fetchone() == (None,):
                return 0
            row = conn.execute("SELECT max(version) FROM switchboard_schema").fetchone()
            return int(row[0]) if row and row[0] is not None else 0

    def migrate(self, migrations: Sequence[Sequence[str]]) -> Iterator[int]:
        try:
            while True:
                with self.transaction() as tx:  # under the writers' lock: one node at a time
                    tx.execute(_SCHEMA_TABLE)
                    row = tx.execute("SELECT max(version) FROM switchboard_schema").fetchone()
                    version = int(row[0]) if row and row[0] is not None else 0
                    if version > len(migrations):
                        raise StoreError(
                            f"store {self.label}: schema version {version} is newer than "
                            f"this Switchboard understands ({len(migrations)})"
                        )
                    if version == len(migrations):
                        return
                    for statement in migrations[version]:
                        tx.execute(statement)
                    tx.execute("DELETE FROM switchboard_schema")
                    tx.execute("INSERT INTO switchboard_schema (version) VALUES (?)",
                               (version + 1,))
                yield version + 1
        except psycopg.Error as exc:
            raise StoreError(f"store {self.label}: {_reason(exc)}") from exc

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _reason(exc: BaseException) -> str:
    """The driver's message on one line (libpq's carry newlines; no URL in them)."""
    return " ".join(str(exc).split())[:300] or type(exc).__name__
