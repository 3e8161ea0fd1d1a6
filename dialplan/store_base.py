"""What `dialplan.store.Store` needs of a database: the backend seam.

The Store's logic (validation, PIN draws, conflicts) is written once, in SQL with `?`
placeholders that both backends take: `dialplan.store_sqlite` (the file, the single-process
default) and `dialplan.store_pg` (PostgreSQL, for a cluster of nodes). A backend runs each
call synchronously and serialises writers: SQLite with BEGIN IMMEDIATE, PostgreSQL with a
transaction-scoped advisory lock, so a check-then-insert (a name or a PIN taken?) is as safe
across nodes as it is across threads.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

__all__ = ["Backend", "Cursor", "StoreError", "Transaction"]


class StoreError(Exception):
    """The database cannot be used (newer schema, unreadable file, PostgreSQL unreachable)."""


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> Any: ...


class Transaction(Protocol):
    def execute(self, sql: str, args: Sequence[object] = ()) -> Cursor: ...


class Backend(Protocol):
    """One database. `label` names it in logs and errors (never a password)."""

    label: str
    #: the driver's integrity error (a foreign key or unique constraint failed)
    integrity_error: type[Exception]
    #: the driver's errors that mean "the database cannot answer now"
    errors: tuple[type[Exception], ...]

    def one(self, sql: str, args: Sequence[object] = ()) -> tuple[Any, ...] | None: ...

    def all(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]: ...

    def transaction(self) -> AbstractContextManager[Transaction]:
        """A write transaction, exclusive among writers; commits on exit, rolls back when
        the block raises."""
        ...

    def schema_version(self) -> int: ...

    def migrate(self, migrations: Sequence[Sequence[str]]) -> Iterator[int]:
        """Run the migrations the database lacks, one transaction each; yields each version
        reached. StoreError when the database is newer than `len(migrations)`."""
        ...

    def close(self) -> None: ...
